// SPDX-License-Identifier: GPL-2.0
/*
 * ivnet-udp: UDP datagrams whose content the receiver checks, for the in-guest data-path tests
 * (busybox nc has no UDP mode). Lock-step: the sender sends one datagram and waits for its
 * acknowledgement before the next, so nothing is lost to socket buffers and any loss is the
 * network's (the driver's). No retransmission: a lost datagram or ack is reported as such.
 *
 *   ivnet-udp recv PORT COUNT TIMEOUT_S
 *       binds 0.0.0.0:PORT, takes COUNT datagrams (or gives up after TIMEOUT_S seconds without
 *       one), checks each byte, acknowledges each one; prints per datagram
 *       "rx SIZE SEQ ok DIGEST" or "rx SIZE SEQ bad REASON"; exits 0 only if all COUNT were ok.
 *   ivnet-udp send ADDR PORT SIZE[,SIZE...] REPEAT TIMEOUT_S
 *       sends REPEAT datagrams of each SIZE (12..65507 bytes of UDP payload) to ADDR:PORT,
 *       waiting up to TIMEOUT_S seconds for each ack; prints "tx SIZE SEQ acked DIGEST" or
 *       "tx SIZE SEQ lost DIGEST"; exits 0 only if every datagram was acknowledged.
 *
 * A datagram: "IVUD", its size, its sequence number (u32, little-endian), then bytes of an
 * xorshift32 stream seeded from size and sequence number. DIGEST is FNV-1a 64 over the whole
 * datagram as sent/received, so the host can also compare the two sides' lines.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAXDGRAM 65507
#define HDR 12

static uint64_t fnv1a(const uint8_t *p, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ULL;

	for (size_t i = 0; i < n; i++) {
		h ^= p[i];
		h *= 0x100000001b3ULL;
	}
	return h;
}

static void put32(uint8_t *p, uint32_t v)
{
	p[0] = v;
	p[1] = v >> 8;
	p[2] = v >> 16;
	p[3] = v >> 24;
}

static uint32_t get32(const uint8_t *p)
{
	return p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint32_t seed_for(uint32_t size, uint32_t seq)
{
	uint32_t s = size * 2654435761u ^ (seq + 1) * 0x9e3779b9u;

	return s ? s : 1;
}

static uint8_t next_byte(uint32_t *x)
{
	*x ^= *x << 13;
	*x ^= *x >> 17;
	*x ^= *x << 5;
	return *x >> 24;
}

static void fill(uint8_t *buf, uint32_t size, uint32_t seq)
{
	uint32_t x = seed_for(size, seq);

	memcpy(buf, "IVUD", 4);
	put32(buf + 4, size);
	put32(buf + 8, seq);
	for (uint32_t i = HDR; i < size; i++)
		buf[i] = next_byte(&x);
}

/* NULL if the datagram is intact, else what is wrong with it. */
static const char *verify(const uint8_t *buf, size_t len, char *why, size_t whylen)
{
	if (len < HDR) {
		snprintf(why, whylen, "short(%zu)", len);
		return why;
	}
	if (memcmp(buf, "IVUD", 4)) {
		snprintf(why, whylen, "magic");
		return why;
	}
	uint32_t size = get32(buf + 4), seq = get32(buf + 8);

	if (size != len) {
		snprintf(why, whylen, "length(header=%u,got=%zu)", size, len);
		return why;
	}
	uint32_t x = seed_for(size, seq);

	for (uint32_t i = HDR; i < size; i++) {
		if (buf[i] != next_byte(&x)) {
			snprintf(why, whylen, "content(first-diff-at=%u)", i);
			return why;
		}
	}
	return NULL;
}

static int wait_readable(int fd, int timeout_s)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	int r;

	do
		r = poll(&p, 1, timeout_s * 1000);
	while (r < 0 && errno == EINTR);
	return r;
}

