/* SPDX-License-Identifier: GPL-2.0 */
/* sk_buff helpers (rust/net/skbuff.rs, and the netfilter trampoline in rust/netfilter.rs). */
#ifndef IVNET_HELPERS_SKBUFF_H
#define IVNET_HELPERS_SKBUFF_H

#include <linux/netdevice.h>
#include <linux/skbuff.h>
#include <linux/virtio_net.h>

unsigned int ivnet_skb_len(const struct sk_buff *skb);
unsigned char *ivnet_skb_data(const struct sk_buff *skb);
/* eth_type_trans; -EINVAL (nothing done) if the frame is shorter than an Ethernet header. */
int ivnet_skb_set_eth_protocol(struct sk_buff *skb, struct net_device *dev);
int ivnet_skb_get_offload(const struct sk_buff *skb, struct virtio_net_hdr *hdr, int link_hlen);
int ivnet_skb_set_offload(struct sk_buff *skb, const struct virtio_net_hdr *hdr);
/* skb_record_rx_queue: the frame came in on receive queue `queue`. */
void ivnet_skb_record_rx_queue(struct sk_buff *skb, u16 queue);
void ivnet_consume_skb(struct sk_buff *skb);
/* The segmentation-offload type (SKB_GSO_*; 0 without), and whether it is encapsulated. */
unsigned int ivnet_skb_gso_type(const struct sk_buff *skb, bool *encapsulation);

#endif
