// SPDX-License-Identifier: GPL-2.0

//! The host's [`Region`] implementations: [`HeapRegion`], plain memory for tests, and
//! [`MmapRegion`], a shared mapping of a region file such as `/dev/shm/ivshmem-net` or the
//! server's shared memory. The only `unsafe` of the crate is here, in [`MmapRegion`].

use crate::layout::{check_range, Error, Region};
use std::fs::OpenOptions;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};

/// Word access shared by the two regions below: both keep the shared words as `AtomicU32`s, so
/// their atomic operations are one implementation, checked once.
trait Words {
    fn byte_len(&self) -> usize;
    /// The word at `off`; callers checked `off` with `check_range(.., atomic = true)`.
    fn word_at(&self, off: usize) -> &AtomicU32;

    #[inline]
    fn load_word(&self, off: usize) -> Result<u32, Error> {
        check_range(self.byte_len(), off, 4, true)?;
        Ok(self.word_at(off).load(Ordering::Acquire))
    }

    #[inline]
    fn store_word(&self, off: usize, val: u32) -> Result<(), Error> {
        check_range(self.byte_len(), off, 4, true)?;
        self.word_at(off).store(val, Ordering::Release);
        Ok(())
    }

    #[inline]
    fn cas_word(&self, off: usize, cur: u32, new: u32) -> Result<Result<u32, u32>, Error> {
        check_range(self.byte_len(), off, 4, true)?;
        Ok(self
            .word_at(off)
            .compare_exchange(cur, new, Ordering::AcqRel, Ordering::Acquire))
    }
}

/// A region in ordinary memory, made of atomic words so that several threads may use it at
/// once, as peers do.
pub struct HeapRegion {
    words: Vec<AtomicU32>,
}

impl HeapRegion {
    /// A zeroed region of `len` bytes (rounded up to a multiple of 4).
    pub fn new(len: usize) -> Self {
        HeapRegion {
            words: (0..len.div_ceil(4)).map(|_| AtomicU32::new(0)).collect(),
        }
    }

    fn word(&self, off: usize) -> &AtomicU32 {
        &self.words[off / 4]
    }
}

impl Words for HeapRegion {
    fn byte_len(&self) -> usize {
        self.words.len() * 4
    }
    fn word_at(&self, off: usize) -> &AtomicU32 {
        self.word(off)
    }
}

impl Region for HeapRegion {
    fn len(&self) -> usize {
        self.words.len() * 4
    }
    fn load(&self, off: usize) -> Result<u32, Error> {
        self.load_word(off)
    }
    fn store(&self, off: usize, val: u32) -> Result<(), Error> {
        self.store_word(off, val)
    }
    fn compare_exchange(&self, off: usize, cur: u32, new: u32) -> Result<Result<u32, u32>, Error> {
        self.cas_word(off, cur, new)
    }
    fn read(&self, off: usize, buf: &mut [u8]) -> Result<(), Error> {
        check_range(self.len(), off, buf.len(), false)?;
        for (i, b) in buf.iter_mut().enumerate() {
            let at = off + i;
            *b = self.word(at & !3).load(Ordering::Acquire).to_le_bytes()[at & 3];
        }
        Ok(())
    }
    fn write(&self, off: usize, buf: &[u8]) -> Result<(), Error> {
        check_range(self.len(), off, buf.len(), false)?;
        for (i, &b) in buf.iter().enumerate() {
            let at = off + i;
            let shift = (at & 3) * 8;
            let w = self.word(at & !3);
            let _ = w.fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
                Some((v & !(0xff << shift)) | ((b as u32) << shift))
            });
        }
        Ok(())
    }
}

/// A shared, writable mapping of a region file.
pub struct MmapRegion {
    map: memmap2::MmapRaw,
}

impl MmapRegion {
    /// Maps `path` (which must exist) read-write and shared.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        Ok(MmapRegion {
            map: memmap2::MmapRaw::map_raw(&file)?,
        })
    }

    /// Maps the first `len` bytes of an open region (a file or a shared-memory object that is
    /// at least that long) read-write and shared.
    pub fn map_fd<F: std::os::fd::AsRawFd>(fd: &F, len: usize) -> std::io::Result<Self> {
        Ok(MmapRegion {
            map: memmap2::MmapOptions::new()
                .len(len)
                .map_raw(fd.as_raw_fd())?,
        })
    }

    #[inline]
    fn word(&self, off: usize) -> &AtomicU32 {
        // SAFETY: callers checked `off` with `check_range(.., atomic = true)`, so it is 4-aligned
        // and `off + 4 <= len`; the mapping is page-aligned, lives as long as `self`, and is
        // only ever accessed atomically or by byte copies, as peers in other VMs do.
        unsafe { AtomicU32::from_ptr(self.map.as_mut_ptr().add(off).cast()) }
    }
}

impl Words for MmapRegion {
    #[inline]
    fn byte_len(&self) -> usize {
        self.map.len()
    }
    #[inline]
    fn word_at(&self, off: usize) -> &AtomicU32 {
        self.word(off)
    }
}

impl Region for MmapRegion {
    #[inline]
    fn len(&self) -> usize {
        self.map.len()
    }
    #[inline]
    fn load(&self, off: usize) -> Result<u32, Error> {
        self.load_word(off)
    }
    #[inline]
    fn store(&self, off: usize, val: u32) -> Result<(), Error> {
        self.store_word(off, val)
    }
    #[inline]
    fn compare_exchange(&self, off: usize, cur: u32, new: u32) -> Result<Result<u32, u32>, Error> {
        self.cas_word(off, cur, new)
    }
    #[inline]
    fn read(&self, off: usize, buf: &mut [u8]) -> Result<(), Error> {
        check_range(self.len(), off, buf.len(), false)?;
        // SAFETY: the range is inside the mapping (checked above) and `buf` is a distinct,
        // exclusive Rust buffer, so the two do not overlap.
        unsafe {
            std::ptr::copy_nonoverlapping(self.map.as_ptr().add(off), buf.as_mut_ptr(), buf.len())
        };
        Ok(())
    }
    #[inline]
    fn write(&self, off: usize, buf: &[u8]) -> Result<(), Error> {
        check_range(self.len(), off, buf.len(), false)?;
        // SAFETY: as in `read`, with the copy going the other way.
        unsafe {
            std::ptr::copy_nonoverlapping(buf.as_ptr(), self.map.as_mut_ptr().add(off), buf.len())
        };
        Ok(())
    }
}
