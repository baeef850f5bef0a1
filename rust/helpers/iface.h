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

#endif
