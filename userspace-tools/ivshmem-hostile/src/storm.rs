// SPDX-License-Identifier: GPL-2.0

//! The storm: attacks chosen by mode, paced to a rate in small batches (the host running the
//! guests may have two cores only), until the time is up or a signal asks it to stop; and the
//! summary it leaves.

use ivshmem_net_protocol::layout::{Error, Geometry, Region};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::attack::{self, Ctx, Kind};
use crate::rng::Rng;
use crate::target::Targets;

/// Which attacks a storm makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Random bytes at random places ([`Kind::RANDOM`]).
    Random,
    /// [`Kind::CRAFTED`] in turn.
    Crafted,
    /// Phases of [`PHASE`]: crafted first, then random, and so on.
    Mixed,
}

impl Mode {
    /// The mode's name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Random => "random",
            Mode::Crafted => "crafted",
            Mode::Mixed => "mixed",
        }
    }

    /// The kinds this mode can make.
    pub fn kinds(self) -> Vec<Kind> {
        match self {
            Mode::Random => Kind::RANDOM.to_vec(),
            Mode::Crafted => Kind::CRAFTED.to_vec(),
            Mode::Mixed => Kind::ALL.to_vec(),
        }
    }
}

/// Length of one phase of [`Mode::Mixed`].
pub const PHASE: Duration = Duration::from_secs(1);
/// How long the paced loop sleeps between batches.
const TICK: Duration = Duration::from_millis(1);
/// Attacks per batch at `--rate 0`, between looks at the clock and the stop flag.
const UNPACED_BATCH: u32 = 256;

/// The state of one storm over one region.
pub struct Storm<'a, R: Region + ?Sized> {
    r: &'a R,
    targets: Targets,
    rng: Rng,
    /// Next entry of [`Kind::CRAFTED`].
    next_crafted: usize,
    /// What `heartbeat-freeze` writes.
    frozen: u32,
    counts: Vec<u64>,
}

impl<'a, R: Region + ?Sized> Storm<'a, R> {
    /// A storm over `r`, whose geometry `g` was read before (and is never read again), driven
    /// by `seed`, aiming at the rings of `queue` only if given. Notes which peers are present
    /// now; see [`Targets::new`].
    pub fn new(r: &'a R, g: Geometry, seed: u64, queue: Option<u32>) -> Result<Self, Error> {
        let targets = Targets::new(r, g, queue)?;
        let mut rng = Rng::new(seed);
        let frozen = rng.next_u32();
        let next_crafted = rng.index(Kind::CRAFTED.len());
        Ok(Storm {
            r,
            targets,
            rng,
            next_crafted,
            frozen,
            counts: vec![0; Kind::ALL.len()],
        })
    }

    /// Where the storm aims.
    pub fn targets(&self) -> &Targets {
        &self.targets
    }

    /// One attack of `mode` (for [`Mode::Mixed`], crafted); returns its kind.
    pub fn step(&mut self, mode: Mode) -> Result<Kind, Error> {
        let kind = match mode {
            Mode::Random => {
                // Weights: header 15, control blocks 20, ring headers 20, descriptors 20,
                // data 10, anywhere 15.
                let w = self.rng.below(100);
                Kind::RANDOM[match w {
                    0..=14 => 0,
                    15..=34 => 1,
                    35..=54 => 2,
                    55..=74 => 3,
                    75..=84 => 4,
                    _ => 5,
                }]
            }
            Mode::Crafted | Mode::Mixed => {
                let k = Kind::CRAFTED[self.next_crafted];
                self.next_crafted = (self.next_crafted + 1) % Kind::CRAFTED.len();
                k
            }
        };
        let mut c = Ctx {
            r: self.r,
            t: &self.targets,
            rng: &mut self.rng,
            frozen: self.frozen,
        };
        attack::run(&mut c, kind)?;
        self.counts[kind.index()] += 1;
        Ok(kind)
    }

    /// Attacks so far, by kind.
    pub fn count(&self, k: Kind) -> u64 {
        self.counts[k.index()]
    }

    /// Attacks so far.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Runs for `duration` or until `stop` is set, at most `rate` attacks a second (0: as fast
    /// as it can), in batches every millisecond. Returns how long it ran.
    pub fn run(
        &mut self,
        mode: Mode,
        duration: Duration,
        rate: u32,
        stop: &AtomicBool,
    ) -> Result<Duration, Error> {
        let start = Instant::now();
        let mut last = start;
        // Attacks owed at this rate and not made yet; capped at 20 ms worth, so that after a
        // stall (the host is busy with two guests) the storm does not burst to catch up.
        let mut credit = 0.0f64;
        let cap = (f64::from(rate) / 50.0).max(1.0);
        loop {
            let now = Instant::now();
            let elapsed = now.duration_since(start);
            if elapsed >= duration || stop.load(Ordering::Relaxed) {
                return Ok(elapsed);
            }
            let phase_mode = match mode {
                Mode::Mixed if (elapsed.as_millis() / PHASE.as_millis()) % 2 == 1 => Mode::Random,
                m => m,
            };
            let batch = if rate == 0 {
                UNPACED_BATCH
            } else {
                credit =
                    (credit + f64::from(rate) * now.duration_since(last).as_secs_f64()).min(cap);
                let n = credit.floor();
                credit -= n;
                n as u32
            };
            last = now;
            for _ in 0..batch {
                self.step(phase_mode)?;
            }
            if rate == 0 {
                std::thread::yield_now();
            } else {
                std::thread::sleep(TICK);
            }
        }
    }

