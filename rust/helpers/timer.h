/* SPDX-License-Identifier: GPL-2.0 */
/* Timer helpers (rust/net/registration.rs). */
#ifndef IVNET_HELPERS_TIMER_H
#define IVNET_HELPERS_TIMER_H

#include <linux/timer.h>

void ivnet_timer_setup(struct timer_list *timer, void (*fn)(struct timer_list *));

#endif
