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

#endif
