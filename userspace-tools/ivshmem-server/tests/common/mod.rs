// SPDX-License-Identifier: GPL-2.0
//! Test harness: runs the real `ivshmem-server` binary with its own socket and shm name, and a
//! client that speaks the ivshmem protocol (recvmsg with SCM_RIGHTS). Every wait has a timeout.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::mem;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_ivshmem-server");
pub const TIMEOUT: Duration = Duration::from_secs(10);

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A name no other test (or test process) uses.
pub fn unique(tag: &str) -> String {
    format!(
        "ivs-test-{}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        tag
    )
}

/// A fresh temporary directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(unique(tag));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn shm_path(name: &str) -> PathBuf {
    Path::new("/dev/shm").join(name.trim_start_matches('/'))
}

/// Collects a child's stderr lines in the background.
#[derive(Clone, Default)]
pub struct Log(Arc<Mutex<Vec<String>>>);

impl Log {
    pub fn collect<R: Read + Send + 'static>(&self, r: R, echo: &'static str) {
        let lines = self.0.clone();
        thread::spawn(move || {
            for line in BufReader::new(r).lines() {
                let Ok(line) = line else { break };
                eprintln!("[{echo}] {line}");
                lines.lock().unwrap().push(line);
            }
        });
    }
    pub fn text(&self) -> String {
        self.0.lock().unwrap().join("\n")
    }
    pub fn count(&self, pat: &str) -> usize {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(pat))
            .count()
    }
    /// Waits until a line contains one of `pats`; returns that line.
    pub fn wait_for_any(&self, pats: &[&str]) -> String {
        let end = Instant::now() + TIMEOUT;
        loop {
            if let Some(l) = self
                .0
                .lock()
                .unwrap()
                .iter()
                .find(|l| pats.iter().any(|p| l.contains(p)))
            {
                return l.clone();
            }
            assert!(
                Instant::now() < end,
                "no log line with any of {pats:?} in time; log:\n{}",
                self.text()
            );
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits until a line contains every one of `pats`; returns that line.
    pub fn wait_for(&self, pats: &[&str]) -> String {
        let end = Instant::now() + TIMEOUT;
        loop {
            if let Some(l) = self
                .0
                .lock()
                .unwrap()
                .iter()
                .find(|l| pats.iter().all(|p| l.contains(p)))
            {
                return l.clone();
            }
            assert!(
                Instant::now() < end,
                "no log line with {pats:?} in time; log:\n{}",
                self.text()
            );
            thread::sleep(Duration::from_millis(10));
        }
    }
}

pub struct Server {
    pub child: Option<Child>,
    pub dir: TempDir,
    pub sock: PathBuf,
    pub shm_name: String,
    pub log: Log,
}

impl Server {
    /// `-F -v -S <dir>/sock -M <unique name>` plus `extra` (without `-M` if `extra` has `-m`).
    pub fn start(extra: &[&str]) -> Server {
        let s = Server::spawn(extra);
        s.log.wait_for(&["listening on"]);
        s
    }

    /// Like [`Server::start`] without waiting for it to listen.
    pub fn spawn(extra: &[&str]) -> Server {
        let dir = TempDir::new("srv");
        let sock = dir.path().join("sock");
        let shm_name = unique("shm");
        let mut args: Vec<String> = vec!["-F".into(), "-v".into(), "-S".into()];
        args.push(sock.to_str().unwrap().into());
        if !extra.contains(&"-m") {
            args.push("-M".into());
            args.push(shm_name.clone());
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut child = Command::new(BIN)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn ivshmem-server");
        let log = Log::default();
        log.collect(child.stderr.take().unwrap(), "server");
        Server {
            child: Some(child),
            dir,
            sock,
            shm_name,
            log,
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().unwrap().id() as i32
    }

    pub fn connect(&self) -> Client {
        Client::connect(&self.sock)
    }

    /// Sends `sig` and waits for the server to exit.
    pub fn stop(&mut self, sig: libc::c_int) -> ExitStatus {
        // SAFETY: plain system call on our own child.
        unsafe { libc::kill(self.pid(), sig) };
        let status = wait_timeout(self.child.as_mut().unwrap(), TIMEOUT)
            .unwrap_or_else(|| panic!("server did not exit; log:\n{}", self.log.text()));
        self.child = None;
        status
    }

    /// Waits for the server to exit on its own.
    pub fn wait_exit(&mut self) -> ExitStatus {
        let status = wait_timeout(self.child.as_mut().unwrap(), TIMEOUT)
            .unwrap_or_else(|| panic!("server did not exit; log:\n{}", self.log.text()));
        self.child = None;
        status
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_file(shm_path(&self.shm_name));
    }
}

pub fn wait_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let end = Instant::now() + timeout;
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return Some(s);
        }
        if Instant::now() >= end {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// Runs the server with `args` to completion (for bad options and start-up failures).
pub fn run_to_exit(args: &[&str]) -> (ExitStatus, String, String) {
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (out, err) = (Log::default(), Log::default());
    out.collect(child.stdout.take().unwrap(), "stdout");
    err.collect(child.stderr.take().unwrap(), "stderr");
    let status = wait_timeout(&mut child, TIMEOUT).expect("server exits");
    // Let the readers drain.
    thread::sleep(Duration::from_millis(50));
    (status, out.text(), err.text())
}

pub fn code(s: ExitStatus) -> Option<i32> {
    assert!(s.signal().is_none(), "killed by signal: {s:?}");
    s.code()
}

/// One message from the server: the number and the descriptor that came with it.
#[derive(Debug)]
pub struct Msg {
    pub value: i64,
    pub fd: Option<OwnedFd>,
}

pub struct Setup {
    pub id: i64,
    pub shm: OwnedFd,
    /// Our own eventfds, by vector: peers' writes to them interrupt us.
    pub own: Vec<OwnedFd>,
    /// The other peers' eventfds, by id then vector.
    pub peers: BTreeMap<i64, Vec<OwnedFd>>,
}

pub struct Client {
    pub sock: UnixStream,
}

impl Client {
    pub fn connect(path: &Path) -> Client {
        let sock = UnixStream::connect(path).expect("connect to the server");
        sock.set_read_timeout(Some(TIMEOUT)).unwrap();
        Client { sock }
    }

    /// The next message, `Err` on end of stream, timeout or a protocol error.
    pub fn try_recv(&self) -> io::Result<Msg> {
        let mut buf = [0u8; 8];
        let mut got = 0;
        let mut fds = Vec::new();
        while got < 8 {
            let mut iov = libc::iovec {
                iov_base: buf[got..].as_mut_ptr().cast(),
                iov_len: 8 - got,
            };
            let mut control = [0u64; 16];
            // SAFETY: zeroed msghdr is valid; buffers outlive the call.
            let mut msg: libc::msghdr = unsafe { mem::zeroed() };
            msg.msg_iov = &mut iov;
            msg.msg_iovlen = 1;
            msg.msg_control = control.as_mut_ptr().cast();
            msg.msg_controllen = mem::size_of_val(&control) as _;
            // SAFETY: as above.
            let n =
                unsafe { libc::recvmsg(self.sock.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: walking the control messages the kernel wrote into `control`.
            unsafe {
                let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
                while !cmsg.is_null() {
                    if (*cmsg).cmsg_level == libc::SOL_SOCKET
                        && (*cmsg).cmsg_type == libc::SCM_RIGHTS
                    {
                        let data = libc::CMSG_DATA(cmsg).cast::<libc::c_int>();
                        let count = ((*cmsg).cmsg_len as usize - (data as usize - cmsg as usize))
                            / mem::size_of::<libc::c_int>();
                        for i in 0..count {
                            fds.push(OwnedFd::from_raw_fd(data.add(i).read_unaligned()));
                        }
                    }
                    cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
                }
            }
            if msg.msg_flags & libc::MSG_CTRUNC != 0 {
                return Err(io::Error::other("control data truncated"));
            }
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("end of stream after {got} bytes"),
                ));
            }
            got += n as usize;
        }
        if fds.len() > 1 {
            return Err(io::Error::other(format!(
                "{} fds with one message",
                fds.len()
            )));
        }
        Ok(Msg {
            value: i64::from_le_bytes(buf),
            fd: fds.pop(),
        })
    }

    pub fn recv(&self) -> Msg {
        self.try_recv().expect("a message from the server")
    }

    /// Asserts that nothing arrives within `ms`. A wait a signal interrupted (`EINTR`, seen
    /// once under load) goes on for the rest of the time.
    pub fn expect_quiet(&self, ms: u64) {
        let deadline = std::time::Instant::now() + Duration::from_millis(ms);
        let r = loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                break Err(io::Error::from(io::ErrorKind::TimedOut));
            }
            self.sock.set_read_timeout(Some(left)).unwrap();
            match self.try_recv() {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                r => break r,
            }
        };
        self.sock.set_read_timeout(Some(TIMEOUT)).unwrap();
        match r {
            Err(e)
                if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::TimedOut => {
            }
            other => panic!("expected no message, got {other:?}"),
        }
    }

    /// Asserts that the server closed the connection (after any messages still queued).
    pub fn expect_eof(&self) -> usize {
        let mut skipped = 0;
        loop {
            match self.try_recv() {
                Ok(_) => skipped += 1,
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return skipped,
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return skipped,
                Err(e) => panic!("expected end of stream, got {e}"),
            }
        }
    }

    /// Reads the setup sequence for a server with `vectors` vectors, checking its order.
    pub fn setup(&self, vectors: usize) -> Setup {
        let m = self.recv();
        assert_eq!(
            (m.value, m.fd.is_some()),
            (0, false),
            "protocol version 0 without fd"
        );
        let m = self.recv();
        assert!(
            m.fd.is_none() && (0..=65535).contains(&m.value),
            "id: {m:?}"
        );
        let id = m.value;
        let m = self.recv();
        assert_eq!(m.value, -1, "shared memory message");
        let shm = m.fd.expect("shared memory fd");
        let mut own = Vec::new();
        let mut peers: BTreeMap<i64, Vec<OwnedFd>> = BTreeMap::new();
        while own.len() < vectors {
            let m = self.recv();
            let fd =
                m.fd.unwrap_or_else(|| panic!("setup message {} without fd", m.value));
            if m.value == id {
                own.push(fd);
            } else {
                assert!(
                    own.is_empty(),
                    "peer {} announced after own eventfds",
                    m.value
                );
                peers.entry(m.value).or_default().push(fd);
            }
        }
        for (p, fds) in &peers {
            assert_eq!(fds.len(), vectors, "peer {p}: one eventfd per vector");
        }
        Setup {
            id,
            shm,
            own,
            peers,
        }
    }

    /// Reads a connect notice for `id`: `vectors` messages with one fd each.
    pub fn expect_connect(&self, id: i64, vectors: usize) -> Vec<OwnedFd> {
        (0..vectors)
            .map(|v| {
                let m = self.recv();
                assert_eq!(m.value, id, "connect notice, vector {v}");
                m.fd.unwrap_or_else(|| panic!("connect notice for {id} without fd"))
            })
            .collect()
    }

    pub fn expect_disconnect(&self, id: i64) {
        let m = self.recv();
        assert_eq!(
            (m.value, m.fd.is_some()),
            (id, false),
            "disconnect notice for {id}"
        );
    }

    pub fn send_bytes(&mut self, b: &[u8]) {
        self.sock.write_all(b).unwrap();
    }
}

