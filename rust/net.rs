// SPDX-License-Identifier: GPL-2.0

//! Network devices: a `net_device` with its ops and ethtool ops, NAPI, socket buffers, and a
//! timer for polling mode.
//!
//! A driver implements [`Driver`]; [`Registration::new`] allocates the `net_device`, sets up
//! NAPI and the timer in its private area, registers it, and undoes all of that on drop. The
//! driver's data lives in the registration and is handed to every callback as `&T`.

use super::{bindings, netfilter, pci};
use core::{marker::PhantomData, mem::offset_of, ptr::NonNull};
use kernel::{error::from_result, prelude::*, types::Opaque};

/// A network device.
///
/// # Invariants
///
/// The wrapped `struct net_device` is allocated and valid while this reference exists (it is
/// only handed out by [`Registration`] and its callbacks).
#[repr(transparent)]
pub struct Device(Opaque<bindings::net_device>);

impl Device {
    /// # Safety
    ///
    /// `ptr` must point to a valid `struct net_device` for `'a`.
    unsafe fn from_raw<'a>(ptr: *mut bindings::net_device) -> &'a Self {
        // CAST: `Device` is `repr(transparent)` over `Opaque<net_device>`.
        // SAFETY: valid for `'a` by the caller's guarantee.
        unsafe { &*ptr.cast() }
    }

    fn as_raw(&self) -> *mut bindings::net_device {
        self.0.get()
    }

    fn private<T>(&self) -> *mut Private<T> {
        // SAFETY: valid by the type invariant; every device handed out was allocated by
        // `Registration::<T>::new` with a `Private<T>` as its private area.
        unsafe { bindings::netdev_priv(self.as_raw()) }.cast()
    }

    /// Turns the carrier on (link up).
    pub fn carrier_on(&self) {
        // SAFETY: valid by the type invariant; callable from any context.
        unsafe { bindings::netif_carrier_on(self.as_raw()) }
    }

    /// Turns the carrier off (link down).
    pub fn carrier_off(&self) {
        // SAFETY: as in `carrier_on`.
        unsafe { bindings::netif_carrier_off(self.as_raw()) }
    }

    /// Forgets every ARP and NDP entry through this device (`neigh_changeaddr`), for when a
    /// station behind it went away and its MAC with it: the next packet to its address asks
    /// again instead of going to a MAC nobody owns until the entry ages out (tens of seconds).
    /// Takes the neighbour tables' locks with bottom halves disabled: call it with none of the
    /// driver's locks held.
    pub fn neigh_flush(&self) {
        // SAFETY: valid by the type invariant; the helper only takes the tables' own locks.
        unsafe { bindings::ivnet_neigh_flush(self.as_raw()) }
    }

    /// Whether the carrier is on.
    pub fn carrier_ok(&self) -> bool {
        // SAFETY: as in `carrier_on`.
        unsafe { bindings::netif_carrier_ok(self.as_raw()) }
    }

    /// Allows the stack to call `start_xmit`.
    pub fn start_queue(&self) {
        // SAFETY: as in `carrier_on`.
        unsafe { bindings::netif_start_queue(self.as_raw()) }
    }

    /// Stops the stack from calling `start_xmit` (ring full).
    pub fn stop_queue(&self) {
        // SAFETY: as in `carrier_on`.
        unsafe { bindings::netif_stop_queue(self.as_raw()) }
    }

    /// Lets a stopped queue transmit again (and schedules it).
    pub fn wake_queue(&self) {
        // SAFETY: as in `carrier_on`.
        unsafe { bindings::netif_wake_queue(self.as_raw()) }
    }

    /// Whether the queue is stopped.
    pub fn queue_stopped(&self) -> bool {
        // SAFETY: as in `carrier_on`.
        unsafe { bindings::netif_queue_stopped(self.as_raw()) }
    }

    /// The current MTU.
    pub fn mtu(&self) -> u32 {
        // SAFETY: valid by the type invariant; a `READ_ONCE` of the field.
        unsafe { bindings::ivnet_netdev_mtu(self.as_raw()) }
    }

    /// Sets the MTU (from `Driver::change_mtu`, under RTNL).
    pub fn set_mtu(&self, mtu: u32) {
        // SAFETY: valid by the type invariant; a `WRITE_ONCE` of the field.
        unsafe { bindings::ivnet_netdev_set_mtu(self.as_raw(), mtu) }
    }

    /// The device's MAC address.
    pub fn mac(&self) -> [u8; 6] {
        let mut mac = [0u8; 6];
        // SAFETY: `dev_addr` of an Ethernet device points to at least 6 valid bytes.
        let p = unsafe { bindings::ivnet_netdev_addr(self.as_raw()) };
        // SAFETY: as above; `mac` is a distinct local.
        unsafe { core::ptr::copy_nonoverlapping(p, mac.as_mut_ptr(), 6) };
        mac
    }

    /// The interface name (`ivshm0`).
    pub fn name(&self) -> &CStr {
        // SAFETY: `name` is a NUL-terminated array inside the device.
        unsafe { CStr::from_char_ptr(bindings::ivnet_netdev_name(self.as_raw())) }
    }

