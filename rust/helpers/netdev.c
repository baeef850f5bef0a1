// SPDX-License-Identifier: GPL-2.0
/*
 * net_device helpers: setting up a device and its queues, the fields the stack reads with
 * READ_ONCE, feature bits, flushing its neighbour entries, and interrupt affinity.
 */
#include <linux/interrupt.h>
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

void ivnet_netdev_queues_napi(struct net_device *dev, struct napi_struct *napis, unsigned int n)
{
	unsigned int q;

	for (q = 0; q < dev->num_tx_queues && q < dev->num_rx_queues; q++) {
		struct napi_struct *napi = napis && q < n ? &napis[q] : NULL;

		netif_queue_set_napi(dev, q, NETDEV_QUEUE_TYPE_RX, napi);
		netif_queue_set_napi(dev, q, NETDEV_QUEUE_TYPE_TX, napi);
	}
}

unsigned int ivnet_netdev_queues(const struct net_device *dev)
{
	return READ_ONCE(dev->real_num_tx_queues);
}

int ivnet_netdev_set_queues(struct net_device *dev, unsigned int n, struct napi_struct *napis,
			    bool napi_enabled)
{
	unsigned int old = dev->real_num_tx_queues, q, cpu;
	cpumask_var_t mask;
	int err;

	if (!n || n > dev->num_tx_queues || n > dev->num_rx_queues)
		return -EINVAL;
	/* Queues about to go are untied from their NAPI contexts first. */
	if (napi_enabled && n < old)
		ivnet_netdev_queues_napi(dev, napis, n);
	err = netif_set_real_num_tx_queues(dev, n);
	if (err)
		goto out;
	err = netif_set_real_num_rx_queues(dev, n);
	if (err) {
		/* Shrinking back cannot fail. */
		netif_set_real_num_tx_queues(dev, old);
		goto out;
	}
	/*
	 * XPS: CPU c sends on queue c % n, so a flow stays on its CPU's queue (shrinking already
	 * dropped the maps of the queues gone). A map that cannot be set leaves the stack's hash
	 * choosing the queue: not an error. Registered devices only: unregistering frees the
	 * maps, and a device whose registration failed would leak them.
	 */
	if (dev->reg_state == NETREG_REGISTERED && zalloc_cpumask_var(&mask, GFP_KERNEL)) {
		for (q = 0; q < n; q++) {
			cpumask_clear(mask);
			for_each_possible_cpu(cpu)
				if (cpu % n == q)
					cpumask_set_cpu(cpu, mask);
			netif_set_xps_queue(dev, mask, q);
		}
		free_cpumask_var(mask);
	}
	/*
	 * XPS by receive queue, which comes first: a socket whose packets come in on receive
	 * queue q (recorded by the receive path) sends on transmit queue q, so a flow's two
	 * directions share a ring number and each side handles the flow on one CPU. Sockets
	 * that have received nothing yet use the CPU maps above. Same failure rule.
	 */
	if (dev->reg_state == NETREG_REGISTERED) {
		unsigned long *rxqs = bitmap_zalloc(dev->num_rx_queues, GFP_KERNEL);

		for (q = 0; rxqs && q < n; q++) {
			bitmap_zero(rxqs, dev->num_rx_queues);
			__set_bit(q, rxqs);
			__netif_set_xps_queue(dev, rxqs, q, XPS_RXQS);
		}
		bitmap_free(rxqs);
	}
out:
	if (napi_enabled)
		ivnet_netdev_queues_napi(dev, napis, dev->real_num_tx_queues);
	return err;
}

void ivnet_napi_set_irq(struct napi_struct *napi, int irq)
{
	netif_napi_set_irq(napi, irq);
}

int ivnet_irq_set_affinity_hint(unsigned int irq, unsigned int index)
{
	/* Spread over the online CPUs: the index-th, wrapping around. */
	return irq_set_affinity_hint(irq, cpumask_of(cpumask_local_spread(index, NUMA_NO_NODE)));
}

void ivnet_irq_clear_affinity_hint(unsigned int irq)
{
	irq_set_affinity_hint(irq, NULL);
}
