// SPDX-License-Identifier: GPL-2.0
//! With real, unmodified QEMU (paused with -S: no guest kernel needed). Ignored by default
//! because it needs qemu-system-x86_64 and takes a few seconds:
//! `cargo test -p ivshmem-server --test qemu -- --ignored`.

mod common;

use common::*;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn readable(fd: BorrowedFd<'_>) -> bool {
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    unsafe { libc::poll(&mut p, 1, 0) == 1 }
}

struct Qemu {
    child: Child,
    log: Log,
}

impl Qemu {
    fn start(sock: &std::path::Path, vectors: u32) -> Qemu {
        let mut child = Command::new("qemu-system-x86_64")
            .args([
                "-accel",
                "tcg",
                "-m",
                "64",
                "-nodefaults",
                "-display",
                "none",
                "-S",
            ])
            .arg("-chardev")
            .arg(format!("socket,path={},id=ivs", sock.display()))
            .arg("-device")
            .arg(format!("ivshmem-doorbell,chardev=ivs,vectors={vectors}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn qemu-system-x86_64");
        let log = Log::default();
        log.collect(child.stderr.take().unwrap(), "qemu");
        Qemu { child, log }
    }
    fn pid(&self) -> u32 {
        self.child.id()
    }
    fn stop(&mut self, sig: libc::c_int) {
        // SAFETY: our own child.
        unsafe { libc::kill(self.child.id() as i32, sig) };
        wait_timeout(&mut self.child, TIMEOUT).expect("qemu exits");
    }
}

impl Drop for Qemu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
#[ignore = "needs qemu-system-x86_64; run with --ignored"]
fn two_qemus_connect_get_ids_0_and_1_and_a_killed_one_is_announced_and_replaced_under_a_new_id() {
    let srv = Server::start(&["-n", "2", "-l", "1M"]);
    let mut q0 = Qemu::start(&srv.sock, 2);
    srv.log
        .wait_for(&["peer 0 connected", &format!("pid {}", q0.pid())]);
    let mut q1 = Qemu::start(&srv.sock, 2);
    srv.log
        .wait_for(&["peer 1 connected", &format!("pid {}", q1.pid())]);

    // A protocol client next to them sees both with two eventfds each.
    let c = srv.connect();
    let sc = c.setup(2);
    assert_eq!(sc.id, 2);
    assert_eq!(sc.peers.keys().copied().collect::<Vec<_>>(), vec![0, 1]);

    // Each QEMU watches the eventfds it was given as its own interrupt sources: a doorbell rung
    // through our copies is consumed by it (the counter drops back to 0) even while paused.
    // (Our own eventfd, which nobody else reads, stays signalled: the check means something.)
    ring(sc.own[0].as_fd());
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(take(sc.own[0].as_fd(), 0), Some(1));
    for (peer, fds) in &sc.peers {
        for (v, fd) in fds.iter().enumerate() {
            assert!(!readable(fd.as_fd()), "peer {peer} vector {v} idle");
            ring(fd.as_fd());
            let end = Instant::now() + TIMEOUT;
            while readable(fd.as_fd()) {
                assert!(
                    Instant::now() < end,
                    "QEMU {peer} never consumed vector {v}"
                );
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }

    // QEMU 0 is killed outright: everybody is told, and the next QEMU gets a new id (3, after
    // our client's 2), not 0: QEMU 1, which saw 0 leave, would corrupt its heap on a connect
    // notice for 0.
    q0.stop(libc::SIGKILL);
    srv.log.wait_for(&[
        "peer 0 disconnected",
        &format!("pid {}", q0.pid()),
        "hung up",
    ]);
    c.expect_disconnect(0);
    let mut q2 = Qemu::start(&srv.sock, 2);
    srv.log
        .wait_for(&["peer 3 connected", &format!("pid {}", q2.pid())]);
    c.expect_connect(3, 2);
    // QEMU 1 took the connect notice and is still running.
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        q1.child.try_wait().unwrap().is_none(),
        "QEMU 1 died: {}",
        q1.log.text()
    );

    q1.stop(libc::SIGTERM);
    c.expect_disconnect(1);
    q2.stop(libc::SIGTERM);
    c.expect_disconnect(3);
    for (name, q) in [("q0", &q0), ("q1", &q1), ("q2", &q2)] {
        let text = q.log.text();
        assert!(!text.contains("ivshmem"), "{name} complained: {text}");
    }
}
