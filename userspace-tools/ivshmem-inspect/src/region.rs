// SPDX-License-Identifier: GPL-2.0

//! A read-only [`Region`]: the region file opened `O_RDONLY` and mapped `PROT_READ`, shared, so
//! the inspector sees what the peers write and cannot write anything itself. Every mutating
//! operation of the trait returns an error; an accidental store through a raw pointer would
//! fault, not corrupt the region.

use ivshmem_net_protocol::layout::{check_range, Error, Region, MAX_REGION_LEN};
use std::fs::File;
use std::path::Path;
use std::sync::atomic::{fence, AtomicU32, Ordering};

/// A read-only shared mapping of (at most the first [`MAX_REGION_LEN`] bytes of) a region file.
pub struct ReadOnlyRegion {
    map: memmap2::MmapRaw,
    file_len: u64,
}

impl ReadOnlyRegion {
    /// Opens `path` read-only and maps it read-only and shared.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        let file = File::open(path)?;
        let file_len = file.metadata()?.len();
        if file_len == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "the file is empty",
            ));
        }
        let len = file_len.min(MAX_REGION_LEN);
        let map = memmap2::MmapOptions::new()
            .len(len as usize)
            .map_raw_read_only(&file)?;
        Ok(ReadOnlyRegion { map, file_len })
    }

    /// Length of the file (the mapping may be shorter, see [`MAX_REGION_LEN`]).
    pub fn file_len(&self) -> u64 {
        self.file_len
    }
}

impl Region for ReadOnlyRegion {
    fn len(&self) -> usize {
        self.map.len()
    }

    fn load(&self, off: usize) -> Result<u32, Error> {
        check_range(self.len(), off, 4, true)?;
        // SAFETY: `off` is 4-aligned and `off + 4 <= len` (checked above); the mapping is
        // page-aligned and lives as long as `self`. The word is only read: a relaxed atomic load
        // of a lock-free `u32`, which Rust allows on read-only memory. The acquire fence after
        // it makes the pair an acquire load, as the trait promises.
        let v = unsafe { AtomicU32::from_ptr(self.map.as_mut_ptr().add(off).cast()) }
            .load(Ordering::Relaxed);
        fence(Ordering::Acquire);
        Ok(v)
    }

    /// Always refused: the mapping is read-only.
    fn store(&self, _off: usize, _val: u32) -> Result<(), Error> {
        Err(Error::OutOfBounds)
    }

    /// Always refused: the mapping is read-only.
    fn compare_exchange(
        &self,
        _off: usize,
        _cur: u32,
        _new: u32,
    ) -> Result<Result<u32, u32>, Error> {
        Err(Error::OutOfBounds)
    }

    fn read(&self, off: usize, buf: &mut [u8]) -> Result<(), Error> {
        check_range(self.len(), off, buf.len(), false)?;
        // SAFETY: the range is inside the mapping (checked above) and `buf` is a distinct,
        // exclusive Rust buffer, so the two do not overlap; as `MmapRegion::read` does.
        unsafe {
            std::ptr::copy_nonoverlapping(self.map.as_ptr().add(off), buf.as_mut_ptr(), buf.len())
        };
        Ok(())
    }

    /// Always refused: the mapping is read-only.
    fn write(&self, _off: usize, _buf: &[u8]) -> Result<(), Error> {
        Err(Error::OutOfBounds)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn reads_and_refuses_writes() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(&[1, 0, 0, 0, 2, 0, 0, 0, 9]).unwrap();
        f.flush().unwrap();
        let r = ReadOnlyRegion::open(f.path()).unwrap();
        assert_eq!(r.len(), 9);
        assert_eq!(r.load(0), Ok(1));
        assert_eq!(r.load(4), Ok(2));
        assert_eq!(r.load(2), Err(Error::Misaligned));
        assert_eq!(r.load(8), Err(Error::OutOfBounds));
        let mut b = [0u8; 3];
        r.read(6, &mut b).unwrap();
        assert_eq!(b, [0, 0, 9]);
        assert!(r.read(7, &mut b).is_err());
        assert!(r.store(0, 5).is_err());
        assert!(r.compare_exchange(0, 1, 5).is_err());
        assert!(r.write(0, &[5]).is_err());
        assert_eq!(r.load(0), Ok(1));
    }

    #[test]
    fn empty_file_is_an_error() {
        let f = tempfile::NamedTempFile::new().unwrap();
        assert!(ReadOnlyRegion::open(f.path()).is_err());
    }
}
