/* SPDX-License-Identifier: GPL-2.0 */
/* net_device helpers (rust/net/device.rs, registration.rs, ops.rs, ethtool.rs). */
#ifndef IVNET_HELPERS_NETDEV_H
#define IVNET_HELPERS_NETDEV_H

#include <linux/netdevice.h>

/*
 * Parent, ops (stat_ops may be NULL: no per-queue statistics), MTU range; and no netpoll
 * (IFF_DISABLE_NETPOLL, see netdev.c).
 */
void ivnet_netdev_setup(struct net_device *dev, struct device *parent,
			const struct net_device_ops *ops, const struct ethtool_ops *ethtool_ops,
			const struct netdev_stat_ops *stat_ops, unsigned int min_mtu,
			unsigned int max_mtu, unsigned int mtu);
/*
 * Ties queue pair q (receive and transmit queue q) to napis[q] for q < n, and unties the
 * others (all of them if napis is NULL), for netdev netlink's queue-get. Under RTNL once the
 * device is registered.
 */
void ivnet_netdev_queues_napi(struct net_device *dev, struct napi_struct *napis, unsigned int n);
/* The number of active queue pairs (real_num_tx_queues, READ_ONCE). */
unsigned int ivnet_netdev_queues(const struct net_device *dev);
/*
 * Sets the real number of transmit and receive queues to n (1..=allocated), with XPS (CPU c ->
 * queue c % n, once the device is registered) and, if napi_enabled, the queue-NAPI ties of ivnet_netdev_queues_napi (the
 * queues going are untied before they go). Under RTNL once the device is registered. 0 or a
 * negative errno, the old count kept.
 */
int ivnet_netdev_set_queues(struct net_device *dev, unsigned int n, struct napi_struct *napis,
			    bool napi_enabled);
/* The interrupt that schedules `napi`, for netdev netlink's napi-get. */
void ivnet_napi_set_irq(struct napi_struct *napi, int irq);
/*
 * Affinity hint (and affinity) of `irq`: the index-th online CPU, wrapping. Cleared before the
 * interrupt is freed.
 */
int ivnet_irq_set_affinity_hint(unsigned int irq, unsigned int index);
void ivnet_irq_clear_affinity_hint(unsigned int irq);
void ivnet_extack_msg(struct netlink_ext_ack *extack, const char *msg);
unsigned int ivnet_netdev_mtu(const struct net_device *dev);
void ivnet_netdev_set_mtu(struct net_device *dev, unsigned int mtu);
const unsigned char *ivnet_netdev_addr(const struct net_device *dev);
const char *ivnet_netdev_name(const struct net_device *dev);
void ivnet_neigh_flush(struct net_device *dev);
void ivnet_netdev_set_offloads(struct net_device *dev, unsigned int tso_max);
netdev_features_t ivnet_features_without(netdev_features_t f, bool csum, bool gso);

#endif
