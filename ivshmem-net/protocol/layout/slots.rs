// SPDX-License-Identifier: GPL-2.0

//! Peer ids: claiming a slot word of the header ([`claim_slot`]), giving it back
//! ([`release_slot`]), taking it back after a peer scribbled a zero over it ([`reclaim_slot`]),
//! and recovering the id of a peer that died holding it (see *Peer ids* in [`super`]).
//!
//! The initialiser zeroes the slot words ([`super::attach`]); from then on slot word `i` (at
//! `hdr::PEER_SLOTS + 4 * i`) changes only by compare-and-swap: from 0 or a dead owner's token
//! to a claimant's token, and by its owner from its token back to 0. Each slot word, and the
//! owner's heartbeat and state in its control block, is read once per sample; any value is
//! accepted.

use super::super::link;
use super::{hdr, Error, Geometry, Region, MAX_PEERS};

/// How long [`claim_slot`] waits between its two samples of the held slots: longer than a live
/// peer may go without beating ([`link::HEARTBEAT_TIMEOUT_MS`]), with margin.
pub const STALE_WAIT_MS: u32 = link::HEARTBEAT_TIMEOUT_MS as u32 + 500;

/// Passes [`claim_slot`] makes over the slots looking for a free one; another pass only follows
/// a pass in which a compare-and-swap on a free-looking slot lost a race.
const SCAN_PASSES: u32 = 4;

/// How a peer id was obtained by [`claim_slot`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// No id was requested; the slot was free (0) and we moved it to our token.
    Free,
    /// The slot was held by a peer that showed no sign of life across [`STALE_WAIT_MS`]; we
    /// moved it from that peer's token to ours. Reported for requested ids as well.
    Stale,
    /// The requested id, whose slot was free (or freed while we waited).
    Fixed,
}

/// Offset of peer `id`'s slot word; `id` must be below `g.max_peers`, which must be at most
/// [`MAX_PEERS`] (the slot words reserved in the header).
fn slot_offset(g: &Geometry, id: u32) -> Result<usize, Error> {
    if g.max_peers > MAX_PEERS {
        return Err(Error::BadMaxPeers(g.max_peers));
    }
    if id >= g.max_peers {
        return Err(Error::BadPeerId(id));
    }
    Ok(hdr::PEER_SLOTS + 4 * id as usize)
}

/// One look at a held slot: its word and its owner's signs of life, each read once.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Sample {
    token: u32,
    heartbeat: u32,
    state: u32,
}

fn sample<R: Region + ?Sized>(r: &R, g: &Geometry, id: u32) -> Result<Sample, Error> {
    let token = r.load(slot_offset(g, id)?)?;
    let base = g.ctrl_offset(id)?;
    Ok(Sample {
        token,
        heartbeat: r.load(base + link::ctrl::HEARTBEAT)?,
        state: r.load(base + link::ctrl::STATE)?,
    })
}

