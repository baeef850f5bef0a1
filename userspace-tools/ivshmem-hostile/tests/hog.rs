// SPDX-License-Identifier: GPL-2.0

//! The hog of `--hog`: it takes a free id, publishes a MAC of its own with the MTU and
//! feature bits of a present peer, links with a peer that runs the protocol and beats, but
//! consumes nothing that peer sends it, and notes how long it held the frames when the peer
//! resets the link; with `--drain-every` it consumes one frame per period.

use ivshmem_hostile::hog::{hog, hog_mac, Hogged};
use ivshmem_net_protocol::layout::{attach, claim_slot, hdr, Geometry, Region};
use ivshmem_net_protocol::link::{decide, read_peer, Action, Link, Own, PeerState};
use ivshmem_net_protocol::ring::{Consumer, Desc, Pool, Producer};
use ivshmem_net_protocol::HeapRegion;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

/// Runs a hog (consuming one frame per `drain_every`, if given) against a sender (id 2) that
/// links with it, sends it 3 frames, and `reset_after` them restarts the link if given.
/// Returns what the hog reported and the sender's frames in flight just before the restart
/// (or at the end).
fn run(drain_every: Option<Duration>, reset_after: Option<Duration>) -> (Hogged, u32) {
    let g = Geometry::new(4 << 20, 4).unwrap();
    let r = HeapRegion::new(g.region_len as usize);
    attach(&r, g, 7, || false).unwrap();
    claim_slot(&r, &g, Some(2), 0x102, |_| {}).unwrap();
    let mut sender = Own::new(&g, 2).unwrap();
    sender.attach(&r, [0x02, 0, 0, 0, 0, 2], 9000).unwrap();
    sender.set_features(&r, 0x6).unwrap();
    sender.set_state(&r, PeerState::Run).unwrap();
    let (stop, restart) = (AtomicBool::new(false), AtomicBool::new(false));
    let out = std::thread::scope(|s| {
        let hogger = s.spawn(|| {
            hog(
                &r,
                &g,
                drain_every,
                0x5555,
                Duration::from_millis(1500),
                &stop,
                &restart,
            )
        });
        let mut link = Link::default();
        let mut pool = Pool::new(&g, 2).unwrap();
        let mut prod = Producer::new(&g, 2, 0, 0).unwrap();
        let (mut sent_at, mut in_flight, mut reset) = (None, 0, false);
        let start = Instant::now();
        while start.elapsed() < Duration::from_millis(1300) {
            sender.beat(&r).unwrap();
            if let Ok(view) = read_peer(&r, &g, 0, 2) {
                let now = start.elapsed().as_millis() as u64;
                let (e, a) = (sender.epoch(&r, 0).unwrap(), sender.acked(&r, 0).unwrap());
                match decide(&mut link, e, a, &view, now) {
                    Action::Resync(epoch) => {
                        prod.reset(&r).unwrap();
                        Consumer::new(&g, 0, 2, 0).unwrap().reset(&r).unwrap();
                        sender.ack(&r, 0, epoch).unwrap();
                    }
                    Action::Up => {
                        link.up = true;
                        assert_eq!(view.mac, hog_mac(0), "the hog publishes its own MAC");
                        assert_eq!((view.mtu, view.features), (9000, 0x6), "and ours");
                    }
                    Action::Down(_) => link.up = false,
                    Action::Stay => {}
                }
            }
            if link.up && sent_at.is_none() {
                for _ in 0..3 {
                    let span = prod.reserve(&r, &pool, 60).unwrap().unwrap();
                    span.write(&r, 0, &[0xff; 60]).unwrap();
                    prod.commit(&r, &mut pool, &Desc::default()).unwrap();
                }
                prod.publish(&r).unwrap();
                sent_at = Some(Instant::now());
            }
            if !reset {
                in_flight = prod.in_flight(&r).unwrap();
            }
            if let (Some(t), Some(after)) = (sent_at, reset_after) {
                if !reset && t.elapsed() >= after {
                    // What the driver does to a peer holding its pool: reset our halves and
                    // restart the link (a new epoch).
                    link.up = false;
                    prod.reset(&r).unwrap();
                    sender.bump_epoch(&r, 0).unwrap();
                    reset = true;
                }
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(sent_at.is_some(), "the hog never linked with the sender");
        (hogger.join().unwrap().unwrap(), in_flight)
    });
    assert_eq!(
        r.load(hdr::PEER_SLOTS).unwrap(),
        0,
        "the hog left its slot free"
    );
    out
}

#[test]
fn hog_holds_the_frames_and_notes_how_long_until_the_reset() {
    let (h, in_flight) = run(None, Some(Duration::from_millis(400)));
    assert_eq!(in_flight, 3, "the hog consumed nothing before the reset");
    assert_eq!((h.id, h.mac, h.rx_frames), (0, hog_mac(0), 0));
    assert_eq!(h.linked, vec![2]);
    assert_eq!(h.resets.len(), 1, "one reset while holding: {h:?}");
    assert_eq!(h.resets[0].peer, 2);
    let held = h.resets[0].held;
    assert!(
        held >= Duration::from_millis(350) && held < Duration::from_millis(700),
        "held {held:?}, reset 400 ms after the frames were sent"
    );
    assert_eq!(
        h.resets[0].frame_text(),
        "ff:ff:ff:ff:ff:ff ff:ff:ff:ff:ff:ff ffff, 60 B",
        "the oldest frame held"
    );
    assert!(h.json().contains("\"peer\":2"), "{}", h.json());
}

#[test]
fn slow_hog_consumes_one_frame_per_period() {
    let (h, in_flight) = run(Some(Duration::from_millis(100)), None);
    assert_eq!(
        in_flight, 0,
        "3 frames at one per 100 ms are consumed in 1.3 s"
    );
    assert_eq!(h.rx_frames, 3);
    assert!(h.resets.is_empty() && h.other_downs == 0, "{h:?}");
    assert!(
        h.longest_hold < Duration::from_millis(200),
        "a frame consumed every 100 ms: longest hold {:?}",
        h.longest_hold
    );
}
