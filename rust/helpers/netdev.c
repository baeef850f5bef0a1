// SPDX-License-Identifier: GPL-2.0
/*
 * net_device helpers: setting up a device, the fields the stack reads with READ_ONCE, feature
 * bits, and flushing its neighbour entries.
 */
#include <net/arp.h>
#include <net/ndisc.h>
#include <net/netdev_queues.h>

#include "netdev.h"

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
			const struct netdev_stat_ops *stat_ops, unsigned int min_mtu,
			unsigned int max_mtu, unsigned int mtu)
{
	SET_NETDEV_DEV(dev, parent);
	dev->netdev_ops = ops;
	dev->ethtool_ops = ethtool_ops;
	dev->stat_ops = stat_ops;
	dev->min_mtu = min_mtu;
	dev->max_mtu = max_mtu;
	dev->mtu = mtu;
	/*
	 * No netpoll (netconsole): it calls start_xmit and the NAPI poll with interrupts off, and
	 * both take spin_lock_bh (rust/sync.rs), whose unlock must not run with interrupts off.
	 */
	dev->priv_flags |= IFF_DISABLE_NETPOLL;
	/*
	 * ether_setup allows shared skbs (pktgen's clone_skb sends one skb many times), but
	 * start_xmit linearizes a frame whose Ethernet header is not all in the linear part
	 * (skb_linearize), and pskb_expand_head BUGs on a shared skb.
	 */
	dev->priv_flags &= ~IFF_TX_SKB_SHARING;
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

void ivnet_netdev_queues_napi(struct net_device *dev, struct napi_struct *napi)
{
	netif_queue_set_napi(dev, 0, NETDEV_QUEUE_TYPE_RX, napi);
	netif_queue_set_napi(dev, 0, NETDEV_QUEUE_TYPE_TX, napi);
}

void ivnet_napi_set_irq(struct napi_struct *napi, int irq)
{
	netif_napi_set_irq(napi, irq);
}
