/* SPDX-License-Identifier: GPL-2.0 */
/* NAPI receive helpers (rust/net/napi.rs, rust/net/skbuff.rs). */
#ifndef IVNET_HELPERS_NAPI_H
#define IVNET_HELPERS_NAPI_H

#include <linux/netdevice.h>
#include <linux/skbuff.h>

/*
 * A receive buffer holding `len` bytes: up to `head` of them in the linear part (NAPI cache),
 * the rest in order-0 pages attached as fragments, so that a 64 KiB frame needs no high-order
 * allocation in atomic context (which fails once memory is fragmented). ERR_PTR(-E2BIG) if
 * `len` needs more than `head` and MAX_SKB_FRAGS pages (no high-order fallback), ERR_PTR(-ENOMEM)
 * if out of memory; never NULL.
 */
struct sk_buff *ivnet_napi_alloc_rx_skb(struct napi_struct *napi, unsigned int len,
					unsigned int head);
/*
 * Hands an Ethernet frame to the stack as received on device `ifindex` (consumed either way):
 * -EINVAL if shorter than an Ethernet header, -ENODEV if there is no such device up.
 */
int ivnet_skb_receive_on(struct sk_buff *skb, struct napi_struct *napi, int ifindex);

#endif
