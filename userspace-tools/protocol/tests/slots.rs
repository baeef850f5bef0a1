// SPDX-License-Identifier: GPL-2.0
//! Peer-id claiming: free slots, requested ids, stale takeover, release, garbage, and races
//! between threads sharing one region.

use ivshmem_net_protocol::layout::*;
use ivshmem_net_protocol::link::{ctrl, PeerState};
use ivshmem_net_protocol::HeapRegion;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Barrier};

const MIB: u64 = 1 << 20;

/// An initialised region of 4 MiB set up for `peers` peers.
fn region(peers: u32) -> (HeapRegion, Geometry) {
    let g = Geometry::new(4 * MIB, peers).unwrap();
    let r = HeapRegion::new(g.region_len as usize);
    attach(&r, g, 1, || true).unwrap();
    (r, g)
}

/// A token for simulated peer `i`: nonzero, distinct, not small.
fn tok(i: u32) -> u32 {
    0x5100_0001 + 2 * i
}

fn slot(r: &HeapRegion, id: u32) -> u32 {
    r.load(hdr::PEER_SLOTS + 4 * id as usize).unwrap()
}

fn set_slot(r: &HeapRegion, id: u32, val: u32) {
    r.store(hdr::PEER_SLOTS + 4 * id as usize, val).unwrap();
}

/// Advances peer `id`'s heartbeat by one, atomically (several threads may beat at once, and a
/// lost update could make a live peer look dead).
fn beat(r: &HeapRegion, g: &Geometry, id: u32) {
    let off = g.ctrl_offset(id).unwrap() + ctrl::HEARTBEAT;
    loop {
        let v = r.load(off).unwrap();
        if r.compare_exchange(off, v, v.wrapping_add(1))
            .unwrap()
            .is_ok()
        {
            return;
        }
    }
}

/// Fills every slot with `tok(i)` and gives each owner a nonzero heartbeat and a Run state.
fn fill(r: &HeapRegion, g: &Geometry) {
    for i in 0..g.max_peers {
        assert_eq!(
            claim_slot(r, g, None, tok(i), |_| panic!("no wait expected")),
            Ok((i, Claim::Free))
        );
        let base = g.ctrl_offset(i).unwrap();
        r.store(base + ctrl::STATE, 3).unwrap();
        r.store(base + ctrl::HEARTBEAT, 100 + i).unwrap();
    }
}

fn slots(r: &HeapRegion, g: &Geometry) -> Vec<u32> {
    (0..g.max_peers).map(|i| slot(r, i)).collect()
}

#[test]
fn sequential_claims_count_up_from_zero() {
    let (r, g) = region(8);
    for i in 0..8 {
        assert_eq!(
            claim_slot(&r, &g, None, tok(i), |_| panic!("no wait expected")),
            Ok((i, Claim::Free))
        );
        assert_eq!(slot(&r, i), tok(i));
    }
    // Slots past max_peers (reserved up to MAX_PEERS) are never touched.
    assert_eq!(slot(&r, 8), 0);
}

#[test]
fn all_live_is_no_free_slot_after_one_wait() {
    let (r, g) = region(8);
    fill(&r, &g);
    let before = slots(&r, &g);
    let mut waits = vec![];
    let res = claim_slot(&r, &g, None, tok(99), |ms| {
        waits.push(ms);
        for i in 0..8 {
            beat(&r, &g, i);
        }
    });
    assert_eq!(res, Err(Error::NoFreeSlot));
    assert_eq!(waits, [STALE_WAIT_MS]);
    assert_eq!(
        STALE_WAIT_MS as u64,
        ivshmem_net_protocol::link::HEARTBEAT_TIMEOUT_MS + 500
    );
    assert_eq!(slots(&r, &g), before);
}