    fn napi(&self) -> *mut bindings::napi_struct {
        // SAFETY: the private area is a `Private<T>` for some `T`, whose first field, at the
        // same offset for every `T` (`repr(C)`), is the NAPI context.
        unsafe { core::ptr::addr_of_mut!((*self.private::<()>()).napi) }
    }

    /// Schedules the NAPI poll (from a timer, an interrupt, or `open`).
    pub fn napi_schedule(&self) {
        // SAFETY: the NAPI context was added in `Registration::new` and lives with the device.
        unsafe { bindings::napi_schedule(self.napi()) };
    }

    /// Enables NAPI (in `open`).
    pub fn napi_enable(&self) {
        // SAFETY: as in `napi_schedule`; called from `open`, where NAPI is disabled.
        unsafe { bindings::napi_enable(self.napi()) }
    }

    /// Disables NAPI and waits for a running poll to finish (in `stop`). May sleep.
    pub fn napi_disable(&self) {
        // SAFETY: as in `napi_schedule`; called from `stop`, where NAPI is enabled.
        unsafe { bindings::napi_disable(self.napi()) }
    }

    fn timer(&self) -> *mut bindings::timer_list {
        // SAFETY: as in `napi`; the timer is the second field of the `repr(C)` private area
        // and its offset does not depend on `T`.
        unsafe { core::ptr::addr_of_mut!((*self.private::<()>()).timer) }
    }

    /// The jiffies value `delay` (at least 1) jiffies from now.
    fn expiry(delay: usize) -> usize {
        super::time::jiffies().wrapping_add(delay.max(1))
    }

    /// Arms the device's timer to fire `Driver::timer` after `delay` jiffies.
    pub fn timer_arm(&self, delay: usize) {
        // SAFETY: the timer was set up in `Registration::new` and lives with the device.
        unsafe { bindings::mod_timer(self.timer(), Self::expiry(delay)) };
    }

    /// Makes sure the device's timer fires within `delay` jiffies: arms it if it is idle, brings
    /// it forward if it is armed for later, leaves it if it fires sooner (`timer_reduce`).
    pub fn timer_arm_within(&self, delay: usize) {
        // SAFETY: as in `timer_arm`.
        unsafe { bindings::timer_reduce(self.timer(), Self::expiry(delay)) };
    }

    /// Cancels the timer and waits for a running callback to finish. May sleep.
    pub fn timer_cancel_sync(&self) {
        // SAFETY: as in `timer_arm`.
        unsafe { bindings::timer_delete_sync(self.timer()) };
    }
}

/// The private area of every device: NAPI context, timer, and a pointer to the driver's data.
/// `repr(C)`, with the fields that do not depend on `T` first, so `Device` can reach them
/// without knowing `T`.
#[repr(C)]
struct Private<T> {
    napi: bindings::napi_struct,
    timer: bindings::timer_list,
    data: *const T,
}

/// A socket buffer owned by the driver; freed on drop unless handed on.
///
/// # Invariants
///
/// `ptr` is a valid `sk_buff` that this value owns.
pub struct SkBuff(NonNull<bindings::sk_buff>);

impl SkBuff {
    /// Total length of the frame in bytes.
    pub fn len(&self) -> u32 {
        // SAFETY: valid by the type invariant.
        unsafe { bindings::ivnet_skb_len(self.0.as_ptr()) }
    }

    /// Whether the frame is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Makes the whole frame linear (one contiguous buffer). Fails with `ENOMEM`.
    pub fn linearize(&mut self) -> Result {
        // SAFETY: valid and owned by the type invariant.
        kernel::error::to_result(unsafe { bindings::skb_linearize(self.0.as_ptr()) })
    }

    /// The linear part of the frame (all of it after [`SkBuff::linearize`]).
    pub fn head(&self) -> &[u8] {
        // SAFETY: valid by the type invariant; `data` points to `skb_headlen` bytes that do
        // not change while we own the buffer.
        unsafe {
            let len = bindings::skb_headlen(self.0.as_ptr()) as usize;
            core::slice::from_raw_parts(bindings::ivnet_skb_data(self.0.as_ptr()), len)
        }
    }