/// Claims a peer id: slot word `id` moves from 0 (or from a dead owner's token) to `token`.
///
/// `token` identifies this claimant and must be nonzero (pass a random value `| 1`); 0 is
/// refused with [`Error::ZeroToken`]. Keep it: [`release_slot`] needs it.
///
/// With `want = Some(id)` only that id is tried: [`Error::BadPeerId`] if `id >= g.max_peers`;
/// `(id, Claim::Fixed)` if its slot was free. If it is held, the slot is sampled, `wait_ms` is
/// called once with [`STALE_WAIT_MS`] and the slot is sampled again: if it was freed meanwhile it
/// is claimed (`Claim::Fixed`); if its word, heartbeat and state are all unchanged its owner is
/// presumed dead and the slot is taken over (`Claim::Stale`); otherwise [`Error::SlotTaken`].
///
/// With `want = None` the lowest free id is claimed (`Claim::Free`), rescanning (a bounded number
/// of times) when a compare-and-swap loses a race. If every slot is held, every slot word with
/// its owner's control-block heartbeat and state is sampled, `wait_ms(STALE_WAIT_MS)` is called
/// once, and everything is sampled again: a slot freed meanwhile is claimed (`Claim::Free`,
/// preferred), otherwise the lowest id whose slot word, heartbeat and state are all unchanged is
/// taken over (`Claim::Stale`); if none is, or every takeover loses its race, the result is
/// [`Error::NoFreeSlot`].
///
/// `wait_ms` must sleep for about the given number of milliseconds; it is called at most once,
/// and only when the id cannot be had at once. Every peer-written word is read once per sample
/// and any value is accepted: a nonzero slot word is an owner's token whatever it holds. A peer
/// stalled for longer than the wait (a paused VM) can lose its id; [`release_slot`] then reports
/// [`Error::SlotLost`].
///
/// # Examples
///
/// ```
/// use ivshmem_net_protocol::layout::{
///     attach, claim_slot, release_slot, Claim, Error, Geometry, STALE_WAIT_MS,
/// };
/// use ivshmem_net_protocol::HeapRegion;
///
/// let g = Geometry::new(4 << 20, 2)?;
/// let region = HeapRegion::new(g.region_len as usize);
/// attach(&region, g, 1, || false)?;
/// let (a, b) = (0x1357_9bdf, 0x2468_ace1);
/// assert_eq!(claim_slot(&region, &g, None, a, |_| {})?, (0, Claim::Free));
/// assert_eq!(claim_slot(&region, &g, None, b, |_| {})?, (1, Claim::Free));
/// // Both ids are held and neither holder beats a heartbeat: after one wait, the lowest id
/// // is taken over from its presumably dead owner...
/// let wait = |ms| assert_eq!(ms, STALE_WAIT_MS);
/// assert_eq!(claim_slot(&region, &g, None, 0x1111, wait)?, (0, Claim::Stale));
/// // ...who finds out when it tries to release it.
/// assert_eq!(release_slot(&region, &g, 0, a), Err(Error::SlotLost(0)));
/// release_slot(&region, &g, 1, b)?;
/// assert_eq!(claim_slot(&region, &g, Some(1), 0x2222, |_| {})?, (1, Claim::Fixed));
/// # Ok::<(), Error>(())
/// ```
pub fn claim_slot<R: Region + ?Sized>(
    r: &R,
    g: &Geometry,
    want: Option<u32>,
    token: u32,
    mut wait_ms: impl FnMut(u32),
) -> Result<(u32, Claim), Error> {
    if token == 0 {
        return Err(Error::ZeroToken);
    }
    if g.max_peers > MAX_PEERS {
        return Err(Error::BadMaxPeers(g.max_peers));
    }
    if let Some(id) = want {
        return claim_fixed(r, g, id, token, wait_ms);
    }
    if let Some(id) = claim_free(r, g, token)? {
        return Ok((id, Claim::Free));
    }

    let mut before = [Sample::default(); MAX_PEERS as usize];
    for (id, s) in (0..g.max_peers).zip(before.iter_mut()) {
        *s = sample(r, g, id)?;
    }
    wait_ms(STALE_WAIT_MS);
    // Bit `id` set: slot `id` looked dead in both samples. `id < MAX_PEERS` = 64.
    let mut stale = 0u64;
    for (id, was) in (0..g.max_peers).zip(before.iter()) {
        let now = sample(r, g, id)?;
        if now.token == 0 {
            if r.compare_exchange(slot_offset(g, id)?, 0, token)?.is_ok() {
                return Ok((id, Claim::Free));
            }
        } else if now == *was {
            stale |= 1 << id;
        }
    }
    for (id, was) in (0..g.max_peers).zip(before.iter()) {
        if stale & (1 << id) != 0
            && r.compare_exchange(slot_offset(g, id)?, was.token, token)?
                .is_ok()
        {
            return Ok((id, Claim::Stale));
        }
    }
    Err(Error::NoFreeSlot)
}

/// The lowest free slot moved to `token`, or `None` if every slot is held.
fn claim_free<R: Region + ?Sized>(r: &R, g: &Geometry, token: u32) -> Result<Option<u32>, Error> {
    for _ in 0..SCAN_PASSES {
        let mut raced = false;
        for id in 0..g.max_peers {
            let off = slot_offset(g, id)?;
            if r.load(off)? != 0 {
                continue;
            }
            match r.compare_exchange(off, 0, token)? {
                Ok(_) => return Ok(Some(id)),
                Err(_) => raced = true,
            }
        }
        if !raced {
            break;
        }
    }
    Ok(None)
}