#[test]
fn stale_takeover_takes_lowest_dead_id() {
    let (r, g) = region(8);
    fill(&r, &g);
    let mut waits = 0;
    let res = claim_slot(&r, &g, None, tok(99), |_| {
        waits += 1;
        for i in 0..8 {
            match i {
                // Heartbeat frozen, but the slot changed hands: the new owner is alive.
                1 => set_slot(&r, 1, tok(50)),
                // Heartbeat frozen, but the state changed: alive.
                2 => r.store(g.ctrl_offset(2).unwrap() + ctrl::STATE, 2).unwrap(),
                // Dead: nothing changes.
                3 | 5 => {}
                _ => beat(&r, &g, i),
            }
        }
    });
    assert_eq!(res, Ok((3, Claim::Stale)));
    assert_eq!(waits, 1);
    assert_eq!(slot(&r, 3), tok(99));
    assert_eq!(slot(&r, 1), tok(50));
    assert_eq!(slot(&r, 5), tok(5));

    // The next claimant finds 5 dead too (3 is ours now, and we do not beat in this test:
    // make it look alive).
    let res = claim_slot(&r, &g, None, tok(98), |_| {
        for i in (0..8).filter(|&i| i != 5) {
            beat(&r, &g, i);
        }
    });
    assert_eq!(res, Ok((5, Claim::Stale)));
    assert_eq!(slot(&r, 5), tok(98));
}

#[test]
fn slot_freed_during_the_wait_is_claimed_as_free() {
    let (r, g) = region(8);
    fill(&r, &g);
    let res = claim_slot(&r, &g, None, tok(99), |_| {
        // 2 is dead but 6 is released: the free slot wins over the stale one.
        release_slot(&r, &g, 6, tok(6)).unwrap();
        for i in (0..8).filter(|&i| i != 2) {
            beat(&r, &g, i);
        }
    });
    assert_eq!(res, Ok((6, Claim::Free)));
    assert_eq!(slot(&r, 6), tok(99));
    assert_eq!(slot(&r, 2), tok(2));
}

#[test]
fn requested_id_free_live_dead_and_out_of_range() {
    let (r, g) = region(8);
    assert_eq!(
        claim_slot(&r, &g, Some(4), tok(4), |_| panic!("no wait expected")),
        Ok((4, Claim::Fixed))
    );
    assert_eq!(slot(&r, 4), tok(4));
    // Lower free ids do not matter.
    assert_eq!(slot(&r, 0), 0);

    // Held by a live peer.
    let mut waits = vec![];
    let res = claim_slot(&r, &g, Some(4), tok(40), |ms| {
        waits.push(ms);
        beat(&r, &g, 4);
    });
    assert_eq!(res, Err(Error::SlotTaken(4)));
    assert_eq!(waits, [STALE_WAIT_MS]);
    assert_eq!(slot(&r, 4), tok(4));

    // Other peers' liveness is irrelevant; 4 itself is dead.
    let res = claim_slot(&r, &g, Some(4), tok(41), |_| {
        for i in (0..8).filter(|&i| i != 4) {
            beat(&r, &g, i);
        }
    });
    assert_eq!(res, Ok((4, Claim::Stale)));
    assert_eq!(slot(&r, 4), tok(41));

    // Freed while we waited.
    let res = claim_slot(&r, &g, Some(4), tok(42), |_| {
        release_slot(&r, &g, 4, tok(41)).unwrap();
    });
    assert_eq!(res, Ok((4, Claim::Fixed)));
    assert_eq!(slot(&r, 4), tok(42));

    for id in [8, 63, 64, u32::MAX] {
        assert_eq!(
            claim_slot(&r, &g, Some(id), tok(1), |_| panic!("no wait expected")),
            Err(Error::BadPeerId(id))
        );
    }
    assert_eq!(slots(&r, &g), [0, 0, 0, 0, tok(42), 0, 0, 0]);
}

