// SPDX-License-Identifier: GPL-2.0

//! `ivnet-rr`: TCP request/response latency, for measuring an ivshmem-net link by hand.
//!
//! `ivnet-rr server` echoes whatever it receives; `ivnet-rr client HOST` sends `--size` bytes
//! with `TCP_NODELAY`, waits for all of them to come back, and times each round trip with the
//! monotonic clock. Only `std` and `serde_json`, so it links statically for a guest initramfs:
//!
//! ```text
//! RUSTFLAGS='-C target-feature=+crt-static' cargo build --release -p ivshmem-bench \
//!     --bin ivnet-rr --target x86_64-unknown-linux-gnu      # static-pie, glibc's libc.a
//! cargo build --release -p ivshmem-bench --bin ivnet-rr \
//!     --target x86_64-unknown-linux-musl                    # where that target is installed
//! ```
//!
//! (`--target` keeps the flag away from build scripts.) A static glibc binary resolves names
//! only with the host's NSS libraries at run time; give HOST as an IP address in a minimal
//! guest, which is parsed without the resolver.

use ivshmem_bench::num;
use ivshmem_bench::stats::{ns, Summary};
use serde_json::json;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::time::{Duration, Instant};

const DEFAULT_PORT: u16 = 7878;

const USAGE: &str = "\
ivnet-rr: TCP request/response latency

USAGE:
    ivnet-rr server [--port P] [--bind ADDR] [--once]
    ivnet-rr client HOST [--port P] [--count N] [--size BYTES] [--warmup N]
                         [--timeout SECS] [--json]

SERVER:
    echoes every byte it receives; one thread per connection, each ending cleanly at EOF.
    Prints `listening on ADDR:PORT` first (with --port 0 the port the system chose).
    --port P        port to listen on [default: 7878]
    --bind ADDR     address to listen on [default: 0.0.0.0]
    --once          exit after the first connection ends

CLIENT:
    connects to HOST (an IP address or a name), sets TCP_NODELAY, and COUNT times sends SIZE
    bytes and waits for their echo, timing each round trip with the monotonic clock; then
    prints count, p50, p90, p99 and max in microseconds. Echoes that differ from what was sent
    are counted as errors (exit status 1).
    --port P        server port [default: 7878]
    --count N       timed round trips [default: 10000]
    --size BYTES    request (and response) size, 1..=16777216 [default: 1]
    --warmup N      untimed round trips first [default: 100]
    --timeout SECS  give up when an echo takes longer [default: 5]
    --json          print one JSON object instead of text
";

#[derive(Debug, PartialEq)]
struct ClientArgs {
    host: String,
    port: u16,
    count: usize,
    size: usize,
    warmup: usize,
    timeout: Duration,
    json: bool,
}

#[derive(Debug, PartialEq)]
struct ServerArgs {
    bind: String,
    port: u16,
    once: bool,
}

#[derive(Debug, PartialEq)]
enum Cmd {
    Server(ServerArgs),
    Client(ClientArgs),
    Help,
}

