/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Prototypes of the hand-written C helpers in helpers.c: function-like macros that bindgen
 * cannot see (static inline functions are wrapped automatically by bindgen's
 * --wrap-static-fns, see gen-bindings.sh).
 */
#ifndef IVNET_HELPERS_H
#define IVNET_HELPERS_H

#include <linux/netdevice.h>
#include <linux/netfilter.h>
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
void ivnet_extack_msg(struct netlink_ext_ack *extack, const char *msg);
unsigned int ivnet_netdev_mtu(const struct net_device *dev);
void ivnet_netdev_set_mtu(struct net_device *dev, unsigned int mtu);
const unsigned char *ivnet_netdev_addr(const struct net_device *dev);
const char *ivnet_netdev_name(const struct net_device *dev);
void ivnet_neigh_flush(struct net_device *dev);

unsigned int ivnet_skb_len(const struct sk_buff *skb);
unsigned char *ivnet_skb_data(const struct sk_buff *skb);
/*
 * A receive buffer holding `len` bytes: up to `head` of them in the linear part (NAPI cache),
 * the rest in order-0 pages attached as fragments, so that a 64 KiB frame needs no high-order
 * allocation in atomic context (which fails once memory is fragmented). NULL if out of memory.
 */
struct sk_buff *ivnet_napi_alloc_rx_skb(struct napi_struct *napi, unsigned int len,
					unsigned int head);
unsigned int ivnet_skb_nr_frags(const struct sk_buff *skb);
/* Fragment `i` (< nr_frags) of an skb we own: its bytes (lowmem pages) and their count. */
unsigned char *ivnet_skb_frag_data(const struct sk_buff *skb, unsigned int i, unsigned int *len);
void ivnet_skb_set_eth_protocol(struct sk_buff *skb, struct net_device *dev);
void ivnet_netdev_set_offloads(struct net_device *dev, unsigned int tso_max);
netdev_features_t ivnet_features_without(netdev_features_t f, bool csum, bool gso);
int ivnet_skb_get_offload(const struct sk_buff *skb, struct virtio_net_hdr *hdr, int link_hlen);
int ivnet_skb_set_offload(struct sk_buff *skb, const struct virtio_net_hdr *hdr);

/* Transparent mode: a regular interface's addresses, read under RCU (and idev->lock). */
struct ivnet_iface {
	int ifindex;
	unsigned int mtu;
	bool up;
	bool has_v4;
	bool has_v6;
	unsigned char mac[6];
	unsigned char v4[4];
	unsigned char v6[16];
};
int ivnet_iface_read(const char *name, struct ivnet_iface *out);
int ivnet_skb_receive_on(struct sk_buff *skb, struct napi_struct *napi, int ifindex);
struct nf_hook_ops *ivnet_nf_register(nf_hookfn *fn, void *priv, u8 pf, unsigned int hooknum,
				      int priority, int *err);
void ivnet_nf_unregister(struct nf_hook_ops *ops);
int ivnet_nf_state_out_ifindex(const struct nf_hook_state *state);
unsigned int ivnet_nf_state_out_mtu(const struct nf_hook_state *state);
u8 ivnet_nf_state_pf(const struct nf_hook_state *state);
void ivnet_consume_skb(struct sk_buff *skb);

void ivnet_timer_setup(struct timer_list *timer, void (*fn)(struct timer_list *));

/* params.c */
int ivnet_param_id(void);
unsigned int ivnet_param_max_peers(void);
unsigned int ivnet_param_poll_ms(void);
unsigned int ivnet_param_poll_idle_ms(void);
const char *ivnet_param_transparent(void);

#endif
