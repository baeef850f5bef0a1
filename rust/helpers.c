// SPDX-License-Identifier: GPL-2.0
/*
 * C helpers for function-like macros used by the Rust support layer; see helpers.h.
 */
#include <linux/etherdevice.h>
#include <linux/inetdevice.h>
#include <linux/netfilter.h>
#include <linux/virtio_net.h>
#include <net/addrconf.h>
#include <net/arp.h>
#include <net/busy_poll.h>
#include <net/if_inet6.h>
#include <net/ndisc.h>
#include <net/net_namespace.h>

#include "helpers.h"

resource_size_t ivnet_pci_resource_start(struct pci_dev *pdev, int bar)
{
	return pci_resource_start(pdev, bar);
}

resource_size_t ivnet_pci_resource_len(struct pci_dev *pdev, int bar)
{
	return pci_resource_len(pdev, bar);
}

unsigned long ivnet_pci_resource_flags(struct pci_dev *pdev, int bar)
{
	return pci_resource_flags(pdev, bar);
}

const char *ivnet_pci_name(const struct pci_dev *pdev)
{
	return pci_name(pdev);
}

void ivnet_neigh_flush(struct net_device *dev)
{
	/* What a change of the device's own address does: forget every ARP and NDP entry. */
	neigh_changeaddr(&arp_tbl, dev);
#if IS_ENABLED(CONFIG_IPV6)
	neigh_changeaddr(&nd_tbl, dev);
#endif
}

void ivnet_netdev_setup(struct net_device *dev, struct device *parent,
			const struct net_device_ops *ops, const struct ethtool_ops *ethtool_ops,
			unsigned int min_mtu, unsigned int max_mtu, unsigned int mtu)
{
	SET_NETDEV_DEV(dev, parent);
	dev->netdev_ops = ops;
	dev->ethtool_ops = ethtool_ops;
	dev->min_mtu = min_mtu;
	dev->max_mtu = max_mtu;
	dev->mtu = mtu;
}

void ivnet_extack_msg(struct netlink_ext_ack *extack, const char *msg)
{
	/* NL_SET_ERR_MSG wants a literal; the caller's message is static too. */
	if (extack)
		extack->_msg = msg;
}

unsigned int ivnet_netdev_mtu(const struct net_device *dev)
{
	return READ_ONCE(dev->mtu);
}

void ivnet_netdev_set_mtu(struct net_device *dev, unsigned int mtu)
{
	WRITE_ONCE(dev->mtu, mtu);
}

const unsigned char *ivnet_netdev_addr(const struct net_device *dev)
{
	return dev->dev_addr;
}

const char *ivnet_netdev_name(const struct net_device *dev)
{
	return dev->name;
}

unsigned int ivnet_skb_len(const struct sk_buff *skb)
{
	return skb->len;
}

unsigned char *ivnet_skb_data(const struct sk_buff *skb)
{
	return skb->data;
}

struct sk_buff *ivnet_napi_alloc_rx_skb(struct napi_struct *napi, unsigned int len,
					unsigned int head)
{
	unsigned int lin = min(len, head), rest = len - lin;
	struct sk_buff *skb;
	int i = 0;

	/* Too long for the head and MAX_SKB_FRAGS pages: one linear buffer after all. */
	if (DIV_ROUND_UP(rest, PAGE_SIZE) > MAX_SKB_FRAGS)
		lin = len, rest = 0;
	skb = napi_alloc_skb(napi, lin);
	if (!skb)
		return NULL;
	skb_put(skb, lin);
	while (rest) {
		unsigned int n = min_t(unsigned int, rest, PAGE_SIZE);
		struct page *page = dev_alloc_page();

		if (!page) {
			dev_kfree_skb_any(skb);
			return NULL;
		}
		skb_add_rx_frag(skb, i++, page, 0, n, PAGE_SIZE);
		rest -= n;
	}
	return skb;
}

unsigned int ivnet_skb_nr_frags(const struct sk_buff *skb)
{
	return skb_shinfo(skb)->nr_frags;
}

unsigned char *ivnet_skb_frag_data(const struct sk_buff *skb, unsigned int i, unsigned int *len)
{
	const skb_frag_t *f = &skb_shinfo(skb)->frags[i];

	*len = skb_frag_size(f);
	return skb_frag_address(f);
}