#[test]
fn release_then_reclaim() {
    let (r, g) = region(8);
    for i in 0..3 {
        claim_slot(&r, &g, None, tok(i), |_| panic!()).unwrap();
    }
    assert_eq!(release_slot(&r, &g, 1, tok(1)), Ok(()));
    assert_eq!(slot(&r, 1), 0);
    assert_eq!(
        claim_slot(&r, &g, None, tok(7), |_| panic!()),
        Ok((1, Claim::Free))
    );
    assert_eq!(
        claim_slot(&r, &g, None, tok(8), |_| panic!()),
        Ok((3, Claim::Free))
    );
    assert_eq!(release_slot(&r, &g, 8, tok(8)), Err(Error::BadPeerId(8)));
}

#[test]
fn release_by_non_owner_leaves_slot_alone() {
    let (r, g) = region(8);
    claim_slot(&r, &g, Some(2), tok(2), |_| panic!()).unwrap();
    // The slot was taken over: the old owner's release must not free the new owner's id.
    assert_eq!(release_slot(&r, &g, 2, tok(9)), Err(Error::SlotLost(2)));
    assert_eq!(slot(&r, 2), tok(2));
    // A free slot is not ours either.
    assert_eq!(release_slot(&r, &g, 3, tok(3)), Err(Error::SlotLost(3)));
    assert_eq!(slot(&r, 3), 0);
    assert_eq!(release_slot(&r, &g, 2, tok(2)), Ok(()));
    assert_eq!(slot(&r, 2), 0);
}

#[test]
fn token_zero_is_refused() {
    let (r, g) = region(8);
    assert_eq!(
        claim_slot(&r, &g, None, 0, |_| panic!()),
        Err(Error::ZeroToken)
    );
    assert_eq!(
        claim_slot(&r, &g, Some(1), 0, |_| panic!()),
        Err(Error::ZeroToken)
    );
    assert_eq!(release_slot(&r, &g, 0, 0), Err(Error::ZeroToken));
    assert_eq!(slots(&r, &g), [0; 8]);
}

#[test]
fn garbage_slot_words_are_owner_tokens() {
    let (r, g) = region(4);
    for i in 0..4 {
        set_slot(&r, i, u32::MAX);
        let base = g.ctrl_offset(i).unwrap();
        r.store(base + ctrl::STATE, u32::MAX).unwrap();
        r.store(base + ctrl::HEARTBEAT, u32::MAX).unwrap();
    }
    // Owners that beat are live, garbage or not.
    let res = claim_slot(&r, &g, None, tok(0), |_| {
        for i in 0..4 {
            beat(&r, &g, i);
        }
    });
    assert_eq!(res, Err(Error::NoFreeSlot));
    let res = claim_slot(&r, &g, Some(3), tok(0), |_| beat(&r, &g, 3));
    assert_eq!(res, Err(Error::SlotTaken(3)));
    // Silent owners are dead: the lowest is taken over.
    assert_eq!(
        claim_slot(&r, &g, None, tok(0), |_| {}),
        Ok((0, Claim::Stale))
    );
    assert_eq!(slots(&r, &g), [tok(0), u32::MAX, u32::MAX, u32::MAX]);
    // The garbage is released like any token.
    assert_eq!(release_slot(&r, &g, 1, u32::MAX), Ok(()));
    assert_eq!(slot(&r, 1), 0);
}

#[test]
fn hand_made_geometry_beyond_max_peers_is_refused() {
    let (r, g) = region(8);
    let bad = Geometry {
        max_peers: MAX_PEERS + 1,
        ..g
    };
    assert_eq!(
        claim_slot(&r, &bad, None, tok(0), |_| panic!()),
        Err(Error::BadMaxPeers(MAX_PEERS + 1))
    );
    assert_eq!(
        release_slot(&r, &bad, 0, tok(0)),
        Err(Error::BadMaxPeers(MAX_PEERS + 1))
    );
    // An unset-up region is refused by bounds, not a panic.
    let tiny = HeapRegion::new(64);
    assert_eq!(
        claim_slot(&tiny, &g, None, tok(0), |_| panic!()),
        Err(Error::OutOfBounds)
    );
}

