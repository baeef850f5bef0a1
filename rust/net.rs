// SPDX-License-Identifier: GPL-2.0

//! Network devices: a `net_device` with its ops and ethtool ops, NAPI, socket buffers, and a
//! timer for polling mode.
//!
//! A driver implements [`Operations`], [`Ethtool`] and [`QueueStats`]; [`Registration::new`]
//! allocates the `net_device` with up to [`MAX_QUEUES`] queue pairs, sets up a NAPI context per
//! queue pair and the timers in its private area, requests its interrupt vectors, registers
//! it, and undoes all of that on drop.
//! The driver's data lives in the registration and is handed to every callback as `&T`.
//!
//! One file per kernel object, as in the kernel crate's `rust/kernel/net/`:
//! - `device.rs`: [`Device`] (`struct net_device`) and the private area of our devices.
//! - `ops.rs`: the [`Operations`] trait (`struct net_device_ops`, NAPI poll, timer, interrupt).
//! - `ethtool.rs`: the [`Ethtool`] trait (`struct ethtool_ops`), [`RingParam`] and
//!   [`Channels`].
//! - `qstats.rs`: the [`QueueStats`] trait (`struct netdev_stat_ops`): per-queue statistics
//!   over netdev netlink.
//! - `skbuff.rs`: [`SkBuff`], [`RxSkb`] and the [`Offload`] metadata (`struct sk_buff`).
//! - `napi.rs`: [`NapiPoll`], a poll in progress, and [`Napi`] (`struct napi_struct`).
//! - `registration.rs`: [`Config`] and [`Registration`].
//! - `iface.rs`: [`iface`], another device's addresses, and [`neighbour`], what it knows of an
//!   address on its segment (transparent mode).
//!
//! The netfilter hook a registration may add is in [`super::netfilter`].

// The kernel support layer's other modules, for the files below (`super::bindings` there).
use super::{bindings, netfilter, pci, shm, time};

mod device;
mod ethtool;
mod iface;
mod napi;
mod ops;
mod qstats;
mod registration;
mod skbuff;

use device::Private;
pub use device::{Device, MAX_QUEUES};
pub use ethtool::{Channels, Ethtool, RingParam};
pub use iface::{iface, neighbour, Iface, IpAddr, Neighbour};
pub use napi::{Napi, NapiPoll};
pub use ops::{xmit_more, Operations, Stats64, Xmit};
pub use qstats::{QueueStats, RxQueueStats, TxQueueStats};
pub use registration::{Config, Registration};
pub use skbuff::{Offload, RxSkb, SkBuff};
