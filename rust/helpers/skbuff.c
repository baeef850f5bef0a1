// SPDX-License-Identifier: GPL-2.0
/*
 * sk_buff helpers: fields, the Ethernet protocol, offload metadata in the form
 * of a virtio_net_hdr, and freeing a buffer as consumed.
 */
#include <linux/etherdevice.h>

#include "skbuff.h"

unsigned int ivnet_skb_len(const struct sk_buff *skb)
{
	return skb->len;
}

unsigned char *ivnet_skb_data(const struct sk_buff *skb)
{
	return skb->data;
}

int ivnet_skb_set_eth_protocol(struct sk_buff *skb, struct net_device *dev)
{
	/* eth_type_trans reads the header from the linear part and pulls it: BUG on less. */
	if (!pskb_may_pull(skb, ETH_HLEN))
		return -EINVAL;
	skb->protocol = eth_type_trans(skb, dev);
	return 0;
}

int ivnet_skb_get_offload(const struct sk_buff *skb, struct virtio_net_hdr *hdr, int link_hlen)
{
	return virtio_net_hdr_from_skb(skb, hdr, true, false, link_hlen);
}

int ivnet_skb_set_offload(struct sk_buff *skb, const struct virtio_net_hdr *hdr)
{
	return virtio_net_hdr_to_skb(skb, hdr, true);
}

void ivnet_consume_skb(struct sk_buff *skb)
{
	consume_skb(skb);
}

unsigned int ivnet_skb_gso_type(const struct sk_buff *skb, bool *encapsulation)
{
	/* The values ivshmem-net/protocol/frame.rs (skb_gso) names. */
	BUILD_BUG_ON(SKB_GSO_TCPV4 != 1 << 0 || SKB_GSO_TCP_ECN != 1 << 2 ||
		     SKB_GSO_TCPV6 != 1 << 4 || SKB_GSO_UDP_L4 != 1 << 17);
	*encapsulation = skb->encapsulation;
	return skb_is_gso(skb) ? skb_shinfo(skb)->gso_type : 0;
}

void ivnet_skb_record_rx_queue(struct sk_buff *skb, u16 queue)
{
	skb_record_rx_queue(skb, queue);
}
