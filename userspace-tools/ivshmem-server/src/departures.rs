// SPDX-License-Identifier: GPL-2.0

//! Telling ivshmem-net guests that a client left.
//!
//! QEMU's ivshmem device passes a peer's disconnect on to nobody: the guests still connected
//! learn nothing. A guest of ivshmem-net in doorbell mode sleeps while all is quiet, so a peer
//! killed outright would look alive to it until traffic waited on it. When the region holds an
//! ivshmem-net layout (the header's magic says so), the server therefore adds one to the
//! header's `departures` word and rings vector 0 of every client still connected; each guest
//! then asks its peers for a sign of life (the protocol's layout documentation, *Departures*).
//! A region holding anything else is never written and nobody is rung.

use ivshmem_net_protocol::layout::{self, hdr, Region, HEADER_LEN};
use ivshmem_net_protocol::MmapRegion;
use std::os::fd::OwnedFd;

/// The region's header, mapped if the region is big enough to have one.
pub struct Departures {
    header: Option<MmapRegion>,
}

impl Departures {
    /// Maps the first page of the shared memory `shm` of `size` bytes. A region too small for
    /// an ivshmem-net header (or one that cannot be mapped) is simply never announced to.
    pub fn new(shm: &OwnedFd, size: u64) -> Result<Departures, String> {
        if size < u64::from(HEADER_LEN) {
            return Ok(Departures { header: None });
        }
        let header = MmapRegion::map_fd(shm, HEADER_LEN as usize)
            .map_err(|e| format!("mapping the region's header: {e}"))?;
        Ok(Departures {
            header: Some(header),
        })
    }

    /// Counts one departure in the header if the region holds an ivshmem-net layout now (a
    /// guest lays it out after the server started). Returns whether it did, that is, whether
    /// the clients still connected should be rung.
    pub fn announce(&self) -> bool {
        let Some(r) = &self.header else {
            return false;
        };
        if r.load(hdr::MAGIC) != Ok(layout::MAGIC) {
            return false;
        }
        // Guests may write the word too (it only ever asks for a round of liveness checks):
        // a compare-and-swap loop, so that our increment is never lost to theirs.
        let Ok(mut seen) = layout::departures(r) else {
            return false;
        };
        loop {
            match r.compare_exchange(hdr::DEPARTURES, seen, seen.wrapping_add(1)) {
                Ok(Ok(_)) => return true,
                Ok(Err(now)) => seen = now,
                Err(_) => return false,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::OpenOptions;

    fn region(name: &str, len: u64) -> (OwnedFd, std::path::PathBuf) {
        let path = std::env::temp_dir().join(format!(
            "ivshmem-server-departures-{}-{name}",
            std::process::id()
        ));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .expect("temporary region file");
        file.set_len(len).expect("sizing the region file");
        (OwnedFd::from(file), path)
    }

    #[test]
    fn counts_only_in_an_ivshmem_net_region() {
        let (fd, path) = region("ivnt", 1 << 20);
        let d = Departures::new(&fd, 1 << 20).expect("mapping");
        let view = MmapRegion::map_fd(&fd, HEADER_LEN as usize).expect("second mapping");
        // No layout yet (a guest has not initialised it): nothing written, nobody rung.
        assert!(!d.announce());
        assert_eq!(view.load(hdr::DEPARTURES), Ok(0));
        view.store(hdr::MAGIC, layout::MAGIC).expect("magic");
        view.store(hdr::DEPARTURES, u32::MAX).expect("departures");
        assert!(d.announce());
        assert_eq!(view.load(hdr::DEPARTURES), Ok(0), "wraps");
        assert!(d.announce());
        assert_eq!(view.load(hdr::DEPARTURES), Ok(1));
        // Everything else in the header is untouched.
        let mut words = Vec::new();
        for off in (0..HEADER_LEN as usize).step_by(4) {
            if off != hdr::DEPARTURES && off != hdr::MAGIC {
                words.push(view.load(off).expect("load"));
            }
        }
        assert!(words.iter().all(|&w| w == 0));
        let _ = std::fs::remove_file(path);
    }

    /// A header as a guest lays it out (layout version 2: pools, queues): the server counts in
    /// the word the guests read, and changes no geometry word they check.
    #[test]
    fn counts_in_a_header_a_guest_laid_out() {
        let len = 16 << 20;
        let (fd, path) = region("v2", len);
        let view = MmapRegion::map_fd(&fd, len as usize).expect("mapping the region");
        let g = layout::Geometry::new(len, 8).expect("geometry");
        let a = layout::attach(&view, g, 0x1234, || false).expect("laid out");
        let mut before = [0u8; HEADER_LEN as usize];
        view.read(0, &mut before).expect("header");
        let d = Departures::new(&fd, len).expect("mapping");
        let seen = layout::departures(&view).expect("departures");
        assert!(d.announce() && d.announce());
        assert_eq!(layout::departures(&view), Ok(seen.wrapping_add(2)));
        let mut after = [0u8; HEADER_LEN as usize];
        view.read(0, &mut after).expect("header");
        let dep = hdr::DEPARTURES..hdr::DEPARTURES + 4;
        assert_eq!(before[..dep.start], after[..dep.start]);
        assert_eq!(before[dep.end..], after[dep.end..]);
        // Nothing for a guest to repair, and a guest joining still accepts the header.
        assert_eq!(layout::repair_header(&view, &a), Ok(0));
        assert_eq!(layout::read_geometry(&view), Ok(g));
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn a_region_smaller_than_a_header_is_never_touched() {
        let (fd, path) = region("small", 1024);
        let d = Departures::new(&fd, 1024).expect("no mapping needed");
        assert!(!d.announce());
        let _ = std::fs::remove_file(path);
    }
}
