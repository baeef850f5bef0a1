// SPDX-License-Identifier: GPL-2.0

//! Command line. Parsing is a pure function, tested without touching a region.

use std::path::PathBuf;
use std::time::Duration;

use crate::attack::Kind;
use crate::storm::Mode;

/// Default storm length.
pub const DEFAULT_SECONDS: u64 = 10;
/// Default attacks per second.
pub const DEFAULT_RATE: u32 = 20_000;
/// Longest storm accepted: a day.
const MAX_SECONDS: f64 = 86_400.0;

/// What to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Args {
    /// The region file.
    pub path: PathBuf,
    /// How long to storm.
    pub duration: Duration,
    /// Which attacks.
    pub mode: Mode,
    /// Attacks per second; 0 for as fast as possible.
    pub rate: u32,
    /// The seed, if given.
    pub seed: Option<u64>,
    /// Summary as JSON.
    pub json: bool,
    /// Instead of storming: forge this peer's MAC (`--forge-mac-of`).
    pub forge_mac_of: Option<u32>,
    /// Aim at the rings of this queue only (`--queue`); every queue otherwise.
    pub queue: Option<u32>,
    /// Instead of storming: play a peer that holds what it is sent (`--hog`).
    pub hog: bool,
    /// With `hog`: consume one frame per peer this often (`--drain-every`).
    pub drain_every: Option<Duration>,
}

/// The command line's meaning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Storm.
    Run(Args),
    /// Print [`usage`].
    Help,
    /// Print the version.
    Version,
}

