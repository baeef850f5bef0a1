/* SPDX-License-Identifier: GPL-2.0 */
/* Getters for the module parameters declared in params.c (rust/params.rs). */
#ifndef IVNET_PARAMS_H
#define IVNET_PARAMS_H

#include <linux/types.h>

int ivnet_param_id(void);
unsigned int ivnet_param_max_peers(void);
unsigned int ivnet_param_poll_ms(void);
unsigned int ivnet_param_poll_us(void);
unsigned int ivnet_param_poll_idle_ms(void);
const char *ivnet_param_transparent(void);
unsigned int ivnet_param_queues(void);
unsigned int ivnet_param_rx_threads(void);
int ivnet_param_rx_spin(void);
/* num_online_cpus(), for the defaults of `queues` and `rx_spin`. */
unsigned int ivnet_online_cpus(void);

#endif
