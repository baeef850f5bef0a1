// SPDX-License-Identifier: GPL-2.0

//! `ivnet-stream`: a checked TCP bulk transfer for guests whose kernel is too slow to be its
//! own data source.
//!
//! The large-transfer tests used to stream `/dev/urandom` through `tee`, `sha256sum` and
//! busybox `nc`. On the debug guest kernel (KASAN inline, lockdep) the kernel's ChaCha20 and
//! every extra pipe hop run instrumented under TCG, so the data source, not the network, set
//! the pace. Here the bytes come from a seeded generator in user space (uninstrumented), the
//! sender hashes what it wrote and the receiver what it read, each in one process with one
//! socket: the kernel does nothing but TCP and the driver.
//!
//! ```text
//! ivnet-stream send HOST PORT BYTES [--seed N] [--timeout SECS]
//! ivnet-stream recv PORT [--bytes N --seed N] [--timeout SECS]
//! ivnet-stream sum BYTES [--seed N]
//! ```
//!
//! `sum` prints the sha256 of the stream without sending it, so a caller can check both ends
//! against a third computation (the host's). Every mode prints one `key=value` line.

use ivshmem_bench::num;
use sha2::{Digest, Sha256};
use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::time::{Duration, Instant};

const USAGE: &str = "\
ivnet-stream: a seeded byte stream over TCP, hashed at both ends

USAGE:
    ivnet-stream send HOST PORT BYTES [--seed N] [--timeout SECS]
    ivnet-stream recv PORT [--bytes N --seed N] [--timeout SECS]
    ivnet-stream sum BYTES [--seed N]

send    connects to HOST:PORT (an IP address), writes BYTES bytes of the stream SEED, closes,
        and prints `bytes=N sha256=HEX ms=N`.
recv    accepts one connection on PORT, reads until EOF and prints
        `bytes=N sha256=HEX ms=N first_bad=OFFSET|none`; with --bytes and --seed it also
        compares every byte with that stream (first_bad is the first offset that differs,
        or the length if the stream was cut short or ran long) and exits 1 on a difference.
        Prints `listening on PORT` first.
sum     prints `bytes=N sha256=HEX` of the stream without sending it.
--seed N        the stream's seed [default: 1]
--timeout SECS  give up when no byte moved for this long [default: 60]
";

/// The stream: splitmix64 outputs, little-endian, one 8-byte word per step. Fast enough that a
/// TCG guest produces it far quicker than its network moves it, and cheap to check at the far end.
struct Stream {
    state: u64,
    /// Bytes of the stream produced so far.
    pos: u64,
}

impl Stream {
    fn new(seed: u64) -> Self {
        Stream {
            state: seed,
            pos: 0,
        }
    }

