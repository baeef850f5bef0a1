// SPDX-License-Identifier: GPL-2.0
/*
 * Transparent mode: what a regular interface looks like right now (index, MTU, state, MAC,
 * first IPv4 and first usable global IPv6 address), and what it knows of one address on its
 * segment (on-link or not, the MAC of its neighbour entry).
 */
#include <linux/etherdevice.h>
#include <linux/if_arp.h>
#include <linux/inetdevice.h>
#include <net/addrconf.h>
#include <net/arp.h>
#include <net/if_inet6.h>
#include <net/ndisc.h>
#include <net/neighbour.h>
#include <net/net_namespace.h>

#include "iface.h"

int ivnet_iface_read(const char *name, struct ivnet_iface *out)
{
	struct net_device *dev;
	struct in_device *in_dev;
	struct in_ifaddr *ifa;
	struct inet6_dev *idev;
	struct inet6_ifaddr *ifp;

	memset(out, 0, sizeof(*out));
	rcu_read_lock();
	dev = dev_get_by_name_rcu(&init_net, name);
	if (!dev) {
		rcu_read_unlock();
		return -ENODEV;
	}
	out->ifindex = dev->ifindex;
	out->mtu = READ_ONCE(dev->mtu);
	out->up = (READ_ONCE(dev->flags) & IFF_UP) && netif_running(dev);
	if (dev->type == ARPHRD_ETHER && dev->addr_len == ETH_ALEN)
		memcpy(out->mac, dev->dev_addr, ETH_ALEN);
	in_dev = __in_dev_get_rcu(dev);
	if (in_dev) {
		ifa = rcu_dereference(in_dev->ifa_list);
		if (ifa) {
			memcpy(out->v4, &ifa->ifa_local, 4);
			out->has_v4 = true;
		}
	}
	idev = __in6_dev_get(dev);
	if (idev) {
		read_lock_bh(&idev->lock);
		list_for_each_entry(ifp, &idev->addr_list, if_list) {
			/* Global scope, usable (not waiting for or failed in DAD). */
			if (ifp->scope == 0 &&
			    !(ifp->flags & (IFA_F_TENTATIVE | IFA_F_DADFAILED))) {
				memcpy(out->v6, &ifp->addr, 16);
				out->has_v6 = true;
				break;
			}
		}
		read_unlock_bh(&idev->lock);
	}
	rcu_read_unlock();
	return 0;
}

int ivnet_iface_neigh(int ifindex, const unsigned char *addr, unsigned int len, bool in_use,
		      struct ivnet_neigh *out)
{
	struct neighbour *n = NULL;
	struct net_device *dev;
	char ha[MAX_ADDR_LEN];
	int ret = 0;

	memset(out, 0, sizeof(*out));
	rcu_read_lock();
	dev = dev_get_by_index_rcu(&init_net, ifindex);
	if (!dev) {
		ret = -ENODEV;
		goto out;
	}
	if (len == 4) {
		const struct in_ifaddr *ifa;
		struct in_device *in_dev;
		__be32 a;

		memcpy(&a, addr, 4);
		in_dev = __in_dev_get_rcu(dev);
		if (in_dev) {
			in_dev_for_each_ifa_rcu(ifa, in_dev) {
				if (inet_ifa_match(a, ifa)) {
					out->on_link = true;
					break;
				}
			}
		}
		n = __ipv4_neigh_lookup_noref(dev, (__force u32)a);
	} else if (len == 16) {
#if IS_ENABLED(CONFIG_IPV6)
		struct in6_addr a;

		memcpy(&a, addr, 16);
		out->on_link = ipv6_chk_prefix(&a, dev);
		n = __ipv6_neigh_lookup_noref(dev, &a);
#endif
	} else {
		ret = -EINVAL;
		goto out;
	}
	/* Only an entry the stack itself would send by (reachable, stale, probing, permanent). */
	if (n && (READ_ONCE(n->nud_state) & NUD_VALID) && dev->addr_len == ETH_ALEN) {
		/*
		 * What sending through it does (neigh_resolve_output): mark it used and, unless it
		 * is connected (reachable, permanent) or already being checked, start the check. A
		 * stale entry goes to DELAY, then PROBE, and to FAILED if its owner does not answer
		 * on this interface (then it is no longer valid, and we no longer send by it).
		 * Non-zero: it cannot be sent through now.
		 */
		if (in_use && neigh_event_send(n, NULL))
			goto out;
		neigh_ha_snapshot(ha, n, dev);
		memcpy(out->mac, ha, ETH_ALEN);
		out->has_mac = true;
	}
out:
	rcu_read_unlock();
	return ret;
}