#[test]
fn concurrent_claims_hand_out_distinct_ids() {
    for _ in 0..50 {
        let (r, g) = region(8);
        let r = Arc::new(r);
        let barrier = Arc::new(Barrier::new(8));
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let (r, barrier) = (r.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    claim_slot(&*r, &g, None, tok(i), |_| panic!("no wait expected")).unwrap()
                })
            })
            .collect();
        let mut ids: Vec<u32> = handles
            .into_iter()
            .map(|h| {
                let (id, how) = h.join().unwrap();
                assert_eq!(how, Claim::Free);
                id
            })
            .collect();
        ids.sort();
        assert_eq!(ids, (0..8).collect::<Vec<_>>());
    }
}

#[test]
fn more_claimants_than_slots_with_live_owners() {
    for _ in 0..20 {
        let (r, g) = region(4);
        let r = Arc::new(r);
        let barrier = Arc::new(Barrier::new(10));
        let handles: Vec<_> = (0..10)
            .map(|i| {
                let (r, barrier) = (r.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    // Every owner is alive: whoever waits sees all heartbeats move.
                    let res = claim_slot(&*r, &g, None, tok(i), |_| {
                        for j in 0..4 {
                            beat(&r, &g, j);
                        }
                    });
                    (i, res)
                })
            })
            .collect();
        let res: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        let mut won: Vec<(u32, u32)> = res
            .iter()
            .filter_map(|(i, r)| match r {
                Ok((id, Claim::Free)) => Some((*id, *i)),
                Ok(other) => panic!("{other:?}"),
                Err(Error::NoFreeSlot) => None,
                Err(e) => panic!("{e:?}"),
            })
            .collect();
        won.sort();
        assert_eq!(won.iter().map(|w| w.0).collect::<Vec<_>>(), [0, 1, 2, 3]);
        for (id, i) in won {
            assert_eq!(slot(&r, id), tok(i));
        }
    }
}

#[test]
fn concurrent_claim_release_churn_never_shares_an_id() {
    const PEERS: u32 = 3;
    const THREADS: u32 = 6;
    let (r, g) = region(PEERS);
    let r = Arc::new(r);
    let holders: Arc<Vec<AtomicU32>> = Arc::new((0..PEERS).map(|_| AtomicU32::new(0)).collect());
    let waits = Arc::new(AtomicU32::new(0));
    let barrier = Arc::new(Barrier::new(THREADS as usize));
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let (r, holders, barrier, waits) =
                (r.clone(), holders.clone(), barrier.clone(), waits.clone());
            std::thread::spawn(move || {
                barrier.wait();
                let mut claims = 0;
                for round in 0..300u32 {
                    let token = tok(t * 1000 + round);
                    let res = claim_slot(&*r, &g, None, token, |_| {
                        waits.fetch_add(1, Ordering::Relaxed);
                        for j in 0..PEERS {
                            beat(&r, &g, j);
                        }
                        std::thread::yield_now();
                    });
                    match res {
                        Ok((id, Claim::Free)) => {
                            let h = &holders[id as usize];
                            assert_eq!(h.fetch_add(1, Ordering::SeqCst), 0, "id {id} shared");
                            // Hold the id long enough for the others to find every slot full.
                            std::thread::sleep(std::time::Duration::from_micros(100));
                            assert_eq!(h.fetch_sub(1, Ordering::SeqCst), 1, "id {id} shared");
                            release_slot(&*r, &g, id, token).unwrap();
                            claims += 1;
                        }
                        Err(Error::NoFreeSlot) => {}
                        other => panic!("{other:?}"),
                    }
                }
                claims
            })
        })
        .collect();
    let total: u32 = handles.into_iter().map(|h| h.join().unwrap()).sum();
    assert!(total > 0);
    // The full-region path (sample, wait, sample, claim what was freed) was exercised.
    assert!(waits.load(Ordering::Relaxed) > 0);
    assert_eq!(slots(&r, &g), [0; PEERS as usize]);
}

