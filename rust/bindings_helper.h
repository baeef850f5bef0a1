/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Input to bindgen for the C API that 6.12's `kernel` crate does not bind: PCI driver model,
 * BAR mapping, interrupts, net_device/NAPI/sk_buff, ethtool. See gen-bindings.sh.
 *
 * Then the prototypes of our own C: helpers/, one file per subsystem as in the kernel's
 * rust/helpers/, for function-like macros and fields bindgen cannot reach (static inline
 * functions are wrapped by bindgen's --wrap-static-fns instead), and the module parameters.
 */
#include <linux/etherdevice.h>
#include <linux/ethtool.h>
#include <linux/interrupt.h>
#include <linux/io.h>
#include <linux/jiffies.h>
#include <linux/netdevice.h>
#include <linux/pci.h>
#include <linux/random.h>
#include <linux/skbuff.h>
#include <linux/timer.h>
#include <linux/virtio_net.h>
#include <net/netdev_queues.h>

#include "helpers/iface.h"
#include "helpers/napi.h"
#include "helpers/netdev.h"
#include "helpers/netfilter.h"
#include "helpers/pci.h"
#include "helpers/skbuff.h"
#include "helpers/timer.h"
#include "params.h"
