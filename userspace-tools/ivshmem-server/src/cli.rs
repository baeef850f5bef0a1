// SPDX-License-Identifier: GPL-2.0

//! Command line: the options of QEMU's example server (`-S -M -m -l -n -F -p -v -h`) plus
//! `--max-clients` and long spellings of each. Parsing is a pure function so that it is tested
//! without starting anything.

use std::path::PathBuf;

pub const DEFAULT_SOCKET: &str = "/tmp/ivshmem_socket";
pub const DEFAULT_SHM_NAME: &str = "ivshmem";
pub const DEFAULT_SIZE: u64 = 4 << 20;
pub const DEFAULT_VECTORS: u32 = 1;
/// The example server's limit too; one eventfd per vector per client.
pub const MAX_VECTORS: u32 = 64;
pub const DEFAULT_MAX_CLIENTS: u32 = 16;
/// There are only 65536 ids (the doorbell register has 16 bits for the peer id).
pub const MAX_CLIENTS_LIMIT: u32 = 1 << 16;
/// Smallest region: one page.
pub const MIN_SIZE: u64 = 4096;
/// Largest power of two an `off_t` holds.
pub const MAX_SIZE: u64 = 1 << 62;
/// `sizeof(sockaddr_un.sun_path)` less the terminating NUL.
const MAX_SOCKET_PATH: usize = 107;

/// Where the shared memory comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShmSource {
    /// A POSIX shared-memory object (`shm_open`), e.g. `ivshmem` = `/dev/shm/ivshmem`.
    Name(String),
    /// A new file created in this directory (e.g. `/dev/shm` or a hugetlbfs mount).
    Dir(PathBuf),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    pub socket_path: PathBuf,
    pub shm: ShmSource,
    pub size: u64,
    pub vectors: u32,
    pub max_clients: u32,
    pub foreground: bool,
    pub pidfile: Option<PathBuf>,
    pub verbose: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            socket_path: PathBuf::from(DEFAULT_SOCKET),
            shm: ShmSource::Name(DEFAULT_SHM_NAME.to_string()),
            size: DEFAULT_SIZE,
            vectors: DEFAULT_VECTORS,
            max_clients: DEFAULT_MAX_CLIENTS,
            foreground: false,
            pidfile: None,
            verbose: false,
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    Run(Options),
    Help,
}

