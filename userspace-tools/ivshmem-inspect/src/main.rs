// SPDX-License-Identifier: GPL-2.0

//! `ivshmem-inspect`: shows what is in an ivshmem-net region file without writing to it.
//!
//! The file is opened read-only and mapped read-only; see [`region::ReadOnlyRegion`]. The header
//! is checked with the layout's own `read_geometry`, and every peer-written word is shown as
//! read, impossible values flagged, never trusted.

mod region;
mod render;
mod sample;

use region::ReadOnlyRegion;
use sample::{Refusal, Tracker};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

const USAGE: &str = "\
ivshmem-inspect: show an ivshmem-net shared-memory region without writing to it

USAGE:
    ivshmem-inspect [OPTIONS] PATH
    ivshmem-inspect [OPTIONS] --shm NAME

ARGS:
    PATH              region file, e.g. /dev/shm/ivshmem-net or a QEMU memory-backend-file
    --shm NAME        POSIX shared-memory object NAME (the file /dev/shm/NAME)

OPTIONS:
    --interval TIME   wait between the two heartbeat samples: 200 (ms), 200ms, 1s, 0.5s
                      [default: 200ms]
    --watch           refresh every second until interrupted (^C); a region that is refused
                      is reported and watched until it becomes readable
    --json            print one JSON document (with --watch: one compact document per line)
    -h, --help        print this help
    -V, --version     print the version

SHOWS:
    the header (magic, version, state, size, max peers, queues, ring and pool geometry,
    nonce); every peer slot and control block (slot token, state RESET/INIT/READY/RUN, MAC,
    MTU, heartbeat and whether it moved between two samples); the link handshake between
    peers that are not RESET; each ring of every queue between them (prod_idx, cons_idx,
    fill, pool bytes in flight, events, impossible descriptors); and each such peer's
    transmit pool (frames and bytes in flight over all its rings).

EXIT STATUS:
    0 shown; 1 the file cannot be opened or mapped; 2 the region is not one this tool
    understands (not READY, bad magic, other layout version, inconsistent geometry, too
    short); 64 bad command line.
";

#[derive(Debug, PartialEq, Eq)]
struct Args {
    path: PathBuf,
    interval: Duration,
    watch: bool,
    json: bool,
}

#[derive(Debug, PartialEq, Eq)]
enum Command {
    Run(Args),
    Help,
    Version,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("bad duration {s:?} (want e.g. 200, 200ms, 1s)");
    let (num, scale) = if let Some(n) = s.strip_suffix("ms") {
        (n, 1e-3)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else {
        (s, 1e-3)
    };
    let v: f64 = num.trim().parse().map_err(|_| bad())?;
    if !v.is_finite() || v <= 0.0 || v * scale > 3600.0 {
        return Err(bad());
    }
    Ok(Duration::from_secs_f64(v * scale))
}

fn parse_args(mut it: impl Iterator<Item = String>) -> Result<Command, String> {
    let mut path = None;
    let mut interval = Duration::from_millis(200);
    let (mut watch, mut json) = (false, false);
    while let Some(a) = it.next() {
        let mut value = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
        match a.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "-V" | "--version" => return Ok(Command::Version),
            "--watch" => watch = true,
            "--json" => json = true,
            "--interval" => interval = parse_duration(&value("--interval")?)?,
            "--shm" => {
                let name = value("--shm")?;
                let name = name.strip_prefix('/').unwrap_or(&name);
                if name.is_empty() || name.contains('/') {
                    return Err(format!("bad shm name {name:?}"));
                }
                if path.replace(PathBuf::from("/dev/shm").join(name)).is_some() {
                    return Err("give one region only".into());
                }
            }
            s if s.starts_with('-') && s != "-" => return Err(format!("unknown option {s}")),
            _ => {
                if path.replace(PathBuf::from(a)).is_some() {
                    return Err("give one region only".into());
                }
            }
        }
    }
    let path = path.ok_or("no region given: PATH or --shm NAME")?;
    Ok(Command::Run(Args {
        path,
        interval,
        watch,
        json,
    }))
}

/// What went wrong with one look.
enum Failure {
    Io(std::io::Error),
    Refused(Refusal),
}

fn open(args: &Args) -> Result<ReadOnlyRegion, Failure> {
    match ReadOnlyRegion::open(&args.path) {
        Ok(r) => Ok(r),
        Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
            Err(Failure::Refused(Refusal::TooShort(0)))
        }
        Err(e) => Err(Failure::Io(e)),
    }
}

