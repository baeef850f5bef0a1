// SPDX-License-Identifier: GPL-2.0
/*
 * NAPI receive helpers: allocating a receive buffer inside a poll, handing a frame to the
 * stack as if it had arrived on another device (transparent mode), and moving a NAPI context
 * between softirq context and its kernel thread.
 */
#include <linux/etherdevice.h>
#include <linux/rtnetlink.h>
#include <linux/sched.h>
#include <net/busy_poll.h>
#include <net/net_namespace.h>

#include "napi.h"

struct sk_buff *ivnet_napi_alloc_rx_skb(struct napi_struct *napi, unsigned int len,
					unsigned int head)
{
	unsigned int lin = min(len, head), rest = len - lin;
	struct sk_buff *skb;
	int i = 0;

	/*
	 * Too long for the head and MAX_SKB_FRAGS pages: refused, never one linear buffer of high
	 * order in atomic context (the caller drops the frame as oversize).
	 */
	if (DIV_ROUND_UP(rest, PAGE_SIZE) > MAX_SKB_FRAGS)
		return ERR_PTR(-E2BIG);
	skb = napi_alloc_skb(napi, lin);
	if (!skb)
		return ERR_PTR(-ENOMEM);
	skb_put(skb, lin);
	while (rest) {
		unsigned int n = min_t(unsigned int, rest, PAGE_SIZE);
		struct page *page = dev_alloc_page();

		if (!page) {
			dev_kfree_skb_any(skb);
			return ERR_PTR(-ENOMEM);
		}
		skb_add_rx_frag(skb, i++, page, 0, n, PAGE_SIZE);
		rest -= n;
	}
	return skb;
}

int ivnet_skb_receive_on(struct sk_buff *skb, struct napi_struct *napi, int ifindex)
{
	struct net_device *dev;

	/* eth_type_trans reads the header from the linear part and pulls it: BUG on less. */
	if (!pskb_may_pull(skb, ETH_HLEN)) {
		kfree_skb(skb);
		return -EINVAL;
	}
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

int ivnet_napi_prepare_threads(struct net_device *dev, int nice)
{
	struct napi_struct *napi;
	int err = 0;

	ASSERT_RTNL();
	if (!dev->threaded) {
		/* Creates the missing threads; switching back clears the contexts' bits only. */
		err = dev_set_threaded(dev, true);
		dev_set_threaded(dev, false);
	}
	list_for_each_entry(napi, &dev->napi_list, dev_list)
		if (napi->thread)
			set_user_nice(napi->thread, nice);
	return err;
}

void ivnet_napi_flush_gro(struct napi_struct *napi)
{
	if (napi->gro_bitmask)
		napi_gro_flush(napi, false);
	/* gro_normal_list(), which is inline in net/gro.h, through the exported entry point. */
	if (napi->rx_count) {
		netif_receive_skb_list(&napi->rx_list);
		INIT_LIST_HEAD(&napi->rx_list);
		napi->rx_count = 0;
	}
}

void ivnet_napi_receive_now(struct napi_struct *napi, struct sk_buff *skb)
{
	/* Whatever GRO holds was received before: it goes first, so no frame overtakes an
	 * earlier one of its flow. */
	ivnet_napi_flush_gro(napi);
	skb_mark_napi_id(skb, napi);
	netif_receive_skb(skb);
}

bool ivnet_napi_in_busy_poll(const struct napi_struct *napi)
{
	return test_bit(NAPI_STATE_IN_BUSY_POLL, &napi->state);
}

bool ivnet_napi_set_threaded(struct napi_struct *napi, bool on)
{
	if (!READ_ONCE(napi->thread) || READ_ONCE(napi->dev->threaded))
		return false;
	/* As dev_set_threaded(): the thread exists before the bit says to use it. */
	smp_mb__before_atomic();
	assign_bit(NAPI_STATE_THREADED, &napi->state, on);
	return true;
}
