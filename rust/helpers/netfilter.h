/* SPDX-License-Identifier: GPL-2.0 */
/* Netfilter hook helpers (rust/netfilter.rs). */
#ifndef IVNET_HELPERS_NETFILTER_H
#define IVNET_HELPERS_NETFILTER_H

#include <linux/netfilter.h>

struct nf_hook_ops *ivnet_nf_register(nf_hookfn *fn, void *priv, u8 pf, unsigned int hooknum,
				      int priority, int *err);
void ivnet_nf_unregister(struct nf_hook_ops *ops);
int ivnet_nf_state_out_ifindex(const struct nf_hook_state *state);
unsigned int ivnet_nf_state_out_mtu(const struct nf_hook_state *state);
u8 ivnet_nf_state_pf(const struct nf_hook_state *state);
/*
 * At post-routing, IPv4 or IPv6: whether the packet's route sends it straight to its
 * destination on the hook's output device (no gateway, no IPsec transform still to come).
 */
bool ivnet_nf_route_direct(const struct sk_buff *skb, const struct nf_hook_state *state);
/*
 * Before taking a packet at post-routing: confirms its conntrack entry, as the confirm hook
 * (which may come after ours at the same priority) would have. 1: confirmed, or nothing to
 * confirm; 0: a connection with a helper or sequence adjustment, whose every packet must go
 * through the stack's own hook; -1: confirming failed (drop it, as that hook would).
 */
int ivnet_nf_confirm(struct sk_buff *skb);

#endif
