// SPDX-License-Identifier: GPL-2.0

//! ivshmem-server: a server for QEMU's `ivshmem-doorbell` device, compatible with QEMU's
//! example server (contrib/ivshmem-server, which Debian does not ship) and its protocol
//! (docs/specs/ivshmem-spec.rst).
//!
//! ```text
//! ivshmem-server -F -S /tmp/ivshmem_socket -M ivshmem -l 4M -n 2
//! qemu-system-x86_64 ... -chardev socket,path=/tmp/ivshmem_socket,id=ivs \
//!                        -device ivshmem-doorbell,chardev=ivs,vectors=2
//! ```
//!
//! Start-up order: options, signals blocked (so a SIGTERM during start-up is handled by the
//! loop), shared memory, socket, then (without `-F`) the daemon forks and the parent exits 0 once
//! the child is ready, or 1 if it failed. So `ivshmem-server -S s ... && qemu ...` is race-free.

mod cli;
mod departures;
mod server;
mod shm;
mod sys;

use cli::{human, Command, Options, ShmSource};
use departures::Departures;
use server::{Config, Exit, Server};
use shm::SharedMemory;
use std::fs;
use std::io::{self, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};

static VERBOSE: AtomicBool = AtomicBool::new(false);

pub fn log_line(args: std::fmt::Arguments<'_>) {
    // Write errors (stderr closed, a daemon's terminal gone) are ignored.
    let _ = writeln!(io::stderr().lock(), "ivshmem-server: {args}");
}

pub fn verbose() -> bool {
    VERBOSE.load(Ordering::Relaxed)
}

#[macro_export]
macro_rules! log {
    ($($t:tt)*) => { $crate::log_line(format_args!($($t)*)) };
}

#[macro_export]
macro_rules! vlog {
    ($($t:tt)*) => { if $crate::verbose() { $crate::log_line(format_args!($($t)*)) } };
}

const STOP_SIGNALS: [libc::c_int; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

fn main() -> ExitCode {
    let args: Vec<String> = match std::env::args_os()
        .skip(1)
        .map(|a| a.into_string())
        .collect::<Result<_, _>>()
    {
        Ok(a) => a,
        Err(a) => return usage_error(&format!("argument {a:?} is not valid UTF-8")),
    };
    let opts = match cli::parse_args(args) {
        Ok(Command::Help) => {
            print!("{}", cli::usage());
            return ExitCode::SUCCESS;
        }
        Ok(Command::Run(o)) => o,
        Err(e) => return usage_error(&e),
    };
    VERBOSE.store(opts.verbose, Ordering::Relaxed);
    // The error is logged before the resources go (and before a daemon's launcher is told).
    let mut res = Resources {
        pidfile: None,
        socket: None,
        shm: None,
        ready: None,
    };
    let code = match run(opts, &mut res) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log!("error: {e}");
            ExitCode::from(1)
        }
    };
    drop(res);
    code
}

fn usage_error(msg: &str) -> ExitCode {
    let _ = writeln!(
        io::stderr(),
        "ivshmem-server: {msg}\nTry 'ivshmem-server -h' for more information."
    );
    ExitCode::from(2)
}

/// What is removed on exit, in reverse order of creation (fields drop in declaration order).
struct Resources {
    pidfile: Option<PidFile>,
    socket: Option<SocketFile>,
    shm: Option<SharedMemory>,
    /// A daemon's pipe to its launcher: closing it without writing means "failed".
    ready: Option<OwnedFd>,
}

