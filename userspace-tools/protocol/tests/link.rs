// SPDX-License-Identifier: GPL-2.0
//! The link handshake: two (or three) simulated peers sharing one region, stepping the pure
//! state machine in `link.rs` the way the driver does.

use ivshmem_net_protocol::frame::IpVersion;
use ivshmem_net_protocol::layout::*;
use ivshmem_net_protocol::link::*;
use ivshmem_net_protocol::HeapRegion;

const MIB: u64 = 1 << 20;

/// One simulated peer: its control block and its view of each other peer's link.
struct Peer {
    own: Own,
    links: Vec<Link>,
    resyncs: Vec<u32>,
    downs: Vec<DownReason>,
    beating: bool,
    /// Each link's queue count, fixed when it came up ([`link_queues`]).
    queues: Vec<u32>,
}

impl Peer {
    fn new(r: &HeapRegion, g: &Geometry, id: u32, mac: u8) -> Peer {
        let mut own = Own::new(g, id).unwrap();
        own.attach(r, [2, 0, 0, 0, 0, mac], 1500).unwrap();
        own.set_state(r, PeerState::Run).unwrap();
        Peer {
            own,
            links: vec![Link::default(); g.max_peers as usize],
            resyncs: vec![0; g.max_peers as usize],
            downs: vec![],
            beating: true,
            queues: vec![0; g.max_peers as usize],
        }
    }

    fn step(&mut self, r: &HeapRegion, g: &Geometry, now: u64) {
        if self.beating {
            self.own.beat(r).unwrap();
        }
        let me = self.own.id();
        for j in 0..g.max_peers {
            if j == me {
                continue;
            }
            let view = read_peer(r, g, j, me).unwrap();
            let our_epoch = self.own.epoch(r, j).unwrap();
            let our_ack = self.own.acked(r, j).unwrap();
            let link = &mut self.links[j as usize];
            match decide(link, our_epoch, our_ack, &view, now) {
                Action::Stay => {}
                Action::Resync(e) => {
                    self.resyncs[j as usize] += 1;
                    self.own.ack(r, j, e).unwrap();
                }
                Action::Up => {
                    link.up = true;
                    self.queues[j as usize] = link_queues(self.own.queues(), view.queues);
                }
                Action::Down(why) => {
                    link.up = false;
                    self.downs.push(why);
                }
            }
        }
    }

    fn up(&self, j: u32) -> bool {
        self.links[j as usize].up
    }
}

fn setup(peers: u32) -> (HeapRegion, Geometry) {
    let r = HeapRegion::new(16 * MIB as usize);
    let g = Geometry::new(16 * MIB, 8).unwrap();
    attach(&r, g, 1, || true).unwrap();
    assert!(peers <= 8);
    (r, g)
}

/// Peers 0 and 1, stepped until both links are up.
fn linked_pair(r: &HeapRegion, g: &Geometry) -> (Peer, Peer) {
    let mut a = Peer::new(r, g, 0, 1);
    let mut b = Peer::new(r, g, 1, 2);
    for t in 0..3 {
        a.step(r, g, t);
        b.step(r, g, t);
    }
    (a, b)
}

#[test]
fn two_peers_come_up_in_either_order() {
    for a_first in [true, false] {
        let (r, g) = setup(2);
        let mut a = Peer::new(&r, &g, 0, 1);
        let mut b = Peer::new(&r, &g, 1, 2);
        for t in 0..4 {
            if a_first {
                a.step(&r, &g, t * 10);
                b.step(&r, &g, t * 10);
            } else {
                b.step(&r, &g, t * 10);
                a.step(&r, &g, t * 10);
            }
        }
        assert!(a.up(1) && b.up(0));
        assert_eq!((a.resyncs[1], b.resyncs[0]), (1, 1));
    }
}

#[test]
fn never_up_before_the_other_side_synced() {
    let (r, g) = setup(2);
    let mut a = Peer::new(&r, &g, 0, 1);
    let mut b = Peer::new(&r, &g, 1, 2);
    // a steps alone: it acknowledges b, but b has not acknowledged a, so a stays down.
    for t in 0..5 {
        a.step(&r, &g, t);
    }
    assert!(!a.up(1));
    b.step(&r, &g, 5);
    assert!(!b.up(0), "b only now acknowledged a: it resyncs first");
    b.step(&r, &g, 6);
    assert!(b.up(0), "a had acked b already, and b has acked a");
    a.step(&r, &g, 7);
    assert!(a.up(1));
}

