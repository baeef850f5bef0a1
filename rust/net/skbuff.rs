// SPDX-License-Identifier: GPL-2.0

//! `struct sk_buff`: [`SkBuff`], a frame the driver owns (read, copied to shared memory,
//! handed on or freed on drop), [`RxSkb`], a receive buffer not yet written, which turns into
//! an `SkBuff` only by being filled whole, and [`Offload`], a frame's checksum and
//! segmentation metadata in the form of a `virtio_net_hdr`.
//!
//! The trampolines of the kernel support layer in `rust/` make an `SkBuff` from a buffer the
//! stack hands over (the tuple field is visible to the whole support layer, not to the
//! driver); each such place says why it is owned with an `// INVARIANT:` comment.

use super::{bindings, shm, Device, Napi};
use core::ptr::NonNull;
use kernel::prelude::*;

/// A receive buffer from [`Napi::alloc_rx_skb`], sized for a frame but holding no bytes of it
/// yet; freed on drop. [`RxSkb::fill_pieces`] is the only way to an [`SkBuff`]: it writes every byte
/// at once, so neither the driver nor the stack ever reads memory nobody wrote, and no
/// reference to such memory is ever made.
///
/// # Invariants
///
/// `ptr` is a valid `sk_buff` that this value owns, made by `ivnet_napi_alloc_rx_skb`: its
/// `len` bytes lie in its linear part and in page fragments that are pages of its own, not yet
/// written.
pub struct RxSkb(pub(super) NonNull<bindings::sk_buff>);

impl RxSkb {
    /// Length of the frame the buffer is sized for, in bytes.
    pub fn len(&self) -> u32 {
        // SAFETY: valid by the type invariant.
        unsafe { bindings::ivnet_skb_len(self.0.as_ptr()) }
    }

    /// Whether the buffer is sized for an empty frame.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Copies the frame, [`RxSkb::len`] bytes lying in `shm` as the range `first` followed by
    /// the range `second` (a frame that runs over the end of its sender's pool and on from its
    /// start; `second` is empty otherwise), into the buffer (linear part first, then each page
    /// fragment) and returns it as a frame. `EINVAL` (buffer freed) unless the pieces are inside
    /// the mapping and together [`RxSkb::len`] bytes long. The bytes are whatever they are at
    /// the time of the copy: a peer writing them meanwhile can only change the frame's
    /// contents, which everything after this takes from the buffer, never from `shm` again.
    pub fn fill_pieces(
        self,
        shm: &shm::SharedMem,
        first: core::ops::Range<usize>,
        second: core::ops::Range<usize>,
    ) -> Result<SkBuff> {
        let len = self.len() as usize;
        let (a, b) = (first.len(), second.len());
        if a.checked_add(b) != Some(len) {
            return Err(EINVAL);
        }
        // Both checked before anything is written, so an `SkBuff` is never half filled.
        let src_a = shm.range_ptr(first.start, a).map_err(|_| EINVAL)?;
        let src_b = shm.range_ptr(second.start, b).map_err(|_| EINVAL)?;
        let (na, nb) = (
            i32::try_from(a).map_err(|_| EINVAL)?,
            i32::try_from(b).map_err(|_| EINVAL)?,
        );
        let p = self.0;
        core::mem::forget(self);
        // INVARIANT: owned (taken over from `self`); written whole below (`a + b == len`)
        // before anything reads it, or freed on error by the `SkBuff`'s drop without being read.
        let skb = SkBuff(p);
        // SAFETY: `p` is valid and ours, and its `len` bytes lie in its linear part and its own
        // pages (type invariant); `src_a` points to `a` readable bytes of the mapping (checked
        // by `range_ptr`), stored at offset 0; `skb_store_bits` fails (-EFAULT) rather than
        // write past `len`.
        let ret = unsafe { bindings::skb_store_bits(p.as_ptr(), 0, src_a.cast_const().cast(), na) };
        kernel::error::to_result(ret)?;
        if b != 0 {
            // SAFETY: as above, with `src_b` pointing to `b` readable bytes, stored at offset
            // `a`: `a + b == len`.
            let ret =
                unsafe { bindings::skb_store_bits(p.as_ptr(), na, src_b.cast_const().cast(), nb) };
            kernel::error::to_result(ret)?;
        }
        Ok(skb)
    }
}

impl Drop for RxSkb {
    fn drop(&mut self) {
        // SAFETY: owned by the type invariant; freeing does not read the frame's bytes.
        unsafe { bindings::dev_kfree_skb_any(self.0.as_ptr()) }
    }
}

/// A socket buffer owned by the driver; freed on drop unless handed on.
///
/// # Invariants
///
/// `ptr` is a valid `sk_buff` that this value owns.
pub struct SkBuff(pub(in super::super) NonNull<bindings::sk_buff>);

