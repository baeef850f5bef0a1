// SPDX-License-Identifier: GPL-2.0
/*
 * C helpers for function-like macros used by the Rust support layer; see helpers.h.
 */
#include <linux/etherdevice.h>
#include <linux/virtio_net.h>

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

int ivnet_skb_get_offload(const struct sk_buff *skb, struct virtio_net_hdr *hdr)
{
	return virtio_net_hdr_from_skb(skb, hdr, true, false, 0);
}

int ivnet_skb_set_offload(struct sk_buff *skb, const struct virtio_net_hdr *hdr)
{
	return virtio_net_hdr_to_skb(skb, hdr, true);
}