#[test]
fn restart_takes_link_down_then_up_again() {
    let (r, g) = setup(2);
    let (mut a, mut b) = linked_pair(&r, &g);
    assert!(a.up(1) && b.up(0));
    // b's module is reloaded: fresh control block state, epochs bumped.
    b = Peer::new(&r, &g, 1, 2);
    a.step(&r, &g, 10);
    assert!(!a.up(1));
    assert_eq!(a.downs, vec![DownReason::Restarted]);
    for t in 11..14 {
        a.step(&r, &g, t);
        b.step(&r, &g, t);
    }
    assert!(a.up(1) && b.up(0));
}

#[test]
fn unload_and_silence_take_link_down() {
    let (r, g) = setup(2);
    let (mut a, mut b) = linked_pair(&r, &g);
    // b stops beating (VM killed): a notices after the timeout, not before.
    b.beating = false;
    a.step(&r, &g, 500);
    assert!(a.up(1));
    // The last beat a saw change was at t=500 (b beat once more after a's step at t=2).
    a.step(&r, &g, 500 + HEARTBEAT_TIMEOUT_MS);
    assert!(a.up(1), "not before the timeout");
    a.step(&r, &g, 501 + HEARTBEAT_TIMEOUT_MS);
    assert!(!a.up(1));
    assert_eq!(a.downs, vec![DownReason::Silent]);
    // b detaches cleanly: stays down; b reattaches: comes back.
    b.own.detach(&r).unwrap();
    a.step(&r, &g, 2000);
    assert!(!a.up(1));
    a.step(&r, &g, 2000);
    assert!(!a.up(1));
    b = Peer::new(&r, &g, 1, 2);
    for t in 2001..2005 {
        a.step(&r, &g, t);
        b.step(&r, &g, t);
    }
    assert!(
        a.up(1) && b.up(0),
        "a {:?} b {:?} a.downs {:?}",
        a.links[1],
        b.links[0],
        a.downs
    );
}

#[test]
fn garbage_state_is_down_not_panic() {
    let (r, g) = setup(2);
    let (mut a, _b) = linked_pair(&r, &g);
    r.store(g.ctrl_offset(1).unwrap() + ctrl::STATE, 0xdead_beef)
        .unwrap();
    a.step(&r, &g, 4);
    assert!(!a.up(1));
    assert_eq!(a.downs, vec![DownReason::Garbage]);
    assert_eq!(PeerState::try_from(7), Err(Error::BadState(7)));
}

#[test]
fn three_peers_all_pairs_up() {
    let (r, g) = setup(3);
    let mut p: Vec<Peer> = (0..3).map(|i| Peer::new(&r, &g, i, i as u8 + 1)).collect();
    for t in 0..4 {
        for x in p.iter_mut() {
            x.step(&r, &g, t);
        }
    }
    for i in 0..3u32 {
        for j in 0..3u32 {
            if i != j {
                assert!(p[i as usize].up(j), "{i} -> {j}");
            }
        }
    }
    let view = read_peer(&r, &g, 2, 0).unwrap();
    assert_eq!(view.mac, [2, 0, 0, 0, 0, 3]);
    assert_eq!(view.mtu, 1500);
}

#[test]
fn epoch_never_zero() {
    assert_eq!(next_epoch(u32::MAX), 1);
    assert_eq!(next_epoch(0), 1);
    assert_eq!(next_epoch(41), 42);
}

