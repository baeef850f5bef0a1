// SPDX-License-Identifier: GPL-2.0
//! The ivshmem protocol as clients see it: setup sequence, connect and disconnect notices,
//! shared eventfds and memory, id allocation (never the id of a client that just left: QEMU's
//! ivshmem device cannot take one back), and clients that die or misbehave.

mod common;

use common::*;
use std::collections::BTreeMap;
use std::os::fd::AsFd;

#[test]
fn first_client_gets_version_id_shm_then_own_eventfds() {
    let srv = Server::start(&["-n", "3", "-l", "64K"]);
    let c = srv.connect();
    let m = c.recv();
    assert_eq!((m.value, m.fd.is_none()), (0, true), "version 0, no fd");
    let m = c.recv();
    assert_eq!((m.value, m.fd.is_none()), (0, true), "first id is 0, no fd");
    let m = c.recv();
    assert_eq!(m.value, -1);
    let shm = m.fd.expect("shm fd with -1");
    assert_eq!(file_size(shm.as_fd()), 64 << 10);
    for v in 0..3 {
        let m = c.recv();
        assert_eq!(m.value, 0, "own id for vector {v}");
        assert!(m.fd.is_some(), "own eventfd for vector {v}");
    }
    c.expect_quiet(200);
    // The object is the named one.
    let md = std::fs::metadata(shm_path(&srv.shm_name)).unwrap();
    assert_eq!(md.len(), 64 << 10);
    srv.log.wait_for(&["peer 0 connected"]);
}

#[test]
fn second_client_gets_first_eventfds_and_first_gets_connect_notice() {
    let srv = Server::start(&["-n", "2"]);
    let a = srv.connect();
    let sa = a.setup(2);
    assert_eq!(sa.id, 0);
    assert!(sa.peers.is_empty());
    let b = srv.connect();
    let sb = b.setup(2);
    assert_eq!(sb.id, 1);
    assert_eq!(sb.peers.keys().copied().collect::<Vec<_>>(), vec![0]);
    let a_for_b = a.expect_connect(1, 2);
    a.expect_quiet(100);
    b.expect_quiet(100);

    // The eventfds are the same objects: a doorbell rung through a copy is seen on the owner's.
    for (v, a_to_b) in a_for_b.iter().enumerate() {
        ring(a_to_b.as_fd());
        assert_eq!(take(sb.own[v].as_fd(), 2000), Some(1), "B vector {v}");
        assert_eq!(take(sb.own[1 - v].as_fd(), 0), None, "only vector {v}");
        ring(sb.peers[&0][v].as_fd());
        assert_eq!(take(sa.own[v].as_fd(), 2000), Some(1), "A vector {v}");
        assert_eq!(take(sa.own[1 - v].as_fd(), 0), None, "only vector {v}");
    }
    // And the shared memory is shared.
    let (ma, mb) = (Map::new(sa.shm.as_fd()), Map::new(sb.shm.as_fd()));
    ma.write(4096, b"hello from A");
    assert_eq!(mb.read(4096, 12), b"hello from A");
}

#[test]
fn abruptly_closed_client_is_announced_and_replaced_under_a_new_id() {
    let srv = Server::start(&["-n", "1"]);
    let a = srv.connect();
    let sa = a.setup(1);
    let b = srv.connect();
    let sb = b.setup(1);
    let c = srv.connect();
    let sc = c.setup(1);
    assert_eq!((sa.id, sb.id, sc.id), (0, 1, 2));
    a.expect_connect(1, 1);
    a.expect_connect(2, 1);
    b.expect_connect(2, 1);

    drop(b);
    drop(sb);
    a.expect_disconnect(1);
    c.expect_disconnect(1);
    srv.log.wait_for(&["peer 1 disconnected", "hung up"]);

    let d = srv.connect();
    let sd = d.setup(1);
    assert_eq!(sd.id, 3, "a new id, not the departed client's 1");
    assert_eq!(sd.peers.keys().copied().collect::<Vec<_>>(), vec![0, 2]);
    let a_for_d = a.expect_connect(3, 1);
    c.expect_connect(3, 1);
    ring(a_for_d[0].as_fd());
    assert_eq!(take(sd.own[0].as_fd(), 2000), Some(1));
}

#[test]
fn replacement_of_a_departed_client_gets_the_next_id() {
    let srv = Server::start(&[]);
    let a = srv.connect();
    assert_eq!(a.setup(1).id, 0);
    let b = srv.connect();
    assert_eq!(b.setup(1).id, 1);
    a.expect_connect(1, 1);
    drop(b);
    a.expect_disconnect(1);
    let c = srv.connect();
    assert_eq!(c.setup(1).id, 2, "not 1 again");
    a.expect_connect(2, 1);
}

