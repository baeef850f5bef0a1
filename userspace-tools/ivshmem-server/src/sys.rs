// SPDX-License-Identifier: GPL-2.0

//! Thin, safe wrappers over the few system calls std does not offer: sending one number with
//! one file descriptor (SCM_RIGHTS), eventfd, signalfd, poll, peer credentials, fork.

use std::io;
use std::mem;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::ptr;

fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Sends one protocol message: `value` as 8 little-endian bytes, with `fd` attached if given.
/// Never blocks and never raises SIGPIPE. Returns the number of bytes sent.
pub fn send_msg(sock: BorrowedFd<'_>, value: i64, fd: Option<BorrowedFd<'_>>) -> io::Result<usize> {
    let bytes = value.to_le_bytes();
    let mut iov = libc::iovec {
        iov_base: bytes.as_ptr() as *mut libc::c_void,
        iov_len: bytes.len(),
    };
    // u64 elements keep the buffer aligned for cmsghdr.
    let mut control = [0u64; 4];
    // SAFETY: msghdr is plain data; all-zero is a valid empty header.
    let mut msg: libc::msghdr = unsafe { mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if let Some(fd) = fd {
        let int = mem::size_of::<libc::c_int>() as u32;
        // SAFETY: CMSG_SPACE is arithmetic.
        let space = unsafe { libc::CMSG_SPACE(int) } as usize;
        assert!(space <= mem::size_of_val(&control));
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = space as _;
        // SAFETY: msg_control points at `space` zeroed, aligned bytes, enough for one cmsghdr
        // with one int, so CMSG_FIRSTHDR is non-null and CMSG_DATA lies inside the buffer.
        unsafe {
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = libc::CMSG_LEN(int) as _;
            ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::c_int>(), fd.as_raw_fd());
        }
    }
    // SAFETY: msg points at live buffers for the duration of the call.
    let n = unsafe {
        libc::sendmsg(
            sock.as_raw_fd(),
            &msg,
            libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// A new eventfd with counter 0 (blocking, close-on-exec, like QEMU's example server's).
pub fn eventfd() -> io::Result<OwnedFd> {
    // SAFETY: plain system call.
    let fd = cvt(unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) })?;
    // SAFETY: fd is a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Adds one to an eventfd's counter: an interrupt for the QEMU that polls it.
pub fn eventfd_signal(fd: BorrowedFd<'_>) -> io::Result<()> {
    let one = 1u64.to_ne_bytes();
    // SAFETY: writes 8 bytes from a live local buffer to a descriptor we borrow.
    let n = unsafe { libc::write(fd.as_raw_fd(), one.as_ptr().cast(), one.len()) };
    match n {
        8 => Ok(()),
        n if n < 0 => Err(io::Error::last_os_error()),
        n => Err(io::Error::other(format!(
            "short eventfd write ({n} of 8 bytes)"
        ))),
    }
}

/// Ignores SIGPIPE and blocks `signals` in this (single-threaded) process, so that they stay
/// pending until read from the signalfd that [`signalfd`] makes for them.
pub fn block_signals(signals: &[libc::c_int]) -> io::Result<()> {
    // SAFETY: sigset operations on a local set; SIG_IGN for SIGPIPE is always valid.
    unsafe {
        if libc::signal(libc::SIGPIPE, libc::SIG_IGN) == libc::SIG_ERR {
            return Err(io::Error::last_os_error());
        }
        let set = sigset(signals);
        cvt(libc::sigprocmask(libc::SIG_BLOCK, &set, ptr::null_mut()))?;
    }
    Ok(())
}

fn sigset(signals: &[libc::c_int]) -> libc::sigset_t {
    // SAFETY: sigemptyset initialises the set; sigaddset with valid signal numbers.
    unsafe {
        let mut set: libc::sigset_t = mem::zeroed();
        libc::sigemptyset(&mut set);
        for &s in signals {
            libc::sigaddset(&mut set, s);
        }
        set
    }
}

/// A non-blocking signalfd for `signals` (which must be blocked, see [`block_signals`]).
pub fn signalfd(signals: &[libc::c_int]) -> io::Result<OwnedFd> {
    let set = sigset(signals);
    // SAFETY: plain system call with a valid set.
    let fd = cvt(unsafe { libc::signalfd(-1, &set, libc::SFD_NONBLOCK | libc::SFD_CLOEXEC) })?;
    // SAFETY: fd is a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Reads one pending signal from a signalfd, if any.
pub fn read_signal(fd: BorrowedFd<'_>) -> io::Result<Option<libc::c_int>> {
    // SAFETY: signalfd_siginfo is plain data.
    let mut info: libc::signalfd_siginfo = unsafe { mem::zeroed() };
    let len = mem::size_of_val(&info);
    // SAFETY: reads at most `len` bytes into `info`.
    let n = unsafe { libc::read(fd.as_raw_fd(), ptr::addr_of_mut!(info).cast(), len) };
    if n < 0 {
        let e = io::Error::last_os_error();
        return match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(None),
            _ => Err(e),
        };
    }
    Ok((n as usize == len).then_some(info.ssi_signo as libc::c_int))
}

/// poll(2) over `fds`; `timeout_ms` < 0 waits for ever. EINTR is returned as an error.
pub fn poll(fds: &mut [libc::pollfd], timeout_ms: libc::c_int) -> io::Result<usize> {
    // SAFETY: fds is a valid slice of pollfd.
    let n = cvt(unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) })?;
    Ok(n as usize)
}

