// SPDX-License-Identifier: GPL-2.0
//! Start-up and shut-down: options, signals and clean-up, existing shared memory, `-m`, stale
//! and live sockets, daemon mode.

mod common;

use common::*;
use std::fs;
use std::os::fd::AsFd;
use std::os::unix::net::UnixListener;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

#[test]
fn bad_options_exit_nonzero_with_a_message() {
    for (args, want) in [
        (&["-x"][..], "unknown option '-x'"),
        (&["--nope"], "unknown option"),
        (
            &["-n", "0"],
            "number of vectors must be an integer from 1 to 64",
        ),
        (&["-n", "65"], "from 1 to 64"),
        (&["-l", "3M"], "power of two"),
        (&["-l", "lots"], "not a size"),
        (&["--max-clients", "0"], "number of clients"),
        (&["-S"], "needs a value"),
        (&["-M", "a/b"], "no '/'"),
        (&["-M", "x", "-m", "/tmp"], "exclude each other"),
        (&["extra"], "unexpected argument"),
    ] {
        let (status, out, err) = run_to_exit(args);
        assert_eq!(code(status), Some(2), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: stderr {err:?}");
        assert!(err.contains("Try 'ivshmem-server -h'"), "{args:?}: {err}");
        assert!(out.is_empty(), "{args:?}: stdout {out:?}");
    }
}

#[test]
fn help_exits_zero() {
    let (status, out, _) = run_to_exit(&["-h"]);
    assert_eq!(code(status), Some(0));
    assert!(out.contains("Usage: ivshmem-server"));
    assert!(out.contains("--max-clients"));
}

#[test]
fn start_up_failures_exit_one_and_leave_nothing_behind() {
    let dir = TempDir::new("fail");
    let shm = unique("shm");
    // The socket's directory does not exist: the shm object created first must be removed.
    let sock = dir.path().join("missing/sock");
    let (status, _, err) =
        run_to_exit(&["-F", "-S", sock.to_str().unwrap(), "-M", &shm, "-l", "64K"]);
    assert_eq!(code(status), Some(1), "{err}");
    assert!(err.contains("cannot listen on"), "{err}");
    assert!(!shm_path(&shm).exists(), "shm object left behind");

    // A directory for -m that does not exist.
    let sock = dir.path().join("sock");
    let (status, _, err) = run_to_exit(&[
        "-F",
        "-S",
        sock.to_str().unwrap(),
        "-m",
        dir.path().join("nope").to_str().unwrap(),
    ]);
    assert_eq!(code(status), Some(1), "{err}");
    assert!(err.contains("cannot create a file in"), "{err}");
    assert!(!sock.exists());

    // Something that is not a socket at the socket path is not replaced.
    fs::write(&sock, "keep me").unwrap();
    let (status, _, err) = run_to_exit(&["-F", "-S", sock.to_str().unwrap(), "-M", &shm]);
    assert_eq!(code(status), Some(1), "{err}");
    assert!(err.contains("not a socket"), "{err}");
    assert_eq!(fs::read_to_string(&sock).unwrap(), "keep me");
    assert!(!shm_path(&shm).exists(), "shm object left behind");
}

#[test]
fn sigterm_removes_socket_shm_and_pidfile() {
    let dir = TempDir::new("pid");
    let pidfile = dir.path().join("server.pid");
    let mut srv = Server::start(&["-p", pidfile.to_str().unwrap(), "-n", "2"]);
    assert_eq!(
        fs::read_to_string(&pidfile).unwrap(),
        format!("{}\n", srv.pid())
    );
    assert!(srv.sock.exists());
    assert!(shm_path(&srv.shm_name).exists());
    let a = srv.connect();
    let sa = a.setup(2);
    let b = srv.connect();
    let sb = b.setup(2);
    a.expect_connect(1, 2);

    let status = srv.stop(libc::SIGTERM);
    assert_eq!(code(status), Some(0), "{}", srv.log.text());
    assert!(!srv.sock.exists(), "socket left behind");
    assert!(!shm_path(&srv.shm_name).exists(), "shm object left behind");
    assert!(!pidfile.exists(), "pid file left behind");
    // The log reader thread may still hold the last lines when the server has exited.
    srv.log.wait_for_any(&["SIGTERM"]);
    // The clients see the end of the stream, without disconnect notices, and their doorbells
    // keep working (the spec's "clients can elect to continue").
    assert_eq!(a.expect_eof(), 0);
    assert_eq!(b.expect_eof(), 0);
    ring(sb.peers[&0][1].as_fd());
    assert_eq!(take(sa.own[1].as_fd(), 2000), Some(1));
}

#[test]
fn sigint_and_sighup_also_clean_up() {
    for sig in [libc::SIGINT, libc::SIGHUP] {
        let mut srv = Server::start(&[]);
        let a = srv.connect();
        a.setup(1);
        let status = srv.stop(sig);
        assert_eq!(code(status), Some(0), "signal {sig}: {}", srv.log.text());
        assert!(!srv.sock.exists(), "signal {sig}: socket left behind");
        assert!(
            !shm_path(&srv.shm_name).exists(),
            "signal {sig}: shm left behind"
        );
    }
}

#[test]
fn existing_shm_of_the_right_size_is_kept_as_it_is() {
    let name = unique("pre");
    let fd = create_shm(&name, 64 << 10);
    Map::new(fd.as_fd()).write(1000, b"precious");
    let mut srv = Server::start(&["-M", &name, "-l", "64K"]);
    let a = srv.connect();
    let sa = a.setup(1);
    assert_eq!(Map::new(sa.shm.as_fd()).read(1000, 8), b"precious");
    srv.log.wait_for(&["existing"]);
    assert_eq!(code(srv.stop(libc::SIGTERM)), Some(0));
    // Not created by the server, so not removed by it.
    assert!(
        shm_path(&name).exists(),
        "a pre-existing object was removed"
    );
    assert_eq!(Map::new(fd.as_fd()).read(1000, 8), b"precious");
    fs::remove_file(shm_path(&name)).unwrap();
}

#[test]
fn existing_shm_is_grown_but_never_shrunk() {
    let name = unique("grow");
    let fd = create_shm(&name, 64 << 10);
    Map::new(fd.as_fd()).write(0, b"kept");
    let mut srv = Server::start(&["-M", &name, "-l", "128K"]);
    srv.log.wait_for(&["growing existing shared memory"]);
    assert_eq!(file_size(fd.as_fd()), 128 << 10);
    assert_eq!(Map::new(fd.as_fd()).read(0, 4), b"kept");
    assert_eq!(code(srv.stop(libc::SIGTERM)), Some(0));

    let dir = TempDir::new("shrink");
    let sock = dir.path().join("sock");
    let (status, _, err) =
        run_to_exit(&["-F", "-S", sock.to_str().unwrap(), "-M", &name, "-l", "64K"]);
    assert_eq!(code(status), Some(1), "{err}");
    assert!(err.contains("refusing to shrink"), "{err}");
    assert_eq!(file_size(fd.as_fd()), 128 << 10);
    assert!(shm_path(&name).exists());
    fs::remove_file(shm_path(&name)).unwrap();
}

#[test]
fn shm_dir_creates_a_file_and_removes_it_on_exit() {
    let dir = TempDir::new("dir");
    let mut srv = Server::start(&["-m", dir.path().to_str().unwrap(), "-l", "1M", "-n", "2"]);
    let line = srv.log.wait_for(&["shared memory: file"]);
    let files: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(line.contains(files[0].to_str().unwrap()), "{line}");
    assert_eq!(fs::metadata(&files[0]).unwrap().len(), 1 << 20);
    let a = srv.connect();
    let sa = a.setup(2);
    let b = srv.connect();
    let sb = b.setup(2);
    Map::new(sa.shm.as_fd()).write(5, b"dir");
    assert_eq!(Map::new(sb.shm.as_fd()).read(5, 3), b"dir");
    assert_eq!(code(srv.stop(libc::SIGTERM)), Some(0));
    assert!(!files[0].exists(), "file left behind");
}

struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn stale_socket_is_replaced_and_a_live_one_refused() {
    // A socket file nobody listens on.
    let dir = TempDir::new("stale");
    let sock = dir.path().join("sock");
    drop(UnixListener::bind(&sock).unwrap());
    assert!(sock.exists());
    let shm = unique("stale");
    let child = Command::new(BIN)
        .args(["-F", "-v", "-S", sock.to_str().unwrap(), "-M", &shm])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = KillOnDrop(child);
    let child = &mut child.0;
    let log = Log::default();
    log.collect(child.stderr.take().unwrap(), "first");
    log.wait_for(&["replacing stale socket"]);
    log.wait_for(&["listening on"]);
    let a = Client::connect(&sock);
    a.setup(1);

    // A second server on the same path refuses, and the first one's clients hear nothing.
    let shm2 = unique("stale2");
    let (status, _, err) = run_to_exit(&["-F", "-S", sock.to_str().unwrap(), "-M", &shm2]);
    assert_eq!(code(status), Some(1), "{err}");
    assert!(err.contains("already listening"), "{err}");
    assert!(
        !shm_path(&shm2).exists(),
        "the refused server left its shm object"
    );
    // The same through a symlinked directory: not found by name in /proc/net/unix, so the
    // refused server probes with a connection, which the first one recognises and ignores.
    let link = dir.path().join("link");
    std::os::unix::fs::symlink(dir.path(), &link).unwrap();
    let (status, _, err) =
        run_to_exit(&["-F", "-S", link.join("sock").to_str().unwrap(), "-M", &shm2]);
    assert_eq!(code(status), Some(1), "{err}");
    assert!(err.contains("already listening"), "{err}");
    // (If the probe is already closed when the first server gets to it, it is dropped as such.)
    log.wait_for_any(&["liveness probe", "closed before setup"]);
    a.expect_quiet(200);
    let b = Client::connect(&sock);
    assert_eq!(b.setup(1).id, 1, "the first server still serves");

    // SAFETY: our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert_eq!(code(wait_timeout(child, TIMEOUT).unwrap()), Some(0));
    assert!(!sock.exists());
    assert!(!shm_path(&shm).exists());
}

#[test]
fn daemon_mode_detaches_once_ready_and_cleans_up_on_sigterm() {
    let dir = TempDir::new("daemon");
    let sock = dir.path().join("sock");
    let pidfile = dir.path().join("pid");
    let logfile = dir.path().join("log");
    let shm = unique("daemon");
    // Orphans of this process (the daemon, once its launcher exits) become its children, so
    // the test can collect the daemon's exit status.
    // SAFETY: plain prctl on this process.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1) };
    let start = Instant::now();
    let mut launcher = Command::new(BIN)
        .args([
            "-v",
            "-S",
            sock.to_str().unwrap(),
            "-M",
            &shm,
            "-p",
            pidfile.to_str().unwrap(),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(&logfile).unwrap())
        .spawn()
        .unwrap();
    let launcher_pid = launcher.id() as i32;
    let status = wait_timeout(&mut launcher, TIMEOUT).expect("the launcher exits");
    assert_eq!(
        code(status),
        Some(0),
        "{}",
        fs::read_to_string(&logfile).unwrap()
    );
    // Ready when the launcher returns: the socket and pid file are there already.
    assert!(
        sock.exists() && pidfile.exists(),
        "not ready when the launcher exited"
    );
    let pid: i32 = fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_ne!(pid, launcher_pid, "the daemon is a new process");
    struct Reaper(i32);
    impl Drop for Reaper {
        fn drop(&mut self) {
            // SAFETY: signalling the daemon this test started.
            unsafe { libc::kill(self.0, libc::SIGKILL) };
        }
    }
    let reaper = Reaper(pid);
    // SAFETY: probing a pid.
    assert_eq!(unsafe { libc::kill(pid, 0) }, 0, "daemon alive");
    let a = Client::connect(&sock);
    assert_eq!(a.setup(1).id, 0);

    // SAFETY: signalling the daemon this test started.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let end = Instant::now() + TIMEOUT;
    while sock.exists() || pidfile.exists() || shm_path(&shm).exists() {
        assert!(Instant::now() < end, "daemon did not clean up");
        thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(a.expect_eof(), 0);
    std::mem::forget(reaper);
    let end = Instant::now() + TIMEOUT;
    let mut status = 0;
    // SAFETY: waiting for the daemon, which is this process's child now (subreaper).
    while unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) } == 0 {
        assert!(Instant::now() < end, "daemon did not exit");
        thread::sleep(Duration::from_millis(10));
    }
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "daemon exit status {status:#x}"
    );
    let log = fs::read_to_string(&logfile).unwrap();
    assert!(
        log.contains("peer 0 connected") && log.contains("SIGTERM"),
        "{log}"
    );
    assert!(start.elapsed() < TIMEOUT);
}

#[test]
fn daemon_that_fails_after_forking_makes_the_launcher_fail() {
    let dir = TempDir::new("dfail");
    let sock = dir.path().join("sock");
    let shm = unique("dfail");
    let bad_pidfile = dir.path().join("no/such/dir/pid");
    let (status, _, err) = run_to_exit(&[
        "-S",
        sock.to_str().unwrap(),
        "-M",
        &shm,
        "-p",
        bad_pidfile.to_str().unwrap(),
    ]);
    assert_eq!(code(status), Some(1), "{err}");
    assert!(err.contains("cannot write pid file"), "{err}");
    // The daemon cleans up after itself; give it a moment to finish.
    let end = Instant::now() + TIMEOUT;
    while sock.exists() || shm_path(&shm).exists() {
        assert!(Instant::now() < end, "failed daemon left files behind");
        thread::sleep(Duration::from_millis(10));
    }
}