fn run(mut opts: Options, res: &mut Resources) -> Result<(), String> {
    sys::block_signals(&STOP_SIGNALS).map_err(|e| format!("cannot set up signals: {e}"))?;
    // Paths are made absolute: the daemon changes to / and removes them on exit.
    let cwd =
        std::env::current_dir().map_err(|e| format!("cannot get the current directory: {e}"))?;
    opts.socket_path = cwd.join(&opts.socket_path);
    opts.pidfile = opts.pidfile.map(|p| cwd.join(p));
    if let ShmSource::Dir(d) = &opts.shm {
        opts.shm = ShmSource::Dir(cwd.join(d));
    }
    if opts.socket_path.as_os_str().len() > 107 {
        return Err(format!(
            "socket path {} is too long for a UNIX socket (at most 107 bytes)",
            opts.socket_path.display()
        ));
    }

    check_fd_budget(&opts);

    let shm = SharedMemory::open(&opts.shm, opts.size)?;
    log!(
        "shared memory: {} ({}, {})",
        shm.description,
        human(shm.size),
        if shm.created { "created" } else { "existing" }
    );
    let shm = res.shm.insert(shm);
    let shm_fd = shm.fd.try_clone().map_err(|e| format!("dup: {e}"))?;
    let departures = Departures::new(&shm.fd, shm.size)?;

    let (listener, socket) = bind(&opts.socket_path)?;
    res.socket = Some(socket);

    if !opts.foreground {
        res.ready = Some(daemonize()?);
    }

    if let Some(path) = &opts.pidfile {
        res.pidfile = Some(PidFile::write(path)?);
    }
    let signals = sys::signalfd(&STOP_SIGNALS).map_err(|e| format!("signalfd: {e}"))?;

    log!(
        "listening on {} ({} vector(s) per client, at most {} client(s) at once, pid {})",
        opts.socket_path.display(),
        opts.vectors,
        opts.max_clients,
        sys::getpid()
    );
    if let Some(w) = res.ready.take() {
        // The parent exits 0 when it reads this byte.
        let _ = fs::File::from(w).write_all(b"1");
    }

    let mut server = Server::new(
        Config {
            vectors: opts.vectors,
            max_clients: opts.max_clients,
        },
        listener,
        shm_fd,
        signals,
        departures,
    );
    let result = match server.run() {
        Exit::Signal(sig) => {
            log!(
                "{}: shutting down, closing {} connection(s)",
                signal_name(sig),
                server.connected()
            );
            Ok(())
        }
        Exit::Error(e) => Err(format!("event loop: {e}")),
    };
    // Client connections close here, before the files go.
    drop(server);
    result
}

fn signal_name(sig: libc::c_int) -> String {
    match sig {
        libc::SIGINT => "SIGINT".into(),
        libc::SIGTERM => "SIGTERM".into(),
        libc::SIGHUP => "SIGHUP".into(),
        s => format!("signal {s}"),
    }
}

/// Warns when the open-file limit cannot hold a full house: an eventfd per vector and a socket
/// per client. Clients beyond the limit are refused, not fatal.
fn check_fd_budget(opts: &Options) {
    let need = u64::from(opts.max_clients) * (u64::from(opts.vectors) + 1) + 32;
    match sys::raise_nofile_limit() {
        Ok(limit) if limit < need => log!(
            "warning: the open-file limit ({limit}) is below what {} clients with {} vector(s) \
             need ({need}); connections beyond it will be refused",
            opts.max_clients,
            opts.vectors
        ),
        Ok(_) => {}
        Err(e) => log!("warning: cannot read the open-file limit: {e}"),
    }
}

/// The socket file, removed on exit if it still is the one this server bound.
struct SocketFile {
    path: PathBuf,
    id: (u64, u64),
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        match fs::symlink_metadata(&self.path) {
            Ok(md) if (md.dev(), md.ino()) == self.id => match fs::remove_file(&self.path) {
                Ok(()) => vlog!("removed socket {}", self.path.display()),
                Err(e) => log!("cannot remove socket {}: {e}", self.path.display()),
            },
            Ok(_) => log!(
                "left {} alone: it is not the socket this server bound",
                self.path.display()
            ),
            Err(_) => {}
        }
    }
}