    fn word(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Fills `buf` with the next `buf.len()` bytes. Calls must keep `pos` a multiple of 8
    /// except for the last one (every buffer here is a multiple of 8 but the tail).
    fn fill(&mut self, buf: &mut [u8]) {
        debug_assert_eq!(self.pos % 8, 0);
        let mut chunks = buf.chunks_exact_mut(8);
        for c in &mut chunks {
            c.copy_from_slice(&self.word().to_le_bytes());
        }
        let rest = chunks.into_remainder();
        if !rest.is_empty() {
            let w = self.word().to_le_bytes();
            rest.copy_from_slice(&w[..rest.len()]);
        }
        self.pos += buf.len() as u64;
    }
}

const CHUNK: usize = 256 << 10;

#[derive(Debug, PartialEq)]
enum Cmd {
    Send {
        host: String,
        port: u16,
        bytes: u64,
        seed: u64,
        timeout: Duration,
    },
    Recv {
        port: u16,
        expect: Option<(u64, u64)>,
        timeout: Duration,
    },
    Sum {
        bytes: u64,
        seed: u64,
    },
    Help,
}

fn parse(mut it: impl Iterator<Item = String>) -> Result<Cmd, String> {
    let mode = it.next().ok_or("say `send`, `recv` or `sum`")?;
    let (mut seed, mut bytes, mut timeout) = (None, None, 60.0f64);
    let mut pos = Vec::new();
    while let Some(a) = it.next() {
        match a.as_str() {
            "-h" | "--help" => return Ok(Cmd::Help),
            "--seed" => seed = Some(num::<u64>("--seed", it.next())?),
            "--bytes" => bytes = Some(num::<u64>("--bytes", it.next())?),
            "--timeout" => timeout = num("--timeout", it.next())?,
            s if s.starts_with('-') => return Err(format!("unknown option {s}")),
            _ => pos.push(a),
        }
    }
    if !(timeout > 0.0 && timeout < 1e6) {
        return Err("--timeout must be a positive number of seconds".into());
    }
    let timeout = Duration::from_secs_f64(timeout);
    let want = |n: usize, what: &str| {
        if pos.len() == n {
            Ok(())
        } else {
            Err(format!("{mode} takes {what}"))
        }
    };
    match mode.as_str() {
        "-h" | "--help" | "help" => Ok(Cmd::Help),
        "send" => {
            want(3, "HOST PORT BYTES")?;
            Ok(Cmd::Send {
                host: pos[0].clone(),
                port: num("PORT", Some(pos[1].clone()))?,
                bytes: num("BYTES", Some(pos[2].clone()))?,
                seed: seed.unwrap_or(1),
                timeout,
            })
        }
        "recv" => {
            want(1, "PORT")?;
            let expect = match (bytes, seed) {
                (Some(b), Some(s)) => Some((b, s)),
                (None, None) => None,
                _ => return Err("recv: give both --bytes and --seed, or neither".into()),
            };
            Ok(Cmd::Recv {
                port: num("PORT", Some(pos[0].clone()))?,
                expect,
                timeout,
            })
        }
        "sum" => {
            want(1, "BYTES")?;
            Ok(Cmd::Sum {
                bytes: num("BYTES", Some(pos[0].clone()))?,
                seed: seed.unwrap_or(1),
            })
        }
        m => Err(format!("unknown mode {m:?}: say `send`, `recv` or `sum`")),
    }
}

fn hex(d: &[u8]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// Generates `bytes` bytes of the stream `seed` a chunk at a time, hashing each and handing it
/// with its offset to `f`; returns the sha256 of the whole, or `f`'s first error.
fn generate(
    bytes: u64,
    seed: u64,
    mut f: impl FnMut(u64, &[u8]) -> Result<(), String>,
) -> Result<String, String> {
    let (mut s, mut h, mut buf) = (Stream::new(seed), Sha256::new(), vec![0u8; CHUNK]);
    let mut done = 0;
    while done < bytes {
        let n = (bytes - done).min(CHUNK as u64) as usize;
        s.fill(&mut buf[..n]);
        h.update(&buf[..n]);
        f(done, &buf[..n])?;
        done += n as u64;
    }
    Ok(hex(&h.finalize()))
}

fn sum(bytes: u64, seed: u64) -> String {
    generate(bytes, seed, |_, _| Ok(())).unwrap_or_default()
}

fn send(host: &str, port: u16, bytes: u64, seed: u64, timeout: Duration) -> Result<(), String> {
    let addr: SocketAddr = (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {host}: {e}"))?
        .next()
        .ok_or_else(|| format!("{host} has no address"))?;
    let t0 = Instant::now();
    let mut c = TcpStream::connect_timeout(&addr, timeout)
        .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    c.set_write_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    let sha256 = generate(bytes, seed, |at, chunk| {
        c.write_all(chunk)
            .map_err(|e| format!("write to {addr} after {at} of {bytes} bytes: {e}"))
    })?;
    c.shutdown(std::net::Shutdown::Write)
        .map_err(|e| format!("shutdown: {e}"))?;
    // Wait for the receiver to close: then every byte was read, not just queued.
    c.set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    let mut one = [0u8; 1];
    loop {
        match c.read(&mut one) {
            Ok(0) => break,
            Ok(_) => return Err("the receiver sent data back".into()),
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("waiting for the receiver to close: {e}")),
        }
    }
    println!(
        "bytes={bytes} sha256={sha256} ms={}",
        t0.elapsed().as_millis()
    );
    Ok(())
}

/// What `recv` found.
struct Received {
    bytes: u64,
    sha256: String,
    first_bad: Option<u64>,
    ms: u128,
}

fn recv(port: u16, expect: Option<(u64, u64)>, timeout: Duration) -> Result<Received, String> {
    let l = TcpListener::bind((Ipv4Addr::UNSPECIFIED, port))
        .map_err(|e| format!("cannot listen on port {port}: {e}"))?;
    println!("listening on {port}");
    let _ = std::io::stdout().flush();
    let (mut c, _) = l.accept().map_err(|e| format!("accept: {e}"))?;
    let t0 = Instant::now();
    c.set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    let mut gen = expect.map(|(_, seed)| Stream::new(seed));
    let (mut h, mut buf, mut want) = (Sha256::new(), vec![0u8; CHUNK], vec![0u8; CHUNK]);
    // Bytes held in `buf` that were read but not yet compared: the generator works in 8-byte
    // words, so comparison goes in whole words until EOF.
    let (mut total, mut held, mut first_bad) = (0u64, 0usize, None);
    loop {
        let n = match c.read(&mut buf[held..]) {
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("read after {total} bytes: {e}")),
        };
        h.update(&buf[held..held + n]);
        total += n as u64;
        held += n;
        let cmp = if n == 0 { held } else { held & !7 };
        if let (Some(g), None) = (gen.as_mut(), first_bad) {
            let start = g.pos;
            g.fill(&mut want[..cmp]);
            if let Some(i) = (0..cmp).find(|&i| buf[i] != want[i]) {
                first_bad = Some(start + i as u64);
            }
        }
        buf.copy_within(cmp..held, 0);
        held -= cmp;
        if n == 0 {
            break;
        }
    }
    if let (Some((bytes, _)), None) = (expect, first_bad) {
        if total != bytes {
            first_bad = Some(total.min(bytes));
        }
    }
    Ok(Received {
        bytes: total,
        sha256: hex(&h.finalize()),
        first_bad,
        ms: t0.elapsed().as_millis(),
    })
}

fn main() -> ExitCode {
    let cmd = match parse(std::env::args().skip(1)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ivnet-stream: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let r = match cmd {
        Cmd::Help => {
            print!("{USAGE}");
            Ok(())
        }
        Cmd::Sum { bytes, seed } => {
            println!("bytes={bytes} sha256={}", sum(bytes, seed));
            Ok(())
        }
        Cmd::Send {
            host,
            port,
            bytes,
            seed,
            timeout,
        } => send(&host, port, bytes, seed, timeout),
        Cmd::Recv {
            port,
            expect,
            timeout,
        } => recv(port, expect, timeout).and_then(|r| {
            let bad = r.first_bad.map_or("none".into(), |b| b.to_string());
            println!(
                "bytes={} sha256={} ms={} first_bad={bad}",
                r.bytes, r.sha256, r.ms
            );
            match r.first_bad {
                None => Ok(()),
                Some(b) => Err(format!("the stream differs from offset {b}")),
            }
        }),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ivnet-stream: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_is_the_same_in_any_chunking() {
        let mut whole = vec![0u8; 1000];
        Stream::new(7).fill(&mut whole);
        let mut s = Stream::new(7);
        let mut parts = vec![0u8; 1000];
        for c in parts.chunks_mut(64) {
            s.fill(c);
        }
        assert_eq!(whole, parts);
        let mut other = vec![0u8; 1000];
        Stream::new(8).fill(&mut other);
        assert_ne!(whole, other);
    }

    #[test]
    fn sum_matches_a_direct_hash() {
        let mut b = vec![0u8; CHUNK + 13];
        Stream::new(3).fill(&mut b);
        assert_eq!(sum(b.len() as u64, 3), hex(&Sha256::digest(&b)));
    }

    #[test]
    fn parse_refuses_half_an_expectation() {
        let args = |s: &str| {
            s.split(' ')
                .map(String::from)
                .collect::<Vec<_>>()
                .into_iter()
        };
        assert!(parse(args("recv 5000 --bytes 10")).is_err());
        assert!(parse(args("send 10.0.0.1 5000")).is_err());
        assert_eq!(
            parse(args("sum 10 --seed 4")),
            Ok(Cmd::Sum { bytes: 10, seed: 4 })
        );
    }

    #[test]
    fn loopback_transfer_checks_every_byte() {
        let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = l.local_addr().unwrap().port();
        drop(l);
        let rx = std::thread::spawn(move || {
            recv(port, Some((3_000_001, 9)), Duration::from_secs(20)).map(|r| (r.bytes, r.sha256))
        });
        let mut tries = 0;
        while send("127.0.0.1", port, 3_000_001, 9, Duration::from_secs(20)).is_err() {
            tries += 1;
            assert!(tries < 100, "receiver never listened");
            std::thread::sleep(Duration::from_millis(20));
        }
        let (bytes, sha) = rx.join().unwrap().unwrap();
        assert_eq!(bytes, 3_000_001);
        assert_eq!(sha, sum(3_000_001, 9));
    }

    #[test]
    fn loopback_transfer_finds_a_different_or_short_stream() {
        for (sent, seed, bad) in [(100_000, 10, 0), (99_997, 9, 99_997)] {
            let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
            let port = l.local_addr().unwrap().port();
            drop(l);
            let rx = std::thread::spawn(move || {
                recv(port, Some((100_000, 9)), Duration::from_secs(20)).map(|r| r.first_bad)
            });
            let mut tries = 0;
            while send("127.0.0.1", port, sent, seed, Duration::from_secs(20)).is_err() {
                tries += 1;
                assert!(tries < 100, "receiver never listened");
                std::thread::sleep(Duration::from_millis(20));
            }
            assert_eq!(rx.join().unwrap().unwrap(), Some(bad));
        }
    }
}
