/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Prototypes of the hand-written C helpers in helpers.c: function-like macros that bindgen
 * cannot see (static inline functions are wrapped automatically by bindgen's
 * --wrap-static-fns, see gen-bindings.sh).
 */
#ifndef IVNET_HELPERS_H
#define IVNET_HELPERS_H

#include <linux/netdevice.h>
#include <linux/pci.h>
#include <linux/skbuff.h>
#include <linux/timer.h>
#include <linux/virtio_net.h>

resource_size_t ivnet_pci_resource_start(struct pci_dev *pdev, int bar);
resource_size_t ivnet_pci_resource_len(struct pci_dev *pdev, int bar);
unsigned long ivnet_pci_resource_flags(struct pci_dev *pdev, int bar);
const char *ivnet_pci_name(const struct pci_dev *pdev);
bool ivnet_pci_msix_enabled(const struct pci_dev *pdev);

void ivnet_netdev_setup(struct net_device *dev, struct device *parent,
			const struct net_device_ops *ops, const struct ethtool_ops *ethtool_ops,
			unsigned int min_mtu, unsigned int max_mtu, unsigned int mtu);
unsigned int ivnet_netdev_mtu(const struct net_device *dev);
void ivnet_netdev_set_mtu(struct net_device *dev, unsigned int mtu);
const unsigned char *ivnet_netdev_addr(const struct net_device *dev);
const char *ivnet_netdev_name(const struct net_device *dev);

unsigned int ivnet_skb_len(const struct sk_buff *skb);
unsigned char *ivnet_skb_data(const struct sk_buff *skb);
void ivnet_skb_set_eth_protocol(struct sk_buff *skb, struct net_device *dev);
void ivnet_netdev_set_offloads(struct net_device *dev, unsigned int tso_max);
netdev_features_t ivnet_features_without(netdev_features_t f, bool csum, bool gso);
int ivnet_skb_get_offload(const struct sk_buff *skb, struct virtio_net_hdr *hdr);
int ivnet_skb_set_offload(struct sk_buff *skb, const struct virtio_net_hdr *hdr);

void ivnet_timer_setup(struct timer_list *timer, void (*fn)(struct timer_list *));

/* params.c */
int ivnet_param_id(void);
unsigned int ivnet_param_max_peers(void);
unsigned int ivnet_param_poll_ms(void);
unsigned int ivnet_param_poll_idle_ms(void);

#endif
