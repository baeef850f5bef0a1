// SPDX-License-Identifier: GPL-2.0

//! `struct ethtool_ops`: the [`Ethtool`] callbacks a network driver may implement (`-i`, `-S`,
//! `-g`/`-G`, `-l`/`-L`), the trampolines that call them from C, and their op table; each entry is set
//! only if the driver implements the method (`T::HAS_<METHOD>`). `-l` and the link state are
//! always there. Adding an ethtool operation touches this file and the driver's `impl`.

use super::{bindings, ops::Adapter, Device, Operations};
use kernel::{error::VTABLE_DEFAULT_ERROR, prelude::*};

/// The ethtool callbacks of a network driver ([`Operations`] requires it); all optional.
///
/// Implement it with `#[vtable]` on the `impl` block (an empty `impl` offers none of them).
#[vtable]
pub trait Ethtool {
    /// `ethtool -i`: driver name, version, bus address. Without it the core fills in the
    /// parent device's driver name and bus address.
    fn drvinfo(&self) -> (&CStr, &CStr, &CStr) {
        kernel::build_error(VTABLE_DEFAULT_ERROR)
    }
    /// `ethtool -S`: the number of counters. `stats_count`, `stat_name` and `stat_values` go
    /// together: implement all three or none (checked at build time).
    fn stats_count(&self) -> usize {
        kernel::build_error(VTABLE_DEFAULT_ERROR)
    }
    /// `ethtool -S`: the name of counter `i`, written into `name` (NUL-padded).
    fn stat_name(&self, _i: usize, _name: &mut [u8]) {
        kernel::build_error(VTABLE_DEFAULT_ERROR)
    }
    /// `ethtool -S`: all counter values, in name order.
    fn stat_values(&self, _values: &mut [u64]) {
        kernel::build_error(VTABLE_DEFAULT_ERROR)
    }
    /// `ethtool -g`.
    fn ringparam(&self) -> RingParam {
        kernel::build_error(VTABLE_DEFAULT_ERROR)
    }
    /// `ethtool -G`: resize the rings to `want` (the `*_max` fields are ignored). The error
    /// carries a message for the user (netlink extended ack). Needs `ringparam` (checked at
    /// build time).
    fn set_ringparam(&self, _want: RingParam) -> core::result::Result<(), (Error, &'static CStr)> {
        kernel::build_error(VTABLE_DEFAULT_ERROR)
    }
    /// `ethtool -l`: combined channels (queue pairs), most and current. Without it the
    /// device reports one.
    fn channels(&self, _dev: &Device) -> Channels {
        kernel::build_error(VTABLE_DEFAULT_ERROR)
    }
    /// `ethtool -L combined N` (under RTNL; the core checked `1..=max` and that no separate
    /// rx, tx or other channels are asked for). The device's real number of queues is `count`
    /// already when this is called ([`Device::queues`]), and back to what it was if this
    /// fails (`ethtool_ops::set_channels` has no extended ack: log why). Needs `channels`
    /// (checked at build time).
    fn set_channels(&self, _dev: &Device, _count: u32) -> Result {
        kernel::build_error(VTABLE_DEFAULT_ERROR)
    }
}

/// Combined channels for `ethtool -l`: a channel is a transmit and a receive queue with its
/// NAPI context.
#[derive(Default, Clone, Copy)]
pub struct Channels {
    /// The most the device can have.
    pub max: u32,
    /// Active now.
    pub count: u32,
}

/// Ring sizes for `ethtool -g`.
#[derive(Default, Clone, Copy)]
pub struct RingParam {
    /// Largest and current receive ring, in descriptors.
    pub rx_max: u32,
    /// See `rx_max`.
    pub rx: u32,
    /// Largest and current transmit ring, in descriptors.
    pub tx_max: u32,
    /// See `tx_max`.
    pub tx: u32,
}

/// `ETH_SS_STATS` from `enum ethtool_stringset` (uapi, stable).
const ETH_SS_STATS: u32 = 1;

/// Copies `src` into the fixed C string `dst`, truncating, always NUL-terminated.
fn copy_cstr(dst: &mut [u8], src: &CStr) {
    let n = src.len().min(dst.len().saturating_sub(1));
    dst[..n].copy_from_slice(&src.as_bytes()[..n]);
    if let Some(end) = dst.get_mut(n) {
        *end = 0;
    }
}