pub fn usage() -> String {
    format!(
        "\
Usage: ivshmem-server [OPTION]...
A server for QEMU's ivshmem-doorbell device: it hands every connecting QEMU the shared memory,
a peer id and one eventfd per interrupt vector for each peer (QEMU's ivshmem protocol).

  -S, --socket PATH       UNIX socket to listen on (default {DEFAULT_SOCKET}).
                          A stale socket file there (nobody listening) is replaced; if a
                          server is listening, this one refuses to start.
  -M, --shm-name NAME     POSIX shared-memory object (shm_open, i.e. /dev/shm/NAME)
                          (default {DEFAULT_SHM_NAME}). An existing object of the right size is
                          used as it is (content kept), a smaller one is grown, a larger one
                          refused. One this server created is removed on exit.
  -m, --shm-dir DIR       instead of -M: create a new file in DIR (e.g. /dev/shm or a hugetlbfs
                          mount); it is removed on exit.
  -l, --size SIZE         size of the shared memory in bytes, a power of two of at least 4K;
                          suffixes K, M, G, T (powers of 1024) (default 4M)
  -n, --vectors N         interrupt vectors (eventfds) per client, 1..{MAX_VECTORS} (default {DEFAULT_VECTORS});
                          give QEMU the same number: -device ivshmem-doorbell,vectors=N
      --max-clients N     clients connected at once, 1..{MAX_CLIENTS_LIMIT} (default {DEFAULT_MAX_CLIENTS}); one more
                          is disconnected at once. This does not bound the ids: they run
                          0..65535 in turn, skipping ids in use, so a departed client's id
                          comes back only after all the others (QEMU's ivshmem device cannot
                          take back the id of a peer that left).
  -F, --foreground        stay in the foreground (default: daemonize once listening)
  -p, --pidfile FILE      write the server's pid to FILE (either mode); removed on exit
  -v, --verbose           log more (descriptors, setup messages, backlogs, probes)
  -h, --help              show this help

The log goes to standard error, also when daemonized. SIGINT, SIGTERM and SIGHUP stop the
server: it closes the client connections (without disconnect notices, so running guests keep
their doorbells), removes the socket, the shared memory it created and the pid file.
Exit status: 0 after a signal or -h, 1 on a runtime error, 2 on a bad option.
"
    )
}

/// Parses `args` (without the program name).
pub fn parse_args<I, S>(args: I) -> Result<Command, String>
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    let args: Vec<String> = args.into_iter().map(Into::into).collect();
    let mut o = Options::default();
    let mut shm_given: Option<char> = None;
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        i += 1;
        if arg == "--" {
            if let Some(extra) = args.get(i) {
                return Err(format!("unexpected argument '{extra}'"));
            }
            break;
        }
        let (key, inline): (String, Option<String>) = if let Some(long) = arg.strip_prefix("--") {
            match long.split_once('=') {
                Some((k, v)) => (k.to_string(), Some(v.to_string())),
                None => (long.to_string(), None),
            }
        } else if arg.len() > 1 && arg.starts_with('-') {
            // A cluster of short options: flags, then at most one option taking a value, whose
            // value is the rest of the cluster or the next argument (getopt style).
            let mut chars = arg[1..].char_indices();
            let mut key = None;
            for (pos, c) in chars.by_ref() {
                match c {
                    'h' => return Ok(Command::Help),
                    'v' => o.verbose = true,
                    'F' => o.foreground = true,
                    'S' | 'M' | 'm' | 'l' | 'n' | 'p' => {
                        let rest = &arg[1 + pos + 1..];
                        key = Some((c, (!rest.is_empty()).then(|| rest.to_string())));
                        break;
                    }
                    _ => return Err(format!("unknown option '-{c}'")),
                }
            }
            match key {
                None => continue,
                Some((c, v)) => (c.to_string(), v),
            }
        } else {
            return Err(format!("unexpected argument '{arg}'"));
        };

        let name = canonical(&key).ok_or_else(|| format!("unknown option '{arg}'"))?;
        let shown = if key.len() == 1 {
            format!("-{key}")
        } else {
            format!("--{key}")
        };
        if !takes_value(name) {
            if inline.is_some() {
                return Err(format!("option '{shown}' takes no value"));
            }
            match name {
                "help" => return Ok(Command::Help),
                "verbose" => o.verbose = true,
                "foreground" => o.foreground = true,
                _ => unreachable!(),
            }
            continue;
        }
        let value = match inline {
            Some(v) => v,
            None => {
                let v = args
                    .get(i)
                    .ok_or_else(|| format!("option '{shown}' needs a value"))?;
                i += 1;
                v.clone()
            }
        };
        match name {
            "socket" => {
                if value.is_empty() {
                    return Err(format!("{shown}: empty socket path"));
                }
                if value.len() > MAX_SOCKET_PATH {
                    return Err(format!(
                        "{shown} {value}: a UNIX socket path has at most {MAX_SOCKET_PATH} bytes"
                    ));
                }
                o.socket_path = PathBuf::from(value);
            }
            "shm-name" | "shm-dir" => {
                let letter = if name == "shm-name" { 'M' } else { 'm' };
                if let Some(prev) = shm_given {
                    if prev != letter {
                        return Err("-M/--shm-name and -m/--shm-dir exclude each other".into());
                    }
                }
                shm_given = Some(letter);
                o.shm = if letter == 'M' {
                    check_shm_name(&value).map_err(|e| format!("{shown} {value}: {e}"))?;
                    ShmSource::Name(value)
                } else {
                    if value.is_empty() {
                        return Err(format!("{shown}: empty directory name"));
                    }
                    ShmSource::Dir(PathBuf::from(value))
                };
            }
            "size" => {
                let size = parse_size(&value).map_err(|e| format!("{shown} {value}: {e}"))?;
                check_size(size).map_err(|e| format!("{shown} {value}: {e}"))?;
                o.size = size;
            }
            "vectors" => {
                o.vectors = parse_count(&value, 1, MAX_VECTORS)
                    .map_err(|e| format!("{shown} {value}: number of vectors {e}"))?;
            }
            "max-clients" => {
                o.max_clients = parse_count(&value, 1, MAX_CLIENTS_LIMIT)
                    .map_err(|e| format!("{shown} {value}: number of clients {e}"))?;
            }
            "pidfile" => {
                if value.is_empty() {
                    return Err(format!("{shown}: empty pid file name"));
                }
                o.pidfile = Some(PathBuf::from(value));
            }
            _ => unreachable!(),
        }
    }
    Ok(Command::Run(o))
}

