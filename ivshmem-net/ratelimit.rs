// SPDX-License-Identifier: GPL-2.0

//! Log rate limiting for messages a peer can provoke at will (a hostile peer scribbling on the
//! region, a link flapping): at most `burst` messages per `interval_ms`, and the first message
//! after a quiet spell says how many were left out.

use core::fmt;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// No window has begun yet.
const NEVER: u64 = u64::MAX;

/// One rate limit, shared by a family of messages. Lock-free; a race between two callers may
/// let one message too many through, never block one.
pub(crate) struct Ratelimit {
    interval_ms: u64,
    burst: u32,
    /// Start of the current window, in ms ([`NEVER`] before the first message).
    begin_ms: AtomicU64,
    /// Messages let through in the current window.
    printed: AtomicU32,
    /// Messages left out since the last one let through.
    missed: AtomicU32,
}

impl Ratelimit {
    /// At most `burst` messages per `interval_ms`.
    pub(crate) const fn new(interval_ms: u64, burst: u32) -> Self {
        Ratelimit {
            interval_ms,
            burst,
            begin_ms: AtomicU64::new(NEVER),
            printed: AtomicU32::new(0),
            missed: AtomicU32::new(0),
        }
    }

    /// Whether a message may be logged at `now_ms`; if so, with how many were left out before
    /// it (print it with the message).
    pub(crate) fn check(&self, now_ms: u64) -> Option<Missed> {
        let begin = self.begin_ms.load(Ordering::Relaxed);
        if begin == NEVER || now_ms.saturating_sub(begin) >= self.interval_ms {
            if self
                .begin_ms
                .compare_exchange(begin, now_ms, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
            {
                self.printed.store(0, Ordering::Relaxed);
            }
        }
        if self.printed.fetch_add(1, Ordering::Relaxed) < self.burst {
            Some(Missed(self.missed.swap(0, Ordering::Relaxed)))
        } else {
            self.missed.fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}

/// How many messages a [`Ratelimit`] left out; prints nothing when none were.
pub(crate) struct Missed(u32);

impl fmt::Display for Missed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            0 => Ok(()),
            n => write!(f, " ({} similar messages suppressed before this one)", n),
        }
    }
}
