// SPDX-License-Identifier: GPL-2.0
/*
 * Netfilter hook helpers: registering a hook on the initial namespace with its ops allocated
 * here, unregistering it once no call is running, the fields of the hook state, and what the
 * route of a packet at post-routing says.
 */
#include <linux/ipv6.h>
#include <linux/netdevice.h>
#include <linux/slab.h>
#include <net/dst.h>
#include <net/netfilter/nf_conntrack.h>
#include <net/netfilter/nf_conntrack_core.h>
#include <net/netfilter/nf_conntrack_helper.h>
#include <net/ip6_route.h>
#include <net/net_namespace.h>
#include <net/route.h>

#include "netfilter.h"

struct nf_hook_ops *ivnet_nf_register(nf_hookfn *fn, void *priv, u8 pf, unsigned int hooknum,
				      int priority, int *err)
{
	struct nf_hook_ops *ops = kzalloc(sizeof(*ops), GFP_KERNEL);

	if (!ops) {
		*err = -ENOMEM;
		return NULL;
	}
	ops->hook = fn;
	ops->priv = priv;
	ops->pf = pf;
	ops->hooknum = hooknum;
	ops->priority = priority;
	*err = nf_register_net_hook(&init_net, ops);
	if (*err) {
		kfree(ops);
		return NULL;
	}
	return ops;
}

void ivnet_nf_unregister(struct nf_hook_ops *ops)
{
	nf_unregister_net_hook(&init_net, ops);
	/* Hooks run under rcu_read_lock: wait for any still running before the caller frees
	 * what they use. */
	synchronize_net();
	kfree(ops);
}

int ivnet_nf_state_out_ifindex(const struct nf_hook_state *state)
{
	return state->out ? state->out->ifindex : 0;
}

unsigned int ivnet_nf_state_out_mtu(const struct nf_hook_state *state)
{
	return state->out ? READ_ONCE(state->out->mtu) : 0;
}

u8 ivnet_nf_state_pf(const struct nf_hook_state *state)
{
	return state->pf;
}

bool ivnet_nf_route_direct(const struct sk_buff *skb, const struct nf_hook_state *state)
{
	const struct dst_entry *dst = skb_dst(skb);

	if (!dst || !state->out || dst->dev != state->out)
		return false;
#ifdef CONFIG_XFRM
	/* Still to be transformed (IPsec): what the hook sees is plaintext. */
	if (dst->xfrm)
		return false;
#endif
	/*
	 * A lightweight-tunnel encap (MPLS, seg6, BPF, ...) is still to be applied (lwtunnel_xmit in
	 * ip_finish_output2/ip6_finish_output2, after POST_ROUTING): leave it to the stack.
	 */
	if (dst->lwtstate)
		return false;
	switch (state->pf) {
	case NFPROTO_IPV4: {
		const struct rtable *rt = container_of(dst, struct rtable, dst);

		return rt->rt_type == RTN_UNICAST && !rt->rt_uses_gateway && !rt->rt_gw_family;
	}
#if IS_ENABLED(CONFIG_IPV6)
	case NFPROTO_IPV6: {
		const struct rt6_info *rt = container_of(dst, struct rt6_info, dst);
		const struct in6_addr *daddr = &ipv6_hdr(skb)->daddr;

		return ipv6_addr_equal(rt6_nexthop(rt, daddr), daddr);
	}
#endif
	}
	return false;
}

int ivnet_nf_confirm(struct sk_buff *skb)
{
#if IS_ENABLED(CONFIG_NF_CONNTRACK)
	enum ip_conntrack_info ctinfo;
	struct nf_conn *ct = nf_ct_get(skb, &ctinfo);

	if (!ct)
		return 1;
	/*
	 * The confirm hook (nf_confirm) runs a connection's helper and sequence adjustment on
	 * every packet, not only the first: leave every packet of such a connection to the
	 * stack, confirmed or not.
	 */
	if (nfct_help(ct) || test_bit(IPS_SEQ_ADJUST_BIT, &ct->status))
		return 0;
	/* Also for a confirmed one: delivers its cached events, as that hook would. */
	return nf_conntrack_confirm(skb) == NF_ACCEPT ? 1 : -1;
#else
	return 1;
#endif
}