fn claim_fixed<R: Region + ?Sized>(
    r: &R,
    g: &Geometry,
    id: u32,
    token: u32,
    mut wait_ms: impl FnMut(u32),
) -> Result<(u32, Claim), Error> {
    let off = slot_offset(g, id)?;
    if r.compare_exchange(off, 0, token)?.is_ok() {
        return Ok((id, Claim::Fixed));
    }
    let was = sample(r, g, id)?;
    wait_ms(STALE_WAIT_MS);
    let now = sample(r, g, id)?;
    if now.token == 0 {
        if r.compare_exchange(off, 0, token)?.is_ok() {
            return Ok((id, Claim::Fixed));
        }
    } else if now == was && r.compare_exchange(off, was.token, token)?.is_ok() {
        return Ok((id, Claim::Stale));
    }
    Err(Error::SlotTaken(id))
}

/// The word in peer id `id`'s slot: 0 if free, else its owner's token (or whatever a peer
/// scribbled there). Read once; callers compare it with a token they saw before to tell
/// whether the seat changed hands.
pub fn slot_token<R: Region + ?Sized>(r: &R, g: &Geometry, id: u32) -> Result<u32, Error> {
    r.load(slot_offset(g, id)?)
}

/// [`claim_slot`] with the seat that goes with the slot: `region`, with our place in it, in a
/// [`Claimed`] guard made without anything that can fail between the claim and the guard, so
/// no error leaves a slot claimed behind. `wait_ms` gets the region as well. On an error
/// nothing was claimed, and `region` is dropped.
pub fn claim_seat<R: Region>(
    region: R,
    g: &Geometry,
    want: Option<u32>,
    token: u32,
    mut wait_ms: impl FnMut(&R, u32),
) -> Result<(Claimed<R>, Claim), Error> {
    let (id, claim) = claim_slot(&region, g, want, token, |ms| wait_ms(&region, ms))?;
    // `claim_slot` checked `token` and gave an id below `max_peers <= MAX_PEERS`: the offsets
    // `Claimed::new` computes cannot fail for it.
    let seat = Claimed {
        region,
        id,
        token,
        slot: hdr::PEER_SLOTS + 4 * id as usize,
        state: g.ctrl_offset as usize + id as usize * g.ctrl_stride as usize + link::ctrl::STATE,
    };
    Ok((seat, claim))
}

/// Takes peer id `id`'s slot back with `token` if its word reads 0: nobody frees a slot but its
/// owner, so a zero there was written by someone scribbling on the region, and leaving it
/// would let the next peer to load claim our id. Any other value is left alone: it may be a
/// legitimate takeover (see [`claim_slot`]). Returns whether the slot was taken back.
pub fn reclaim_slot<R: Region + ?Sized>(
    r: &R,
    g: &Geometry,
    id: u32,
    token: u32,
) -> Result<bool, Error> {
    if token == 0 {
        return Err(Error::ZeroToken);
    }
    Ok(r.compare_exchange(slot_offset(g, id)?, 0, token)?.is_ok())
}

/// Releases peer id `id`: its slot word moves from `token` (the one given to [`claim_slot`]) back
/// to 0 with a compare-and-swap.
///
/// If the slot holds anything else, another peer has taken it over (it presumed us dead) or the
/// region was reinitialised: the slot is left untouched, since it is no longer ours to clear,
/// and [`Error::SlotLost`] is returned. Callers unloading should log that and carry on.
/// [`Error::ZeroToken`] and [`Error::BadPeerId`] report bad arguments; the region is untouched.
pub fn release_slot<R: Region + ?Sized>(
    r: &R,
    g: &Geometry,
    id: u32,
    token: u32,
) -> Result<(), Error> {
    if token == 0 {
        return Err(Error::ZeroToken);
    }
    match r.compare_exchange(slot_offset(g, id)?, token, 0)? {
        Ok(_) => Ok(()),
        Err(_) => Err(Error::SlotLost(id)),
    }
}