impl<T: Operations> Adapter<T> {
    /// # Safety
    ///
    /// As `Adapter::open` (`ops.rs`); `info` is valid for writes.
    unsafe extern "C" fn get_drvinfo(
        dev: *mut bindings::net_device,
        info: *mut bindings::ethtool_drvinfo,
    ) {
        // SAFETY: by the function's safety requirement.
        let (_, data) = unsafe { Self::data(dev) };
        let (driver, version, bus) = data.drvinfo();
        // SAFETY: `info` is valid for writes (caller); each field is a fixed-size array.
        unsafe {
            copy_cstr(&mut (*info).driver, driver);
            copy_cstr(&mut (*info).version, version);
            copy_cstr(&mut (*info).bus_info, bus);
        }
    }

    /// # Safety
    ///
    /// As `Adapter::open` (`ops.rs`).
    unsafe extern "C" fn get_sset_count(dev: *mut bindings::net_device, sset: i32) -> i32 {
        // SAFETY: by the function's safety requirement.
        let (_, data) = unsafe { Self::data(dev) };
        if sset == ETH_SS_STATS as i32 {
            data.stats_count() as i32
        } else {
            -(bindings::EOPNOTSUPP as i32)
        }
    }

    /// # Safety
    ///
    /// As `Adapter::open` (`ops.rs`); `buf` holds `get_sset_count` strings of
    /// `ETH_GSTRING_LEN` bytes.
    unsafe extern "C" fn get_strings(dev: *mut bindings::net_device, sset: u32, buf: *mut u8) {
        // SAFETY: by the function's safety requirement.
        let (_, data) = unsafe { Self::data(dev) };
        if sset != ETH_SS_STATS {
            return;
        }
        let len = bindings::ETH_GSTRING_LEN as usize;
        let n = data.stats_count();
        // SAFETY: the core sized `buf` as `n * ETH_GSTRING_LEN` from `get_sset_count`.
        let all = unsafe { core::slice::from_raw_parts_mut(buf, n * len) };
        for (i, name) in all.chunks_exact_mut(len).enumerate() {
            name.fill(0);
            data.stat_name(i, &mut name[..len - 1]);
        }
    }

    /// # Safety
    ///
    /// As `Adapter::open` (`ops.rs`); `values` holds `get_sset_count` u64s.
    unsafe extern "C" fn get_ethtool_stats(
        dev: *mut bindings::net_device,
        _stats: *mut bindings::ethtool_stats,
        values: *mut u64,
    ) {
        // SAFETY: by the function's safety requirement.
        let (_, data) = unsafe { Self::data(dev) };
        let n = data.stats_count();
        // SAFETY: sized by the core from `get_sset_count`.
        let values = unsafe { core::slice::from_raw_parts_mut(values, n) };
        data.stat_values(values);
    }

    /// # Safety
    ///
    /// As `Adapter::open` (`ops.rs`); `ring` is valid for writes.
    unsafe extern "C" fn get_ringparam(
        dev: *mut bindings::net_device,
        ring: *mut bindings::ethtool_ringparam,
        _kring: *mut bindings::kernel_ethtool_ringparam,
        _extack: *mut bindings::netlink_ext_ack,
    ) {
        // SAFETY: by the function's safety requirement.
        let (_, data) = unsafe { Self::data(dev) };
        let p = data.ringparam();
        // SAFETY: `ring` is valid for writes (caller).
        unsafe {
            (*ring).rx_max_pending = p.rx_max;
            (*ring).rx_pending = p.rx;
            (*ring).tx_max_pending = p.tx_max;
            (*ring).tx_pending = p.tx;
        }
    }

    /// # Safety
    ///
    /// As `Adapter::open` (`ops.rs`); `ring` is valid for reads, `extack` null or valid for writes.
    unsafe extern "C" fn set_ringparam(
        dev: *mut bindings::net_device,
        ring: *mut bindings::ethtool_ringparam,
        _kring: *mut bindings::kernel_ethtool_ringparam,
        extack: *mut bindings::netlink_ext_ack,
    ) -> i32 {
        // SAFETY: by the function's safety requirement.
        let (_, data) = unsafe { Self::data(dev) };
        // SAFETY: `ring` is valid for reads (caller).
        let want = unsafe {
            RingParam {
                rx_max: 0,
                rx: (*ring).rx_pending,
                tx_max: 0,
                tx: (*ring).tx_pending,
            }
        };
        match data.set_ringparam(want) {
            Ok(()) => 0,
            Err((e, msg)) => {
                // SAFETY: `extack` is null or valid (caller); `msg` is `'static`, as the
                // extended ack keeps the pointer.
                unsafe { bindings::ivnet_extack_msg(extack, msg.as_char_ptr()) };
                e.to_errno()
            }
        }
    }