/// Two samples `interval` apart into `t`; returns the region and the second sample.
fn look(
    args: &Args,
    t: &mut Tracker,
    first: bool,
) -> Result<(ReadOnlyRegion, sample::Snapshot), Failure> {
    let r = open(args)?;
    if first {
        let s = sample::take(&r).map_err(Failure::Refused)?;
        t.update(&s);
        std::thread::sleep(args.interval);
    }
    let s = sample::take(&r).map_err(Failure::Refused)?;
    t.update(&s);
    Ok((r, s))
}

fn show(args: &Args, r: &ReadOnlyRegion, s: &sample::Snapshot, t: &Tracker) -> String {
    let path = args.path.display().to_string();
    if args.json {
        let doc = render::json(&path, r.file_len(), args.interval, s, t);
        if args.watch {
            format!("{doc}\n")
        } else {
            // Cannot fail: a `Value` built with `json!` has string keys only.
            format!(
                "{}\n",
                serde_json::to_string_pretty(&doc).unwrap_or_default()
            )
        }
    } else {
        render::text(&path, r.file_len(), s, t)
    }
}

fn failure_line(args: &Args, f: &Failure) -> String {
    match f {
        Failure::Io(e) => format!("ivshmem-inspect: cannot open {}: {e}", args.path.display()),
        Failure::Refused(why) => {
            format!("ivshmem-inspect: refusing {}: {why}", args.path.display())
        }
    }
}

fn watch(args: &Args) -> ExitCode {
    let mut t = Tracker::default();
    let mut first = true;
    loop {
        let out = match look(args, &mut t, first) {
            Ok((r, s)) => {
                first = false;
                show(args, &r, &s, &t)
            }
            Err(f) => {
                first = true;
                t = Tracker::default();
                if args.json {
                    format!(
                        "{}\n",
                        serde_json::json!({ "error": failure_line(args, &f) })
                    )
                } else {
                    format!("{}\n", failure_line(args, &f))
                }
            }
        };
        let mut stdout = std::io::stdout().lock();
        let written = if args.json {
            stdout.write_all(out.as_bytes())
        } else {
            write!(
                stdout,
                "\x1b[H\x1b[2J{out}\nrefreshing every 1 s; ^C to quit\n"
            )
        };
        if written.and_then(|_| stdout.flush()).is_err() {
            // Reader went away (e.g. `| head`).
            return ExitCode::SUCCESS;
        }
        drop(stdout);
        std::thread::sleep(Duration::from_secs(1));
    }
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(Command::Run(a)) => a,
        Ok(Command::Help) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Ok(Command::Version) => {
            println!("ivshmem-inspect {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("ivshmem-inspect: {e} (see --help)");
            return ExitCode::from(64);
        }
    };
    if args.watch {
        return watch(&args);
    }
    let mut t = Tracker::default();
    match look(&args, &mut t, true) {
        Ok((r, s)) => {
            let out = show(&args, &r, &s, &t);
            let mut stdout = std::io::stdout().lock();
            // A closed stdout is not worth a failure status.
            let _ = stdout
                .write_all(out.as_bytes())
                .and_then(|_| stdout.flush());
            ExitCode::SUCCESS
        }
        Err(f) => {
            eprintln!("{}", failure_line(&args, &f));
            match f {
                Failure::Io(_) => ExitCode::from(1),
                Failure::Refused(_) => ExitCode::from(2),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: &[&str]) -> Result<Command, String> {
        parse_args(v.iter().map(|s| s.to_string()))
    }

    #[test]
    fn args() {
        assert_eq!(
            parse(&["--shm", "ivnet", "--json", "--interval", "50ms"]),
            Ok(Command::Run(Args {
                path: "/dev/shm/ivnet".into(),
                interval: Duration::from_millis(50),
                watch: false,
                json: true,
            }))
        );
        assert_eq!(
            parse(&["/tmp/x", "--watch", "--interval", "1s"]),
            Ok(Command::Run(Args {
                path: "/tmp/x".into(),
                interval: Duration::from_secs(1),
                watch: true,
                json: false,
            }))
        );
        assert_eq!(parse(&["--help"]), Ok(Command::Help));
        assert!(parse(&[]).is_err());
        assert!(parse(&["a", "b"]).is_err());
        assert!(parse(&["--shm", "a/b"]).is_err());
        assert!(parse(&["--bogus", "a"]).is_err());
        assert!(parse(&["a", "--interval", "0"]).is_err());
        assert!(parse(&["a", "--interval", "x"]).is_err());
        assert!(parse(&["a", "--interval"]).is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("200"), Ok(Duration::from_millis(200)));
        assert_eq!(parse_duration("0.5s"), Ok(Duration::from_millis(500)));
        assert!(parse_duration("-1").is_err());
        assert!(parse_duration("NaN").is_err());
    }
}