/// Doorbell mode: a peer that sleeps (no heartbeat) stays up while nothing waits for it, and
/// goes down as silent only when the caller reports frames stalled.
#[test]
fn progress_liveness_ignores_a_quiet_heartbeat_until_frames_stall() {
    let g = Geometry::new(4 * MIB, 2).unwrap();
    let r = HeapRegion::new(g.region_len as usize);
    attach(&r, g, 7, || true).unwrap();
    let mut a = Peer::new(&r, &g, 0, 1);
    let mut b = Peer::new(&r, &g, 1, 2);
    for t in 0..4 {
        a.step(&r, &g, t * 10);
        b.step(&r, &g, t * 10);
    }
    assert!(a.links[1].up && b.links[0].up);
    // B stops beating for 10 s; A judges by progress.
    let view = read_peer(&r, &g, 1, 0).unwrap();
    let (e, k) = (a.own.epoch(&r, 1).unwrap(), a.own.acked(&r, 1).unwrap());
    let link = &mut a.links[1];
    let quiet = Liveness::Progress { stalled: false };
    assert_eq!(decide_with(link, e, k, &view, 10_000, quiet), Action::Stay);
    assert_eq!(decide_with(link, e, k, &view, 20_000, quiet), Action::Stay);
    let stalled = Liveness::Progress { stalled: true };
    assert_eq!(
        decide_with(link, e, k, &view, 20_001, stalled),
        Action::Down(DownReason::Silent)
    );
    // With the heartbeat rule the same quiet peer is silent.
    let mut fresh = Link {
        up: true,
        ..Link::default()
    };
    assert_eq!(decide(&mut fresh, e, k, &view, 0), Action::Stay);
    assert_eq!(
        decide(&mut fresh, e, k, &view, HEARTBEAT_TIMEOUT_MS + 1),
        Action::Down(DownReason::Silent)
    );
}

#[test]
fn scribbled_control_block_is_repaired_and_the_link_recovers() {
    let (r, g) = setup(2);
    let (mut a, mut b) = linked_pair(&r, &g);
    assert!(a.up(1) && b.up(0));
    assert_eq!(b.own.repair(&r).unwrap(), 0, "nothing to repair yet");
    // Someone scribbles on b's block: state, MAC, MTU, features, its epoch and ack for a.
    let base = g.ctrl_offset(1).unwrap();
    for (off, val) in [
        (ctrl::STATE, 0xdead_beef),
        (ctrl::MAC_LO, 0x1111_1111),
        (ctrl::MTU, 0),
        (ctrl::FEATURES, u32::MAX),
        (ctrl::EPOCH, 77),
        (ctrl::ACK, 78),
    ] {
        r.store(base + off, val).unwrap();
    }
    a.step(&r, &g, 10);
    assert!(!a.up(1));
    assert_eq!(a.downs, vec![DownReason::Garbage]);
    assert_eq!(b.own.repair(&r).unwrap(), 6);
    assert_eq!(b.own.repair(&r).unwrap(), 0);
    for t in 11..15 {
        a.step(&r, &g, t);
        b.step(&r, &g, t);
    }
    assert!(a.up(1) && b.up(0));
    let view = read_peer(&r, &g, 1, 0).unwrap();
    assert_eq!(view.mac, [2, 0, 0, 0, 0, 2]);
    assert_eq!((view.mtu, view.features), (1500, 0));
}

fn addrs(mac0: u8, v4: [u8; 4]) -> Addrs {
    Addrs {
        mac: [0x52, 0x54, 0, 0, 0, mac0],
        v4: Some(v4),
        v6: Some([0xfd, 0x94, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, mac0]),
    }
}

#[test]
fn transparent_addresses_round_trip_only_with_the_feature() {
    let (r, g) = setup(2);
    let mut own = Own::new(&g, 1).unwrap();
    own.attach(&r, [2, 0, 0, 0, 0, 1], 1500).unwrap();
    let a = addrs(2, [10, 94, 0, 2]);
    own.publish_addrs(&r, &a).unwrap();
    // Without the feature bit the block is ignored.
    assert_eq!(read_addrs(&r, &g, 1), None);
    own.set_features(&r, feature::TRANSPARENT).unwrap();
    assert_eq!(read_addrs(&r, &g, 1).map(|p| p.addrs), Some(a));
    // Withdrawn: nothing to route by.
    own.publish_addrs(&r, &Addrs::default()).unwrap();
    assert_eq!(read_addrs(&r, &g, 1), None);
    // A fresh attach withdraws what an earlier incarnation published.
    own.publish_addrs(&r, &a).unwrap();
    let mut again = Own::new(&g, 1).unwrap();
    again.attach(&r, [2, 0, 0, 0, 0, 1], 1500).unwrap();
    own.set_features(&r, feature::TRANSPARENT).unwrap();
    assert_eq!(read_addrs(&r, &g, 1), None);
}

