// SPDX-License-Identifier: GPL-2.0

//! The PCI side: bind an ivshmem device, map its registers (BAR0) and shared memory (BAR2),
//! and join the region described in [`crate::protocol::layout`].

use crate::ext::{
    errno::eproto,
    net, params as ext_params,
    pci::{self, BarRegion, Enabled, IrqVectors},
    random,
    shm::SharedMem,
    time,
};
use crate::netdev::{Mac, Net, Queues};
use crate::params::Params;
use crate::protocol::frame;
use crate::protocol::layout::{self, Attach, Claim, Geometry, Region};
use crate::protocol::link::{self, Own, PeerState};
use crate::protocol::ring::{Pool, Ring};
use crate::regs::{self, Irq};
use crate::{dev_err, dev_info, dev_warn};
use kernel::{c_str, prelude::*};

/// BAR numbers.
const BAR_REGS: u32 = 0;
const BAR_MSIX: u32 = 1;
const BAR_SHM: u32 = 2;

/// How long a joining peer waits for another peer that is initialising the header before
/// presuming it dead: 200 waits of 10 ms.
const INIT_WAITS: u32 = 200;
const INIT_WAIT_MS: u32 = 10;

crate::pci_device_table!(IVSHMEM_IDS, "ivshmem_net", [(0x1af4, 0x1110)]);

/// One bound ivshmem device.
///
/// Fields drop in declaration order, which undoes probe in reverse: unregister the network
/// device (which detaches from the region and unmaps it), unmap the registers, release the
/// BARs, disable the device.
pub(crate) struct IvshmemNet {
    _net: net::Registration<Net>,
    _vectors: Option<IrqVectors>,
    _shm_region: BarRegion,
    _regs_region: BarRegion,
    _enabled: Enabled,
    dev: ARef<pci::Device>,
}

use kernel::types::ARef;

/// Why a region could not be used, in words for the one log line probe prints.
fn describe(e: layout::Error) -> (&'static str, Error) {
    use layout::Error as E;
    match e {
        E::TooSmall { .. } => ("region too small for the layout", EINVAL),
        E::BadMaxPeers(_) => ("max_peers out of range", EINVAL),
        E::BadMagic(_) => ("header is ready but its magic is wrong", eproto()),
        E::BadVersion(_) => ("region uses another layout version", eproto()),
        E::GeometryMismatch => (
            "region set up with another geometry (size or max_peers)",
            eproto(),
        ),
        E::BadState(_) => ("header state word holds garbage", eproto()),
        E::InitStalled => (
            "another peer took over initialising the region, or its state word would not hold \
             still",
            EBUSY,
        ),
        E::OutOfBounds | E::Misaligned => ("access outside the mapped region", EINVAL),
        E::Corrupt(_) => ("ring corrupted by peer", EINVAL),
        E::BadFrameLen(_) | E::NotReserved => ("ring used wrongly", EINVAL),
        E::BadPeerId(_) => ("peer id out of range for max_peers", EINVAL),
        E::ZeroToken => ("internal: zero slot token", EINVAL),
        E::SlotTaken(_) => ("that peer id is held by a live peer", EBUSY),
        E::NoFreeSlot => ("every peer slot is held by a live peer", EBUSY),
        E::SlotLost(_) => ("our peer slot was taken over by another peer", EBUSY),
    }
}

impl pci::Driver for IvshmemNet {
    const NAME: &'static CStr = c_str!("ivshmem_net");
    const ID_TABLE: &'static [pci::DeviceId] = &IVSHMEM_IDS;