fn canonical(key: &str) -> Option<&'static str> {
    Some(match key {
        "h" | "help" => "help",
        "v" | "verbose" => "verbose",
        "F" | "foreground" => "foreground",
        "S" | "socket" => "socket",
        "M" | "shm-name" => "shm-name",
        "m" | "shm-dir" => "shm-dir",
        "l" | "size" => "size",
        "n" | "vectors" => "vectors",
        "p" | "pidfile" => "pidfile",
        "max-clients" => "max-clients",
        _ => return None,
    })
}

fn takes_value(name: &str) -> bool {
    !matches!(name, "help" | "verbose" | "foreground")
}

fn parse_count(s: &str, min: u32, max: u32) -> Result<u32, String> {
    match s.parse::<u32>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(format!("must be an integer from {min} to {max}")),
    }
}

/// `4096`, `64K`, `4M`, `1G`, `2T`, with an optional `B` or `iB` after the suffix; case does
/// not matter; suffixes are powers of 1024.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let digits_end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, suffix) = s.split_at(digits_end);
    if digits.is_empty() {
        return Err("not a size (expected e.g. 4096, 64K, 4M, 1G)".into());
    }
    let lower = suffix.to_ascii_lowercase();
    let (unit, rest) = match lower.chars().next() {
        None => (0, ""),
        Some('k') => (10, &lower[1..]),
        Some('m') => (20, &lower[1..]),
        Some('g') => (30, &lower[1..]),
        Some('t') => (40, &lower[1..]),
        Some('b') => (0, &lower[..]),
        _ => return Err(format!("unknown size suffix '{suffix}' (use K, M, G or T)")),
    };
    if !matches!(rest, "" | "b" | "ib") || (unit == 0 && rest == "ib") {
        return Err(format!("unknown size suffix '{suffix}' (use K, M, G or T)"));
    }
    let n: u64 = digits.parse().map_err(|_| "size too large".to_string())?;
    n.checked_mul(1u64 << unit)
        .ok_or_else(|| "size too large".to_string())
}

pub fn check_size(size: u64) -> Result<(), String> {
    if !size.is_power_of_two() {
        let up = size.checked_next_power_of_two().unwrap_or(MAX_SIZE);
        return Err(format!(
            "the size must be a power of two (QEMU maps the memory as a PCI BAR); e.g. {}",
            human(up.max(MIN_SIZE))
        ));
    }
    if size < MIN_SIZE {
        return Err(format!("the size must be at least {}", human(MIN_SIZE)));
    }
    if size > MAX_SIZE {
        return Err(format!("the size must be at most {}", human(MAX_SIZE)));
    }
    Ok(())
}

/// Names that glibc's `shm_open` accepts: one path component, optionally after leading slashes.
pub fn check_shm_name(name: &str) -> Result<(), String> {
    let bare = name.trim_start_matches('/');
    if bare.is_empty() || bare == "." || bare == ".." {
        return Err("not a usable shared-memory object name".into());
    }
    if bare.contains('/') {
        return Err("a shared-memory object name has no '/' after the leading one".into());
    }
    if bare.contains('\0') {
        return Err("NUL in the name".into());
    }
    if bare.len() > 255 {
        return Err("name too long (at most 255 bytes)".into());
    }
    Ok(())
}

