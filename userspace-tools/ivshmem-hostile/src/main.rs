// SPDX-License-Identifier: GPL-2.0

//! `ivshmem-hostile REGION [--seconds N] [--mode random|crafted|mixed] [--rate N] [--seed N]
//! [--json]`: storms a live ivshmem-net region; see the crate documentation and `--help`.
//!
//! Nothing is written before the header has been checked with the layout's own
//! `read_geometry` and the file found long enough for the region it describes.

use ivshmem_hostile::cli::{self, Args, Command};
use ivshmem_hostile::forge;
use ivshmem_hostile::hog;
use ivshmem_hostile::storm::Storm;
use ivshmem_net_protocol::layout::{
    phase, read_geometry, Error, Geometry, MAGIC, MIN_REGION_LEN, VERSION,
};
use ivshmem_net_protocol::MmapRegion;
use std::io::Write;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// Why the region is refused, for people.
fn refusal(e: Error) -> String {
    match e {
        Error::BadState(s) if s & 3 == phase::EMPTY => {
            format!("not initialised (state word {s:#010x}): no peer has set it up")
        }
        Error::BadState(s) if s & 3 == phase::INITIALISING => {
            format!("being initialised (state word {s:#010x}); try again once a peer is up")
        }
        Error::BadState(s) => format!("state word {s:#010x}: not an ivshmem-net region"),
        Error::BadMagic(m) => {
            format!("bad magic {m:#010x} (want {MAGIC:#010x} \"IVNT\"): not an ivshmem-net region")
        }
        Error::BadVersion(v) => {
            format!("layout version {v}; this tool knows version {VERSION} only")
        }
        Error::GeometryMismatch => {
            "the header's geometry is not one its size and peer count give".into()
        }
        Error::TooSmall { len } => format!("the header's region size {len} is too small"),
        Error::BadMaxPeers(n) => format!("the header's max peers {n} is out of range"),
        e => format!("cannot read the header: {e:?}"),
    }
}

/// Opens and checks the region; `Err` is the message for a refusal (exit status 1).
fn open(args: &Args) -> Result<(MmapRegion, Geometry), String> {
    let path = args.path.display();
    let len = std::fs::metadata(&args.path)
        .map_err(|e| format!("cannot open {path}: {e}"))?
        .len();
    if len < MIN_REGION_LEN {
        return Err(format!(
            "refusing {path}: {len} bytes, too small for an ivshmem-net region (at least {MIN_REGION_LEN})"
        ));
    }
    let r =
        MmapRegion::open(&args.path).map_err(|e| format!("cannot map {path} read-write: {e}"))?;
    let g = read_geometry(&r).map_err(|e| format!("refusing {path}: {}", refusal(e)))?;
    if g.region_len > len {
        return Err(format!(
            "refusing {path}: the header says {} bytes but the file has {len}",
            g.region_len
        ));
    }
    Ok((r, g))
}

/// A seed from the clock and the pid, for runs without `--seed`.
fn clock_seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    ivshmem_hostile::rng::Rng::new(nanos ^ (u64::from(std::process::id()) << 40)).next_u64()
}