fn parse(mut it: impl Iterator<Item = String>) -> Result<Cmd, String> {
    let mode = it.next().ok_or("say `server` or `client HOST`")?;
    let (mut port, mut bind, mut once) = (DEFAULT_PORT, "0.0.0.0".to_string(), false);
    let (mut count, mut size, mut warmup, mut timeout, mut json) = (10_000, 1, 100, 5.0, false);
    let mut host = None;
    match mode.as_str() {
        "-h" | "--help" | "help" => return Ok(Cmd::Help),
        "server" | "client" => {}
        m => return Err(format!("unknown mode {m:?}: say `server` or `client HOST`")),
    }
    let server = mode == "server";
    while let Some(a) = it.next() {
        match a.as_str() {
            "-h" | "--help" => return Ok(Cmd::Help),
            "--port" | "-p" => port = num("--port", it.next())?,
            "--bind" if server => bind = it.next().ok_or("--bind needs a value")?,
            "--once" if server => once = true,
            "--count" | "-n" if !server => count = num("--count", it.next())?,
            "--size" | "-s" if !server => size = num("--size", it.next())?,
            "--warmup" if !server => warmup = num("--warmup", it.next())?,
            "--timeout" if !server => timeout = num("--timeout", it.next())?,
            "--json" if !server => json = true,
            s if s.starts_with('-') => return Err(format!("unknown option {s} for {mode}")),
            _ if !server && host.is_none() => host = Some(a),
            _ => return Err(format!("unexpected argument {a:?}")),
        }
    }
    if server {
        return Ok(Cmd::Server(ServerArgs { bind, port, once }));
    }
    let host = host.ok_or("client needs a HOST")?;
    if !(1..=16 << 20).contains(&size) {
        return Err(format!("--size {size} is not in 1..=16777216"));
    }
    if count == 0 {
        return Err("--count must be at least 1".into());
    }
    if !(timeout > 0.0 && timeout < 1e6) {
        return Err("--timeout must be a positive number of seconds".into());
    }
    Ok(Cmd::Client(ClientArgs {
        host,
        port,
        count,
        size,
        warmup,
        timeout: Duration::from_secs_f64(timeout),
        json,
    }))
}

/// Echoes until EOF.
fn echo(mut s: TcpStream) -> std::io::Result<u64> {
    s.set_nodelay(true)?;
    let mut buf = vec![0u8; 64 << 10];
    let mut total = 0;
    loop {
        let n = match s.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        s.write_all(&buf[..n])?;
        total += n as u64;
    }
}

fn server(a: &ServerArgs) -> Result<(), String> {
    let l = TcpListener::bind((a.bind.as_str(), a.port))
        .map_err(|e| format!("cannot listen on {}:{}: {e}", a.bind, a.port))?;
    let addr = l.local_addr().map_err(|e| e.to_string())?;
    println!("listening on {addr}");
    let _ = std::io::stdout().flush();
    for conn in l.incoming() {
        let s = match conn {
            Ok(s) => s,
            Err(e) => {
                eprintln!("ivnet-rr: accept: {e}");
                continue;
            }
        };
        let peer = s
            .peer_addr()
            .map(|p| p.to_string())
            .unwrap_or_else(|_| "?".into());
        let work = move || match echo(s) {
            Ok(n) => eprintln!("ivnet-rr: {peer}: closed after {n} bytes"),
            Err(e) => eprintln!("ivnet-rr: {peer}: {e}"),
        };
        if a.once {
            work();
            return Ok(());
        }
        std::thread::spawn(work);
    }
    Ok(())
}

fn resolve(host: &str, port: u16) -> Result<SocketAddr, String> {
    // An IP address is parsed without the resolver (no NSS needed in a static binary).
    (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {host}: {e}"))?
        .next()
        .ok_or_else(|| format!("{host} has no address"))
}

struct Outcome {
    addr: SocketAddr,
    summary: Summary,
    errors: u64,
    elapsed: Duration,
}

fn client(a: &ClientArgs) -> Result<Outcome, String> {
    let addr = resolve(&a.host, a.port)?;
    let mut s = TcpStream::connect_timeout(&addr, a.timeout)
        .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    s.set_nodelay(true).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(a.timeout))
        .map_err(|e| e.to_string())?;
    s.set_write_timeout(Some(a.timeout))
        .map_err(|e| e.to_string())?;
    let mut req: Vec<u8> = (0..a.size).map(|i| (i as u8) ^ 0x5a).collect();
    let mut resp = vec![0u8; a.size];
    let mut samples = Vec::with_capacity(a.count);
    let mut errors = 0;
    let stamp_len = a.size.min(8);
    let start = Instant::now();
    for i in 0..a.warmup + a.count {
        req[..stamp_len].copy_from_slice(&(i as u64).to_le_bytes()[..stamp_len]);
        let t0 = Instant::now();
        s.write_all(&req)
            .and_then(|_| s.read_exact(&mut resp))
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
                    format!("round trip {i}: no echo within {:?}", a.timeout)
                }
                std::io::ErrorKind::UnexpectedEof => {
                    format!("round trip {i}: the server closed the connection")
                }
                _ => format!("round trip {i}: {e}"),
            })?;
        let rtt = t0.elapsed();
        if resp != req {
            errors += 1;
        }
        if i >= a.warmup {
            samples.push(ns(rtt));
        }
    }
    let elapsed = start.elapsed();
    let _ = s.shutdown(std::net::Shutdown::Both);
    let summary = Summary::of_ns(&mut samples).ok_or("no samples")?;
    Ok(Outcome {
        addr,
        summary,
        errors,
        elapsed,
    })
}