/// Binds `path`. A socket file nobody listens on is replaced; a live one, or anything that is
/// not a socket, is an error.
fn bind(path: &Path) -> Result<(UnixListener, SocketFile), String> {
    match fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("{}: {e}", path.display())),
        Ok(md) if !md.file_type().is_socket() => {
            return Err(format!(
                "{} exists and is not a socket; refusing to replace it",
                path.display()
            ))
        }
        // A listening socket is looked up in /proc/net/unix first, which has no side effect;
        // only if it is not found there (another network namespace, a relative bind path, an
        // entry skipped while sockets come and go) is it probed with a connection. This server
        // recognises such probes (the peer's comm is ivshmem-server) and gives them no id;
        // other servers would announce a short-lived peer.
        Ok(_) if listening_in_proc(path) => {
            return Err(format!(
                "a server is already listening on {}",
                path.display()
            ))
        }
        Ok(_) => match UnixStream::connect(path) {
            Ok(_) => {
                return Err(format!(
                    "a server is already listening on {}",
                    path.display()
                ))
            }
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                log!(
                    "replacing stale socket {} (nobody listening)",
                    path.display()
                );
                fs::remove_file(path)
                    .map_err(|e| format!("cannot remove stale socket {}: {e}", path.display()))?;
            }
            Err(e) => {
                return Err(format!(
                    "{} exists and cannot be checked: {e}",
                    path.display()
                ))
            }
        },
    }
    let listener = UnixListener::bind(path)
        .map_err(|e| format!("cannot listen on {}: {e}", path.display()))?;
    let md = fs::symlink_metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok((
        listener,
        SocketFile {
            path: path.to_path_buf(),
            id: (md.dev(), md.ino()),
        },
    ))
}

/// Whether /proc/net/unix lists a listening socket bound to `path` (absolute).
fn listening_in_proc(path: &Path) -> bool {
    const SO_ACCEPTCON: u32 = 1 << 16;
    let Ok(table) = fs::read_to_string("/proc/net/unix") else {
        return false;
    };
    let want = path.as_os_str().to_string_lossy();
    table.lines().skip(1).any(|line| {
        // Num RefCount Protocol Flags Type St Inode Path
        let mut fields = line.split_whitespace();
        let flags = fields.nth(3).and_then(|f| u32::from_str_radix(f, 16).ok());
        let path = fields
            .nth(3)
            .map(|first| fields.fold(first.to_string(), |acc, part| acc + " " + part));
        flags.is_some_and(|f| f & SO_ACCEPTCON != 0) && path.as_deref() == Some(&*want)
    })
}

struct PidFile(PathBuf);

impl PidFile {
    fn write(path: &Path) -> Result<PidFile, String> {
        fs::write(path, format!("{}\n", sys::getpid()))
            .map_err(|e| format!("cannot write pid file {}: {e}", path.display()))?;
        Ok(PidFile(path.to_path_buf()))
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        // Only if it still names this process.
        let mine = format!("{}\n", sys::getpid());
        if fs::read_to_string(&self.0).is_ok_and(|s| s == mine) {
            let _ = fs::remove_file(&self.0);
        }
    }
}

/// Detaches: fork, setsid, fork. The original process waits until the daemon writes a byte to
/// the returned pipe (ready: exit 0) or closes it without one (failed: exit 1, the daemon has
/// logged why). Runs while the process has one thread.
fn daemonize() -> Result<OwnedFd, String> {
    let (r, w) = sys::pipe().map_err(|e| format!("pipe: {e}"))?;
    let _ = io::stderr().flush();
    // SAFETY: the process is single-threaded here.
    match unsafe { sys::fork() }.map_err(|e| format!("cannot daemonize: fork: {e}"))? {
        0 => {}
        child => {
            // The parent: the resources belong to the daemon now; leave without touching them.
            drop(w);
            // The intermediate process exits at once; reap it.
            sys::wait_pid(child);
            let mut byte = [0u8; 1];
            let ok = matches!(io::Read::read(&mut fs::File::from(r), &mut byte), Ok(1));
            sys::exit_now(if ok { 0 } else { 1 });
        }
    }
    drop(r);
    sys::setsid().map_err(|e| format!("setsid: {e}"))?;
    // SAFETY: still single-threaded.
    match unsafe { sys::fork() } {
        Ok(0) => {}
        Ok(_) => sys::exit_now(0),
        // Nothing was handed over yet: the resources are still this process's to clean up.
        Err(e) => return Err(format!("cannot daemonize: fork: {e}")),
    }
    let _ = std::env::set_current_dir("/");
    if let Ok(null) = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        let _ = sys::dup2(null.as_fd(), 0);
        let _ = sys::dup2(null.as_fd(), 1);
    }
    Ok(w)
}