impl SkBuff {
    /// The transmit queue the stack chose for the frame (`skb_get_queue_mapping`).
    pub fn queue_mapping(&self) -> u32 {
        // SAFETY: valid by the type invariant; reads one field.
        u32::from(unsafe { bindings::skb_get_queue_mapping(self.0.as_ptr()) })
    }

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

    /// Sets the protocol and packet type from the Ethernet header (`eth_type_trans`), which it
    /// pulls. `EINVAL` (frame unchanged) if the frame is shorter than an Ethernet header.
    pub fn eth_type_trans(&mut self, dev: &Device) -> Result {
        // SAFETY: valid and owned; `dev` is valid. The helper makes sure the 14 bytes of the
        // header are in the linear part (`pskb_may_pull`) before `eth_type_trans` reads and
        // pulls them, and refuses a shorter frame.
        kernel::error::to_result(unsafe {
            bindings::ivnet_skb_set_eth_protocol(self.0.as_ptr(), dev.as_raw())
        })
    }

    /// Records that the frame came in on receive queue `q` (`skb_record_rx_queue`): the
    /// socket that gets it notes the queue, and XPS sends what the socket sends next on
    /// transmit queue `q` (the receive-queue maps set with the device's queues). A queue
    /// beyond `u16` is not recorded.
    pub fn record_rx_queue(&mut self, q: u32) {
        let Ok(q) = u16::try_from(q) else {
            return;
        };
        // SAFETY: valid and owned by the type invariant; this only sets its queue mapping.
        unsafe { bindings::ivnet_skb_record_rx_queue(self.0.as_ptr(), q) };
    }

    /// The frame's offload metadata (checksum to fill in, segmentation), in the form of a
    /// `virtio_net_hdr` (`virtio_net_hdr_from_skb`). `EINVAL` for a segmentation type it cannot
    /// express.
    pub fn offload(&self) -> Result<Offload> {
        self.offload_behind(0)
    }

    /// Whether the frame is encapsulated (`skb->encapsulation`: a tunnel's packet whose
    /// offload offsets concern its inner headers), and its segmentation-offload type (the
    /// kernel's `SKB_GSO_*` bits, 0 if it is not a segmentation-offload frame).
    pub fn gso_kind(&self) -> (bool, u32) {
        let mut encapsulation = false;
        // SAFETY: valid by the type invariant; `encapsulation` is a local.
        let gso_type = unsafe { bindings::ivnet_skb_gso_type(self.0.as_ptr(), &mut encapsulation) };
        (encapsulation, gso_type)
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
    /// busy-polling for it polls `napi`. `EINVAL` (frame freed) if it is shorter than an
    /// Ethernet header, `ENODEV` (frame freed) if there is no such device or it is down. Call
    /// from `napi`'s poll, after [`SkBuff::set_offload`].
    pub fn receive_on(self, napi: &Napi, ifindex: i32) -> Result {
        let p = self.into_raw();
        // SAFETY: we owned `p` and pass it on; the helper frees it on failure, and checks the
        // Ethernet header is in the linear part (`pskb_may_pull`) before `eth_type_trans`;
        // softirq context (NAPI poll), as `netif_receive_skb` wants; `napi` is valid by its
        // type invariant (added, so its id is set) and only its id is read.
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

    /// Copies `len` bytes of the frame from byte `from` (linear part and fragments alike) into
    /// `shm` at `off`; `EINVAL` unless those lie inside the frame and the mapping.
    pub fn copy_bits_to(&self, from: u32, shm: &shm::SharedMem, off: usize, len: usize) -> Result {
        let end = (from as usize).checked_add(len).ok_or(EINVAL)?;
        if end > self.len() as usize {
            return Err(EINVAL);
        }
        let dst = shm.range_ptr(off, len).map_err(|_| EINVAL)?;
        let (from, n) = (
            i32::try_from(from).map_err(|_| EINVAL)?,
            i32::try_from(len).map_err(|_| EINVAL)?,
        );
        // SAFETY: `dst` points to `len` writable bytes of the mapping (checked by
        // `range_ptr`); the frame is valid and owned and holds `from + len` bytes (checked);
        // `skb_copy_bits` copies exactly `len` from `from`.
        let ret = unsafe { bindings::skb_copy_bits(self.0.as_ptr(), from, dst.cast(), n) };
        kernel::error::to_result(ret)
    }

    /// Frees the frame as successfully transmitted (`dev_consume_skb_any`).
    pub fn consume(self) {
        let p = self.0.as_ptr();
        core::mem::forget(self);
        // SAFETY: we owned `p` and give it up here.
        unsafe { bindings::dev_consume_skb_any(p) }
    }

    pub(super) fn into_raw(self) -> *mut bindings::sk_buff {
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
