// SPDX-License-Identifier: GPL-2.0
/*
 * Module parameters. 6.12's Rust `module!` macro cannot declare any, so they are declared here
 * and read through the getters below; the driver validates every value (ivshmem-net/params.rs)
 * and refuses to load with a clear message when one is out of range.
 */
#include <linux/cpumask.h>
#include <linux/moduleparam.h>

#include "params.h"

static int id = -1;
module_param(id, int, 0444);
MODULE_PARM_DESC(id, "Peer id (slot) to use, 0..max_peers-1; -1 (default): the first free "
		     "slot in the region");

static unsigned int max_peers = 8;
module_param(max_peers, uint, 0444);
MODULE_PARM_DESC(max_peers, "Peers the region is laid out for, 2..64 (default 8); every guest "
			    "sharing a region must use the same value");

static unsigned int poll_ms = 1;
module_param(poll_ms, uint, 0444);
MODULE_PARM_DESC(poll_ms, "Polling mode: timer interval while traffic flows, in ms, 1..100 "
			  "(default 1)");

static unsigned int poll_idle_ms = 64;
module_param(poll_idle_ms, uint, 0444);
MODULE_PARM_DESC(poll_idle_ms, "Polling mode: longest interval when idle, in ms, poll_ms..100 "
			       "(default 64); the interval is an eighth of the time since frames were "
			       "last received, from poll_ms up to this");

static unsigned int poll_us = 20;
module_param(poll_us, uint, 0444);
MODULE_PARM_DESC(poll_us, "Polling mode: while traffic flows, poll again this many microseconds "
			  "after a poll that found nothing (a poll that found frames is followed by "
			  "another at once; up to 8 times later once frames were last found over 1 ms "
			  "ago), 0..1000 (default 20); 0: only the poll_ms timer polls");

static unsigned int queues;
module_param(queues, uint, 0444);
MODULE_PARM_DESC(queues, "Channels (transmit and receive queue pairs, NAPI contexts, doorbell "
			 "vectors), 0..8: 0 (default) one per online CPU; capped at what the "
			 "region's layout and pool partitions allow; ethtool -L changes it");

static unsigned int rx_threads = 1;
module_param(rx_threads, uint, 0444);
MODULE_PARM_DESC(rx_threads, "1 (default): a receive queue taking over 300 frames or 1 MiB in "
			     "10 ms moves from softirq context to its kernel thread "
			     "(napi/<dev>-<id>, nice 19), so applications run first and a full ring "
			     "slows the sender instead of a full socket dropping; it comes back below "
			     "100 frames and 256 KiB; 0: always softirq context");

static int rx_spin = -1;
module_param(rx_spin, int, 0444);
MODULE_PARM_DESC(rx_spin, "-1 (default): while traffic flows, a receive queue in its thread "
			  "(rx_threads) polls again at once instead of waiting for a kick or the "
			  "poll timer, on a guest with one online CPU at load; 1: on any guest; "
			  "0: never. A spinning vCPU does not halt: where the host has no CPU to "
			  "spare for it, the guest's other vCPUs run slower");

static char *transparent = "";
module_param(transparent, charp, 0444);
MODULE_PARM_DESC(transparent, "Transparent mode: name of a regular interface (e.g. eth0) whose "
			      "addresses are published to peers, and whose traffic to peers' "
			      "published addresses goes through shared memory; empty (default): off");

const char *ivnet_param_transparent(void)
{
	return transparent ? transparent : "";
}

int ivnet_param_id(void)
{
	return id;
}

unsigned int ivnet_param_max_peers(void)
{
	return max_peers;
}

unsigned int ivnet_param_poll_ms(void)
{
	return poll_ms;
}

unsigned int ivnet_param_poll_idle_ms(void)
{
	return poll_idle_ms;
}

unsigned int ivnet_param_poll_us(void)
{
	return poll_us;
}

unsigned int ivnet_param_queues(void)
{
	return queues;
}

unsigned int ivnet_param_rx_threads(void)
{
	return rx_threads;
}

int ivnet_param_rx_spin(void)
{
	return rx_spin;
}

unsigned int ivnet_online_cpus(void)
{
	return num_online_cpus();
}