#[test]
fn zeroed_slot_is_reclaimed_and_another_token_is_not() {
    let (r, g) = region(8);
    assert_eq!(
        claim_slot(&r, &g, None, tok(0), |_| panic!("no wait expected")),
        Ok((0, Claim::Free))
    );
    assert_eq!(reclaim_slot(&r, &g, 0, tok(0)), Ok(false), "still ours");
    set_slot(&r, 0, 0);
    assert_eq!(reclaim_slot(&r, &g, 0, tok(0)), Ok(true));
    assert_eq!(slot(&r, 0), tok(0));
    set_slot(&r, 0, tok(7));
    assert_eq!(reclaim_slot(&r, &g, 0, tok(0)), Ok(false));
    assert_eq!(slot(&r, 0), tok(7), "maybe a takeover: left alone");
    assert_eq!(reclaim_slot(&r, &g, 0, 0), Err(Error::ZeroToken));
}

/// What the driver's probe does after claiming a peer id, on a [`Claimed`] seat, failing at
/// step `fail_at` (1: before the control block is written, 2: after it is `Ready`, 3: never,
/// the seat is kept).
fn probe_from_claim<'a>(
    r: &'a HeapRegion,
    g: &Geometry,
    token: u32,
    fail_at: u32,
) -> Result<Claimed<&'a HeapRegion>, Error> {
    use ivshmem_net_protocol::link::{Own, PeerState};
    let (id, _) = claim_slot(r, g, None, token, |_| panic!("no wait expected"))?;
    let seat = Claimed::new(r, g, id, token)?;
    if fail_at == 1 {
        return Err(Error::OutOfBounds);
    }
    let mut own = Own::new(g, id)?;
    own.attach(&seat, [2, 0, 0, 0, 0, 0x10], 1500)?;
    own.set_state(&seat, PeerState::Ready)?;
    if fail_at == 2 {
        return Err(Error::OutOfBounds);
    }
    Ok(seat)
}

fn state(r: &HeapRegion, g: &Geometry, id: u32) -> u32 {
    r.load(g.ctrl_offset(id).unwrap() + ctrl::STATE).unwrap()
}

#[test]
fn a_probe_failing_after_its_claim_leaves_no_slot_and_no_ready_block() {
    use ivshmem_net_protocol::link::PeerState;
    let (r, g) = region(4);
    for fail_at in [1, 2] {
        assert!(probe_from_claim(&r, &g, tok(fail_at), fail_at).is_err());
        // Nothing left behind: the slot is free at once (no staleness wait) and our block
        // does not claim to be ready.
        assert_eq!(slots(&r, &g), vec![0; 4], "failing at step {fail_at}");
        assert_eq!(state(&r, &g, 0), PeerState::Reset as u32);
    }
    // A probe that succeeds keeps both for as long as it keeps the seat.
    let seat = probe_from_claim(&r, &g, tok(7), 3).unwrap();
    assert_eq!((seat.id(), slot(&r, 0)), (0, tok(7)));
    assert_eq!(state(&r, &g, 0), PeerState::Ready as u32);
    // (Its holder is alive: it beats while the claimant waits.)
    assert_eq!(
        claim_slot(&r, &g, Some(0), tok(8), |_| beat(&r, &g, 0)),
        Err(Error::SlotTaken(0))
    );
    drop(seat);
    assert_eq!(slot(&r, 0), 0);
    assert_eq!(state(&r, &g, 0), PeerState::Reset as u32);
}