#[test]
fn transparent_block_being_rewritten_is_not_read() {
    let (r, g) = setup(2);
    let mut own = Own::new(&g, 0).unwrap();
    own.attach(&r, [2, 0, 0, 0, 0, 1], 1500).unwrap();
    own.set_features(&r, feature::TRANSPARENT).unwrap();
    own.publish_addrs(&r, &addrs(1, [10, 94, 0, 1])).unwrap();
    let base = g.ctrl_offset(0).unwrap();
    let seq = r.load(base + ctrl::TP_SEQ).unwrap();
    r.store(base + ctrl::TP_SEQ, seq | 1).unwrap();
    assert_eq!(read_addrs(&r, &g, 0), None);
    r.store(base + ctrl::TP_SEQ, seq).unwrap();
    assert!(read_addrs(&r, &g, 0).is_some());
}

#[test]
fn claims_are_accepted_only_for_the_block_read() {
    let (r, g) = setup(3);
    let (mut sender, mut receiver) = (Own::new(&g, 0).unwrap(), Own::new(&g, 1).unwrap());
    sender.attach(&r, [2, 0, 0, 0, 0, 1], 1500).unwrap();
    receiver.attach(&r, [2, 0, 0, 0, 0, 2], 1500).unwrap();
    sender.set_features(&r, feature::TRANSPARENT).unwrap();
    sender.publish_addrs(&r, &addrs(1, [10, 94, 0, 1])).unwrap();
    let p = read_addrs(&r, &g, 0).unwrap();
    assert_eq!(p.seq, sender.published_seq());
    // Nothing accepted after attach.
    assert!(!read_accepted(&r, &g, 1, 0).covers(p.seq, IpVersion::V4));
    receiver
        .accept(&r, 0, Accepted { v4: p.seq, v6: 0 })
        .unwrap();
    let seen = read_accepted(&r, &g, 1, 0);
    assert!(seen.covers(sender.published_seq(), IpVersion::V4));
    assert!(!seen.covers(sender.published_seq(), IpVersion::V6));
    // Peer 2 sees nothing of what 1 accepts of 0.
    assert_eq!(read_accepted(&r, &g, 1, 2), Accepted::default());
    // The sender republishes (new addresses, or a repair): the old acceptance no longer
    // covers it, until the receiver has read the new block.
    sender.publish_addrs(&r, &addrs(1, [10, 94, 0, 7])).unwrap();
    assert!(!read_accepted(&r, &g, 1, 0).covers(sender.published_seq(), IpVersion::V4));
    // A scribbler's acceptance is put back by the receiver's repair.
    let word = g.ctrl_offset(1).unwrap() + ctrl::TP_ACCEPT_V4;
    r.store(word, sender.published_seq()).unwrap();
    assert_eq!(receiver.repair(&r).unwrap(), 1);
    assert_eq!(r.load(word).unwrap(), p.seq);
    // A fresh attach of the receiver accepts nothing.
    let mut again = Own::new(&g, 1).unwrap();
    again.attach(&r, [2, 0, 0, 0, 0, 2], 1500).unwrap();
    assert_eq!(read_accepted(&r, &g, 1, 0), Accepted::default());
    // Out-of-range peers read as nothing accepted.
    assert_eq!(read_accepted(&r, &g, 9, 0), Accepted::default());
    assert_eq!(read_accepted(&r, &g, 1, 9), Accepted::default());
}

