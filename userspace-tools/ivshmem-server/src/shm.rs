// SPDX-License-Identifier: GPL-2.0

//! The shared memory: a POSIX shared-memory object (`-M`) or a new file in a directory (`-m`),
//! sized with ftruncate. An existing object of the requested size is used as it is; what the
//! server created is removed when it exits, and only if the name still refers to it.

use crate::cli::{human, ShmSource};
use crate::sys;
use std::ffi::CString;
use std::fs::{self, OpenOptions};
use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

pub struct SharedMemory {
    pub fd: OwnedFd,
    pub size: u64,
    /// For the log: `shm object /NAME` or the file's path.
    pub description: String,
    /// Whether this server created the object (and so removes it on exit).
    pub created: bool,
    remove: Option<Removal>,
}

enum Removal {
    ShmName { name: CString, path: PathBuf },
    File(PathBuf),
}

impl SharedMemory {
    pub fn open(source: &ShmSource, size: u64) -> Result<SharedMemory, String> {
        match source {
            ShmSource::Name(name) => open_named(name, size),
            ShmSource::Dir(dir) => create_in_dir(dir, size),
        }
    }

    /// Removes the object if this server created it and its name still refers to it.
    /// Returns what was done, for the log.
    pub fn remove(&mut self) -> Option<String> {
        let removal = self.remove.take()?;
        let id = sys::fd_identity(self.fd.as_fd()).ok();
        let (path, unlink): (PathBuf, Box<dyn Fn() -> io::Result<()>>) = match removal {
            Removal::ShmName { name, path } => (
                path,
                Box::new(move || {
                    // SAFETY: name is a valid C string.
                    if unsafe { libc::shm_unlink(name.as_ptr()) } < 0 {
                        Err(io::Error::last_os_error())
                    } else {
                        Ok(())
                    }
                }),
            ),
            Removal::File(path) => {
                let p = path.clone();
                (path, Box::new(move || fs::remove_file(&p)))
            }
        };
        match fs::symlink_metadata(&path) {
            Ok(md) if Some((md.dev(), md.ino())) == id => Some(match unlink() {
                Ok(()) => format!("removed {}", self.description),
                Err(e) => format!("cannot remove {}: {e}", self.description),
            }),
            Ok(_) => Some(format!(
                "left {} alone: the name now refers to another object",
                path.display()
            )),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => Some(format!("cannot check {}: {e}", path.display())),
        }
    }
}

impl Drop for SharedMemory {
    fn drop(&mut self) {
        if let Some(msg) = self.remove() {
            crate::log!("{msg}");
        }
    }
}

fn open_named(name: &str, size: u64) -> Result<SharedMemory, String> {
    let bare = name.trim_start_matches('/');
    let cname = CString::new(format!("/{bare}")).map_err(|_| "NUL in shm name".to_string())?;
    let description = format!("shm object /{bare}");
    // First try to create it, so that we know whether it is ours to remove; if it exists, open
    // it. Repeat in case it vanishes in between.
    for _ in 0..5 {
        // SAFETY: cname is a valid C string.
        let fd = unsafe {
            libc::shm_open(
                cname.as_ptr(),
                libc::O_RDWR | libc::O_CREAT | libc::O_EXCL | libc::O_CLOEXEC,
                0o600,
            )
        };
        let (fd, created) = if fd >= 0 {
            (fd, true)
        } else {
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EEXIST) {
                return Err(format!("cannot create {description}: {e}"));
            }
            // SAFETY: as above.
            let fd = unsafe { libc::shm_open(cname.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC, 0) };
            if fd < 0 {
                let e = io::Error::last_os_error();
                if e.raw_os_error() == Some(libc::ENOENT) {
                    continue;
                }
                return Err(format!("cannot open {description}: {e}"));
            }
            (fd, false)
        };
        // SAFETY: fd is a new descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let mut shm = SharedMemory {
            fd,
            size,
            description,
            created,
            remove: created.then(|| Removal::ShmName {
                name: cname.clone(),
                path: Path::new("/dev/shm").join(bare),
            }),
        };
        set_size(&shm.fd, size, created).map_err(|e| format!("{}: {e}", shm.description))?;
        shm.size = size;
        return Ok(shm);
    }
    Err(format!("cannot open {description}: it keeps disappearing"))
}

fn create_in_dir(dir: &Path, size: u64) -> Result<SharedMemory, String> {
    let pid = sys::getpid();
    for n in 0..1000 {
        let path = dir.join(format!("ivshmem-server.{pid}.{n}"));
        match OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
        {
            Ok(file) => {
                let shm = SharedMemory {
                    fd: file.into(),
                    size,
                    description: format!("file {}", path.display()),
                    created: true,
                    remove: Some(Removal::File(path)),
                };
                set_size(&shm.fd, size, true).map_err(|e| {
                    let hint = if e.raw_os_error() == Some(libc::EINVAL) {
                        " (on hugetlbfs the size must be a multiple of the huge page size)"
                    } else {
                        ""
                    };
                    format!("{}: {e}{hint}", shm.description)
                })?;
                // `shm` is dropped (and the file removed) on the error path above.
                return Ok(shm);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(format!("cannot create a file in {}: {e}", dir.display())),
        }
    }
    Err(format!("cannot find a free file name in {}", dir.display()))
}

/// Sizes a newly created object, keeps one of the right size as it is, grows a smaller one and
/// refuses to shrink a larger one (guests may have it mapped: shrinking would crash them).
fn set_size(fd: &OwnedFd, size: u64, created: bool) -> io::Result<()> {
    let current = fs::File::from(fd.try_clone()?).metadata()?.len();
    if current == size && !created {
        crate::vlog!(
            "existing shared memory has the right size ({}): content kept",
            human(size)
        );
        return Ok(());
    }
    if current > size {
        return Err(io::Error::other(format!(
            "it exists with {} bytes, more than the {} requested; refusing to shrink it (guests \
             may have it mapped): remove it or ask for -l {}",
            current,
            size,
            human(current)
        )));
    }
    if current != 0 {
        crate::log!(
            "warning: growing existing shared memory from {} to {} bytes",
            current,
            size
        );
    }
    // SAFETY: plain system call on an owned descriptor.
    if unsafe { libc::ftruncate(fd.as_raw_fd(), size as libc::off_t) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