#[test]
fn a_seat_taken_over_is_left_to_its_new_owner() {
    use ivshmem_net_protocol::link::PeerState;
    let (r, g) = region(2);
    let seat = probe_from_claim(&r, &g, tok(1), 3).unwrap();
    // Another peer presumed us dead and took the id over (claim_slot's stale takeover), then
    // filled in the block.
    set_slot(&r, 0, tok(2));
    r.store(
        g.ctrl_offset(0).unwrap() + ctrl::STATE,
        PeerState::Run as u32,
    )
    .unwrap();
    assert_eq!(seat.release(), Err(Error::SlotLost(0)));
    drop(seat);
    assert_eq!(slot(&r, 0), tok(2));
    assert_eq!(state(&r, &g, 0), PeerState::Run as u32);
}

#[test]
fn a_seat_released_early_does_nothing_more_on_drop() {
    use ivshmem_net_protocol::link::PeerState;
    let (r, g) = region(2);
    let seat = probe_from_claim(&r, &g, tok(1), 3).unwrap();
    assert_eq!(seat.release(), Ok(()));
    assert_eq!(
        (slot(&r, 0), state(&r, &g, 0)),
        (0, PeerState::Reset as u32)
    );
    // The next peer gets the id and gets ready before the first seat is dropped.
    let next = probe_from_claim(&r, &g, tok(2), 3).unwrap();
    assert_eq!(next.id(), 0);
    drop(seat);
    assert_eq!(
        (slot(&r, 0), state(&r, &g, 0)),
        (tok(2), PeerState::Ready as u32)
    );
    drop(next);
    assert_eq!(slot(&r, 0), 0);
}

#[test]
fn a_seat_is_the_region_it_wraps_and_checks_its_arguments() {
    let (r, g) = region(2);
    assert_eq!(Claimed::new(&r, &g, 0, 0).err(), Some(Error::ZeroToken));
    assert_eq!(Claimed::new(&r, &g, 2, 1).err(), Some(Error::BadPeerId(2)));
    let seat = Claimed::new(&r, &g, 1, tok(1)).unwrap();
    assert_eq!((seat.len(), seat.token()), (r.len(), tok(1)));
    seat.store(64, 0xfeed).unwrap();
    assert_eq!(r.load(64), Ok(0xfeed));
    // Never claimed: dropping it writes nothing.
    drop(seat);
    assert_eq!(slot(&r, 1), 0);
}

#[test]
fn a_seat_claimed_with_its_guard_releases_exactly_what_it_claimed() {
    let (r, g) = region(4);
    set_slot(&r, 0, tok(9));
    beat(&r, &g, 0);
    let (seat, claim) =
        claim_seat(&r, &g, None, tok(1), |_, _| panic!("a free id: no wait")).unwrap();
    assert_eq!((seat.id(), seat.token(), claim), (1, tok(1), Claim::Free));
    assert_eq!(slots(&r, &g), vec![tok(9), tok(1), 0, 0]);
    // The guard's offsets are those of id 1: dropping it resets block 1 and frees slot 1.
    let state = g.ctrl_offset(1).unwrap() + ctrl::STATE;
    r.store(state, PeerState::Ready as u32).unwrap();
    drop(seat);
    assert_eq!(slots(&r, &g), vec![tok(9), 0, 0, 0]);
    assert_eq!(r.load(state), Ok(PeerState::Reset as u32));
    // A claim that fails leaves every slot as it was.
    assert_eq!(
        claim_seat(&r, &g, None, 0, |_, _| {}).err(),
        Some(Error::ZeroToken)
    );
    assert!(claim_seat(&r, &g, Some(4), tok(2), |_, _| {}).is_err());
    assert_eq!(slots(&r, &g), vec![tok(9), 0, 0, 0]);
    // `wait_ms` gets the region: a holder of the wanted id that keeps beating while we wait
    // keeps its slot.
    let mut waits = 0;
    let held = claim_seat(&r, &g, Some(0), tok(3), |reg, _| {
        waits += 1;
        beat(reg, &g, 0);
    });
    assert_eq!(held.err(), Some(Error::SlotTaken(0)));
    assert_eq!(waits, 1);
    assert_eq!(slots(&r, &g), vec![tok(9), 0, 0, 0]);
}
