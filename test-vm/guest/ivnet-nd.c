// SPDX-License-Identifier: GPL-2.0
/*
 * ivnet-nd: sends a hand-made ICMPv6 neighbour solicitation or advertisement, or an echo
 * request (ICMP or ICMPv6), as a raw Ethernet frame (AF_PACKET) on an interface, bypassing
 * the stack's IP output, its netfilter hooks and its choice of source address: for the
 * transparent-mode tests where a peer writes such frames straight into its ring (busybox has
 * no such tool).
 *
 *   ivnet-nd IFACE DST_MAC SRC_MAC SRC_IP6 DST_IP6 ns|na TARGET_IP6 LLADDR [COUNT]
 *       ns: a solicitation for TARGET with LLADDR as its source link-layer address option;
 *       na: a solicited, override advertisement for TARGET with LLADDR as its target
 *       link-layer address option. Hop limit 255, valid checksum. Sent COUNT times (1).
 *   ivnet-nd IFACE DST_MAC SRC_MAC SRC_IP DST_IP echo [COUNT]
 *       an echo request from SRC_IP to DST_IP (both IPv4 or both IPv6), valid checksums,
 *       sent COUNT times (1), 100 ms apart.
 */
#include <arpa/inet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <linux/if_packet.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int mac(const char *s, uint8_t *m)
{
	unsigned int b[6];

	if (sscanf(s, "%x:%x:%x:%x:%x:%x", &b[0], &b[1], &b[2], &b[3], &b[4], &b[5]) != 6)
		return -1;
	for (int i = 0; i < 6; i++)
		m[i] = (uint8_t)b[i];
	return 0;
}

/* Adds the 16-bit words of `len` bytes (an odd last byte padded with zero) to `sum`. */
static uint32_t sum16(uint32_t sum, const uint8_t *p, size_t len)
{
	for (size_t i = 0; i < len; i += 2)
		sum += (uint32_t)(p[i] << 8 | (i + 1 < len ? p[i + 1] : 0));
	return sum;
}

/* The Internet checksum of what `sum16` summed. */
static uint16_t fold(uint32_t sum)
{
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)~sum;
}

/* ICMPv6 checksum of `msg` (`len` bytes) with the pseudo-header of `src` and `dst`. */
static uint16_t csum6(const uint8_t *src, const uint8_t *dst, const uint8_t *msg, size_t len)
{
	uint8_t pseudo[40] = { 0 };

	memcpy(pseudo, src, 16);
	memcpy(pseudo + 16, dst, 16);
	pseudo[34] = (uint8_t)(len >> 8);
	pseudo[35] = (uint8_t)len;
	pseudo[39] = 58;
	return fold(sum16(sum16(0, pseudo, sizeof(pseudo)), msg, len));
}

/* An echo request of `type` (8: ICMP, 128: ICMPv6): id 0x4956, sequence 1, 8 bytes of data. */
static void echo_body(uint8_t *m, uint8_t type)
{
	m[0] = type;
	m[4] = 0x49;
	m[5] = 0x56;
	m[7] = 1;
	memcpy(m + 8, "ivnet-nd", 8);
}

static int send_frames(const char *ifname, const uint8_t *f, size_t len, int count)
{
	struct sockaddr_ll to = { 0 };
	int fd = socket(AF_PACKET, SOCK_RAW, 0);

	if (fd < 0) {
		perror("ivnet-nd: socket");
		return 1;
	}
	to.sll_family = AF_PACKET;
	to.sll_ifindex = (int)if_nametoindex(ifname);
	to.sll_halen = 6;
	memcpy(to.sll_addr, f, 6);
	if (!to.sll_ifindex) {
		perror("ivnet-nd: interface");
		close(fd);
		return 1;
	}
	for (int i = 0; i < count; i++) {
		if (sendto(fd, f, len, 0, (struct sockaddr *)&to, sizeof(to)) != (ssize_t)len) {
			perror("ivnet-nd: sendto");
			close(fd);
			return 1;
		}
		usleep(100000);
	}
	close(fd);
	return 0;
}