/// A region together with the peer slot we claimed in it: whoever owns this owns our place in
/// the region, and dropping it gives that place up, whatever path leads there.
///
/// The driver wraps the region in one right after [`claim_slot`] and keeps it for as long as
/// it uses the region (its device data holds it): a probe that fails after the claim, on any
/// path, drops it, and so does unbinding. Dropping it (or [`Claimed::release`]) writes
/// [`link::PeerState::Reset`] into our control block, so that no peer keeps taking us for
/// `Ready`, and then releases the slot, so that the next peer to load gets it at once instead
/// of after the staleness wait of [`claim_slot`]. Both happen only while the slot word still
/// holds our token: a slot another peer took over (it presumed us dead) is not ours any more,
/// nor is the control block that goes with it.
///
/// It is a [`Region`] itself, passing every access through, so code that was handed the
/// region keeps working on it.
///
/// # Examples
///
/// ```
/// use ivshmem_net_protocol::layout::{attach, claim_slot, Claimed, Geometry, Region};
/// use ivshmem_net_protocol::link::{ctrl, Own, PeerState};
/// use ivshmem_net_protocol::HeapRegion;
///
/// let g = Geometry::new(4 << 20, 2)?;
/// let region = HeapRegion::new(g.region_len as usize);
/// attach(&region, g, 1, || false)?;
/// let (id, _) = claim_slot(&region, &g, None, 0x1235, |_| {})?;
/// let seat = Claimed::new(&region, &g, id, 0x1235)?;
/// let mut own = Own::new(&g, id)?;
/// own.attach(&seat, [2, 0, 0, 0, 0, 1], 1500)?;
/// own.set_state(&seat, PeerState::Ready)?;
/// // Something fails before the device is up: the seat goes, and with it our place.
/// drop(seat);
/// assert_eq!(region.load(g.ctrl_offset(id)? + ctrl::STATE)?, PeerState::Reset as u32);
/// assert_eq!(claim_slot(&region, &g, None, 0x5679, |_| panic!("no wait"))?.0, id);
/// # Ok::<(), ivshmem_net_protocol::layout::Error>(())
/// ```
#[derive(Debug)]
pub struct Claimed<R: Region> {
    region: R,
    id: u32,
    token: u32,
    slot: usize,
    state: usize,
}

impl<R: Region> Claimed<R> {
    /// Peer id `id` of a region of geometry `g`, claimed in `region` with `token` (see
    /// [`claim_slot`]). [`Error::ZeroToken`] and [`Error::BadPeerId`] report bad arguments.
    pub fn new(region: R, g: &Geometry, id: u32, token: u32) -> Result<Self, Error> {
        if token == 0 {
            return Err(Error::ZeroToken);
        }
        let slot = slot_offset(g, id)?;
        let state = g.ctrl_offset(id)? + link::ctrl::STATE;
        Ok(Claimed {
            region,
            id,
            token,
            slot,
            state,
        })
    }

    /// Our peer id.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The token our slot was claimed with.
    pub fn token(&self) -> u32 {
        self.token
    }

    /// The region itself, for what needs its own type rather than any [`Region`].
    pub fn region(&self) -> &R {
        &self.region
    }

    /// Gives our place up now rather than on drop (which then finds nothing left to do):
    /// our control block says `Reset` and the slot is released, if it is still ours;
    /// [`Error::SlotLost`] if it is not (nothing is written then).
    pub fn release(&self) -> Result<(), Error> {
        if self.region.load(self.slot)? != self.token {
            return Err(Error::SlotLost(self.id));
        }
        self.region
            .store(self.state, link::PeerState::Reset as u32)?;
        match self.region.compare_exchange(self.slot, self.token, 0)? {
            Ok(_) => Ok(()),
            Err(_) => Err(Error::SlotLost(self.id)),
        }
    }
}

impl<R: Region> Drop for Claimed<R> {
    fn drop(&mut self) {
        // A slot already released, or lost, is left alone.
        let _ = self.release();
    }
}

impl<R: Region> Region for Claimed<R> {
    fn len(&self) -> usize {
        self.region.len()
    }
    fn load(&self, off: usize) -> Result<u32, Error> {
        self.region.load(off)
    }
    fn store(&self, off: usize, val: u32) -> Result<(), Error> {
        self.region.store(off, val)
    }
    fn compare_exchange(
        &self,
        off: usize,
        current: u32,
        new: u32,
    ) -> Result<Result<u32, u32>, Error> {
        self.region.compare_exchange(off, current, new)
    }
    fn read(&self, off: usize, buf: &mut [u8]) -> Result<(), Error> {
        self.region.read(off, buf)
    }
    fn write(&self, off: usize, buf: &[u8]) -> Result<(), Error> {
        self.region.write(off, buf)
    }
    fn fence(&self) {
        self.region.fence()
    }
}
