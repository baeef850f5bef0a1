// SPDX-License-Identifier: GPL-2.0
/*
 * Timer helpers: timer_setup() is a macro, hrtimer_start() and hrtimer_is_queued() inline.
 */
#include "timer.h"

void ivnet_timer_setup(struct timer_list *timer, void (*fn)(struct timer_list *))
{
	timer_setup(timer, fn, 0);
}

void ivnet_hrtimer_setup(struct hrtimer *timer, enum hrtimer_restart (*fn)(struct hrtimer *))
{
	hrtimer_init(timer, CLOCK_MONOTONIC, HRTIMER_MODE_REL);
	timer->function = fn;
}

void ivnet_hrtimer_arm_within(struct hrtimer *timer, u64 ns)
{
	/* Queued: it fires no later than asked for before; a racing expiry only polls once more. */
	if (!hrtimer_is_queued(timer))
		hrtimer_start(timer, ns_to_ktime(ns), HRTIMER_MODE_REL);
}

void ivnet_hrtimer_arm_sooner(struct hrtimer *timer, u64 ns)
{
	/* Queued to fire within that already: left alone. */
	if (hrtimer_is_queued(timer) && ktime_to_ns(hrtimer_get_remaining(timer)) <= (s64)ns)
		return;
	hrtimer_start(timer, ns_to_ktime(ns), HRTIMER_MODE_REL);
}
