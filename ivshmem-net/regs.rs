// SPDX-License-Identifier: GPL-2.0

//! What the ivshmem PCI device (1af4:1110) offers besides the shared memory: its BAR0
//! registers and the ways it can interrupt us (QEMU's docs/specs/ivshmem-spec.rst).
//!
//! ivshmem-plain has the registers but no interrupts and no valid `IVPOSITION`; ivshmem-doorbell
//! connects to a server that hands out peer ids and the eventfds behind the doorbells.

/// INTx only: interrupt mask (bit 0 enables). Zero after reset: the line stays low.
pub(crate) const INTR_MASK: usize = 0x00;
/// The bit of [`INTR_MASK`] that lets a doorbell assert the INTx line.
pub(crate) const INTR_ENABLE: u32 = 1;
/// INTx only: interrupt status, cleared by reading.
pub(crate) const INTR_STATUS: usize = 0x04;
/// This peer's id; valid with ivshmem-doorbell only.
pub(crate) const IVPOSITION: usize = 0x08;
/// Write `(peer << 16) | vector` to interrupt `peer`.
pub(crate) const DOORBELL: usize = 0x0c;

/// How the device interrupts us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Irq {
    /// ivshmem-plain: no interrupts, a timer polls.
    None,
    /// ivshmem-doorbell with an MSI-X vector.
    Msix,
    /// ivshmem-doorbell on a (possibly shared) INTx line.
    Intx,
    /// ivshmem-doorbell without a usable interrupt (no MSI-X, no INTx line routed): we ring
    /// the peers' doorbells like any doorbell peer, but poll from the timer ourselves.
    Polled,
}

/// The QEMU device type of a peer that does (`doorbell`) or does not use interrupts.
pub(crate) fn device_type(doorbell: bool) -> &'static str {
    if doorbell {
        "ivshmem-doorbell"
    } else {
        "ivshmem-plain"
    }
}