    /// The summary of what was done, with the kinds `mode` can make (zero counts included).
    pub fn summary(&self, mode: Mode, ran: Duration, seed: u64) -> Summary {
        Summary {
            seconds: ran.as_secs_f64(),
            writes: self.total(),
            by_kind: mode
                .kinds()
                .into_iter()
                .map(|k| (k.name(), self.count(k)))
                .collect(),
            seed,
        }
    }
}

/// What a storm did.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// How long it ran.
    pub seconds: f64,
    /// Attacks made.
    pub writes: u64,
    /// Attacks by kind name.
    pub by_kind: Vec<(&'static str, u64)>,
    /// The seed that reproduces the attack sequence.
    pub seed: u64,
}

impl Summary {
    /// The summary as one JSON object: `seconds`, `writes`, `by_kind` {name: count}, `seed`.
    pub fn json(&self) -> serde_json::Value {
        let by_kind: serde_json::Map<String, serde_json::Value> = self
            .by_kind
            .iter()
            .map(|&(name, n)| (name.to_string(), n.into()))
            .collect();
        serde_json::json!({
            "seconds": (self.seconds * 1000.0).round() / 1000.0,
            "writes": self.writes,
            "by_kind": by_kind,
            "seed": self.seed,
        })
    }

    /// The summary for people.
    pub fn text(&self) -> String {
        let rate = if self.seconds > 0.0 {
            self.writes as f64 / self.seconds
        } else {
            0.0
        };
        let mut s = format!(
            "ivshmem-hostile: {:.2} s, {} writes ({:.0}/s), seed {}\n",
            self.seconds, self.writes, rate, self.seed
        );
        let width = self.by_kind.iter().map(|(n, _)| n.len()).max().unwrap_or(0);
        for (name, n) in &self.by_kind {
            s += &format!("  {name:<width$}  {n}\n");
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ivshmem_net_protocol::layout::attach;
    use ivshmem_net_protocol::HeapRegion;

    fn region() -> (HeapRegion, Geometry) {
        let r = HeapRegion::new(4 << 20);
        let g = Geometry::new(4 << 20, 3).unwrap();
        attach(&r, g, 7, || false).unwrap();
        (r, g)
    }

    fn words(r: &HeapRegion) -> Vec<u32> {
        (0..r.len() / 4).map(|i| r.load(4 * i).unwrap()).collect()
    }

    #[test]
    fn the_seed_reproduces_the_storm() {
        let run = |seed| {
            let (r, g) = region();
            let mut s = Storm::new(&r, g, seed, None).unwrap();
            for i in 0..3000 {
                s.step(if i % 2 == 0 {
                    Mode::Random
                } else {
                    Mode::Crafted
                })
                .unwrap();
            }
            words(&r)
        };
        assert_eq!(run(11), run(11));
        assert_ne!(run(11), run(12));
    }

    #[test]
    fn crafted_mode_cycles_through_every_kind() {
        let (r, g) = region();
        let mut s = Storm::new(&r, g, 3, None).unwrap();
        for _ in 0..Kind::CRAFTED.len() * 2 {
            s.step(Mode::Crafted).unwrap();
        }
        for &k in Kind::CRAFTED {
            assert_eq!(s.count(k), 2, "{}", k.name());
        }
        for &k in Kind::RANDOM {
            assert_eq!(s.count(k), 0);
        }
    }

    #[test]
    fn paced_run_keeps_to_the_rate_and_stops_on_the_flag() {
        let (r, g) = region();
        let mut s = Storm::new(&r, g, 1, None).unwrap();
        let stop = AtomicBool::new(false);
        let ran = s
            .run(Mode::Mixed, Duration::from_millis(300), 10_000, &stop)
            .unwrap();
        assert!(ran >= Duration::from_millis(300));
        // 3000 owed; allow a slow machine and the first tick's rounding.
        assert!(s.total() <= 3_100, "{}", s.total());
        assert!(s.total() >= 300, "{}", s.total());

        stop.store(true, Ordering::Relaxed);
        let before = s.total();
        let ran = s
            .run(Mode::Random, Duration::from_secs(60), 0, &stop)
            .unwrap();
        assert!(ran < Duration::from_secs(1));
        assert_eq!(s.total(), before);
    }

    #[test]
    fn summary_lists_the_modes_kinds() {
        let (r, g) = region();
        let mut s = Storm::new(&r, g, 1, None).unwrap();
        for _ in 0..100 {
            s.step(Mode::Random).unwrap();
        }
        let sum = s.summary(Mode::Random, Duration::from_millis(1500), 42);
        assert_eq!(sum.by_kind.len(), Kind::RANDOM.len());
        let j = sum.json();
        assert_eq!(j["writes"], 100);
        assert_eq!(j["seed"], 42);
        assert_eq!(j["seconds"], 1.5);
        let total: u64 = j["by_kind"]
            .as_object()
            .unwrap()
            .values()
            .map(|v| v.as_u64().unwrap())
            .sum();
        assert_eq!(total, 100);
        assert!(sum.text().contains("seed 42"));
    }
}