#[test]
fn hostile_transparent_addresses_are_refused() {
    let good = addrs(1, [10, 94, 0, 1]);
    assert_eq!(good.sanitized(), good);
    for v4 in [
        [0, 0, 0, 0],
        [127, 0, 0, 1],
        [224, 0, 0, 1],
        [255, 255, 255, 255],
        [240, 1, 2, 3],
    ] {
        let a = Addrs {
            v4: Some(v4),
            v6: None,
            ..good
        };
        assert!(a.sanitized().is_empty(), "{v4:?} accepted");
    }
    let mut loopback = [0u8; 16];
    loopback[15] = 1;
    let mut mapped = [0u8; 16];
    mapped[10] = 0xff;
    mapped[11] = 0xff;
    mapped[12] = 10;
    let mut link_local = [0u8; 16];
    link_local[0] = 0xfe;
    link_local[1] = 0x80;
    let mut multicast = [0u8; 16];
    multicast[0] = 0xff;
    for v6 in [[0u8; 16], loopback, mapped, link_local, multicast] {
        let a = Addrs {
            v4: None,
            v6: Some(v6),
            ..good
        };
        assert!(a.sanitized().is_empty(), "{v6:?} accepted");
    }
    // A zero or multicast MAC voids the whole block.
    assert!(Addrs {
        mac: [0; 6],
        ..good
    }
    .sanitized()
    .is_empty());
    assert!(Addrs {
        mac: [1, 0, 0x5e, 0, 0, 1],
        ..good
    }
    .sanitized()
    .is_empty());
    // Overlap: any address in common.
    let other = addrs(2, [10, 94, 0, 2]);
    assert!(!good.overlaps(&other));
    assert!(good.overlaps(&Addrs {
        v4: Some([10, 94, 0, 1]),
        ..other
    }));
    assert!(good.overlaps(&Addrs {
        mac: good.mac,
        ..other
    }));
    assert!(good.overlaps(&Addrs {
        v6: good.v6,
        v4: None,
        ..other
    }));
}

#[test]
fn live_clock_counts_regular_looks_and_caps_absences() {
    let mut c = LiveClock::default();
    assert_eq!(c.look(1000), (0, None));
    c.expect_next(true);
    assert_eq!(c.look(1100), (100, None));
    // Looks as promised: real time.
    c.expect_next(true);
    assert_eq!(
        c.look(1100 + MAX_LOOK_GAP_MS),
        (100 + MAX_LOOK_GAP_MS, None)
    );
    // Promised a look, came 5 s later: an absence, of which only the bound counts.
    c.expect_next(true);
    let (live, absent) = c.look(6350);
    assert_eq!((live, absent), (100 + 2 * MAX_LOOK_GAP_MS, Some(5000)));
    // Asleep by choice (nothing promised): not an absence, still capped.
    c.expect_next(false);
    assert_eq!(c.look(60_000), (100 + 3 * MAX_LOOK_GAP_MS, None));
    // A clock going backwards (never, but peer-independent anyway) moves nothing.
    c.expect_next(true);
    assert_eq!(c.look(59_000), (100 + 3 * MAX_LOOK_GAP_MS, None));
}

/// The false "silent" this guards against: both guests stopped together (the host paused),
/// and the observer looks first when they resume. Judged by real time the peer's heartbeat is
/// seconds old; by the live clock only what the observer saw while running counts.
#[test]
fn a_pause_of_both_peers_is_not_silence_but_a_death_still_is() {
    let (r, g) = setup(2);
    let mut a = Peer::new(&r, &g, 0, 1);
    let mut b = Peer::new(&r, &g, 1, 2);
    let mut clock = LiveClock::default();
    let mut t = 0;
    let mut step = |a: &mut Peer, b: &mut Peer, t: u64, b_runs: bool| {
        let (live, _) = clock.look(t);
        clock.expect_next(true);
        a.step(&r, &g, live);
        if b_runs {
            b.step(&r, &g, live);
        }
    };
    while t < 300 {
        step(&mut a, &mut b, t, true);
        t += 50;
    }
    assert!(a.up(1) && b.up(0));
    // Both paused for 3 s; a runs first after it, b a moment later.
    t += 3000;
    step(&mut a, &mut b, t, false);
    assert!(
        a.up(1),
        "a blamed b for a pause that stopped them both: {:?}",
        a.downs
    );
    for _ in 0..4 {
        t += 50;
        step(&mut a, &mut b, t, true);
    }
    assert!(a.up(1) && a.downs.is_empty());
    // b dies: a, looking every 50 ms, takes it down once the timeout has passed.
    let died = t;
    while a.up(1) {
        t += 50;
        assert!(
            t - died <= HEARTBEAT_TIMEOUT_MS + 100,
            "b's death not noticed"
        );
        step(&mut a, &mut b, t, false);
    }
    assert!(t - died > HEARTBEAT_TIMEOUT_MS);
    assert_eq!(a.downs, vec![DownReason::Silent]);
}