void ivnet_skb_set_eth_protocol(struct sk_buff *skb, struct net_device *dev)
{
	skb->protocol = eth_type_trans(skb, dev);
}

void ivnet_timer_setup(struct timer_list *timer, void (*fn)(struct timer_list *))
{
	timer_setup(timer, fn, 0);
}

bool ivnet_pci_msix_enabled(const struct pci_dev *pdev)
{
	return pdev->msix_enabled;
}

void ivnet_netdev_set_offloads(struct net_device *dev, unsigned int tso_max)
{
	netdev_features_t f = NETIF_F_SG | NETIF_F_HW_CSUM | NETIF_F_TSO | NETIF_F_TSO6 |
			      NETIF_F_TSO_ECN;

	dev->hw_features |= f;
	dev->features |= f;
	netif_set_tso_max_size(dev, tso_max);
}

netdev_features_t ivnet_features_without(netdev_features_t f, bool csum, bool gso)
{
	if (csum)
		f &= ~(NETIF_F_CSUM_MASK | NETIF_F_GSO_MASK);
	if (gso)
		f &= ~NETIF_F_GSO_MASK;
	return f;
}

int ivnet_skb_get_offload(const struct sk_buff *skb, struct virtio_net_hdr *hdr, int link_hlen)
{
	return virtio_net_hdr_from_skb(skb, hdr, true, false, link_hlen);
}

int ivnet_skb_set_offload(struct sk_buff *skb, const struct virtio_net_hdr *hdr)
{
	return virtio_net_hdr_to_skb(skb, hdr, true);
}

/*
 * Transparent mode.
 */

int ivnet_iface_read(const char *name, struct ivnet_iface *out)
{
	struct net_device *dev;
	struct in_device *in_dev;
	struct in_ifaddr *ifa;
	struct inet6_dev *idev;
	struct inet6_ifaddr *ifp;

	memset(out, 0, sizeof(*out));
	rcu_read_lock();
	dev = dev_get_by_name_rcu(&init_net, name);
	if (!dev) {
		rcu_read_unlock();
		return -ENODEV;
	}
	out->ifindex = dev->ifindex;
	out->mtu = READ_ONCE(dev->mtu);
	out->up = (READ_ONCE(dev->flags) & IFF_UP) && netif_running(dev);
	if (dev->type == ARPHRD_ETHER && dev->addr_len == ETH_ALEN)
		memcpy(out->mac, dev->dev_addr, ETH_ALEN);
	in_dev = __in_dev_get_rcu(dev);
	if (in_dev) {
		ifa = rcu_dereference(in_dev->ifa_list);
		if (ifa) {
			memcpy(out->v4, &ifa->ifa_local, 4);
			out->has_v4 = true;
		}
	}
	idev = __in6_dev_get(dev);
	if (idev) {
		read_lock_bh(&idev->lock);
		list_for_each_entry(ifp, &idev->addr_list, if_list) {
			/* Global scope, usable (not waiting for or failed in DAD). */
			if (ifp->scope == 0 &&
			    !(ifp->flags & (IFA_F_TENTATIVE | IFA_F_DADFAILED))) {
				memcpy(out->v6, &ifp->addr, 16);
				out->has_v6 = true;
				break;
			}
		}
		read_unlock_bh(&idev->lock);
	}
	rcu_read_unlock();
	return 0;
}

int ivnet_skb_receive_on(struct sk_buff *skb, struct napi_struct *napi, int ifindex)
{
	struct net_device *dev;

	rcu_read_lock();
	dev = dev_get_by_index_rcu(&init_net, ifindex);
	if (!dev || !(READ_ONCE(dev->flags) & IFF_UP)) {
		rcu_read_unlock();
		kfree_skb(skb);
		return -ENODEV;
	}
	skb->protocol = eth_type_trans(skb, dev);
	/* The socket that gets it learns our NAPI context: busy polling it polls our rings. */
	skb_mark_napi_id(skb, napi);
	netif_receive_skb(skb);
	rcu_read_unlock();
	return 0;
}

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

void ivnet_consume_skb(struct sk_buff *skb)
{
	consume_skb(skb);
}