/* An echo request (id 0x4956, sequence 1, 8 bytes of payload) from argv[4] to argv[5]. */
static int echo(int argc, char **argv)
{
	uint8_t f[14 + 40 + 16] = { 0 };
	int count = argc > 7 ? atoi(argv[7]) : 1;
	size_t len;
	uint16_t c;

	if (mac(argv[2], f) || mac(argv[3], f + 6)) {
		fprintf(stderr, "ivnet-nd: bad address\n");
		return 2;
	}
	if (inet_pton(AF_INET, argv[4], f + 14 + 12) == 1) {
		uint8_t *ip = f + 14, *m = f + 34;

		if (inet_pton(AF_INET, argv[5], ip + 16) != 1) {
			fprintf(stderr, "ivnet-nd: bad address\n");
			return 2;
		}
		f[12] = 0x08;
		ip[0] = 0x45;
		ip[3] = 20 + 16; /* total length */
		ip[8] = 64; /* TTL */
		ip[9] = 1; /* ICMP */
		c = fold(sum16(0, ip, 20));
		ip[10] = (uint8_t)(c >> 8);
		ip[11] = (uint8_t)c;
		echo_body(m, 8);
		c = fold(sum16(0, m, 16));
		m[2] = (uint8_t)(c >> 8);
		m[3] = (uint8_t)c;
		len = 14 + 20 + 16;
	} else {
		uint8_t *ip = f + 14, *m = f + 54;

		if (inet_pton(AF_INET6, argv[4], ip + 8) != 1 ||
		    inet_pton(AF_INET6, argv[5], ip + 24) != 1) {
			fprintf(stderr, "ivnet-nd: bad address\n");
			return 2;
		}
		f[12] = 0x86;
		f[13] = 0xdd;
		ip[0] = 0x60;
		ip[5] = 16; /* payload length */
		ip[6] = 58; /* ICMPv6 */
		ip[7] = 64;
		echo_body(m, 128);
		c = csum6(ip + 8, ip + 24, m, 16);
		m[2] = (uint8_t)(c >> 8);
		m[3] = (uint8_t)c;
		len = sizeof(f);
	}
	if (send_frames(argv[1], f, len, count))
		return 1;
	printf("sent %d echo requests from %s to %s\n", count, argv[4], argv[5]);
	return 0;
}

int main(int argc, char **argv)
{
	uint8_t f[14 + 40 + 32] = { 0 }, *ip = f + 14, *m = f + 54;
	int count = argc > 9 ? atoi(argv[9]) : 1, na;
	uint16_t c;

	if (argc >= 7 && !strcmp(argv[6], "echo"))
		return echo(argc, argv);
	if (argc < 9 || (strcmp(argv[6], "ns") && strcmp(argv[6], "na"))) {
		fprintf(stderr, "usage: ivnet-nd IFACE DST_MAC SRC_MAC SRC_IP6 DST_IP6 ns|na "
			"TARGET_IP6 LLADDR [COUNT]\n"
			"       ivnet-nd IFACE DST_MAC SRC_MAC SRC_IP DST_IP echo [COUNT]\n");
		return 2;
	}
	na = !strcmp(argv[6], "na");
	if (mac(argv[2], f) || mac(argv[3], f + 6) || inet_pton(AF_INET6, argv[4], ip + 8) != 1 ||
	    inet_pton(AF_INET6, argv[5], ip + 24) != 1 ||
	    inet_pton(AF_INET6, argv[7], m + 8) != 1 || mac(argv[8], m + 26)) {
		fprintf(stderr, "ivnet-nd: bad address\n");
		return 2;
	}
	f[12] = 0x86;
	f[13] = 0xdd;
	ip[0] = 0x60;
	ip[5] = 32; /* payload length */
	ip[6] = 58; /* ICMPv6 */
	ip[7] = 255; /* hop limit: what neighbour discovery requires */
	m[0] = na ? 136 : 135;
	if (na)
		m[4] = 0x60; /* solicited, override */
	m[24] = na ? 2 : 1; /* target / source link-layer address option */
	m[25] = 1; /* 8 bytes */
	c = csum6(ip + 8, ip + 24, m, 32);
	m[2] = (uint8_t)(c >> 8);
	m[3] = (uint8_t)c;

	if (send_frames(argv[1], f, sizeof(f), count))
		return 1;
	printf("sent %d %s for %s from %s\n", count, argv[6], argv[7], argv[4]);
	return 0;
}