/// Rings a doorbell: adds 1 to the eventfd.
pub fn ring(fd: BorrowedFd<'_>) {
    let one = 1u64.to_ne_bytes();
    // SAFETY: writes 8 bytes from a local buffer.
    let n = unsafe { libc::write(fd.as_raw_fd(), one.as_ptr().cast(), 8) };
    assert_eq!(n, 8, "eventfd write: {}", io::Error::last_os_error());
}

/// Waits up to `ms` for the eventfd to be signalled; returns its counter (and resets it).
pub fn take(fd: BorrowedFd<'_>, ms: i32) -> Option<u64> {
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    let n = unsafe { libc::poll(&mut p, 1, ms) };
    if n != 1 {
        return None;
    }
    let mut buf = [0u8; 8];
    // SAFETY: reads 8 bytes into a local buffer.
    let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), 8) };
    assert_eq!(n, 8);
    Some(u64::from_ne_bytes(buf))
}

pub fn file_size(fd: BorrowedFd<'_>) -> u64 {
    std::fs::File::from(fd.try_clone_to_owned().unwrap())
        .metadata()
        .unwrap()
        .len()
}

/// A shared read-write mapping of a whole file.
pub struct Map {
    ptr: *mut u8,
    len: usize,
}

impl Map {
    pub fn new(fd: BorrowedFd<'_>) -> Map {
        let len = file_size(fd) as usize;
        // SAFETY: mapping a file we hold open, shared, at a kernel-chosen address.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        assert_ne!(
            ptr,
            libc::MAP_FAILED,
            "mmap: {}",
            io::Error::last_os_error()
        );
        Map {
            ptr: ptr.cast(),
            len,
        }
    }
    pub fn write(&self, off: usize, data: &[u8]) {
        assert!(off + data.len() <= self.len);
        // SAFETY: in bounds of the mapping; volatile because another mapping shares it.
        for (i, b) in data.iter().enumerate() {
            unsafe { self.ptr.add(off + i).write_volatile(*b) };
        }
    }
    pub fn read(&self, off: usize, len: usize) -> Vec<u8> {
        assert!(off + len <= self.len);
        // SAFETY: in bounds of the mapping.
        (0..len)
            .map(|i| unsafe { self.ptr.add(off + i).read_volatile() })
            .collect()
    }
}

