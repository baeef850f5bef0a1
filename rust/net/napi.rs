// SPDX-License-Identifier: GPL-2.0

//! `struct napi_struct`: [`NapiPoll`], a poll in progress, handed to the driver's poll by
//! value and consumed by completing it, and [`Napi`], the NAPI context as the driver sees it
//! through that poll (allocating receive buffers, GRO). The context itself lives in the
//! device's private area (`device.rs`) and its poll trampoline in `ops.rs`, which also enables
//! and disables it.

use super::{bindings, RxSkb, SkBuff};
use core::{cell::Cell, ops::Deref, ptr::NonNull};
use kernel::error::{code::ENOMEM, from_err_ptr, Result};
use kernel::types::Opaque;

/// A NAPI context, inside a poll that has not completed.
///
/// # Invariants
///
/// The context is added to its device (it has a NAPI id) and its poll is running and has not
/// completed: references are only made by the poll trampoline and borrow from the
/// [`NapiPoll`] it hands the driver, which completing the poll consumes.
#[repr(transparent)]
pub struct Napi(Opaque<bindings::napi_struct>);

impl Napi {
    pub(super) fn as_raw(&self) -> *mut bindings::napi_struct {
        self.0.get()
    }

    /// A receive buffer for a frame of `len` bytes, to be filled in
    /// ([`RxSkb::fill_pieces`]): at most `head` of them linear (so the headers the stack looks at first are there), the rest in order-0
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

    /// Moves this context to its kernel thread (`on`) or back to softirq context, from its
    /// next scheduling on (a poll running now finishes where it is). The thread is the one
    /// [`super::Operations::napi_thread_nice`] had prepared; `false`, changing nothing, if
    /// there is none, or if the administrator made the whole device threaded (its `threaded`
    /// sysfs attribute), whose choice stands.
    pub fn set_threaded(&self, on: bool) -> bool {
        // SAFETY: called inside this NAPI context's poll: the context is added to its device,
        // whose threads live as long as it is.
        unsafe { bindings::ivnet_napi_set_threaded(self.as_raw(), on) }
    }

    /// Hands the stack every frame GRO holds now, as completing the poll would, without
    /// completing it: the sockets they are for see them (and wake their readers) before the
    /// poll ends.
    pub fn flush_gro(&self) {
        // SAFETY: called inside this NAPI context's poll (type invariant), which owns its GRO
        // lists.
        unsafe { bindings::ivnet_napi_flush_gro(self.as_raw()) }
    }

    /// Whether another task waits for this CPU (the kernel's `need_resched()`), for instance
    /// one that this poll woke by handing it data.
    pub fn need_resched(&self) -> bool {
        // SAFETY: only reads the current task's flags; a poll runs on a CPU, in a task.
        unsafe { bindings::need_resched() }
    }

    /// Whether this poll is a socket's busy polling (`napi_busy_loop`, `net.core.busy_read`
    /// or `SO_BUSY_POLL`) rather than NAPI's own scheduling.
    pub fn in_busy_poll(&self) -> bool {
        // SAFETY: called inside this NAPI context's poll (type invariant); the helper only
        // reads its state bits.
        unsafe { bindings::ivnet_napi_in_busy_poll(self.as_raw()) }
    }

    /// Hands a received frame to the stack at once (`netif_receive_skb`), not through GRO,
    /// after every frame GRO holds ([`Napi::flush_gro`]): it overtakes none of its flow.
    pub fn receive_now(&self, skb: SkBuff) {
        // SAFETY: called inside this NAPI context's poll (type invariant), which owns its GRO
        // lists and may hand frames to the stack (softirq or its thread, BHs off); ownership
        // of the buffer passes on.
        unsafe { bindings::ivnet_napi_receive_now(self.as_raw(), skb.into_raw()) }
    }

    /// Hands a received frame to the stack through GRO.
    pub fn gro_receive(&self, skb: SkBuff) {
        // SAFETY: called inside this NAPI context's poll; ownership of the buffer passes on.
        unsafe { bindings::napi_gro_receive(self.as_raw(), skb.into_raw()) };
    }
}

/// A NAPI poll in progress: what [`Operations::poll`] gets, by value. It gives access to the
/// [`Napi`] context (`Deref`) until [`NapiPoll::complete_done`] consumes it: once NAPI is
/// completed it may be scheduled and polled again on another CPU at once, so nothing may use
/// the context any more, and the borrow checker sees to it that nothing does.
///
/// [`Operations::poll`]: super::Operations::poll
pub struct NapiPoll<'a> {
    napi: &'a Napi,
    budget: u32,
    /// Set when the poll completed, for the trampoline (see `ops.rs`).
    completed: &'a Cell<bool>,
}

impl<'a> NapiPoll<'a> {
    /// For the poll trampoline: the poll of `napi` with `budget`, which reports completion in
    /// `completed`.
    pub(super) fn new(napi: &'a Napi, budget: u32, completed: &'a Cell<bool>) -> Self {
        NapiPoll {
            napi,
            budget,
            completed,
        }
    }

    /// Ends a poll that did `work` units of work, fewer than its budget; `false` if NAPI will
    /// poll again anyway (do not re-arm interrupts or timers then). Also `false`, without
    /// completing, for `work` at or over the budget or a poll with budget 0 (netpoll's), which
    /// must not complete.
    pub fn complete_done(self, work: u32) -> bool {
        if work >= self.budget {
            return false;
        }
        // SAFETY: called inside this NAPI context's poll, which has not completed (this value
        // is consumed here), with `work` below the budget (`work < budget` fits in `i32`).
        let done = unsafe { bindings::napi_complete_done(self.napi.as_raw(), work as i32) };
        // Whatever it returned, the poll is over for the driver: the trampoline reports less
        // than the budget.
        self.completed.set(true);
        done
    }
}

impl Deref for NapiPoll<'_> {
    type Target = Napi;

    fn deref(&self) -> &Napi {
        self.napi
    }
}