/// The `--help` text.
pub fn usage() -> String {
    let names = |kinds: &[Kind]| {
        let mut lines = String::new();
        let mut line = String::from("     ");
        for k in kinds {
            if line.len() + k.name().len() + 1 > 94 {
                lines += &line;
                lines.push('\n');
                line = String::from("     ");
            }
            line.push(' ');
            line += k.name();
        }
        lines + &line
    };
    format!(
        "\
ivshmem-hostile: a hostile peer for tests; scribbles on a live ivshmem-net region

USAGE:
    ivshmem-hostile REGION [OPTIONS]

ARGS:
    REGION            region file, e.g. /dev/shm/ivnet-xyz (a file ivshmem-inspect reads); it
                      must hold an initialised (READY) ivshmem-net header

OPTIONS:
    --seconds N       how long to storm, in seconds (decimals allowed) [default: {DEFAULT_SECONDS}]
    --mode MODE       random, crafted, or mixed: phases of 1 s, crafted first [default: mixed]
    --rate N          attacks per second, made in batches every millisecond; 0 = as fast as
                      possible (takes a whole core) [default: {DEFAULT_RATE}]
    --seed N          seed of the attack sequence, decimal or 0x hex [default: from the clock;
                      printed at the start and in the summary]
    --json            print the summary as one JSON object on one line:
                      {{\"seconds\", \"writes\", \"by_kind\": {{name: count}}, \"seed\"}}
    --queue Q         aim the ring and descriptor attacks at queue Q's rings only (0 to the
                      header's queues - 1) [default: every queue]
    --forge-mac-of ID instead of storming, play a peer that publishes peer ID's MAC (and MTU,
                      features, doorbell id) as its own: claim a free id, link with every peer
                      by the protocol, beat, drain what they send, restart every link on
                      SIGUSR1; the summary (--json: {{\"victim\", \"mac\", \"id\", \"linked\",
                      \"rx_frames\", \"rx_stolen\", \"restarts\", \"seconds\"}}) counts the
                      frames sent to the forged MAC (rx_stolen)
    --hog             instead of storming, play a peer that links with every peer by the
                      protocol under a MAC of its own (02:68:6f:67:00:ID, ID its peer id) and
                      beats, but consumes nothing it is sent; the summary (--json: {{\"id\",
                      \"mac\", \"linked\", \"rx_frames\", \"resets\": [{{\"peer\", \"held_ms\", \"frame\"}}],
                      \"other_downs\", \"longest_hold_ms\", \"seconds\"}}) says which peers reset
                      their link while it held their frames, after how long, and the oldest
                      frame held (Ethernet header and length)
    --drain-every MS  with --hog: consume one frame of each peer every MS milliseconds (a slow
                      but live peer)
    -h, --help        print this help
    -V, --version     print the version

The geometry is read from the header once, at the start; from then on anything may be written,
the header included. Peers present at the start (slot token or control-block state nonzero)
are aimed at three times in four, the other ids the rest of the time. Frames forged into a ring
are written into its sender's transmit pool, where the sender's next frame would go.

ATTACKS (one attack = one write in --rate and the counts):
  random: 1 to 64 random bytes, or one time in eight an aligned random word, in
{random}
  crafted: cycled in this order, values on the edges of what a peer validates:
{crafted}

EXIT STATUS:
    0 the time ran out, or SIGINT/SIGTERM stopped the storm (the summary is printed either way);
    1 the file cannot be opened or is not a region this tool understands (nothing written);
    2 bad command line.
",
        random = names(Kind::RANDOM),
        crafted = names(Kind::CRAFTED),
    )
}

fn parse_seconds(s: &str) -> Result<Duration, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 && v <= MAX_SECONDS => Ok(Duration::from_secs_f64(v)),
        _ => Err(format!(
            "--seconds {s:?}: want a number of seconds above 0 and at most {MAX_SECONDS}"
        )),
    }
}

fn parse_mode(s: &str) -> Result<Mode, String> {
    match s {
        "random" => Ok(Mode::Random),
        "crafted" => Ok(Mode::Crafted),
        "mixed" => Ok(Mode::Mixed),
        _ => Err(format!("--mode {s:?}: want random, crafted or mixed")),
    }
}

fn parse_rate(s: &str) -> Result<u32, String> {
    s.parse::<u32>()
        .map_err(|_| format!("--rate {s:?}: want attacks per second, 0 to {}", u32::MAX))
}

fn parse_seed(s: &str) -> Result<u64, String> {
    let v = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => s.parse::<u64>(),
    };
    v.map_err(|_| format!("--seed {s:?}: want a 64-bit number, decimal or 0x hex"))
}

/// Parses the arguments (without the program name).
pub fn parse_args<I, S>(args: I) -> Result<Command, String>
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    let mut it = args.into_iter().map(Into::into);
    let mut path: Option<PathBuf> = None;
    let mut a = Args {
        path: PathBuf::new(),
        duration: Duration::from_secs(DEFAULT_SECONDS),
        mode: Mode::Mixed,
        rate: DEFAULT_RATE,
        seed: None,
        json: false,
        forge_mac_of: None,
        queue: None,
        hog: false,
        drain_every: None,
    };
    let mut only_paths = false;
    while let Some(arg) = it.next() {
        if only_paths || arg == "-" || !arg.starts_with('-') {
            if path.replace(PathBuf::from(&arg)).is_some() {
                return Err(format!("unexpected argument {arg:?}: give one region only"));
            }
            continue;
        }
        if arg == "--" {
            only_paths = true;
            continue;
        }
        let (key, inline) = match arg.split_once('=') {
            Some((k, v)) if k.starts_with("--") => (k.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let flag = |v: &Option<String>| match v {
            Some(_) => Err(format!("option {key} takes no value")),
            None => Ok(()),
        };
        match key.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "-V" | "--version" => return Ok(Command::Version),
            "--json" => {
                flag(&inline)?;
                a.json = true;
            }
            "--hog" => {
                flag(&inline)?;
                a.hog = true;
            }
            "--seconds" | "--mode" | "--rate" | "--seed" | "--forge-mac-of" | "--queue"
            | "--drain-every" => {
                let v = match inline {
                    Some(v) => v,
                    None => it
                        .next()
                        .ok_or_else(|| format!("option {key} needs a value"))?,
                };
                match key.as_str() {
                    "--seconds" => a.duration = parse_seconds(&v)?,
                    "--mode" => a.mode = parse_mode(&v)?,
                    "--rate" => a.rate = parse_rate(&v)?,
                    "--queue" => {
                        a.queue = Some(
                            v.parse::<u32>()
                                .map_err(|_| format!("--queue {v:?}: want a queue number"))?,
                        )
                    }
                    "--drain-every" => {
                        a.drain_every = match v.parse::<u64>() {
                            Ok(ms) if ms > 0 => Some(Duration::from_millis(ms)),
                            _ => {
                                return Err(format!(
                                    "--drain-every {v:?}: want milliseconds above 0"
                                ))
                            }
                        }
                    }
                    "--forge-mac-of" => {
                        a.forge_mac_of = Some(
                            v.parse::<u32>()
                                .map_err(|_| format!("--forge-mac-of {v:?}: want a peer id"))?,
                        )
                    }
                    _ => a.seed = Some(parse_seed(&v)?),
                }
            }
            _ => return Err(format!("unknown option {arg:?}")),
        }
    }
    a.path = path.ok_or("no region given (e.g. ivshmem-hostile /dev/shm/ivnet-xyz)")?;
    if a.drain_every.is_some() && !a.hog {
        return Err("--drain-every goes with --hog".into());
    }
    if a.hog && a.forge_mac_of.is_some() {
        return Err("--hog and --forge-mac-of: one peer at a time".into());
    }
    Ok(Command::Run(a))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Result<Args, String> {
        match parse_args(args.iter().copied())? {
            Command::Run(a) => Ok(a),
            other => Err(format!("{other:?}")),
        }
    }

    #[test]
    fn defaults() {
        let a = run(&["/dev/shm/x"]).unwrap();
        assert_eq!(
            a,
            Args {
                path: "/dev/shm/x".into(),
                duration: Duration::from_secs(10),
                mode: Mode::Mixed,
                rate: 20_000,
                seed: None,
                json: false,
                forge_mac_of: None,
                queue: None,
                hog: false,
                drain_every: None,
            }
        );
        let a = run(&["--hog", "--drain-every", "200", "r"]).unwrap();
        assert_eq!(
            (a.hog, a.drain_every),
            (true, Some(Duration::from_millis(200)))
        );
        assert_eq!(run(&["--hog", "r"]).unwrap().drain_every, None);
        assert_eq!(run(&["--queue", "1", "r"]).unwrap().queue, Some(1));
        assert_eq!(run(&["--queue=0", "r"]).unwrap().queue, Some(0));
        assert_eq!(
            run(&["--forge-mac-of", "3", "r"]).unwrap().forge_mac_of,
            Some(3)
        );
    }

    #[test]
    fn every_option_both_spellings() {
        let a = run(&[
            "--seconds",
            "2.5",
            "--mode",
            "crafted",
            "--rate",
            "0",
            "--seed",
            "0x10",
            "--json",
            "r",
        ])
        .unwrap();
        assert_eq!(a.duration, Duration::from_millis(2500));
        assert_eq!(a.mode, Mode::Crafted);
        assert_eq!((a.rate, a.seed, a.json), (0, Some(16), true));
        assert_eq!(a.path, PathBuf::from("r"));
        let a = run(&["--mode=random", "--seconds=60", "--rate=5", "--seed=7", "r"]).unwrap();
        assert_eq!(
            (a.mode, a.duration, a.rate, a.seed),
            (Mode::Random, Duration::from_secs(60), 5, Some(7))
        );
        assert_eq!(run(&["--", "-odd"]).unwrap().path, PathBuf::from("-odd"));
    }

    #[test]
    fn help_and_version() {
        assert_eq!(parse_args(["--help"]), Ok(Command::Help));
        assert_eq!(parse_args(["r", "-h"]), Ok(Command::Help));
        assert_eq!(parse_args(["-V"]), Ok(Command::Version));
        let u = usage();
        for k in Kind::ALL {
            assert!(u.contains(k.name()), "{} missing from --help", k.name());
        }
    }

    #[test]
    fn bad_command_lines_are_refused_with_a_message() {
        for (args, want) in [
            (&[][..], "no region"),
            (&["a", "b"], "one region only"),
            (&["--bogus", "r"], "unknown option"),
            (&["-x", "r"], "unknown option"),
            (&["r", "--seconds"], "needs a value"),
            (&["r", "--seconds", "0"], "above 0"),
            (&["r", "--seconds", "-1"], "above 0"),
            (&["r", "--seconds", "NaN"], "above 0"),
            (&["r", "--seconds", "1e9"], "at most"),
            (&["r", "--seconds", "ten"], "--seconds"),
            (&["r", "--mode", "evil"], "random, crafted or mixed"),
            (&["r", "--rate", "-5"], "--rate"),
            (&["r", "--rate", "99999999999"], "--rate"),
            (&["r", "--seed", "0xzz"], "--seed"),
            (&["r", "--seed", "18446744073709551616"], "--seed"),
            (&["r", "--json=1"], "takes no value"),
            (&["r", "--forge-mac-of", "x"], "want a peer id"),
            (&["r", "--queue", "-1"], "want a queue number"),
            (&["r", "--hog", "--drain-every", "0"], "above 0"),
            (&["r", "--drain-every", "5"], "goes with --hog"),
            (&["r", "--hog", "--forge-mac-of", "1"], "one peer at a time"),
            (&["r", "--hog=1"], "takes no value"),
        ] {
            let err = run(args).expect_err(&format!("{args:?} accepted"));
            assert!(err.contains(want), "{args:?}: {err}");
        }
    }
}
