// SPDX-License-Identifier: GPL-2.0
/*
 * ivnet-gchannels: the ETHTOOL_GCHANNELS ioctl on an interface, printing the whole structure
 * the kernel copied back, `cmd` included (ethtool -l goes through netlink, which never shows
 * it). For the VM test that the driver leaves the `cmd` the core pre-set alone.
 *
 *   ivnet-gchannels IFACE
 *       prints "cmd=0x%x max_rx=%u max_tx=%u max_other=%u max_combined=%u rx=%u tx=%u
 *       other=%u combined=%u"; exits 0 if the ioctl succeeded, 1 with the error otherwise.
 */
#include <linux/ethtool.h>
#include <linux/sockios.h>
#include <net/if.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	struct ethtool_channels ch;
	struct ifreq ifr;
	int fd;

	if (argc != 2 || strlen(argv[1]) >= IFNAMSIZ) {
		fprintf(stderr, "usage: ivnet-gchannels IFACE\n");
		return 2;
	}
	fd = socket(AF_INET, SOCK_DGRAM, 0);
	if (fd < 0) {
		perror("socket");
		return 1;
	}
	/* Poison what the kernel must overwrite: the core sets cmd, the driver the counts. */
	memset(&ch, 0xa5, sizeof(ch));
	ch.cmd = ETHTOOL_GCHANNELS;
	memset(&ifr, 0, sizeof(ifr));
	strcpy(ifr.ifr_name, argv[1]);
	ifr.ifr_data = (void *)&ch;
	if (ioctl(fd, SIOCETHTOOL, &ifr) < 0) {
		perror("SIOCETHTOOL ETHTOOL_GCHANNELS");
		close(fd);
		return 1;
	}
	close(fd);
	printf("cmd=0x%x max_rx=%u max_tx=%u max_other=%u max_combined=%u rx=%u tx=%u other=%u "
	       "combined=%u\n",
	       ch.cmd, ch.max_rx, ch.max_tx, ch.max_other, ch.max_combined, ch.rx_count,
	       ch.tx_count, ch.other_count, ch.combined_count);
	return 0;
}
