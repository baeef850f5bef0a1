/* SPDX-License-Identifier: GPL-2.0 */
/* Timer helpers (rust/net/registration.rs). */
#ifndef IVNET_HELPERS_TIMER_H
#define IVNET_HELPERS_TIMER_H

#include <linux/hrtimer.h>
#include <linux/timer.h>

void ivnet_timer_setup(struct timer_list *timer, void (*fn)(struct timer_list *));
/* A relative CLOCK_MONOTONIC hrtimer calling `fn` (in hard interrupt context). */
void ivnet_hrtimer_setup(struct hrtimer *timer, enum hrtimer_restart (*fn)(struct hrtimer *));
/* Arms `timer` to fire in `ns` unless it is queued already (then it fires when it was to). */
void ivnet_hrtimer_arm_within(struct hrtimer *timer, u64 ns);
/*
 * Makes `timer` fire within `ns`: armed, or brought forward if it is queued for later. Not
 * atomic against a concurrent ivnet_hrtimer_arm_within(), whose later expiry may win.
 */
void ivnet_hrtimer_arm_sooner(struct hrtimer *timer, u64 ns);

#endif