    /// # Safety
    ///
    /// As `Adapter::open` (`ops.rs`); `ch` is valid for writes.
    unsafe extern "C" fn get_channels(
        dev: *mut bindings::net_device,
        ch: *mut bindings::ethtool_channels,
    ) {
        let c = if T::HAS_CHANNELS {
            // SAFETY: by the function's safety requirement.
            let (dev, data) = unsafe { Self::data(dev) };
            data.channels(dev)
        } else {
            // One queue pair, served by one NAPI context and one interrupt.
            Channels { max: 1, count: 1 }
        };
        // The core hands over the structure zeroed but for `cmd` (`ETHTOOL_GCHANNELS`, which
        // the ioctl copies back to the caller): only the two counts that are not zero are set.
        // SAFETY: `ch` is valid for writes (caller).
        unsafe {
            (*ch).max_combined = c.max;
            (*ch).combined_count = c.count;
        }
    }

    /// # Safety
    ///
    /// As `Adapter::open` (`ops.rs`), under RTNL (the ethtool core holds it); `ch` is valid
    /// for reads.
    unsafe extern "C" fn set_channels(
        dev: *mut bindings::net_device,
        ch: *mut bindings::ethtool_channels,
    ) -> i32 {
        // SAFETY: by the function's safety requirement.
        let (dev, data) = unsafe { Self::data(dev) };
        // SAFETY: `ch` is valid for reads (caller).
        let (count, others) = unsafe {
            (
                (*ch).combined_count,
                (*ch).rx_count | (*ch).tx_count | (*ch).other_count,
            )
        };
        // The core checked these against the maxima (0 for all but combined); kept anyway.
        if others != 0 || count == 0 || count > dev.queues_max() {
            return EINVAL.to_errno();
        }
        let old = dev.queues();
        // SAFETY: under RTNL (the function's safety requirement).
        if let Err(e) = unsafe { dev.set_queues(count) } {
            return e.to_errno();
        }
        match data.set_channels(dev, count) {
            Ok(()) => 0,
            Err(e) => {
                // SAFETY: as above. Back to a count the device had: shrinking cannot fail,
                // and growing back only re-creates what shrinking just removed.
                let _ = unsafe { dev.set_queues(old) };
                e.to_errno()
            }
        }
    }

    /// The `ethtool_ops` of a `T`'s devices. `get_link` and `get_channels` are always there
    /// (carrier state; one queue pair unless the driver says otherwise).
    pub(super) const ETHTOOL_OPS: bindings::ethtool_ops = {
        // The core sizes the `get_strings` and `get_ethtool_stats` buffers with
        // `get_sset_count`, and offers `-G` only with `-g`.
        assert!(
            T::HAS_STATS_COUNT == T::HAS_STAT_NAME && T::HAS_STATS_COUNT == T::HAS_STAT_VALUES,
            "net::Ethtool: implement stats_count, stat_name and stat_values, or none"
        );
        assert!(
            T::HAS_RINGPARAM || !T::HAS_SET_RINGPARAM,
            "net::Ethtool: set_ringparam needs ringparam"
        );
        assert!(
            T::HAS_CHANNELS || !T::HAS_SET_CHANNELS,
            "net::Ethtool: set_channels needs channels"
        );
        // SAFETY: all-zero is a valid `ethtool_ops` (no callbacks, no capabilities).
        let mut ops: bindings::ethtool_ops = unsafe { core::mem::zeroed() };
        ops.get_drvinfo = if T::HAS_DRVINFO {
            Some(Self::get_drvinfo)
        } else {
            None
        };
        ops.get_link = Some(bindings::ethtool_op_get_link);
        if T::HAS_STATS_COUNT {
            ops.get_sset_count = Some(Self::get_sset_count);
            ops.get_strings = Some(Self::get_strings);
            ops.get_ethtool_stats = Some(Self::get_ethtool_stats);
        }
        ops.get_ringparam = if T::HAS_RINGPARAM {
            Some(Self::get_ringparam)
        } else {
            None
        };
        ops.set_ringparam = if T::HAS_SET_RINGPARAM {
            Some(Self::set_ringparam)
        } else {
            None
        };
        ops.get_channels = Some(Self::get_channels);
        ops.set_channels = if T::HAS_SET_CHANNELS {
            Some(Self::set_channels)
        } else {
            None
        };
        ops
    };
}