/// What a peek at one byte of a socket that poll reported readable or hung up says.
#[derive(Debug)]
pub enum Peek {
    /// The peer sent bytes (the protocol has none from the client).
    Data,
    /// Orderly end of stream.
    Eof,
    /// Nothing to read (the socket is not readable after all).
    Nothing,
    Error(io::Error),
}

pub fn peek(sock: BorrowedFd<'_>) -> Peek {
    let mut byte = 0u8;
    // SAFETY: reads at most one byte into `byte`.
    let n = unsafe {
        libc::recv(
            sock.as_raw_fd(),
            ptr::addr_of_mut!(byte).cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    match n {
        0 => Peek::Eof,
        n if n > 0 => Peek::Data,
        _ => {
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Peek::Nothing,
                _ => Peek::Error(e),
            }
        }
    }
}

/// The pid of the process at the other end of a UNIX socket (SO_PEERCRED), if known.
pub fn peer_pid(sock: BorrowedFd<'_>) -> Option<libc::pid_t> {
    // SAFETY: ucred is plain data; getsockopt writes at most `len` bytes.
    unsafe {
        let mut cred: libc::ucred = mem::zeroed();
        let mut len = mem::size_of::<libc::ucred>() as libc::socklen_t;
        let r = libc::getsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            ptr::addr_of_mut!(cred).cast(),
            &mut len,
        );
        (r == 0 && cred.pid > 0).then_some(cred.pid)
    }
}

/// Raises the soft limit on open files to the hard limit; returns the new soft limit.
pub fn raise_nofile_limit() -> io::Result<u64> {
    // SAFETY: rlimit is plain data; get/setrlimit on our own process.
    unsafe {
        let mut lim: libc::rlimit = mem::zeroed();
        cvt(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim))?;
        if lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            cvt(libc::setrlimit(libc::RLIMIT_NOFILE, &lim))?;
        }
        Ok(lim.rlim_cur as u64)
    }
}

/// `fork()`; `Ok(0)` in the child.
///
/// # Safety
/// Only to be called while the process has one thread.
pub unsafe fn fork() -> io::Result<libc::pid_t> {
    let pid = libc::fork();
    if pid < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(pid)
    }
}

/// Waits for the child `pid` to exit (retrying on EINTR); its status is not needed.
pub fn wait_pid(pid: libc::pid_t) {
    let mut status = 0;
    // SAFETY: plain system call on our own child.
    while unsafe { libc::waitpid(pid, &mut status, 0) } < 0
        && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted
    {}
}

pub fn setsid() -> io::Result<()> {
    // SAFETY: plain system call.
    cvt(unsafe { libc::setsid() }).map(drop)
}

/// A close-on-exec pipe: (read end, write end).
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: pipe2 writes two descriptors into `fds`.
    cvt(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    // SAFETY: both are new descriptors that nothing else owns.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Points `target` (0, 1 or 2) at `fd`.
pub fn dup2(fd: BorrowedFd<'_>, target: RawFd) -> io::Result<()> {
    // SAFETY: plain system call; `target` is one of the standard descriptors.
    cvt(unsafe { libc::dup2(fd.as_raw_fd(), target) }).map(drop)
}

/// Leaves the process at once, without running destructors or flushing anything.
pub fn exit_now(code: libc::c_int) -> ! {
    // SAFETY: _exit never returns and is always safe to call.
    unsafe { libc::_exit(code) }
}

pub fn getpid() -> libc::pid_t {
    // SAFETY: plain system call.
    unsafe { libc::getpid() }
}

/// (device, inode) of an open file, to recognise it later by path.
pub fn fd_identity(fd: BorrowedFd<'_>) -> io::Result<(u64, u64)> {
    // SAFETY: stat is plain data; fstat writes it.
    unsafe {
        let mut st: libc::stat = mem::zeroed();
        cvt(libc::fstat(fd.as_raw_fd(), &mut st))?;
        Ok((st.st_dev, st.st_ino))
    }
}