    /// Fills the whole frame, linear part first and then each page fragment, by calling `f`
    /// with each piece's offset in the frame and its bytes; stops at the first error.
    pub fn fill<E>(
        &mut self,
        mut f: impl FnMut(usize, &mut [u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        let skb = self.0.as_ptr();
        // SAFETY: valid and owned by the type invariant: nobody else looks at the linear part
        // while we hold `&mut self`, and `data` points to `skb_headlen` bytes.
        let head = unsafe {
            let len = bindings::skb_headlen(skb) as usize;
            core::slice::from_raw_parts_mut(bindings::ivnet_skb_data(skb), len)
        };
        f(0, head)?;
        let mut at = head.len();
        // SAFETY: valid by the type invariant.
        let frags = unsafe { bindings::ivnet_skb_nr_frags(skb) };
        for i in 0..frags {
            let mut len = 0u32;
            // SAFETY: `i < nr_frags`; the fragments of a buffer we own and just allocated
            // ([`Napi::alloc_rx_skb`]) are pages of ours that nothing else maps for writing,
            // mapped (lowmem) for `len` bytes from the returned address.
            let piece = unsafe {
                let p = bindings::ivnet_skb_frag_data(skb, i, &mut len);
                core::slice::from_raw_parts_mut(p, len as usize)
            };
            f(at, piece)?;
            at += piece.len();
        }
        Ok(())
    }

    /// Sets the protocol and packet type from the Ethernet header (`eth_type_trans`).
    pub fn eth_type_trans(&mut self, dev: &Device) {
        // SAFETY: valid and owned; `dev` is valid; the frame holds an Ethernet header (the
        // caller checked its length is at least 14).
        unsafe { bindings::ivnet_skb_set_eth_protocol(self.0.as_ptr(), dev.as_raw()) }
    }

    /// The frame's offload metadata (checksum to fill in, segmentation), in the form of a
    /// `virtio_net_hdr` (`virtio_net_hdr_from_skb`). `EINVAL` for a segmentation type it cannot
    /// express.
    pub fn offload(&self) -> Result<Offload> {
        self.offload_behind(0)
    }

    /// [`SkBuff::offload`] of a frame that starts at the network header (a packet seen by a
    /// netfilter hook), as it will be once a link-layer header of `link_hlen` bytes is put in
    /// front: `csum_start` and `hdr_len` count from that header.
    pub fn offload_behind(&self, link_hlen: u16) -> Result<Offload> {
        // SAFETY: all-zero is a valid header.
        let mut h: bindings::virtio_net_hdr = unsafe { core::mem::zeroed() };
        // SAFETY: valid by the type invariant; `h` is a local.
        let ret =
            unsafe { bindings::ivnet_skb_get_offload(self.0.as_ptr(), &mut h, link_hlen.into()) };
        kernel::error::to_result(ret)?;
        Ok(Offload {
            flags: h.flags,
            gso_type: h.gso_type,
            hdr_len: if h.gso_type != 0 {
                h.hdr_len.saturating_add(link_hlen)
            } else {
                h.hdr_len
            },
            gso_size: h.gso_size,
            csum_start: h.csum_start,
            csum_offset: h.csum_offset,
        })
    }

    /// Hands a received Ethernet frame to the stack as if it had arrived on the device with
    /// index `ifindex` in the initial namespace (`eth_type_trans` against that device, then
    /// `netif_receive_skb`), looked up under RCU now, marked with `napi`'s id so that a socket
    /// busy-polling for it polls `napi`. `ENODEV` (frame freed) if there is no such device or
    /// it is down. Call from `napi`'s poll, after [`SkBuff::set_offload`].
    pub fn receive_on(self, napi: &Napi, ifindex: i32) -> Result {
        let p = self.into_raw();
        // SAFETY: we owned `p` and pass it on; the helper frees it on failure; softirq
        // context (NAPI poll), as `netif_receive_skb` wants; `napi` is valid by its type
        // invariant (added, so its id is set) and only its id is read.
        kernel::error::to_result(unsafe {
            bindings::ivnet_skb_receive_on(p, napi.as_raw(), ifindex)
        })
    }

    /// Applies offload metadata received with the frame (`virtio_net_hdr_to_skb`), which
    /// checks it against the frame: `EINVAL` if it is inconsistent. Call before
    /// [`SkBuff::eth_type_trans`], with the data starting at the Ethernet header.
    pub fn set_offload(&mut self, o: &Offload) -> Result {
        let h = bindings::virtio_net_hdr {
            flags: o.flags,
            gso_type: o.gso_type,
            hdr_len: o.hdr_len,
            gso_size: o.gso_size,
            csum_start: o.csum_start,
            csum_offset: o.csum_offset,
        };
        // SAFETY: valid and owned by the type invariant; `h` is a local.
        kernel::error::to_result(unsafe { bindings::ivnet_skb_set_offload(self.0.as_ptr(), &h) })
    }

    /// Copies the whole frame, linear part and fragments, into `shm` at `off`.
    pub fn copy_to(&self, shm: &super::shm::SharedMem, off: usize) -> Result {
        let len = self.len() as usize;
        let dst = shm.range_ptr(off, len).map_err(|_| EINVAL)?;
        // SAFETY: `dst` points to `len` writable bytes of the mapping (checked by
        // `range_ptr`); the frame is valid and owned; `skb_copy_bits` copies exactly `len`.
        let ret = unsafe { bindings::skb_copy_bits(self.0.as_ptr(), 0, dst.cast(), len as i32) };
        kernel::error::to_result(ret)
    }

    /// Frees the frame as successfully transmitted (`dev_consume_skb_any`).
    pub fn consume(self) {
        let p = self.0.as_ptr();
        core::mem::forget(self);
        // SAFETY: we owned `p` and give it up here.
        unsafe { bindings::dev_consume_skb_any(p) }
    }

    fn into_raw(self) -> *mut bindings::sk_buff {
        let p = self.0.as_ptr();
        core::mem::forget(self);
        p
    }
}

impl Drop for SkBuff {
    fn drop(&mut self) {
        // SAFETY: owned by the type invariant; dropped means discarded (counted as a drop).
        unsafe { bindings::dev_kfree_skb_any(self.0.as_ptr()) }
    }
}

/// Offload metadata of a frame, with the meaning of the fields of `struct virtio_net_hdr`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Offload {
    /// `VIRTIO_NET_HDR_F_*`.
    pub flags: u8,
    /// `VIRTIO_NET_HDR_GSO_*`.
    pub gso_type: u8,
    /// Length of the headers.
    pub hdr_len: u16,
    /// Segment size.
    pub gso_size: u16,
    /// Where checksumming starts, from the Ethernet header.
    pub csum_start: u16,
    /// Where the checksum goes, from `csum_start`.
    pub csum_offset: u16,
}

/// A NAPI context, inside a poll.
///
/// # Invariants
///
/// The context is added to its device (it has a NAPI id) and its poll is running: references
/// are only made by the poll trampoline, for the length of the call.
#[repr(transparent)]
pub struct Napi(Opaque<bindings::napi_struct>);

impl Napi {
    fn as_raw(&self) -> *mut bindings::napi_struct {
        self.0.get()
    }

