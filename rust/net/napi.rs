// SPDX-License-Identifier: GPL-2.0

//! `struct napi_struct`: [`Napi`], the NAPI context as the driver sees it inside its poll
//! (allocating receive buffers, GRO, completing the poll). The context itself lives in the
//! device's private area (`device.rs`) and its poll trampoline in `ops.rs`.

use super::{bindings, RxSkb, SkBuff};
use core::ptr::NonNull;
use kernel::error::{code::ENOMEM, from_err_ptr, Result};
use kernel::types::Opaque;

/// A NAPI context, inside a poll.
///
/// # Invariants
///
/// The context is added to its device (it has a NAPI id) and its poll is running: references
/// are only made by the poll trampoline, for the length of the call.
#[repr(transparent)]
pub struct Napi(Opaque<bindings::napi_struct>);

impl Napi {
    pub(super) fn as_raw(&self) -> *mut bindings::napi_struct {
        self.0.get()
    }

    /// A receive buffer for a frame of `len` bytes, to be filled in ([`RxSkb::fill`]): at most `head`
    /// of them linear (so the headers the stack looks at first are there), the rest in order-0
    /// pages, so large frames need no high-order allocation in atomic context. `E2BIG` if
    /// `len` does not fit `head` bytes and `MAX_SKB_FRAGS` pages (never one high-order buffer
    /// instead), `ENOMEM` if out of memory.
    pub fn alloc_rx_skb(&self, len: u32, head: u32) -> Result<RxSkb> {
        // SAFETY: called inside this NAPI context's poll.
        let p = unsafe { bindings::ivnet_napi_alloc_rx_skb(self.as_raw(), len, head) };
        let p = from_err_ptr(p)?;
        // INVARIANT: a fresh buffer that we own, of `len` bytes in its linear part and pages of
        // its own, none written yet (the helper never returns NULL; checked anyway).
        NonNull::new(p).map(RxSkb).ok_or(ENOMEM)
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