/// `4194304` -> `4M` (exact multiples only), for messages.
pub fn human(size: u64) -> String {
    for (shift, suffix) in [(40, "T"), (30, "G"), (20, "M"), (10, "K")] {
        if size >= 1 << shift && size & ((1 << shift) - 1) == 0 {
            return format!("{}{}", size >> shift, suffix);
        }
    }
    size.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Result<Options, String> {
        match parse_args(args.iter().copied())? {
            Command::Run(o) => Ok(o),
            Command::Help => Err("help".into()),
        }
    }

    #[test]
    fn defaults_match_qemus_example_server() {
        let o = run(&[]).unwrap();
        assert_eq!(o.socket_path, PathBuf::from("/tmp/ivshmem_socket"));
        assert_eq!(o.shm, ShmSource::Name("ivshmem".into()));
        assert_eq!(o.size, 4 << 20);
        assert_eq!(o.vectors, 1);
        assert_eq!(o.max_clients, 16);
        assert!(!o.foreground && !o.verbose && o.pidfile.is_none());
    }

    #[test]
    fn short_long_clustered_and_attached_forms() {
        let o = run(&[
            "-Fv",
            "-S",
            "/tmp/s",
            "-Mname",
            "-l",
            "1G",
            "-n4",
            "--max-clients=8",
            "-p",
            "/tmp/p",
        ])
        .unwrap();
        assert!(o.foreground && o.verbose);
        assert_eq!(o.socket_path, PathBuf::from("/tmp/s"));
        assert_eq!(o.shm, ShmSource::Name("name".into()));
        assert_eq!(o.size, 1 << 30);
        assert_eq!(o.vectors, 4);
        assert_eq!(o.max_clients, 8);
        assert_eq!(o.pidfile, Some(PathBuf::from("/tmp/p")));

        let o = run(&[
            "--foreground",
            "--socket=/x",
            "--shm-dir",
            "/dev/hugepages",
            "--size",
            "2MiB",
            "--vectors",
            "64",
            "--max-clients",
            "65536",
        ])
        .unwrap();
        assert_eq!(o.shm, ShmSource::Dir(PathBuf::from("/dev/hugepages")));
        assert_eq!(o.size, 2 << 20);
        assert_eq!((o.vectors, o.max_clients), (64, 65536));
        // -F then an option with its value in the same cluster.
        let o = run(&["-FS/y"]).unwrap();
        assert_eq!(o.socket_path, PathBuf::from("/y"));
        assert!(o.foreground);
    }

    #[test]
    fn help() {
        assert_eq!(parse_args(["-h"]), Ok(Command::Help));
        assert_eq!(parse_args(["-vh"]), Ok(Command::Help));
        assert_eq!(parse_args(["--help"]), Ok(Command::Help));
        assert!(usage().contains("--max-clients"));
    }

    #[test]
    fn bad_options_are_refused_with_a_message() {
        for (args, want) in [
            (&["-x"][..], "unknown option"),
            (&["--bogus"], "unknown option"),
            (&["stray"], "unexpected argument"),
            (&["--", "stray"], "unexpected argument"),
            (&["-S"], "needs a value"),
            (&["-n", "0"], "from 1 to 64"),
            (&["-n", "65"], "from 1 to 64"),
            (&["-n", "two"], "from 1 to 64"),
            (&["--max-clients", "0"], "from 1 to 65536"),
            (&["--max-clients", "65537"], "from 1 to 65536"),
            (&["-l", "3M"], "power of two"),
            (&["-l", "1000"], "power of two"),
            (&["-l", "1K"], "at least 4K"),
            (&["-l", "abc"], "not a size"),
            (&["-l", "4X"], "suffix"),
            (&["-l", "4iB"], "suffix"),
            (&["-l", "99999999999999999999"], "too large"),
            (&["-l", "0"], "power of two"),
            (&["-M", "a/b"], "no '/'"),
            (&["-M", "/"], "not a usable"),
            (&["-M", "x", "-m", "/dev/shm"], "exclude each other"),
            (&["--verbose=1"], "takes no value"),
            (&["-S", &"x".repeat(108)], "at most 107 bytes"),
        ] {
            let err = run(args).expect_err(&format!("{args:?} accepted"));
            assert!(err.contains(want), "{args:?}: {err}");
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("64k"), Ok(64 << 10));
        assert_eq!(parse_size("4M"), Ok(4 << 20));
        assert_eq!(parse_size("4MB"), Ok(4 << 20));
        assert_eq!(parse_size("1g"), Ok(1 << 30));
        assert_eq!(parse_size("2T"), Ok(2 << 40));
        assert_eq!(parse_size("8192B"), Ok(8192));
        assert!(check_size(4096).is_ok());
        assert!(check_size(MAX_SIZE).is_ok());
        assert!(check_size(MAX_SIZE * 2).is_err());
        assert_eq!(human(4 << 20), "4M");
        assert_eq!(human(4097), "4097");
    }
}