    /// A socket buffer holding `len` bytes to be filled in ([`SkBuff::fill`]): at most `head`
    /// of them linear (so the headers the stack looks at first are there), the rest in order-0
    /// pages, so large frames need no high-order allocation in atomic context. `None` if out
    /// of memory.
    pub fn alloc_rx_skb(&self, len: u32, head: u32) -> Option<SkBuff> {
        // SAFETY: called inside this NAPI context's poll.
        let p = unsafe { bindings::ivnet_napi_alloc_rx_skb(self.as_raw(), len, head) };
        // INVARIANT: a fresh buffer that we own.
        NonNull::new(p).map(SkBuff)
    }

    /// Hands a received frame to the stack through GRO.
    pub fn gro_receive(&self, skb: SkBuff) {
        // SAFETY: called inside this NAPI context's poll; ownership of the buffer passes on.
        unsafe { bindings::napi_gro_receive(self.as_raw(), skb.into_raw()) };
    }

    /// Ends a poll that did `work` (< budget) units of work; `false` if NAPI will poll again
    /// anyway (do not re-arm interrupts or timers then).
    pub fn complete_done(&self, work: u32) -> bool {
        // SAFETY: called inside this NAPI context's poll.
        unsafe { bindings::napi_complete_done(self.as_raw(), work as i32) }
    }
}

/// Counters for `ndo_get_stats64` (a subset of `struct rtnl_link_stats64`).
#[derive(Default, Clone, Copy)]
pub struct Stats64 {
    /// Frames received.
    pub rx_packets: u64,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Frames transmitted.
    pub tx_packets: u64,
    /// Bytes transmitted.
    pub tx_bytes: u64,
    /// Received frames dropped.
    pub rx_dropped: u64,
    /// Frames to transmit dropped.
    pub tx_dropped: u64,
    /// Receive errors (bad descriptors).
    pub rx_errors: u64,
}

/// What `start_xmit` did with a frame.
pub enum Xmit {
    /// Taken (sent, queued, or dropped and counted).
    Done,
    /// Not taken: the queue is stopped and the stack retries the frame later.
    Busy(SkBuff),
}

/// What [`iface`] found out about a regular interface.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Iface {
    /// Its index.
    pub ifindex: i32,
    /// Its MTU.
    pub mtu: u32,
    /// Whether it is up and running.
    pub up: bool,
    /// Its MAC address (zero if it is not Ethernet).
    pub mac: [u8; 6],
    /// Its first IPv4 address.
    pub v4: Option<[u8; 4]>,
    /// Its first usable global IPv6 address.
    pub v6: Option<[u8; 16]>,
}

