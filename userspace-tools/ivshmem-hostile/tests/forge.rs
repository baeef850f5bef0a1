// SPDX-License-Identifier: GPL-2.0

//! The forger of `--forge-mac-of`: it takes a free id, publishes the victim's MAC as its own,
//! links with a peer that runs the protocol, receives what that peer sends it and counts the
//! frames addressed to the forged MAC; restarts its links when asked; when it stops it leaves
//! its slot free and its block `Reset`.

use ivshmem_hostile::forge::forge_mac;
use ivshmem_net_protocol::layout::{attach, claim_slot, hdr, Geometry, Region};
use ivshmem_net_protocol::link::{decide, read_peer, Action, Link, Own, PeerState};
use ivshmem_net_protocol::ring::{Consumer, Desc, Pool, Producer};
use ivshmem_net_protocol::HeapRegion;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const VICTIM_MAC: [u8; 6] = [0x02, 0x11, 0x22, 0x33, 0x44, 0x55];

#[test]
fn forger_links_under_the_victims_mac_and_counts_unicast_for_it() {
    let g = Geometry::new(4 << 20, 4).unwrap();
    let r = HeapRegion::new(g.region_len as usize);
    attach(&r, g, 7, || false).unwrap();
    // The victim (id 1) and an honest sender (id 2); ids 0 and 3 free.
    let mut own = Vec::new();
    for (id, mac) in [(1u32, VICTIM_MAC), (2, [0x02, 0, 0, 0, 0, 2])] {
        claim_slot(&r, &g, Some(id), 0x100 + id, |_| {}).unwrap();
        let mut o = Own::new(&g, id).unwrap();
        o.attach(&r, mac, 1500).unwrap();
        o.set_features(&r, 0x6).unwrap();
        o.set_state(&r, PeerState::Run).unwrap();
        own.push(o);
    }
    let (stop, restart) = (AtomicBool::new(false), AtomicBool::new(false));
    let mut ups = 0;
    let forged = std::thread::scope(|s| {
        let forger = s.spawn(|| {
            forge_mac(
                &r,
                &g,
                1,
                0x5555,
                Duration::from_millis(1500),
                &stop,
                &restart,
            )
        });
        // The sender: links with whoever shows up at id 0, then sends it one frame for the
        // victim's MAC on queue 0 and one broadcast on the last queue (the forger must drain
        // every queue), both from its one pool.
        let sender = &mut own[1];
        let mut link = Link::default();
        let last = g.queues - 1;
        assert!(last > 0, "the test wants several queues: {g:?}");
        let mut pool = Pool::new(&g, 2).unwrap();
        let mut prods: Vec<Producer> = (0..g.queues)
            .map(|q| Producer::new(&g, 2, 0, q).unwrap())
            .collect();
        let mut sent = false;
        let mut sent_at = None;
        let start = Instant::now();
        while start.elapsed() < Duration::from_millis(1200) {
            sender.beat(&r).unwrap();
            if let Ok(view) = read_peer(&r, &g, 0, 2) {
                let now = start.elapsed().as_millis() as u64;
                let (e, a) = (sender.epoch(&r, 0).unwrap(), sender.acked(&r, 0).unwrap());
                match decide(&mut link, e, a, &view, now) {
                    Action::Resync(epoch) => {
                        for (q, p) in (0..).zip(prods.iter_mut()) {
                            p.reset(&r).unwrap();
                            Consumer::new(&g, 0, 2, q).unwrap().reset(&r).unwrap();
                        }
                        sender.ack(&r, 0, epoch).unwrap();
                    }
                    Action::Up => {
                        link.up = true;
                        ups += 1;
                        assert_eq!(
                            view.mac, VICTIM_MAC,
                            "the forger publishes the victim's MAC"
                        );
                        assert_eq!(view.features, 0x6, "and its feature bits");
                    }
                    Action::Down(_) => link.up = false,
                    Action::Stay => {}
                }
            }
            if link.up && !sent {
                for (q, dst) in [(0, VICTIM_MAC), (last, [0xff; 6])] {
                    let mut frame = [0u8; 60];
                    frame[..6].copy_from_slice(&dst);
                    let p = &mut prods[q as usize];
                    let span = p.reserve(&r, &pool, 60).unwrap().unwrap();
                    span.write(&r, 0, &frame).unwrap();
                    p.commit(&r, &mut pool, &Desc::default()).unwrap();
                    p.publish(&r).unwrap();
                }
                sent = true;
                sent_at = Some(Instant::now());
            }
            if sent_at.is_some_and(|t| t.elapsed() > Duration::from_millis(300)) {
                // The forger has drained them (it looks every 5 ms): ask it to restart its
                // links, which the sender sees go down and come up again.
                restart.store(true, Ordering::Relaxed);
                sent_at = None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(sent, "the forger never linked with the sender");
        assert_eq!(
            ups, 2,
            "the link came up, and again after the forger's restart"
        );
        forger.join().unwrap().unwrap()
    });
    assert_eq!((forged.id, forged.victim, forged.mac), (0, 1, VICTIM_MAC));
    assert_eq!(forged.linked, vec![2]);
    assert_eq!((forged.rx_frames, forged.rx_stolen), (2, 1));
    assert_eq!(forged.restarts, 1);
    assert!(forged.json().contains("\"rx_stolen\":1"));
    // Gone without a trace: slot free, block Reset.
    assert_eq!(r.load(hdr::PEER_SLOTS).unwrap(), 0);
    assert_eq!(
        read_peer(&r, &g, 0, 2).unwrap().state,
        Some(PeerState::Reset)
    );
}