/// Polling mode: a peer whose timer runs late (heartbeat frozen) but which keeps moving data
/// with us is alive; once its ring indices freeze too, it is silent after the timeout.
#[test]
fn ring_progress_counts_as_a_heartbeat() {
    let (r, g) = setup(2);
    let (mut a, _b) = linked_pair(&r, &g);
    assert!(a.up(1));
    let (e, k) = (a.own.epoch(&r, 1).unwrap(), a.own.acked(&r, 1).unwrap());
    let view = read_peer(&r, &g, 1, 0).unwrap();
    let link = &mut a.links[1];
    let mut t = 10;
    // b's heartbeat never changes again (we keep reading the same view) but its indices move.
    for i in 0..40u32 {
        let rings = Liveness::Heartbeat { rings: [i, 2 * i] };
        assert_eq!(
            decide_with(link, e, k, &view, t, rings),
            Action::Stay,
            "at {t} ms"
        );
        t += 100;
    }
    let frozen = Liveness::Heartbeat { rings: [39, 78] };
    let last = t - 100;
    while decide_with(link, e, k, &view, t, frozen) == Action::Stay {
        t += 50;
        assert!(
            t - last <= HEARTBEAT_TIMEOUT_MS + 50,
            "frozen peer never went silent"
        );
    }
    assert!(t - last > HEARTBEAT_TIMEOUT_MS);
    assert_eq!(
        decide_with(link, e, k, &view, t, frozen),
        Action::Down(DownReason::Silent)
    );
}

/// Issue 19: two peers link with the smaller of their queue counts, fixed when the link comes
/// up; a peer that changes its count and restarts its links gets the new one on both sides.
#[test]
fn links_take_the_smaller_queue_count_and_renegotiate_on_restart() {
    let (r, g) = setup(2);
    assert_eq!(g.queues, 2);
    let mut a = Peer::new(&r, &g, 0, 1);
    let mut b = Peer::new(&r, &g, 1, 2);
    a.own.set_queues(&r, 2).unwrap();
    for t in 0..3 {
        a.step(&r, &g, t);
        b.step(&r, &g, t);
    }
    assert!(a.up(1) && b.up(0));
    assert_eq!((a.queues[1], b.queues[0]), (1, 1));
    // b goes to 2 queues: count first, then restart the link.
    b.own.set_queues(&r, 2).unwrap();
    b.own.bump_epoch(&r, 0).unwrap();
    let mut came_back = false;
    for t in 3..10 {
        a.step(&r, &g, t);
        b.step(&r, &g, t);
        came_back |= !a.up(1);
    }
    assert!(came_back && a.up(1) && b.up(0));
    assert_eq!((a.queues[1], b.queues[0]), (2, 2));
    // And down to 1 again.
    a.own.set_queues(&r, 1).unwrap();
    a.own.bump_epoch(&r, 1).unwrap();
    for t in 10..16 {
        a.step(&r, &g, t);
        b.step(&r, &g, t);
    }
    assert!(a.up(1) && b.up(0));
    assert_eq!((a.queues[1], b.queues[0]), (1, 1));
}

