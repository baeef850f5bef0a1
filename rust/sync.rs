// SPDX-License-Identifier: GPL-2.0

//! A spinlock that also disables bottom halves (`spin_lock_bh`), for data shared between
//! process context (open, stop, ethtool) and softirq context (transmit, NAPI, timers).
//!
//! 6.12's `kernel::sync::SpinLock` takes a plain `spin_lock`; taking that lock in process
//! context while a softirq on the same CPU wants it deadlocks. This is the same `Lock` with a
//! backend that uses the `_bh` variants.

use super::bindings;
use kernel::sync::lock::{Backend, Lock};

/// A spinlock whose holder runs with bottom halves disabled. Create with
/// [`crate::new_spinlock_bh!`].
pub type SpinLockBh<T> = Lock<T, SpinLockBhBackend>;

/// The [`Backend`] of [`SpinLockBh`].
pub struct SpinLockBhBackend;

// SAFETY: `spin_lock_bh` gives exclusive ownership until `spin_unlock_bh`; `relock` uses the
// default, which calls `lock` again, the same method.
unsafe impl Backend for SpinLockBhBackend {
    type State = kernel::bindings::spinlock_t;
    type GuardState = ();

    unsafe fn init(
        ptr: *mut Self::State,
        name: *const kernel::ffi::c_char,
        key: *mut kernel::bindings::lock_class_key,
    ) {
        // SAFETY: `ptr` is valid for writes, `name` and `key` valid forever (the caller's
        // guarantee, passed on).
        unsafe { kernel::bindings::__spin_lock_init(ptr, name, key) }
    }

    unsafe fn lock(ptr: *mut Self::State) -> Self::GuardState {
        // SAFETY: `ptr` is an initialised lock (caller); the module's bindings name the same C
        // type as the kernel crate's.
        unsafe { bindings::spin_lock_bh(ptr.cast()) }
    }

    unsafe fn unlock(ptr: *mut Self::State, _guard_state: &Self::GuardState) {
        // SAFETY: the caller owns the lock, taken by `lock` above.
        unsafe { bindings::spin_unlock_bh(ptr.cast()) }
    }
}

/// An initialiser for a [`SpinLockBh`] protecting `$inner`, with its own lockdep class.
#[macro_export]
macro_rules! new_spinlock_bh {
    ($inner:expr, $name:literal) => {
        kernel::sync::lock::Lock::<_, $crate::ext::sync::SpinLockBhBackend>::new(
            $inner,
            kernel::c_str!($name),
            kernel::static_lock_class!(),
        )
    };
}