#[test]
fn ids_continue_from_the_cursor_after_clients_leave() {
    let srv = Server::start(&[]);
    let clients: Vec<_> = (0..3).map(|_| srv.connect()).collect();
    let ids: Vec<i64> = clients.iter().map(|c| c.setup(1).id).collect();
    assert_eq!(ids, vec![0, 1, 2]);
    let mut clients = clients.into_iter();
    let (c0, c1, c2) = (
        clients.next().unwrap(),
        clients.next().unwrap(),
        clients.next().unwrap(),
    );
    c0.expect_connect(1, 1);
    c0.expect_connect(2, 1);
    c1.expect_connect(2, 1);
    // The last and the first leave: neither id comes back, the count goes on.
    drop(c2);
    c1.expect_disconnect(2);
    drop(c0);
    c1.expect_disconnect(0);
    let n = srv.connect();
    let sn = n.setup(1);
    assert_eq!(sn.id, 3);
    assert_eq!(sn.peers.keys().copied().collect::<Vec<_>>(), vec![1]);
    let m = srv.connect();
    assert_eq!(m.setup(1).id, 4);
    // Everybody leaves: still no reuse.
    drop((c1, n, m));
    srv.log.wait_for(&["peer 4 disconnected"]);
    srv.log.wait_for(&["peer 3 disconnected"]);
    srv.log.wait_for(&["peer 1 disconnected"]);
    let z = srv.connect();
    let sz = z.setup(1);
    assert_eq!(sz.id, 5);
    assert!(sz.peers.is_empty());
    z.expect_quiet(50);
}

#[test]
fn killed_client_process_is_announced_and_its_id_not_reused() {
    let srv = Server::start(&["-n", "2"]);
    let a = srv.connect();
    assert_eq!(a.setup(2).id, 0);
    let pid = fork_connector(&srv.sock);
    a.expect_connect(1, 2);
    srv.log
        .wait_for(&["peer 1 connected", &format!("pid {pid}")]);
    kill_and_reap(pid, libc::SIGKILL);
    a.expect_disconnect(1);
    srv.log
        .wait_for(&["peer 1 disconnected", &format!("pid {pid}")]);
    let b = srv.connect();
    let sb = b.setup(2);
    assert_eq!(sb.id, 2, "a new id, not the killed client's 1");
    assert_eq!(sb.peers.len(), 1);
    a.expect_connect(2, 2);
}

#[test]
fn client_that_sends_data_is_dropped() {
    let srv = Server::start(&[]);
    let a = srv.connect();
    a.setup(1);
    let mut b = srv.connect();
    assert_eq!(b.setup(1).id, 1);
    a.expect_connect(1, 1);
    b.send_bytes(b"not part of the protocol");
    a.expect_disconnect(1);
    assert_eq!(b.expect_eof(), 0, "nothing more for the dropped client");
    srv.log.wait_for(&["peer 1 disconnected", "sent data"]);
    // The server is fine: the next client gets id 2.
    let c = srv.connect();
    assert_eq!(c.setup(1).id, 2);
    a.expect_connect(2, 1);
}

#[test]
fn client_that_sends_data_during_setup_is_dropped() {
    let srv = Server::start(&["-n", "4"]);
    let a = srv.connect();
    a.setup(4);
    // Writes before reading anything, then waits for the server to hang up.
    let mut b = srv.connect();
    b.send_bytes(&[0xff; 64]);
    b.expect_eof();
    // Whether `a` heard of it depends on whether the server saw the bytes before setting the
    // connection up; either way the books balance and the server keeps serving.
    srv.log.wait_for(&["sent data"]);
    // If it was set up it had id 1, and the next one is 2.
    let want = if srv.log.count("peer 1 connected") > 0 {
        a.expect_connect(1, 4);
        a.expect_disconnect(1);
        2
    } else {
        1
    };
    let c = srv.connect();
    let sc = c.setup(4);
    assert_eq!(sc.id, want);
    assert_eq!(sc.peers.keys().copied().collect::<Vec<_>>(), vec![0]);
}

