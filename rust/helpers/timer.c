// SPDX-License-Identifier: GPL-2.0
/*
 * Timer helpers: timer_setup() is a macro.
 */
#include "timer.h"

void ivnet_timer_setup(struct timer_list *timer, void (*fn)(struct timer_list *))
{
	timer_setup(timer, fn, 0);
}