fn main() -> ExitCode {
    let args = match cli::parse_args(std::env::args().skip(1)) {
        Ok(Command::Run(a)) => a,
        Ok(Command::Help) => {
            print!("{}", cli::usage());
            return ExitCode::SUCCESS;
        }
        Ok(Command::Version) => {
            println!("ivshmem-hostile {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("ivshmem-hostile: {e} (see --help)");
            return ExitCode::from(2);
        }
    };
    let (r, g) = match open(&args) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("ivshmem-hostile: {e}");
            return ExitCode::from(1);
        }
    };
    let seed = args.seed.unwrap_or_else(clock_seed);
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        if let Err(e) = signal_hook::flag::register(sig, Arc::clone(&stop)) {
            eprintln!("ivshmem-hostile: cannot handle signal {sig}: {e}");
            return ExitCode::from(1);
        }
    }
    let restart = Arc::new(AtomicBool::new(false));
    if let Err(e) = signal_hook::flag::register(signal_hook::consts::SIGUSR1, Arc::clone(&restart))
    {
        eprintln!("ivshmem-hostile: cannot handle SIGUSR1: {e}");
        return ExitCode::from(1);
    }
    if args.hog {
        let token = (ivshmem_hostile::rng::Rng::new(seed).next_u32()) | 1;
        return match hog::hog(
            &r,
            &g,
            args.drain_every,
            token,
            args.duration,
            &stop,
            &restart,
        ) {
            Ok(h) => {
                let out = if args.json {
                    format!("{}\n", h.json())
                } else {
                    h.text()
                };
                let mut stdout = std::io::stdout().lock();
                let _ = stdout
                    .write_all(out.as_bytes())
                    .and_then(|()| stdout.flush());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!(
                    "ivshmem-hostile: cannot hog in {} (no peer present to model?): {e:?}",
                    args.path.display()
                );
                ExitCode::from(1)
            }
        };
    }
    if let Some(victim) = args.forge_mac_of {
        if victim >= g.max_peers {
            eprintln!(
                "ivshmem-hostile: --forge-mac-of {victim}: the region has peer ids 0 to {}",
                g.max_peers - 1
            );
            return ExitCode::from(2);
        }
        let token = (ivshmem_hostile::rng::Rng::new(seed).next_u32()) | 1;
        return match forge::forge_mac(&r, &g, victim, token, args.duration, &stop, &restart) {
            Ok(f) => {
                let out = if args.json {
                    format!("{}\n", f.json())
                } else {
                    f.text()
                };
                let mut stdout = std::io::stdout().lock();
                let _ = stdout
                    .write_all(out.as_bytes())
                    .and_then(|()| stdout.flush());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!(
                    "ivshmem-hostile: cannot forge peer {victim}'s MAC in {}: {e:?}",
                    args.path.display()
                );
                ExitCode::from(1)
            }
        };
    }
    if let Some(q) = args.queue.filter(|&q| q >= g.queues) {
        eprintln!(
            "ivshmem-hostile: --queue {q}: the region has queues 0 to {}",
            g.queues - 1
        );
        return ExitCode::from(2);
    }
    let mut storm = match Storm::new(&r, g, seed, args.queue) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("ivshmem-hostile: refusing {}: {e:?}", args.path.display());
            return ExitCode::from(1);
        }
    };
    eprintln!(
        "ivshmem-hostile: storming {} for {} s: mode {}, rate {}, seed {seed}; {} peer ids, \
         present at start: {:?}; rings of {}",
        args.path.display(),
        args.duration.as_secs_f64(),
        args.mode.name(),
        if args.rate == 0 {
            "unlimited".to_string()
        } else {
            format!("{}/s", args.rate)
        },
        g.max_peers,
        storm.targets().live,
        match args.queue {
            Some(q) => format!("queue {q} of {}", g.queues),
            None => format!("all {} queues", g.queues),
        },
    );
    let result = storm.run(args.mode, args.duration, args.rate, &stop);
    let ran = match &result {
        Ok(d) => *d,
        Err(_) => args.duration,
    };
    let summary = storm.summary(args.mode, ran, seed);
    let out = if args.json {
        format!("{}\n", summary.json())
    } else {
        summary.text()
    };
    let mut stdout = std::io::stdout().lock();
    // A reader that went away is not worth a failure status.
    let _ = stdout
        .write_all(out.as_bytes())
        .and_then(|()| stdout.flush());
    match result {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            // Cannot happen with a geometry `read_geometry` accepted: every offset the attacks
            // compute is inside it.
            eprintln!("ivshmem-hostile: a write failed: {e:?}");
            ExitCode::from(1)
        }
    }
}
