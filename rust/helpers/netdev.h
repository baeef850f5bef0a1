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
 * Ties queue pair 0 (receive and transmit queue 0) to `napi`, or unties it (NULL), for
 * netdev netlink's queue-get. Under RTNL once the device is registered.
 */
void ivnet_netdev_queues_napi(struct net_device *dev, struct napi_struct *napi);
/* The interrupt that schedules `napi`, for netdev netlink's napi-get. */
void ivnet_napi_set_irq(struct napi_struct *napi, int irq);
void ivnet_extack_msg(struct netlink_ext_ack *extack, const char *msg);
unsigned int ivnet_netdev_mtu(const struct net_device *dev);
void ivnet_netdev_set_mtu(struct net_device *dev, unsigned int mtu);
const unsigned char *ivnet_netdev_addr(const struct net_device *dev);
const char *ivnet_netdev_name(const struct net_device *dev);
void ivnet_neigh_flush(struct net_device *dev);
void ivnet_netdev_set_offloads(struct net_device *dev, unsigned int tso_max);
netdev_features_t ivnet_features_without(netdev_features_t f, bool csum, bool gso);

#endif