/// The queue and vector words are read once and sanitised: garbage limits the writer to one
/// channel and one vector; our own words are kept across attach and repaired when scribbled.
#[test]
fn queue_and_vector_words_are_sanitised_kept_and_repaired() {
    let (r, g) = setup(2);
    let mut own = Own::new(&g, 0).unwrap();
    own.set_queues(&r, 2).unwrap();
    own.set_vectors(&r, 2).unwrap();
    own.attach(&r, [2, 0, 0, 0, 0, 1], 1500).unwrap();
    let v = read_peer(&r, &g, 0, 1).unwrap();
    assert_eq!((v.queues, v.vectors), (2, 2));
    let base = g.ctrl_offset(0).unwrap();
    for (word, val, want) in [
        (ctrl::QUEUES, 0, 1),
        (ctrl::QUEUES, 3, 1),
        (ctrl::QUEUES, u32::MAX, 1),
        (ctrl::QUEUES, 1, 1),
        (ctrl::VECTORS, 0, 1),
        (ctrl::VECTORS, MAX_QUEUES, MAX_QUEUES),
        (ctrl::VECTORS, MAX_QUEUES + 1, 1),
        (ctrl::VECTORS, 0x8000_0000, 1),
    ] {
        r.store(base + word, val).unwrap();
        let v = read_peer(&r, &g, 0, 1).unwrap();
        let got = if word == ctrl::QUEUES {
            v.queues
        } else {
            v.vectors
        };
        assert_eq!(got, want, "word {word:#x} = {val:#x}");
        // Every channel's kick lands on a vector the peer has, every ring below the count.
        for c in 0..MAX_QUEUES {
            assert!(kick_vector(c, v.vectors) < v.vectors);
            assert!(ring_for(c, link_queues(MAX_QUEUES, v.queues)) < v.queues);
        }
    }
    // Both words scribbled: repair puts back what we published.
    r.store(base + ctrl::QUEUES, 7).unwrap();
    r.store(base + ctrl::VECTORS, 7).unwrap();
    assert_eq!(own.repair(&r).unwrap(), 2);
    let v = read_peer(&r, &g, 0, 1).unwrap();
    assert_eq!((v.queues, v.vectors), (2, 2));
    // Out of range is refused and changes nothing.
    assert_eq!(own.set_queues(&r, 3), Err(Error::OutOfBounds));
    assert_eq!(own.set_vectors(&r, 0), Err(Error::OutOfBounds));
    assert_eq!((own.queues(), own.vectors()), (2, 2));
}

/// A transmit queue maps to a ring below the link's count, the identity for the queues the
/// link has; a channel's kick goes to one of the peer's vectors, spread evenly.
#[test]
fn queue_and_vector_mapping_cover_every_channel() {
    for k in 1..=MAX_QUEUES {
        for t in 0..MAX_QUEUES {
            let q = ring_for(t, k);
            assert!(q < k);
            if t < k {
                assert_eq!(q, t);
            }
        }
        let mut hits = vec![0; k as usize];
        for c in 0..MAX_QUEUES * k {
            hits[kick_vector(c, k) as usize] += 1;
        }
        assert!(hits.iter().all(|&h| h == MAX_QUEUES));
    }
    for (ours, theirs) in [(1, 8), (8, 1), (4, 4), (2, 3)] {
        assert_eq!(link_queues(ours, theirs), ours.min(theirs));
    }
}

/// A pool hog reset over and over: each hold-down twice the last, capped, every one of them
/// enforced to the millisecond; a peer that stays out of trouble long enough starts over.
#[test]
fn hold_down_doubles_caps_and_forgives() {
    let mut hold = HoldDown::default();
    let mut now = 10_000;
    let mut seen = Vec::new();
    for _ in 0..10 {
        assert!(hold.allows(now), "a reset comes only once linked again");
        let ms = hold.reset(now);
        assert!(!hold.allows(now));
        assert!(!hold.allows(now + ms - 1));
        assert!(hold.allows(now + ms));
        seen.push(ms);
        // Linked again as soon as allowed, reset again after the liveness timeout.
        now += ms + HEARTBEAT_TIMEOUT_MS;
    }
    assert_eq!(
        seen,
        [1_000, 2_000, 4_000, 8_000, 16_000, 32_000, 60_000, 60_000, 60_000, 60_000]
    );
    assert!(seen
        .iter()
        .all(|&ms| (HOLD_DOWN_MIN_MS..=HOLD_DOWN_MAX_MS).contains(&ms)));
    // Just within the forgiveness window: still the longest; past it: the shortest.
    let end = now - HEARTBEAT_TIMEOUT_MS;
    assert_eq!(hold.reset(end + HOLD_DOWN_FORGIVE_MS), HOLD_DOWN_MAX_MS);
    let end = end + HOLD_DOWN_FORGIVE_MS + HOLD_DOWN_MAX_MS;
    assert_eq!(hold.reset(end + HOLD_DOWN_FORGIVE_MS + 1), HOLD_DOWN_MIN_MS);
    // A clock near its end saturates instead of wrapping into an endless or no hold-down.
    let mut late = HoldDown::default();
    assert_eq!(late.reset(u64::MAX - 10), HOLD_DOWN_MIN_MS);
    assert!(!late.allows(u64::MAX - 1));
    assert!(late.allows(u64::MAX));
}