fn report(a: &ClientArgs, o: &Outcome) {
    let s = &o.summary;
    let rate = (a.warmup + a.count) as f64 / o.elapsed.as_secs_f64();
    if a.json {
        let doc = json!({
            "host": a.host,
            "addr": o.addr.to_string(),
            "port": a.port,
            "size": a.size,
            "count": s.count,
            "warmup": a.warmup,
            "min_us": s.min_us,
            "mean_us": s.mean_us,
            "p50_us": s.p50_us,
            "p90_us": s.p90_us,
            "p99_us": s.p99_us,
            "max_us": s.max_us,
            "transactions_per_sec": rate,
            "errors": o.errors,
        });
        println!("{doc}");
    } else {
        println!(
            "ivnet-rr: {} round trips of {} B to {} ({} warm-up not counted)",
            s.count, a.size, o.addr, a.warmup
        );
        println!(
            "  p50 {:.1} µs  p90 {:.1} µs  p99 {:.1} µs  max {:.1} µs",
            s.p50_us, s.p90_us, s.p99_us, s.max_us
        );
        println!(
            "  min {:.1} µs  mean {:.1} µs  {:.0} transactions/s  errors {}",
            s.min_us, s.mean_us, rate, o.errors
        );
    }
}

fn main() -> ExitCode {
    let cmd = match parse(std::env::args().skip(1)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ivnet-rr: {e} (see --help)");
            return ExitCode::from(64);
        }
    };
    match cmd {
        Cmd::Help => {
            print!("{USAGE}");
            ExitCode::SUCCESS
        }
        Cmd::Server(a) => match server(&a) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("ivnet-rr: {e}");
                ExitCode::FAILURE
            }
        },
        Cmd::Client(a) => match client(&a) {
            Ok(o) => {
                report(&a, &o);
                if o.errors == 0 {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                }
            }
            Err(e) => {
                eprintln!("ivnet-rr: {e}");
                ExitCode::FAILURE
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(v: &[&str]) -> Result<Cmd, String> {
        parse(v.iter().map(|s| s.to_string()))
    }

    #[test]
    fn args() {
        assert_eq!(
            p(&["server"]),
            Ok(Cmd::Server(ServerArgs {
                bind: "0.0.0.0".into(),
                port: DEFAULT_PORT,
                once: false
            }))
        );
        assert_eq!(
            p(&["server", "--port", "0", "--once", "--bind", "127.0.0.1"]),
            Ok(Cmd::Server(ServerArgs {
                bind: "127.0.0.1".into(),
                port: 0,
                once: true
            }))
        );
        assert_eq!(
            p(&["client", "10.0.0.2", "--count", "5", "--size", "64", "--json"]),
            Ok(Cmd::Client(ClientArgs {
                host: "10.0.0.2".into(),
                port: DEFAULT_PORT,
                count: 5,
                size: 64,
                warmup: 100,
                timeout: Duration::from_secs(5),
                json: true,
            }))
        );
        assert!(p(&[]).is_err());
        assert!(p(&["client"]).is_err());
        assert!(p(&["client", "h", "--size", "0"]).is_err());
        assert!(p(&["client", "h", "--count", "0"]).is_err());
        assert!(p(&["client", "h", "--port", "70000"]).is_err());
        assert!(p(&["server", "--json"]).is_err());
        assert!(p(&["client", "a", "b"]).is_err());
        assert_eq!(p(&["--help"]), Ok(Cmd::Help));
    }
}
