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

/*
 * Gives every NAPI context of `dev` its kernel thread (napi/<dev>-<id>), as writing 1 to the
 * `threaded` sysfs attribute does, without leaving the device threaded unless it was, and sets
 * each thread's nice value to `nice`. Caller holds RTNL. 0 or the error of creating a thread.
 */
int ivnet_napi_prepare_threads(struct net_device *dev, int nice);
/*
 * Moves `napi` to its thread (`on`) or back to softirq context: takes effect at its next
 * scheduling, as the `threaded` attribute does. False, changing nothing, if it has no thread or
 * the whole device was made threaded through that attribute (the administrator's choice wins).
 */
bool ivnet_napi_set_threaded(struct napi_struct *napi, bool on);
/*
 * Whether `napi` is being polled by a socket busy polling it (napi_busy_loop() owns it).
 */
bool ivnet_napi_in_busy_poll(const struct napi_struct *napi);
/*
 * Inside a poll of `napi`: hands the stack what GRO holds, as napi_complete_done() does
 * (napi_gro_flush() and the GRO_NORMAL list), without completing.
 */
void ivnet_napi_flush_gro(struct napi_struct *napi);
/*
 * Inside a poll of `napi`: hands `skb` (after eth_type_trans) to the stack at once, not
 * through GRO, after what GRO holds; marks it with `napi`'s id for busy polling.
 */
void ivnet_napi_receive_now(struct napi_struct *napi, struct sk_buff *skb);

#endif
