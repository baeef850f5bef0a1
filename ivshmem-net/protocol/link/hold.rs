// SPDX-License-Identifier: GPL-2.0

//! Polling mode: holding down the link of a peer that held our transmit pool.
//!
//! A peer that beats its heartbeat but leaves our frames unconsumed holds the pool every
//! peer's frames share; once its frames keep our transmit queue stopped for
//! [`HEARTBEAT_TIMEOUT_MS`] its link is reset (`pool_hog_resets`). Relinking at once would let
//! it do so again with the next frame it gets (a broadcast is enough), for another
//! [`HEARTBEAT_TIMEOUT_MS`] of stalled traffic each time. So its link stays down for a while
//! first: [`HOLD_DOWN_MIN_MS`], doubling with each reset up to [`HOLD_DOWN_MAX_MS`], back to
//! the minimum once the peer kept a link for [`HOLD_DOWN_FORGIVE_MS`] after its last hold-down
//! without being reset. The share of time such a peer can stall us falls from about all of it
//! to [`HEARTBEAT_TIMEOUT_MS`] in [`HOLD_DOWN_MAX_MS`]. Local memory, never shared.

use super::HEARTBEAT_TIMEOUT_MS;

/// The first hold-down (ms).
pub const HOLD_DOWN_MIN_MS: u64 = 1_000;
/// The longest hold-down (ms).
pub const HOLD_DOWN_MAX_MS: u64 = 60_000;
/// A peer not reset for this long (ms) after its last hold-down ended starts again from
/// [`HOLD_DOWN_MIN_MS`].
pub const HOLD_DOWN_FORGIVE_MS: u64 = 60_000;

const _: () = assert!(HEARTBEAT_TIMEOUT_MS < HOLD_DOWN_MIN_MS);
const _: () = assert!(HOLD_DOWN_MIN_MS <= HOLD_DOWN_MAX_MS);

/// The hold-down of one peer's link.
///
/// # Examples
///
/// ```
/// use ivshmem_net_protocol::link::{HoldDown, HOLD_DOWN_FORGIVE_MS, HOLD_DOWN_MIN_MS};
///
/// let mut hold = HoldDown::default();
/// assert!(hold.allows(0));
/// // Reset at 5 s for holding the pool: no link for a second, then twice as long each time.
/// assert_eq!(hold.reset(5_000), HOLD_DOWN_MIN_MS);
/// assert!(!hold.allows(5_999));
/// assert!(hold.allows(6_000));
/// assert_eq!(hold.reset(7_000), 2 * HOLD_DOWN_MIN_MS);
/// assert!(!hold.allows(8_999));
/// // Linked well after its last hold-down ended, and reset again: forgiven.
/// assert_eq!(hold.reset(9_000 + HOLD_DOWN_FORGIVE_MS + 1), HOLD_DOWN_MIN_MS);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HoldDown {
    /// Until when (ms) the link stays down.
    until_ms: u64,
    /// The next hold-down (ms); 0 before the first.
    next_ms: u64,
}

impl HoldDown {
    /// The peer's link was reset at `now_ms` for holding the pool: holds it down and returns
    /// for how long (ms).
    pub fn reset(&mut self, now_ms: u64) -> u64 {
        let forgiven = now_ms.saturating_sub(self.until_ms) > HOLD_DOWN_FORGIVE_MS;
        let ms = if self.next_ms == 0 || forgiven {
            HOLD_DOWN_MIN_MS
        } else {
            self.next_ms
        };
        self.until_ms = now_ms.saturating_add(ms);
        self.next_ms = ms.saturating_mul(2).min(HOLD_DOWN_MAX_MS);
        ms
    }

    /// Whether the link may come up at `now_ms`.
    pub fn allows(&self, now_ms: u64) -> bool {
        now_ms >= self.until_ms
    }
}