#[test]
fn five_clients_all_ring_each_other() {
    const N: usize = 5;
    const V: usize = 2;
    let srv = Server::start(&["-n", "2"]);
    let clients: Vec<Client> = (0..N).map(|_| srv.connect()).collect();
    let mut setups = Vec::new();
    for (i, c) in clients.iter().enumerate() {
        let s = c.setup(V);
        assert_eq!(s.id, i as i64);
        assert_eq!(
            s.peers.keys().copied().collect::<Vec<_>>(),
            (0..i as i64).collect::<Vec<_>>()
        );
        setups.push(s);
    }
    // Each learns of the later ones by connect notices.
    for (i, c) in clients.iter().enumerate() {
        for j in i + 1..N {
            let fds = c.expect_connect(j as i64, V);
            setups[i].peers.insert(j as i64, fds);
        }
        c.expect_quiet(50);
    }
    for i in 0..N {
        for j in 0..N {
            if i == j {
                continue;
            }
            for v in 0..V {
                ring(setups[i].peers[&(j as i64)][v].as_fd());
                assert_eq!(
                    take(setups[j].own[v].as_fd(), 2000),
                    Some(1),
                    "{i} -> {j} vector {v}"
                );
            }
        }
    }
    // Nothing rang twice.
    for s in &setups {
        for fd in &s.own {
            assert_eq!(take(fd.as_fd(), 0), None);
        }
    }
}

#[test]
fn max_clients_refuses_extra_connections_until_one_leaves() {
    let srv = Server::start(&["--max-clients", "2"]);
    let a = srv.connect();
    a.setup(1);
    let b = srv.connect();
    b.setup(1);
    a.expect_connect(1, 1);
    let c = srv.connect();
    assert_eq!(c.expect_eof(), 0, "a refused client gets nothing");
    srv.log.wait_for(&[
        "refusing a connection",
        "2 clients connected",
        "--max-clients",
    ]);
    a.expect_quiet(100);
    drop(a);
    b.expect_disconnect(0);
    // The freed place goes to a new id; the refused client took none.
    let d = srv.connect();
    assert_eq!(d.setup(1).id, 2);
    b.expect_connect(2, 1);
}

/// A client that never reads must not hold up the others; once its backlog passes the bound
/// it is disconnected and the others are told.
#[test]
fn stalled_client_does_not_block_others_and_is_dropped() {
    // Limit for 4 clients x 64 vectors: 3 + 2*256 + 4 + 256 = 775 queued messages.
    let srv = Server::start(&["-n", "64", "--max-clients", "4"]);
    let stalled = srv.connect();
    srv.log.wait_for(&["peer 0 connected"]);
    let watcher = srv.connect();
    let sw = watcher.setup(64);
    assert_eq!(sw.id, 1);
    let mut dropped_after = None;
    for round in 0..60 {
        let y = srv.connect();
        let sy = y.setup(64);
        // A new id every round (the stalled client holds 0 and the watcher 1).
        assert_eq!(sy.id, 2 + round, "round {round}");
        drop(y);
        // The watcher hears about every round promptly, and of the stalled one's end.
        let mut fds = 0;
        loop {
            let m = watcher.recv();
            match (m.value, m.fd.is_some()) {
                (id, true) if id == sy.id => fds += 1,
                (id, false) if id == sy.id => break,
                (0, false) => dropped_after = Some(round),
                other => panic!("round {round}: unexpected message {other:?}"),
            }
        }
        assert_eq!(fds, 64, "round {round}");
        if dropped_after.is_some() {
            break;
        }
    }
    let round = dropped_after
        .unwrap_or_else(|| panic!("stalled client never dropped:\n{}", srv.log.text()));
    eprintln!("stalled client dropped in round {round}");
    assert!(
        round >= 5,
        "dropped too early (round {round}): the kernel buffer alone holds more"
    );
    srv.log.wait_for(&["peer 0 disconnected", "not reading"]);
    // What it did get is a well-formed prefix, then the end.
    let m = stalled.recv();
    assert_eq!(m.value, 0);
    let skipped = stalled.expect_eof();
    assert!(skipped > 100, "it got {skipped} more messages");
}

/// A burst far larger than a socket buffer (about 800 messages with 64 vectors) arrives
/// complete and in order at clients that read only after everybody connected.
#[test]
fn large_setup_bursts_are_delivered_to_slow_readers() {
    const N: usize = 12;
    const V: usize = 64;
    let srv = Server::start(&["-n", "64"]);
    let clients: Vec<Client> = (0..N).map(|_| srv.connect()).collect();
    srv.log.wait_for(&[&format!("peer {} connected", N - 1)]);
    let mut seen: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
    for c in &clients {
        let s = c.setup(V);
        let mut peers: Vec<i64> = s.peers.keys().copied().collect();
        drop(s.peers);
        for j in s.id + 1..N as i64 {
            drop(c.expect_connect(j, V));
            peers.push(j);
        }
        c.expect_quiet(20);
        seen.insert(s.id, peers);
    }
    assert_eq!(
        seen.keys().copied().collect::<Vec<_>>(),
        (0..N as i64).collect::<Vec<_>>()
    );
    for (id, peers) in seen {
        let want: Vec<i64> = (0..N as i64).filter(|&j| j != id).collect();
        assert_eq!(peers, want, "peer {id}");
    }
    assert_eq!(srv.log.count("disconnected"), 0, "{}", srv.log.text());
}