    fn probe(dev: &pci::Device, _id: &pci::DeviceId) -> Result<Pin<KBox<Self>>> {
        let enabled = dev.enable()?;

        let shm_len = dev.resource_len(BAR_SHM);
        if shm_len == 0 || !dev.resource_is_mem(BAR_SHM) {
            dev_err!(
                dev,
                "no shared-memory BAR2: not an ivshmem device this driver can use"
            );
            return Err(ENODEV);
        }
        if shm_len < layout::MIN_REGION_LEN {
            dev_err!(
                dev,
                "BAR2 is {} KiB; the layout needs at least {} MiB of shared memory",
                shm_len >> 10,
                layout::MIN_REGION_LEN >> 20
            );
            return Err(EINVAL);
        }
        let params = Params::get()?;
        let max_peers = params.max_peers;
        let geometry = Geometry::new(shm_len, max_peers).map_err(|e| {
            let (why, err) = describe(e);
            dev_err!(
                dev,
                "cannot lay out {} MiB for {} peers: {}",
                shm_len >> 20,
                max_peers,
                why
            );
            err
        })?;

        let regs_region = dev.request_region(BAR_REGS, c_str!("ivshmem_net regs"))?;
        let shm_region = dev.request_region(BAR_SHM, c_str!("ivshmem_net shm"))?;
        let regs = dev.iomap(BAR_REGS)?;
        let shm = dev.memremap(BAR_SHM)?;
        let doorbell = dev.resource_len(BAR_MSIX) != 0;
        let ivposition = regs.read32(regs::IVPOSITION)?;

        let mut waits = 0;
        let attached = layout::attach(&shm, geometry, random::u64(), || {
            waits += 1;
            time::msleep(INIT_WAIT_MS);
            waits < INIT_WAITS
        })
        .map_err(|e| {
            let (why, err) = describe(e);
            if let layout::Error::BadVersion(v) = e {
                dev_err!(
                    dev,
                    "refusing the shared region: it was set up for layout version {}, this \
                     driver speaks version {} only; left untouched",
                    v,
                    layout::VERSION
                );
            } else {
                dev_err!(
                    dev,
                    "refusing the shared region: {} ({:?}); left untouched",
                    why,
                    e
                );
            }
            err
        })?;

        dev_info!(
            dev,
            "bound: {} mode, IVPosition {}, BAR2 {} MiB mapped write-back; layout v{} {} \
             (nonce {:#018x}, {} peers, {} KiB transmit pool each, {} queues)",
            if doorbell { "doorbell" } else { "plain" },
            ivposition,
            shm.len() >> 20,
            layout::VERSION,
            match attached.how {
                Attach::Initialised => "initialised",
                Attach::Joined => "joined",
            },
            attached.nonce,
            geometry.max_peers,
            geometry.pool_len >> 10,
            geometry.queues,
        );

        // Our peer id (slot): `id=`, or the first free slot. In doorbell mode the IVPosition
        // the server gave us is published as our doorbell id instead (see `Net::kick`).
        let token = (random::u64() as u32) | 1;
        let want = params.id;
        // Before judging a slot stale by its frozen heartbeat, ring every doorbell peer: an
        // idle doorbell peer does not beat on its own, but does when rung.
        let probe = |shm: &SharedMem, ms| {
            if doorbell {
                for j in 0..geometry.max_peers {
                    if let Some(id) = link::peer_doorbell(shm, &geometry, j) {
                        let _ = regs.write32(regs::DOORBELL, id << 16);
                    }
                }
            }
            time::msleep(ms)
        };
        // From the claim on, our place in the region (the slot, and the control block we are
        // about to fill) goes with `shm`: whatever fails below gives it back by dropping it.
        let (shm, claim) = layout::claim_seat(shm, &geometry, want, token, probe).map_err(|e| {
            let (why, err) = describe(e);
            dev_err!(dev, "no peer id: {} ({:?})", why, e);
            err
        })?;
        let me = shm.id();
        let how = match (claim, params.id.is_some()) {
            (Claim::Stale, _) => "took over a stale slot",
            (_, true) => "id= parameter",
            _ => "claimed a free slot",
        };

        let mut mac = [0u8; 6];
        random::fill(&mut mac);
        mac[0] = (mac[0] & 0xfe) | 0x02; // unicast, locally administered
        let max_frame = Ring::new(&geometry, 0, 1, 0).map_or(0, |r| r.max_frame());
        let max_mtu = frame::max_mtu(max_frame);
        let mtu = frame::DEFAULT_MTU.min(max_mtu);
        // Channels: `queues=` or one per online CPU, capped at what the layout has rings for
        // and the pool partitions allow (each partition holds two of the largest frames);
        // `ethtool -L` may go up to that cap.
        let queues_max = layout::MAX_QUEUES
            .min(geometry.queues)
            .min(Pool::max_partitions(&geometry))
            .max(1);
        let queues = params
            .queues
            .unwrap_or_else(ext_params::online_cpus)
            .clamp(1, queues_max);
        if params.queues.is_some_and(|q| q > queues_max) {
            dev_info!(
                dev,
                "queues={}: this region allows {}; using {}",
                params.queues.unwrap_or(0),
                queues_max,
                queues
            );
        }
        // Doorbell mode: a vector per channel we may have, MSI-X if the device has them (as
        // many as it has, the channels sharing them round-robin), else one INTx line.
        let vectors = if doorbell {
            match dev.alloc_irq_vectors(1, queues_max) {
                Ok(v) => Some(v),
                Err(e) => {
                    dev_warn!(
                        dev,
                        "no usable interrupt (no MSI-X, no INTx line: {:?}): polling, and still \
                         ringing the peers' doorbells",
                        e
                    );
                    None
                }
            }
        } else {
            None
        };
        let irq: Result<(Irq, KVec<u32>)> = match &vectors {
            None if doorbell => Ok((Irq::Polled, KVec::new())),
            None => Ok((Irq::None, KVec::new())),
            Some(v) => {
                // INTx stays masked (IntrMask) until its handler is in place:
                // `Net::irq_unmask`, called by the registration once it requested the line.
                let kind = if v.is_msix() { Irq::Msix } else { Irq::Intx };
                if kind == Irq::Intx {
                    // Masked now, whatever a previous driver (or a kexec'd kernel) left in
                    // the register, and the status read to clear a doorbell it let through:
                    // the shared line must not be asserted before our handler is there.
                    let _ = regs.write32(regs::INTR_MASK, 0);
                    let _ = regs.read32(regs::INTR_STATUS);
                }
                let mut irqs = KVec::with_capacity(v.count() as usize, GFP_KERNEL)?;
                for i in 0..v.count() {
                    irqs.push(v.irq(i)?, GFP_KERNEL)?;
                }
                Ok((kind, irqs))
            }
        };
        let (irq, irqs) = match irq {
            Ok((kind, irqs)) => (kind, irqs),
            Err(e) => return Err(e),
        };
        let nvec = (irqs.len() as u32).max(1);
        let features = link::feature::CSUM
            | link::feature::GSO
            | if doorbell { link::feature::DOORBELL } else { 0 }
            | if params.transparent.is_some() {
                link::feature::TRANSPARENT
            } else {
                0
            };

        let mut own = Own::new(&geometry, me).map_err(|_| EINVAL)?;
        let written = own
            .attach(&shm, mac, mtu)
            .and_then(|()| own.set_features(&shm, features))
            .and_then(|()| own.set_doorbell_id(&shm, if doorbell { ivposition } else { 0 }))
            .and_then(|()| own.set_queues(&shm, queues))
            .and_then(|()| own.set_vectors(&shm, nvec))
            .and_then(|()| own.set_state(&shm, PeerState::Ready));
        if let Err(e) = written {
            dev_err!(dev, "cannot write our control block: {:?}", e);
            return Err(EINVAL);
        }

        // `Net` owns `shm` from here on: failing to make it, or dropping it, gives our place
        // back.
        let counts = Queues {
            active: queues,
            max: queues_max,
            vectors: nvec,
        };
        let data = Net::new(shm, regs, irq, attached, own, params, dev.into(), counts)?;
        let cfg = net::Config {
            mac,
            min_mtu: frame::MIN_MTU,
            max_mtu,
            mtu,
            tso_max: Some(frame::tso_max(max_frame)),
            queues_max,
            queues,
            irqs,
            irq_affinity: irq == Irq::Msix,
        };
        let mut netreg = net::Registration::new(dev, data, &cfg)?;
        if let Some(name) = params.transparent {
            netreg.add_post_routing_hooks()?;
            dev_info!(
                dev,
                "{}: transparent mode on {}: traffic to peers' addresses on it goes through \
                 shared memory",
                netreg.device().name(),
                name
            );
        }
        dev_info!(
            dev,
            "{}: peer id {} ({}), MAC {}, max MTU {}, {} of {} channels, {} vectors, {}",
            netreg.device().name(),
            netreg.data().id(),
            how,
            Mac(mac),
            max_mtu,
            queues,
            queues_max,
            nvec,
            match irq {
                Irq::None => "polling",
                Irq::Msix => "MSI-X doorbells",
                Irq::Intx => "INTx doorbells",
                Irq::Polled => "polling, ringing doorbells",
            }
        );
        // Heartbeats start now; traffic once the interface is up.
        netreg.device().timer_arm(1);

        Ok(KBox::pin(
            IvshmemNet {
                _net: netreg,
                _vectors: vectors,
                _shm_region: shm_region,
                _regs_region: regs_region,
                _enabled: enabled,
                dev: dev.into(),
            },
            GFP_KERNEL,
        )?)
    }
}

impl Drop for IvshmemNet {
    fn drop(&mut self) {
        dev_info!(
            &self.dev,
            "unbound ({} MiB region released)",
            self.dev.resource_len(BAR_SHM) >> 20
        );
    }
}