/// Looks up the interface called `name` in the initial namespace and reads its index, MTU,
/// state, MAC, first IPv4 address and first global IPv6 address (under RCU and the IPv6
/// device's lock; a snapshot that may be stale a moment later). `ENODEV` if there is none.
/// Any context.
pub fn iface(name: &CStr) -> Result<Iface> {
    // SAFETY: all-zero is a valid `ivnet_iface`.
    let mut out: bindings::ivnet_iface = unsafe { core::mem::zeroed() };
    // SAFETY: `name` is NUL-terminated; `out` is a local the helper fills in.
    kernel::error::to_result(unsafe { bindings::ivnet_iface_read(name.as_char_ptr(), &mut out) })?;
    Ok(Iface {
        ifindex: out.ifindex,
        mtu: out.mtu,
        up: out.up,
        mac: out.mac,
        v4: out.has_v4.then_some(out.v4),
        v6: out.has_v6.then_some(out.v6),
    })
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

/// A network driver's callbacks. All take the driver's data as `&self`.
pub trait Driver: Send + Sync + Sized + 'static {
    /// `ndo_open`: the interface goes up.
    fn open(&self, dev: &Device) -> Result;
    /// `ndo_stop`: the interface goes down.
    fn stop(&self, dev: &Device) -> Result;
    /// `ndo_start_xmit`.
    fn start_xmit(&self, dev: &Device, skb: SkBuff) -> Xmit;
    /// The NAPI poll: receive up to `budget` frames; call `napi.complete_done` if fewer.
    fn poll(&self, dev: &Device, napi: &Napi, budget: u32) -> u32;
    /// The device's timer fired (softirq context).
    fn timer(&self, dev: &Device);
    /// `ndo_change_mtu` (the core already checked `min_mtu..=max_mtu`).
    fn change_mtu(&self, dev: &Device, mtu: u32) -> Result;
    /// `ndo_get_stats64`.
    fn stats(&self, dev: &Device) -> Stats64;
    /// `ethtool -i`: driver name, version, bus address.
    fn drvinfo(&self) -> (&CStr, &CStr, &CStr);
    /// `ethtool -S`: the number of counters.
    fn stats_count(&self) -> usize;
    /// `ethtool -S`: the name of counter `i`, written into `name` (NUL-padded).
    fn stat_name(&self, i: usize, name: &mut [u8]);
    /// `ethtool -S`: all counter values, in name order.
    fn stat_values(&self, values: &mut [u64]);
    /// `ethtool -g`.
    fn ringparam(&self) -> RingParam;
    /// `ethtool -G`: resize the rings to `want` (the `*_max` fields are ignored). The error
    /// carries a message for the user (netlink extended ack).
    fn set_ringparam(&self, want: RingParam) -> core::result::Result<(), (Error, &'static CStr)>;
    /// The device's interrupt fired (hard interrupt context; only if [`Config::irq`] was
    /// set). Returns whether it was ours (a shared INTx line may belong to others).
    fn interrupt(&self, dev: &Device) -> bool;
    /// `ndo_features_check`: may the frame to `dst` keep its checksum offload and its
    /// segmentation offload? What is refused is done in software by the stack first.
    fn offloads_for(&self, dst: &[u8; 6]) -> (bool, bool);
}

/// A driver that also sees IPv4 and IPv6 packets after routing (netfilter
/// `NF_INET_POST_ROUTING`, last priority), added with
/// [`Registration::add_post_routing_hooks`].
pub trait Hook: Driver {
    /// A packet routed to `state.out_ifindex()`, `skb` starting at its network header. It
    /// may be copied; [`netfilter::Verdict::Consumed`] means the driver delivered it and the
    /// stack must forget it. Softirq or process context, bottom halves possibly enabled.
    fn post_routing(
        &self,
        dev: &Device,
        skb: &SkBuff,
        state: &netfilter::State,
    ) -> netfilter::Verdict;
}

/// Whether the stack is about to hand `start_xmit` more frames right away, so the driver may
/// defer telling the peer (`netdev_xmit_more`). Only meaningful inside `start_xmit`.
pub fn xmit_more() -> bool {
    // SAFETY: reads a per-CPU flag; `start_xmit` runs with preemption and bottom halves off.
    unsafe { bindings::netdev_xmit_more() }
}

struct Adapter<T: Driver>(PhantomData<T>);

impl<T: Driver> Adapter<T> {
    /// # Safety
    ///
    /// `dev` must be a device registered by `Registration<T>`.
    unsafe fn data<'a>(dev: *mut bindings::net_device) -> (&'a Device, &'a T) {
        // SAFETY: the caller guarantees `dev` is ours and valid during the callback.
        let dev = unsafe { Device::from_raw(dev) };
        // SAFETY: `data` was set before registration and outlives the registration.
        let data = unsafe { &*(*dev.private::<T>()).data };
        (dev, data)
    }

    /// # Safety
    ///
    /// Called by the networking core for a device of ours.
    unsafe extern "C" fn open(dev: *mut bindings::net_device) -> i32 {
        // SAFETY: by the function's safety requirement.
        let (dev, data) = unsafe { Self::data(dev) };
        from_result(|| data.open(dev).map(|()| 0))
    }

    /// # Safety
    ///
    /// As `open`.
    unsafe extern "C" fn stop(dev: *mut bindings::net_device) -> i32 {
        // SAFETY: by the function's safety requirement.
        let (dev, data) = unsafe { Self::data(dev) };
        from_result(|| data.stop(dev).map(|()| 0))
    }

    /// # Safety
    ///
    /// As `open`; `skb` is a valid buffer whose ownership passes to us.
    unsafe extern "C" fn start_xmit(
        skb: *mut bindings::sk_buff,
        dev: *mut bindings::net_device,
    ) -> bindings::netdev_tx_t {
        // SAFETY: by the function's safety requirement.
        let (dev, data) = unsafe { Self::data(dev) };
        let Some(skb) = NonNull::new(skb) else {
            return bindings::netdev_tx_NETDEV_TX_OK;
        };
        // INVARIANT: the stack gave us this buffer.
        match data.start_xmit(dev, SkBuff(skb)) {
            Xmit::Done => bindings::netdev_tx_NETDEV_TX_OK,
            Xmit::Busy(skb) => {
                // The stack keeps ownership of a frame it gets back as busy.
                let _ = skb.into_raw();
                bindings::netdev_tx_NETDEV_TX_BUSY
            }
        }
    }

    /// # Safety
    ///
    /// As `open`; `stats` is valid for writes.
    unsafe extern "C" fn get_stats64(
        dev: *mut bindings::net_device,
        stats: *mut bindings::rtnl_link_stats64,
    ) {
        // SAFETY: by the function's safety requirement.
        let (dev, data) = unsafe { Self::data(dev) };
        let s = data.stats(dev);
        // SAFETY: `stats` is valid for writes (caller).
        unsafe {
            (*stats).rx_packets = s.rx_packets;
            (*stats).rx_bytes = s.rx_bytes;
            (*stats).tx_packets = s.tx_packets;
            (*stats).tx_bytes = s.tx_bytes;
            (*stats).rx_dropped = s.rx_dropped;
            (*stats).tx_dropped = s.tx_dropped;
            (*stats).rx_errors = s.rx_errors;
        }
    }

    /// # Safety
    ///
    /// As `open`; called under RTNL.
    unsafe extern "C" fn change_mtu(dev: *mut bindings::net_device, mtu: i32) -> i32 {
        // SAFETY: by the function's safety requirement.
        let (dev, data) = unsafe { Self::data(dev) };
        from_result(|| {
            let mtu = u32::try_from(mtu).map_err(|_| EINVAL)?;
            data.change_mtu(dev, mtu)?;
            Ok(0)
        })
    }

    /// # Safety
    ///
    /// As `open`; `info` is valid for writes.
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
    /// As `open`.
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
    /// As `open`; `buf` holds `get_sset_count` strings of `ETH_GSTRING_LEN` bytes.
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
    /// As `open`; `values` holds `get_sset_count` u64s.
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
    /// As `open`; `ring` is valid for writes.
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
    /// As `open`; `ring` is valid for reads, `extack` null or valid for writes.
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
    /// As `open`; `ch` is valid for writes.
    unsafe extern "C" fn get_channels(
        _dev: *mut bindings::net_device,
        ch: *mut bindings::ethtool_channels,
    ) {
        // One queue pair, served by one NAPI context and one interrupt.
        // SAFETY: `ch` is valid for writes (caller), and all-zero is a valid value.
        unsafe {
            core::ptr::write_bytes(ch, 0, 1);
            (*ch).max_combined = 1;
            (*ch).combined_count = 1;
        }
    }

    /// # Safety
    ///
    /// Called by NAPI for the context added in `Registration::new`.
    unsafe extern "C" fn poll(napi: *mut bindings::napi_struct, budget: i32) -> i32 {
        // CAST: the NAPI context is the first field of the `repr(C)` `Private<T>`.
        let private = napi.cast::<Private<T>>();
        // SAFETY: `napi` is inside the private area of one of our devices, whose `dev`
        // field NAPI set when it was added.
        let (dev, data) = unsafe { Self::data((*napi).dev) };
        // CAST: `Napi` is `repr(transparent)` over `Opaque<napi_struct>`.
        // SAFETY: valid during the poll.
        // INVARIANT: NAPI polls only contexts it added, and the reference ends with the poll.
        let napi = unsafe { &*private.cast::<Napi>() };
        data.poll(dev, napi, budget.max(0) as u32) as i32
    }

    /// # Safety
    ///
    /// Called by the timer core for the timer set up in `Registration::new`.
    unsafe extern "C" fn timer(timer: *mut bindings::timer_list) {
        // SAFETY: the timer lives at this offset in a `Private<T>` (container_of).
        let private = unsafe {
            timer
                .cast::<u8>()
                .sub(offset_of!(Private<T>, timer))
                .cast::<Private<T>>()
        };
        // SAFETY: the private area belongs to a live device (the timer is cancelled before
        // the device is freed), and `napi.dev` points back to it.
        let (dev, data) = unsafe { Self::data((*private).napi.dev) };
        data.timer(dev);
    }

    /// # Safety
    ///
    /// Called by the interrupt core for the interrupt requested in `Registration::new`, whose
    /// `dev_id` is our `net_device`.
    unsafe extern "C" fn irq(_irq: i32, dev_id: *mut core::ffi::c_void) -> bindings::irqreturn {
        // SAFETY: `dev_id` is the device the interrupt was requested for; it is freed only
        // after `free_irq` (see `Registration::drop`).
        let (dev, data) = unsafe { Self::data(dev_id.cast()) };
        if data.interrupt(dev) {
            bindings::irqreturn_IRQ_HANDLED
        } else {
            bindings::irqreturn_IRQ_NONE
        }
    }

    /// # Safety
    ///
    /// As `open`; `skb` is a valid frame about to be transmitted (not ours yet).
    unsafe extern "C" fn features_check(
        skb: *mut bindings::sk_buff,
        dev: *mut bindings::net_device,
        features: bindings::netdev_features_t,
    ) -> bindings::netdev_features_t {
        // SAFETY: by the function's safety requirement.
        let (_, data) = unsafe { Self::data(dev) };
        let mut dst = [0xffu8; 6];
        // SAFETY: `skb` is valid; an Ethernet frame being transmitted has its header in the
        // linear part (checked: at least 6 bytes there).
        unsafe {
            if bindings::skb_headlen(skb) >= 6 {
                core::ptr::copy_nonoverlapping(bindings::ivnet_skb_data(skb), dst.as_mut_ptr(), 6);
            }
        }
        let (csum, gso) = data.offloads_for(&dst);
        // SAFETY: a pure computation on the feature bits.
        unsafe { bindings::ivnet_features_without(features, !csum, !gso) }
    }

    /// # Safety
    ///
    /// Called by the netfilter core for a hook registered by
    /// `Registration::add_post_routing_hooks`, whose private pointer is our `net_device`
    /// (hooks are unregistered before the device goes away); `skb` is valid and not ours
    /// unless we return `NF_STOLEN`; `state` is valid during the call.
    unsafe extern "C" fn nf_hook(
        priv_: *mut core::ffi::c_void,
        skb: *mut bindings::sk_buff,
        state: *const bindings::nf_hook_state,
    ) -> u32
    where
        T: Hook,
    {
        // SAFETY: by the function's safety requirement.
        let (dev, data) = unsafe { Self::data(priv_.cast()) };
        // SAFETY: valid during the call (caller).
        let state = unsafe { netfilter::State::from_raw(state) };
        let Some(p) = NonNull::new(skb) else {
            return netfilter::NF_ACCEPT;
        };
        // INVARIANT: not ours: `ManuallyDrop` keeps it from being freed unless taken below.
        let skb = core::mem::ManuallyDrop::new(SkBuff(p));
        match data.post_routing(dev, &skb, state) {
            netfilter::Verdict::Accept => netfilter::NF_ACCEPT,
            netfilter::Verdict::Consumed => {
                // SAFETY: returning `NF_STOLEN` makes the packet ours; we free it as consumed.
                unsafe { bindings::ivnet_consume_skb(p.as_ptr()) };
                netfilter::NF_STOLEN
            }
        }
    }

    const NETDEV_OPS: bindings::net_device_ops = {
        // SAFETY: all-zero is a valid `net_device_ops` (no callbacks).
        let mut ops: bindings::net_device_ops = unsafe { core::mem::zeroed() };
        ops.ndo_open = Some(Self::open);
        ops.ndo_stop = Some(Self::stop);
        ops.ndo_start_xmit = Some(Self::start_xmit);
        ops.ndo_get_stats64 = Some(Self::get_stats64);
        ops.ndo_change_mtu = Some(Self::change_mtu);
        ops.ndo_features_check = Some(Self::features_check);
        ops
    };

    const ETHTOOL_OPS: bindings::ethtool_ops = {
        // SAFETY: all-zero is a valid `ethtool_ops` (no callbacks, no capabilities).
        let mut ops: bindings::ethtool_ops = unsafe { core::mem::zeroed() };
        ops.get_drvinfo = Some(Self::get_drvinfo);
        ops.get_link = Some(bindings::ethtool_op_get_link);
        ops.get_sset_count = Some(Self::get_sset_count);
        ops.get_strings = Some(Self::get_strings);
        ops.get_ethtool_stats = Some(Self::get_ethtool_stats);
        ops.get_ringparam = Some(Self::get_ringparam);
        ops.set_ringparam = Some(Self::set_ringparam);
        ops.get_channels = Some(Self::get_channels);
        ops
    };
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

/// How to set up the device.
pub struct Config {
    /// MAC address.
    pub mac: [u8; 6],
    /// MTU range and initial MTU.
    pub min_mtu: u32,
    /// See `min_mtu`.
    pub max_mtu: u32,
    /// See `min_mtu`.
    pub mtu: u32,
    /// Offer checksum and segmentation offloads (SG, HW_CSUM, TSO, TSO6), with frames up to
    /// this many bytes; `None` for none.
    pub tso_max: Option<u32>,
    /// An interrupt to request before registering (shared, named after the driver), calling
    /// [`Driver::interrupt`]; freed before the device is unregistered.
    pub irq: Option<u32>,
}

/// A registered network device and the driver data its callbacks see; unregistered and freed
/// on drop.
///
/// # Invariants
///
/// `dev` was allocated by `alloc_etherdev_mqs` with a `Private<T>` pointing at `*data`, and is
/// registered.
pub struct Registration<T: Driver> {
    dev: NonNull<bindings::net_device>,
    irq: Option<u32>,
    hooks: Option<netfilter::Hooks>,
    data: Pin<KBox<T>>,
}

impl<T: Driver> Registration<T> {
    /// Allocates `ivshm%d`, attaches `data`, and registers it. The device starts with its
    /// carrier off.
    pub fn new(parent: &pci::Device, data: impl PinInit<T, Error>, cfg: &Config) -> Result<Self> {
        let data = KBox::pin_init(data, GFP_KERNEL)?;
        // SAFETY: plain allocation; one TX and one RX queue.
        let dev = unsafe { bindings::alloc_etherdev_mqs(size_of::<Private<T>>() as i32, 1, 1) };
        let dev = NonNull::new(dev).ok_or(ENOMEM)?;
        let raw = dev.as_ptr();
        // SAFETY: `raw` is a fresh, unregistered device; its private area is zeroed and sized
        // for `Private<T>`; the ops tables are 'static consts; `parent` is a live device.
        unsafe {
            let private = bindings::netdev_priv(raw).cast::<Private<T>>();
            (*private).data = &*data;
            bindings::ivnet_timer_setup(
                core::ptr::addr_of_mut!((*private).timer),
                Some(Adapter::<T>::timer),
            );
            bindings::netif_napi_add_weight(
                raw,
                core::ptr::addr_of_mut!((*private).napi),
                Some(Adapter::<T>::poll),
                64,
            );
            let name = b"ivshm%d\0";
            core::ptr::copy_nonoverlapping(
                name.as_ptr().cast(),
                (*raw).name.as_mut_ptr(),
                name.len(),
            );
            bindings::ivnet_netdev_setup(
                raw,
                parent.as_device_ptr(),
                &Adapter::<T>::NETDEV_OPS,
                &Adapter::<T>::ETHTOOL_OPS,
                cfg.min_mtu,
                cfg.max_mtu,
                cfg.mtu,
            );
            bindings::dev_addr_set(raw, cfg.mac.as_ptr());
            if let Some(max) = cfg.tso_max {
                bindings::ivnet_netdev_set_offloads(raw, max);
            }
            bindings::netif_carrier_off(raw);
        }
        if let Some(irq) = cfg.irq {
            // SAFETY: the device is fully set up, so the handler may run from now on (NAPI is
            // not enabled yet, so scheduling it does nothing); the name is static.
            let ret = unsafe {
                bindings::request_irq(
                    irq,
                    Some(Adapter::<T>::irq),
                    bindings::IRQF_SHARED as _,
                    c"ivshmem_net".as_ptr().cast(),
                    raw.cast(),
                )
            };
            if ret != 0 {
                // SAFETY: never registered; undo the NAPI add and free it.
                unsafe {
                    let private = bindings::netdev_priv(raw).cast::<Private<T>>();
                    bindings::netif_napi_del(core::ptr::addr_of_mut!((*private).napi));
                    bindings::free_netdev(raw);
                }
                return Err(Error::from_errno(ret));
            }
        }
        // SAFETY: fully set up above.
        let ret = unsafe { bindings::register_netdev(raw) };
        if ret != 0 {
            // SAFETY: never registered; free the interrupt requested above, undo the NAPI add
            // and free the device.
            unsafe {
                if let Some(irq) = cfg.irq {
                    bindings::free_irq(irq, raw.cast());
                }
                let private = bindings::netdev_priv(raw).cast::<Private<T>>();
                bindings::netif_napi_del(core::ptr::addr_of_mut!((*private).napi));
                bindings::free_netdev(raw);
            }
            return Err(Error::from_errno(ret));
        }
        // INVARIANT: allocated, pointing at `data`, registered.
        Ok(Registration {
            dev,
            irq: cfg.irq,
            hooks: None,
            data,
        })
    }

    /// Calls [`Hook::post_routing`] for every IPv4 and IPv6 packet after routing, after every
    /// other hook, until the registration is dropped. May sleep.
    pub fn add_post_routing_hooks(&mut self) -> Result
    where
        T: Hook,
    {
        if self.hooks.is_some() {
            return Err(EBUSY);
        }
        // SAFETY: `Adapter::<T>::nf_hook` with our device as its private pointer is sound
        // while the device is registered with `data`; `Drop` unregisters the hooks (and waits
        // for running ones) before anything else is torn down.
        let hooks = unsafe {
            netfilter::Hooks::register(
                Adapter::<T>::nf_hook,
                self.dev.as_ptr().cast(),
                &[netfilter::Proto::Ipv4, netfilter::Proto::Ipv6],
                netfilter::NF_INET_POST_ROUTING,
                netfilter::PRI_LAST,
            )?
        };
        self.hooks = Some(hooks);
        Ok(())
    }

    /// The device.
    pub fn device(&self) -> &Device {
        // SAFETY: valid by the type invariant for as long as `self`.
        unsafe { Device::from_raw(self.dev.as_ptr()) }
    }

    /// The driver data.
    pub fn data(&self) -> &T {
        &self.data
    }
}

impl<T: Driver> Drop for Registration<T> {
    fn drop(&mut self) {
        // Hooks first: unregistering waits for running ones, after which none runs.
        drop(self.hooks.take());
        let raw = self.dev.as_ptr();
        // SAFETY: registered by the type invariant. `free_irq` waits for a running handler,
        // after which none runs. `timer_shutdown_sync` waits for a running
        // timer callback and keeps the timer from being armed again, so none runs while the
        // device goes away. `unregister_netdev` then closes the device (calling `stop`, which
        // disables NAPI); afterwards no callback runs, so the NAPI context can be removed and
        // the device freed before `data`.
        unsafe {
            if let Some(irq) = self.irq {
                bindings::free_irq(irq, raw.cast());
            }
            let private = bindings::netdev_priv(raw).cast::<Private<T>>();
            bindings::timer_shutdown_sync(core::ptr::addr_of_mut!((*private).timer));
            bindings::unregister_netdev(raw);
            bindings::netif_napi_del(core::ptr::addr_of_mut!((*private).napi));
            bindings::free_netdev(raw);
        }
    }
}

// SAFETY: the device may be used from any thread; `T` is `Send + Sync`.
unsafe impl<T: Driver> Send for Registration<T> {}
// SAFETY: as above.
unsafe impl<T: Driver> Sync for Registration<T> {}