static int do_recv(int port, int count, int timeout_s)
{
	static uint8_t buf[65536];
	int fd = socket(AF_INET, SOCK_DGRAM, 0);
	int big = 4 << 20, good = 0;
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };

	if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a))) {
		perror("ivnet-udp: socket/bind");
		return 2;
	}
	/* Only the kernel's limit applies to root with FORCE; a failure here is harmless. */
	if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &big, sizeof(big)))
		setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &big, sizeof(big));
	printf("listening %d\n", port);
	fflush(stdout);
	for (int n = 0; n < count; n++) {
		struct sockaddr_in from;
		socklen_t fl = sizeof(from);
		char why[64];
		uint8_t ack[HDR];

		if (wait_readable(fd, timeout_s) <= 0) {
			printf("timeout after %d datagrams\n", n);
			return 1;
		}
		ssize_t len = recvfrom(fd, buf, sizeof(buf), 0, (struct sockaddr *)&from, &fl);

		if (len < 0) {
			perror("ivnet-udp: recvfrom");
			return 2;
		}
		const char *bad = verify(buf, len, why, sizeof(why));
		uint32_t seq = len >= HDR ? get32(buf + 8) : 0;

		if (bad) {
			printf("rx %zd %u bad %s\n", len, seq, bad);
		} else {
			printf("rx %zd %u ok %016llx\n", len, seq,
			       (unsigned long long)fnv1a(buf, len));
			good++;
		}
		fflush(stdout);
		memcpy(ack, "ACK!", 4);
		put32(ack + 4, (uint32_t)len);
		put32(ack + 8, seq);
		if (sendto(fd, ack, sizeof(ack), 0, (struct sockaddr *)&from, fl) != sizeof(ack))
			perror("ivnet-udp: sendto ack");
	}
	printf("received %d ok of %d\n", good, count);
	return good == count ? 0 : 1;
}

static int do_send(const char *addr, int port, char *sizes, int repeat, int timeout_s)
{
	static uint8_t buf[65536];
	int fd = socket(AF_INET, SOCK_DGRAM, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };
	uint32_t seq = 0;
	int lost = 0;

	if (fd < 0 || inet_pton(AF_INET, addr, &a.sin_addr) != 1 ||
	    connect(fd, (struct sockaddr *)&a, sizeof(a))) {
		perror("ivnet-udp: socket/address/connect");
		return 2;
	}
	for (char *tok = strtok(sizes, ","); tok; tok = strtok(NULL, ",")) {
		long size = strtol(tok, NULL, 10);

		if (size < HDR || size > MAXDGRAM) {
			fprintf(stderr, "ivnet-udp: size %ld out of %d..%d\n", size, HDR, MAXDGRAM);
			return 2;
		}
		for (int r = 0; r < repeat; r++, seq++) {
			uint8_t ack[64];

			fill(buf, size, seq);
			unsigned long long dig = fnv1a(buf, size);

			if (send(fd, buf, size, 0) != size) {
				printf("tx %ld %u senderr %s\n", size, seq, strerror(errno));
				return 1;
			}
			for (;;) {
				if (wait_readable(fd, timeout_s) <= 0) {
					printf("tx %ld %u lost %016llx\n", size, seq, dig);
					lost++;
					break;
				}
				ssize_t n = recv(fd, ack, sizeof(ack), 0);

				if (n < 0 && errno == ECONNREFUSED) {
					printf("tx %ld %u refused\n", size, seq);
					return 1;
				}
				/* An ack of an earlier (late) datagram is skipped. */
				if (n == HDR && !memcmp(ack, "ACK!", 4) &&
				    get32(ack + 4) == (uint32_t)size && get32(ack + 8) == seq) {
					printf("tx %ld %u acked %016llx\n", size, seq, dig);
					break;
				}
			}
			fflush(stdout);
		}
	}
	printf("sent %u lost %d\n", seq, lost);
	return lost ? 1 : 0;
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc == 5 && !strcmp(argv[1], "recv"))
		return do_recv(atoi(argv[2]), atoi(argv[3]), atoi(argv[4]));
	if (argc == 7 && !strcmp(argv[1], "send"))
		return do_send(argv[2], atoi(argv[3]), argv[4], atoi(argv[5]), atoi(argv[6]));
	fprintf(stderr, "usage: ivnet-udp recv PORT COUNT TIMEOUT_S\n"
			"       ivnet-udp send ADDR PORT SIZE[,SIZE...] REPEAT TIMEOUT_S\n");
	return 2;
}