impl Drop for Map {
    fn drop(&mut self) {
        // SAFETY: unmapping what `new` mapped.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

/// Creates a POSIX shm object of `size` bytes (for tests of existing objects).
pub fn create_shm(name: &str, size: u64) -> OwnedFd {
    let c = std::ffi::CString::new(format!("/{name}")).unwrap();
    // SAFETY: valid C string.
    let fd = unsafe {
        libc::shm_open(
            c.as_ptr(),
            libc::O_RDWR | libc::O_CREAT | libc::O_EXCL | libc::O_CLOEXEC,
            0o600,
        )
    };
    assert!(fd >= 0, "shm_open: {}", io::Error::last_os_error());
    // SAFETY: new descriptor.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: plain system call.
    assert_eq!(
        unsafe { libc::ftruncate(fd.as_raw_fd(), size as libc::off_t) },
        0
    );
    fd
}

/// Forks a process that connects to `path` and then sleeps until killed; returns its pid.
/// The child closes every inherited descriptor first (so it holds no other test's sockets)
/// and makes only async-signal-safe calls.
pub fn fork_connector(path: &Path) -> libc::pid_t {
    // SAFETY: sockaddr_un is plain data.
    let mut addr: libc::sockaddr_un = unsafe { mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let bytes = path.as_os_str().as_encoded_bytes();
    assert!(bytes.len() < addr.sun_path.len());
    for (d, s) in addr.sun_path.iter_mut().zip(bytes) {
        *d = *s as libc::c_char;
    }
    // SAFETY: after fork the child only makes raw system calls (close_range, socket, connect,
    // pause, _exit), all async-signal-safe, and never returns into Rust code.
    unsafe {
        let pid = libc::fork();
        assert!(pid >= 0, "fork");
        if pid == 0 {
            libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32);
            let s = libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0);
            if s < 0
                || libc::connect(
                    s,
                    std::ptr::addr_of!(addr).cast(),
                    mem::size_of::<libc::sockaddr_un>() as libc::socklen_t,
                ) != 0
            {
                libc::_exit(1);
            }
            loop {
                libc::pause();
            }
        }
        pid
    }
}

pub fn kill_and_reap(pid: libc::pid_t, sig: libc::c_int) {
    // SAFETY: our own child.
    unsafe {
        assert_eq!(libc::kill(pid, sig), 0);
        let mut status = 0;
        assert_eq!(libc::waitpid(pid, &mut status, 0), pid);
    }
}

pub fn fd_of(fd: &OwnedFd) -> BorrowedFd<'_> {
    fd.as_fd()
}
