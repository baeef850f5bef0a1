/* SPDX-License-Identifier: GPL-2.0 */
/* Interface lookup for transparent mode (rust/net/iface.rs). */
#ifndef IVNET_HELPERS_IFACE_H
#define IVNET_HELPERS_IFACE_H

#include <linux/types.h>

/* Transparent mode: a regular interface's addresses, read under RCU (and idev->lock). */
struct ivnet_iface {
	int ifindex;
	unsigned int mtu;
	bool up;
	bool has_v4;
	bool has_v6;
	unsigned char mac[6];
	unsigned char v4[4];
	unsigned char v6[16];
};
int ivnet_iface_read(const char *name, struct ivnet_iface *out);

/* Transparent mode: what a device knows of an address on its segment. */
struct ivnet_neigh {
	bool on_link;		/* inside one of the device's prefixes */
	bool has_mac;		/* a valid (NUD_VALID) neighbour entry maps it to mac */
	unsigned char mac[6];
};
/*
 * Of the IPv4 (len 4) or IPv6 (len 16) address `addr`, as the device with index `ifindex`
 * in the initial namespace sees it now, under RCU. `in_use`: treat the neighbour entry as
 * sending through it would (neigh_event_send: marked used, a stale one re-checked; no MAC if
 * it cannot be sent through). -ENODEV if there is no such device, -EINVAL for another len.
 */
int ivnet_iface_neigh(int ifindex, const unsigned char *addr, unsigned int len, bool in_use,
		      struct ivnet_neigh *out);

#endif
