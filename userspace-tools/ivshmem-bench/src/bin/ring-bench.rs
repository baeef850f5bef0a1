// SPDX-License-Identifier: GPL-2.0

//! `ring-bench`: the ivshmem-net frame ring (the very `ring.rs` the driver compiles) measured on
//! the host, next to a Unix-domain stream socket, TCP over loopback and plain `memcpy`.
//!
//! The parent process creates a region file in `/dev/shm`, sets it up with the layout's
//! `attach` for two peers and runs itself again as the other peer (`--child`): a sink for the
//! one-way runs, an echo for the ping-pong runs. Ring sides poll (the one-way sink pausing
//! briefly when it finds the ring empty, see `SINK_IDLE`); socket sides block in
//! the kernel as ordinary programs do. Every frame carries its sequence number and length and
//! is checked on receipt (see `ivshmem_bench::frame`); bad or missing frames are errors.

use ivshmem_bench::frame;
use ivshmem_bench::stats::{ns, Summary};
use ivshmem_net_protocol::layout::{attach, claim_slot, Geometry, Region};
use ivshmem_net_protocol::link::{Own, PeerState};
use ivshmem_net_protocol::ring::{Consumer, Desc, Pool, Producer};
use ivshmem_net_protocol::MmapRegion;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitCode, Stdio};
use std::sync::Barrier;
use std::time::{Duration, Instant};

const REGION_LEN: u64 = 32 << 20;
const SIZES: [usize; 3] = [64, 1500, 64 << 10];
const LAT_SIZE: usize = 64;
/// Frame size of the thread-pair scaling runs (issue 19's target is stated for it).
const SCALE_SIZE: usize = 1500;
/// Thread pairs measured unless `--pairs` says otherwise.
const DEFAULT_PAIRS: usize = 2;
/// Most thread pairs: a 32 MiB region of 2 peers has 8 queues, its pools 8 partitions.
const MAX_PAIRS: usize = 5;
/// Largest frame the receivers accept.
const MAX_FRAME: usize = 1 << 20;
/// A side that sees no progress for this long gives up.
const STALL: Duration = Duration::from_secs(10);
/// Spins before [`spin_until`] starts yielding the CPU now and then (some microseconds).
const SPIN_ALONE: u32 = 4096;
/// How long a one-way ring receiver that found the ring empty waits before it looks again.
/// A 64-byte run's sender fills the 512 slots in some 20 µs, so the sink is never the one
/// that holds it up. Two threads, 64 B frames, 6 runs on this 2-vCPU VM: 14 M frames/s
/// looking again at once, 24 M with 4 µs (docs/benchmarks.md, What was tried).
const SINK_IDLE: Duration = Duration::from_micros(4);
/// Looks at an empty ring preceded by [`SINK_IDLE`]; later ones follow at once.
const SINK_IDLE_LOOKS: u32 = 4;
/// One-way senders publish `prod_idx` once per this many frames (and before they wait for
/// room, and after the end marker), as the driver publishes once per `xmit_more` batch: a
/// receiver that keeps up then reads each descriptor line once it is full rather than while
/// the sender still writes it, and `prod_idx` once per burst. Three runs on this 2-vCPU VM
/// alternating with a build that published every frame, medians of 3 trials: 64 B 28.9,
/// 16.6, 27.8 M frames/s against 18.3, 18.1, 17.8 M (docs/benchmarks.md, What was tried).
const BURST: u32 = 32;
/// Round trips before the timed ones.
const LAT_WARMUP: usize = 1000;

const USAGE: &str = "\
ring-bench: the ivshmem-net ring on the host, next to Unix sockets, TCP loopback and memcpy

USAGE:
    ring-bench [--quick] [--pairs N] [--json]

Two processes (this one and a copy of itself) exchange frames of 64 B, 1500 B and 64 KiB:
  - through the ivshmem-net ring (Producer/Consumer of the layout crate) in a 32 MiB region
    file in /dev/shm shared by both, set up for 2 peers; the sender busy-polls and publishes
    its frames in bursts of 32 (as the driver publishes per xmit_more batch; the ping-pong
    publishes each frame), the receiver's first 4 looks at a ring it found empty come 4 µs
    apart (the echo's at once);
  - through a Unix-domain stream socket pair, 4-byte length before each frame;
  - through TCP over 127.0.0.1 (TCP_NODELAY), framed the same way.
For each: one-way throughput (frames/s and GB/s of frame bytes, sender to drained receiver;
the median of 3 interleaved trials, and the best window of at least 16384 frames and 1 ms
of any trial: the rate while no other work takes a CPU from either side) and 64-byte
ping-pong latency (p50/p99 over at least 10,000 round trips). Also the host's memcpy
bandwidth (a 64 MiB buffer copied repeatedly). Every frame is checked on receipt.

Then the scaling of independent queues (issue 19): 1, 2, ... N pairs of threads in this
process, one region, 1500 B frames one way from peer 0 to peer 1, pair q on queue q with
its frames in partition q of peer 0's pool (N pairs: N partitions), as the driver's
transmit queues. Every thread busy-polls, so more pairs than half the CPUs only share them.

OPTIONS:
    --quick     short runs (about 5 s in all), for smoke tests; the default takes under 60 s
    --pairs N   thread pairs for the scaling runs, 0 to 5 (0: none) [default: 2]
    --json      print one JSON document instead of the table
    -h, --help  print this help

EXIT STATUS: 0 when every run finished without frame errors, 1 otherwise.
";

#[derive(Debug, Clone, Copy)]
struct Plan {
    quick: bool,
    /// Most thread pairs in the scaling runs.
    pairs: usize,
    /// One-way trials per transport and size (interleaved); the median is reported.
    trials: usize,
    /// Timed part of each one-way trial.
    throughput: Duration,
    /// Untimed lead-in of each one-way run.
    warmup: Duration,
    /// Timed round trips: at least `lat_min`, then until `lat_time` or `lat_max`.
    lat_min: usize,
    lat_max: usize,
    lat_time: Duration,
    memcpy: Duration,
}

impl Plan {
    fn new(quick: bool, pairs: usize) -> Self {
        if quick {
            Plan {
                quick,
                pairs,
                trials: 1,
                throughput: Duration::from_millis(200),
                warmup: Duration::from_millis(30),
                lat_min: 10_000,
                lat_max: 10_000,
                lat_time: Duration::ZERO,
                memcpy: Duration::from_millis(200),
            }
        } else {
            Plan {
                quick,
                pairs,
                trials: 3,
                throughput: Duration::from_millis(500),
                warmup: Duration::from_millis(100),
                lat_min: 10_000,
                lat_max: 200_000,
                lat_time: Duration::from_secs(2),
                memcpy: Duration::from_secs(1),
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transport {
    Ring,
    Unix,
    Tcp,
}

const TRANSPORTS: [Transport; 3] = [Transport::Ring, Transport::Unix, Transport::Tcp];

impl Transport {
    fn name(self) -> &'static str {
        match self {
            Transport::Ring => "ring",
            Transport::Unix => "unix",
            Transport::Tcp => "tcp",
        }
    }

    fn from_name(s: &str) -> Option<Self> {
        TRANSPORTS.into_iter().find(|t| t.name() == s)
    }

    fn title(self) -> &'static str {
        match self {
            Transport::Ring => "ring (shm, busy-poll)",
            Transport::Unix => "unix stream socket",
            Transport::Tcp => "tcp loopback",
        }
    }
}

type Res<T> = Result<T, String>;

fn err<E: std::fmt::Debug>(what: &'static str) -> impl Fn(E) -> String {
    move |e| format!("{what}: {e:?}")
}

/// Calls `f` until it yields a value, spinning in between; gives up after [`STALL`] without one.
///
/// After the first [`SPIN_ALONE`] spins it also yields the CPU every so often: with two CPUs
/// and both processes busy-polling, anything else that becomes runnable (a VM, a build) would
/// otherwise take a CPU from one side for a whole time slice while the other spins in vain.
/// When nothing else wants the CPU the yield returns at once.
fn spin_until<T>(what: &str, mut f: impl FnMut() -> Res<Option<T>>) -> Res<T> {
    let mut spins = 0u32;
    let mut since: Option<Instant> = None;
    loop {
        if let Some(v) = f()? {
            return Ok(v);
        }
        spins = spins.wrapping_add(1);
        if spins < SPIN_ALONE || !spins.is_multiple_of(64) {
            std::hint::spin_loop();
            continue;
        }
        std::thread::yield_now();
        if spins.is_multiple_of(4096) && since.get_or_insert_with(Instant::now).elapsed() > STALL {
            return Err(format!("{what}: no progress for {STALL:?}"));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The shared region.

/// The region file and its mapping; the creating process removes the file when done.
struct Shm {
    r: MmapRegion,
    g: Geometry,
    path: PathBuf,
    owner: bool,
}

impl Drop for Shm {
    fn drop(&mut self) {
        if self.owner {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

fn geometry() -> Res<Geometry> {
    Geometry::new(REGION_LEN, 2).map_err(err("geometry"))
}

impl Shm {
    /// Creates the region file for `peers` peers (pages allocated up front) and initialises
    /// it; `tag` tells the files of one run apart.
    fn create(peers: u32, tag: &str) -> Res<Shm> {
        let dir = if Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        let path = dir.join(format!("ring-bench-{}{tag}", std::process::id()));
        let mut f = std::fs::File::create(&path).map_err(err("create region file"))?;
        let chunk = vec![0u8; 1 << 20];
        for _ in 0..REGION_LEN / chunk.len() as u64 {
            f.write_all(&chunk).map_err(err("fill region file"))?;
        }
        drop(f);
        let mut shm = Shm {
            r: MmapRegion::open(&path).map_err(err("map region"))?,
            g: Geometry::new(REGION_LEN, peers).map_err(err("geometry"))?,
            path,
            owner: true,
        };
        let nonce = u64::from(std::process::id()) << 32 | 0x5eed;
        let a = attach(&shm.r, shm.g, nonce, || false).map_err(err("attach"))?;
        shm.g = a.geometry;
        shm.publish_peers()?;
        Ok(shm)
    }

    /// Claims every peer id and fills in the control blocks as peers in RUN, all linked, so
    /// that `ivshmem-inspect --shm ring-bench-PID` shows the benchmark's rings while it runs.
    /// The benchmark itself needs none of it.
    fn publish_peers(&self) -> Res<()> {
        let mut own = Vec::new();
        for id in 0..self.g.max_peers {
            claim_slot(&self.r, &self.g, Some(id), 0x5242_0000 | id, |_| {})
                .map_err(err("claim slot"))?;
            let mut o = Own::new(&self.g, id).map_err(err("control block"))?;
            o.attach(&self.r, [0x02, 0x52, 0x42, 0, 0, id as u8], 1500)
                .map_err(err("control block"))?;
            own.push(o);
        }
        let n = own.len();
        for (i, j) in (0..n).flat_map(|i| (0..n).filter(move |&j| j != i).map(move |j| (i, j))) {
            let e = own[j].epoch(&self.r, i as u32).map_err(err("epoch"))?;
            own[i].ack(&self.r, j as u32, e).map_err(err("ack"))?;
        }
        for o in &mut own {
            o.set_state(&self.r, PeerState::Run).map_err(err("state"))?;
        }
        Ok(())
    }

    /// Joins the region at `path` and touches every page of it.
    fn join(path: &Path) -> Res<Shm> {
        let r = MmapRegion::open(path).map_err(err("map region"))?;
        let g = geometry()?;
        attach(&r, g, 0, || false).map_err(err("join region"))?;
        let mut buf = vec![0u8; 1 << 20];
        let mut off = 0;
        while off < r.len() {
            let n = buf.len().min(r.len() - off);
            r.read(off, &mut buf[..n]).map_err(err("touch region"))?;
            off += n;
        }
        Ok(Shm {
            r,
            g,
            path: path.to_owned(),
            owner: false,
        })
    }

    /// Zeroes both sides of every ring, before a run starts with fresh shadows.
    fn reset_rings(&self) -> Res<()> {
        let n = self.g.max_peers;
        for (a, b) in (0..n).flat_map(|a| (0..n).filter(move |&b| b != a).map(move |b| (a, b))) {
            for q in 0..self.g.queues {
                Producer::new(&self.g, a, b, q)
                    .and_then(|mut p| p.reset(&self.r))
                    .map_err(err("reset producer"))?;
                Consumer::new(&self.g, a, b, q)
                    .and_then(|mut c| c.reset(&self.r))
                    .map_err(err("reset consumer"))?;
            }
        }
        Ok(())
    }
}

/// A sender's side of one ring: its producer and the pool allocator its frames come from.
struct Tx {
    p: Producer,
    pool: Pool,
}

impl Tx {
    /// Peer `from`'s side of its ring to `to` on `queue`, with an allocator over its pool.
    fn new(g: &Geometry, from: u32, to: u32, queue: u32) -> Res<Tx> {
        Self::on_partition(g, from, to, queue, 1)
    }

    /// Like [`Tx::new`], the allocator over partition `queue` of `count` of the pool.
    fn on_partition(g: &Geometry, from: u32, to: u32, queue: u32, count: u32) -> Res<Tx> {
        Ok(Tx {
            p: Producer::new(g, from, to, queue).map_err(err("producer"))?,
            pool: Pool::partition(g, from, queue, count).map_err(err("pool partition"))?,
        })
    }

    /// Reads how far the consumer got and takes the bytes of what it consumed back.
    fn reclaim(&mut self, r: &MmapRegion) -> Res<()> {
        self.p.collect(r).map_err(err("collect"))?;
        self.pool.reclaim([&self.p]);
        Ok(())
    }

    /// Frames published and not yet consumed.
    fn in_flight(&self, r: &MmapRegion) -> Res<u32> {
        self.p.in_flight(r).map_err(err("in flight"))
    }
}

/// Reserves (spinning while ring or pool is full), copies, commits and publishes one frame.
/// Pool bytes are reclaimed only when the pool is full, so a frame costs one look at the
/// consumer's index only when the ring's slots run out (`reserve` collects then).
fn ring_send(r: &MmapRegion, tx: &mut Tx, f: &[u8]) -> Res<()> {
    ring_send_burst(r, tx, f, 1)
}

/// [`ring_send`] publishing only once `burst` frames are committed and unpublished, or before
/// waiting for room (the consumer may be waiting for exactly those frames).
fn ring_send_burst(r: &MmapRegion, tx: &mut Tx, f: &[u8], burst: u32) -> Res<()> {
    let len = f.len() as u32;
    let span = spin_until("ring full", || {
        if !tx.pool.fits(len) {
            tx.reclaim(r)?;
        }
        let span = tx.p.reserve(r, &tx.pool, len).map_err(err("reserve"))?;
        if span.is_none() && tx.p.published() != tx.p.index() {
            tx.p.publish(r).map_err(err("publish"))?;
        }
        Ok(span)
    })?;
    span.write(r, 0, f).map_err(err("write frame"))?;
    tx.p.commit(r, &mut tx.pool, &Desc::default())
        .map_err(err("commit"))?;
    if tx.p.index().wrapping_sub(tx.p.published()) >= burst {
        tx.p.publish(r).map_err(err("publish"))?;
    }
    Ok(())
}

/// Copies the next frame, if any, into `buf` and pops it (not published); its length.
fn ring_recv(r: &MmapRegion, c: &mut Consumer, buf: &mut [u8]) -> Res<Option<usize>> {
    let Some(d) = c.peek(r).map_err(err("peek"))? else {
        return Ok(None);
    };
    let n = c.read_frame(r, &d, buf).map_err(err("read frame"))?;
    c.pop();
    Ok(Some(n))
}

// ---------------------------------------------------------------------------------------------
// Sockets: a 4-byte little-endian length, then the frame; length 0 ends a one-way run.

trait Stream: Read + Write + Sized + Send + 'static {
    fn dup(&self) -> std::io::Result<Self>;
}

impl Stream for UnixStream {
    fn dup(&self) -> std::io::Result<Self> {
        self.try_clone()
    }
}

impl Stream for TcpStream {
    fn dup(&self) -> std::io::Result<Self> {
        self.try_clone()
    }
}

/// Reads one frame into `buf`; `None` at the end marker.
fn stream_recv<R: Read>(rd: &mut R, buf: &mut [u8]) -> Res<Option<usize>> {
    let mut hdr = [0u8; 4];
    rd.read_exact(&mut hdr).map_err(err("read length"))?;
    let len = u32::from_le_bytes(hdr) as usize;
    if len == 0 {
        return Ok(None);
    }
    let buf = buf
        .get_mut(..len)
        .ok_or_else(|| format!("frame length {len} too large"))?;
    rd.read_exact(buf).map_err(err("read frame"))?;
    Ok(Some(len))
}

/// A message buffer: 4-byte length then a frame template of `len` bytes.
fn message(len: usize) -> Vec<u8> {
    let mut m = (len as u32).to_le_bytes().to_vec();
    m.extend(frame::template(len));
    m
}

// ---------------------------------------------------------------------------------------------
// Child side.

/// What a receiving child counted.
#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    frames: u64,
    errors: u64,
    next: u64,
}

impl Tally {
    /// Checks a received frame; `true` for the end marker.
    fn take(&mut self, f: &[u8]) -> bool {
        match frame::check(f) {
            Some(frame::END) => return true,
            Some(seq) if seq == self.next => {}
            Some(seq) => {
                self.errors += 1;
                self.next = seq;
            }
            None => self.errors += 1,
        }
        self.next = self.next.wrapping_add(1);
        self.frames += 1;
        false
    }
}

fn ready() {
    println!("ready");
    let _ = std::io::stdout().flush();
}

fn child_ring(mode: &str, path: &Path) -> Res<Tally> {
    let shm = Shm::join(path)?;
    let (r, g) = (&shm.r, &shm.g);
    let mut c = Consumer::new(g, 0, 1, 0).map_err(err("consumer"))?;
    let mut tx = Tx::new(g, 1, 0, 0)?;
    let mut buf = vec![0u8; MAX_FRAME];
    let mut t = Tally::default();
    ready();
    match mode {
        "sink" => sink(r, &mut c),
        "echo" => loop {
            let n = spin_until("echo", || ring_recv(r, &mut c, &mut buf))?;
            c.publish(r).map_err(err("publish"))?;
            let end = t.take(&buf[..n]);
            ring_send(r, &mut tx, &buf[..n])?;
            if end {
                return Ok(t);
            }
        },
        m => Err(format!("unknown mode {m}")),
    }
}

/// Waits `d` reading only the clock: no `PAUSE` (which exits to the hypervisor on VMs like this
/// one, tens of ns each) and no look at the ring.
fn idle(d: Duration) {
    let t = Instant::now();
    while t.elapsed() < d {}
}

/// Receives and checks frames from `c` until the end marker, giving them back 32 at a time.
/// Finding the ring empty, it looks again [`SINK_IDLE`] later, as a receiver polled by a timer
/// or a kick would, instead of at once: each look at an empty ring pulls the line that holds
/// `prod_idx` (and the descriptor the sender writes next) away from the sender.
fn sink(r: &MmapRegion, c: &mut Consumer) -> Res<Tally> {
    let mut buf = vec![0u8; MAX_FRAME];
    let mut t = Tally::default();
    let mut batch = 0;
    loop {
        let got = ring_recv(r, c, &mut buf)?;
        let Some(n) = got else {
            if batch > 0 {
                c.publish(r).map_err(err("publish"))?;
                batch = 0;
            }
            let mut looks = 0;
            spin_until("sink", || {
                // Only at first: a sender that is away longer (more threads than CPUs) gets
                // the CPU sooner from spin_until's yields.
                if looks < SINK_IDLE_LOOKS {
                    idle(SINK_IDLE);
                    looks += 1;
                }
                Ok((c.pending(r).map_err(err("pending"))? > 0).then_some(()))
            })?;
            continue;
        };
        let end = t.take(&buf[..n]);
        batch += 1;
        if end || batch >= 32 {
            c.publish(r).map_err(err("publish"))?;
            batch = 0;
        }
        if end {
            return Ok(t);
        }
    }
}

fn child_stream<S: Stream>(mode: &str, s: S) -> Res<Tally> {
    let mut w = s.dup().map_err(err("dup socket"))?;
    let mut rd = BufReader::with_capacity(256 << 10, s);
    let mut buf = vec![0u8; 4 + MAX_FRAME];
    let mut t = Tally::default();
    ready();
    loop {
        let got = stream_recv(&mut rd, &mut buf[4..]);
        match (mode, got) {
            ("sink", Ok(Some(n))) => {
                t.take(&buf[4..4 + n]);
            }
            ("sink", Ok(None)) => {
                w.write_all(&[1]).map_err(err("ack"))?;
                return Ok(t);
            }
            ("echo", Ok(Some(n))) => {
                t.take(&buf[4..4 + n]);
                buf[..4].copy_from_slice(&(n as u32).to_le_bytes());
                w.write_all(&buf[..4 + n]).map_err(err("echo"))?;
            }
            ("echo", Ok(None)) => {
                w.write_all(&[0; 4]).map_err(err("echo end"))?;
                return Ok(t);
            }
            (_, Err(e)) => return Err(e),
            (m, _) => return Err(format!("unknown mode {m}")),
        }
    }
}

fn child(args: &[String]) -> ExitCode {
    let [kind, mode, addr] = args else {
        eprintln!("ring-bench: --child KIND MODE ADDR");
        return ExitCode::from(64);
    };
    let res = match Transport::from_name(kind) {
        Some(Transport::Ring) => child_ring(mode, Path::new(addr)),
        Some(Transport::Unix) => UnixStream::connect(addr)
            .map_err(err("connect"))
            .and_then(|s| child_stream(mode, s)),
        Some(Transport::Tcp) => TcpStream::connect(("127.0.0.1", addr.parse().unwrap_or(0)))
            .map_err(err("connect"))
            .and_then(|s| {
                s.set_nodelay(true).map_err(err("nodelay"))?;
                child_stream(mode, s)
            }),
        None => Err(format!("unknown transport {kind}")),
    };
    match res {
        Ok(t) => {
            println!("done frames={} errors={}", t.frames, t.errors);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ring-bench child ({kind} {mode}): {e}");
            ExitCode::FAILURE
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Parent side.

/// A running child; killed if dropped before [`Peer::finish`].
struct Peer {
    child: Child,
    out: BufReader<ChildStdout>,
    done: bool,
}

impl Peer {
    fn spawn(kind: Transport, mode: &str, addr: &str) -> Res<Peer> {
        let exe = std::env::current_exe().map_err(err("current exe"))?;
        let mut child = Command::new(exe)
            .args(["--child", kind.name(), mode, addr])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(err("spawn child"))?;
        let out = BufReader::new(child.stdout.take().ok_or("no child stdout")?);
        let mut peer = Peer {
            child,
            out,
            done: false,
        };
        let line = peer.line()?;
        if line != "ready" {
            return Err(format!("child said {line:?} instead of ready"));
        }
        Ok(peer)
    }

    fn line(&mut self) -> Res<String> {
        let mut l = String::new();
        self.out.read_line(&mut l).map_err(err("read child"))?;
        if l.is_empty() {
            return Err("the child exited early (see its message above)".into());
        }
        Ok(l.trim().to_string())
    }

    /// Waits for the child's tally and its exit.
    fn finish(mut self) -> Res<Tally> {
        let line = self.line()?;
        self.done = true;
        let status = self.child.wait().map_err(err("wait child"))?;
        if !status.success() {
            return Err(format!("child failed: {status}"));
        }
        let field = |k: &str| -> Res<u64> {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(k))
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| format!("bad child report {line:?}"))
        };
        Ok(Tally {
            frames: field("frames=")?,
            errors: field("errors=")?,
            next: 0,
        })
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        if !self.done {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[derive(Debug, Clone)]
struct Throughput {
    transport: Transport,
    size: usize,
    /// Timed frames and seconds of the median trial.
    frames: u64,
    seconds: f64,
    /// Frames per second of every trial, in the order run.
    trials: Vec<f64>,
    /// The best [`Run::peak`] of the trials, if any had a whole window.
    peak: Option<f64>,
    /// Summed over the trials.
    errors: u64,
    /// The first trial's failure, if any.
    failed: Option<String>,
}

impl Throughput {
    fn frames_per_sec(&self) -> f64 {
        if self.seconds > 0.0 {
            self.frames as f64 / self.seconds
        } else {
            0.0
        }
    }
    fn gb_per_sec(&self) -> f64 {
        self.frames_per_sec() * self.size as f64 / 1e9
    }
}

#[derive(Debug, Clone)]
struct Latency {
    transport: Transport,
    summary: Option<Summary>,
    errors: u64,
    failed: Option<String>,
}

/// A one-way run as [`one_way`] timed it.
#[derive(Debug, Clone, Copy)]
struct Run {
    /// Frames sent, the end frame not counted.
    sent: u64,
    /// Frames sent in the timed part, which starts after the warm-up and ends when the
    /// receiver is drained, and its seconds.
    timed: u64,
    secs: f64,
    /// Frames per second sent in the best window of at least [`PEAK_FRAMES`] frames and
    /// [`PEAK_TIME`] in the timed part, if it had one: what the transport does while nothing
    /// else takes a CPU from either side, on a machine shared with other work. A ring's sender
    /// is at most 512 frames ahead of its receiver, so for the ring this is at most 3 % above
    /// what the receiver took in the window (a socket's buffer may hold more).
    peak: Option<f64>,
}

/// Smallest window of [`Run::peak`], in frames and in time.
const PEAK_FRAMES: u64 = 16384;
const PEAK_TIME: Duration = Duration::from_millis(1);

/// [`one_way`] over a ring: numbered frames of `size` bytes published in bursts of [`BURST`],
/// then the end frame (publishing the rest), then waits until the consumer has taken
/// everything.
fn ring_one_way(plan: &Plan, r: &MmapRegion, tx: &mut Tx, size: usize) -> Res<Run> {
    let mut f = frame::template(size);
    let mut endf = frame::template(64);
    frame::stamp(&mut endf, frame::END);
    one_way(plan, |seq| match seq {
        Some(seq) => {
            frame::stamp(&mut f, seq);
            ring_send_burst(r, tx, &f, BURST)
        }
        None => {
            ring_send(r, tx, &endf)?;
            spin_until("drain", || Ok((tx.in_flight(r)? == 0).then_some(())))
        }
    })
}

/// Times a one-way run: `send(Some(seq))` sends frame `seq`; `send(None)` sends the end
/// marker and returns once the receiver has everything.
fn one_way(plan: &Plan, mut send: impl FnMut(Option<u64>) -> Res<()>) -> Res<Run> {
    let start = Instant::now();
    let (warm_end, stop) = (start + plan.warmup, start + plan.warmup + plan.throughput);
    let mut warm: Option<(u64, Instant)> = None;
    // Start of the current peak window, once warm.
    let mut window: Option<(u64, Instant)> = None;
    let mut peak: Option<f64> = None;
    let mut seq = 0u64;
    loop {
        send(Some(seq))?;
        seq += 1;
        if seq.is_multiple_of(16) {
            let now = Instant::now();
            if warm.is_none() && now >= warm_end {
                warm = Some((seq, now));
                window = Some((seq, now));
            }
            if let Some((w_seq, w_at)) = window {
                let took = now.duration_since(w_at);
                if seq - w_seq >= PEAK_FRAMES && took >= PEAK_TIME {
                    let rate = (seq - w_seq) as f64 / took.as_secs_f64();
                    peak = Some(peak.map_or(rate, |p| p.max(rate)));
                    window = Some((seq, now));
                }
            }
            if now >= stop {
                break;
            }
        }
    }
    send(None)?;
    let t_end = Instant::now();
    let (warm_seq, warm_at) = warm.unwrap_or((0, start));
    Ok(Run {
        sent: seq,
        timed: seq - warm_seq,
        secs: t_end.duration_since(warm_at).as_secs_f64(),
        peak,
    })
}

fn throughput_ring(plan: &Plan, shm: &Shm, size: usize) -> Res<(Run, Tally)> {
    shm.reset_rings()?;
    let peer = Peer::spawn(Transport::Ring, "sink", &shm.path.to_string_lossy())?;
    let r = &shm.r;
    let mut tx = Tx::new(&shm.g, 0, 1, 0)?;
    let run = ring_one_way(plan, r, &mut tx, size)?;
    let tally = peer.finish()?;
    Ok((run, tally))
}

fn throughput_stream<S: Stream>(plan: &Plan, s: S, peer: Peer, size: usize) -> Res<(Run, Tally)> {
    let mut ack = s.dup().map_err(err("dup socket"))?;
    let mut w = s;
    let mut m = message(size);
    let run = one_way(plan, |seq| match seq {
        Some(seq) => {
            frame::stamp(&mut m[4..], seq);
            w.write_all(&m).map_err(err("send"))
        }
        None => {
            w.write_all(&[0; 4]).map_err(err("send end"))?;
            let mut b = [0u8; 1];
            ack.read_exact(&mut b).map_err(err("read ack"))
        }
    })?;
    let tally = peer.finish()?;
    Ok((run, tally))
}

/// A connected socket to a fresh child of `kind` in `mode`.
enum Conn {
    Unix(UnixStream, Peer),
    Tcp(TcpStream, Peer),
}

fn connect(kind: Transport, mode: &str) -> Res<Conn> {
    match kind {
        Transport::Unix => {
            let path = std::env::temp_dir().join(format!("ring-bench-{}.sock", std::process::id()));
            let _ = std::fs::remove_file(&path);
            let l = UnixListener::bind(&path).map_err(err("bind unix socket"))?;
            let peer = Peer::spawn(kind, mode, &path.to_string_lossy());
            let s = peer.and_then(|p| Ok((l.accept().map_err(err("accept"))?.0, p)));
            let _ = std::fs::remove_file(&path);
            let (s, p) = s?;
            Ok(Conn::Unix(s, p))
        }
        Transport::Tcp => {
            let l = TcpListener::bind("127.0.0.1:0").map_err(err("bind tcp"))?;
            let port = l.local_addr().map_err(err("local addr"))?.port();
            let peer = Peer::spawn(kind, mode, &port.to_string())?;
            let s = l.accept().map_err(err("accept"))?.0;
            s.set_nodelay(true).map_err(err("nodelay"))?;
            Ok(Conn::Tcp(s, peer))
        }
        Transport::Ring => Err("not a socket".into()),
    }
}

fn trial(plan: &Plan, shm: &Shm, kind: Transport, size: usize) -> Throughput {
    let res = match kind {
        Transport::Ring => throughput_ring(plan, shm, size),
        _ => connect(kind, "sink").and_then(|c| match c {
            Conn::Unix(s, p) => throughput_stream(plan, s, p, size),
            Conn::Tcp(s, p) => throughput_stream(plan, s, p, size),
        }),
    };
    match res {
        Ok((run, tally)) => Throughput {
            transport: kind,
            size,
            frames: run.timed,
            seconds: run.secs,
            trials: Vec::new(),
            peak: run.peak,
            errors: tally.errors + run.sent.abs_diff(tally.frames),
            failed: None,
        },
        Err(e) => Throughput {
            transport: kind,
            size,
            frames: 0,
            seconds: 0.0,
            trials: Vec::new(),
            peak: None,
            errors: 1,
            failed: Some(e),
        },
    }
}

/// The median of `trials` (one transport and size), with every trial's rate and all errors.
fn median(mut trials: Vec<Throughput>) -> Throughput {
    let rates: Vec<f64> = trials.iter().map(Throughput::frames_per_sec).collect();
    let errors = trials.iter().map(|t| t.errors).sum();
    let failed = trials.iter().find_map(|t| t.failed.clone());
    let peak = trials.iter().filter_map(|t| t.peak).reduce(f64::max);
    trials.sort_by(|a, b| a.frames_per_sec().total_cmp(&b.frames_per_sec()));
    let mid = trials.swap_remove(trials.len() / 2);
    Throughput {
        trials: rates,
        peak,
        errors,
        failed,
        ..mid
    }
}

/// Runs round trips: `rt(seq)` sends frame `seq` and returns what came back.
fn ping_pong(plan: &Plan, mut rt: impl FnMut(u64) -> Res<bool>) -> Res<(Vec<u64>, u64)> {
    let mut samples = Vec::with_capacity(plan.lat_max);
    let mut errors = 0;
    let mut seq = 0u64;
    let mut started: Option<Instant> = None;
    loop {
        if seq as usize == LAT_WARMUP {
            started = Some(Instant::now());
        }
        if let Some(t) = started {
            let n = samples.len();
            if n >= plan.lat_max || (n >= plan.lat_min && t.elapsed() >= plan.lat_time) {
                break;
            }
        }
        let t0 = Instant::now();
        let ok = rt(seq)?;
        let d = t0.elapsed();
        if !ok {
            errors += 1;
        }
        if started.is_some() {
            samples.push(ns(d));
        }
        seq += 1;
    }
    Ok((samples, errors))
}

fn latency_ring(plan: &Plan, shm: &Shm) -> Res<(Vec<u64>, u64, Tally)> {
    shm.reset_rings()?;
    let peer = Peer::spawn(Transport::Ring, "echo", &shm.path.to_string_lossy())?;
    let r = &shm.r;
    let mut tx = Tx::new(&shm.g, 0, 1, 0)?;
    let mut c = Consumer::new(&shm.g, 1, 0, 0).map_err(err("consumer"))?;
    let mut f = frame::template(LAT_SIZE);
    let mut buf = vec![0u8; MAX_FRAME];
    let mut rt = |seq: u64| -> Res<bool> {
        frame::stamp(&mut f, seq);
        ring_send(r, &mut tx, &f)?;
        let n = spin_until("echo", || ring_recv(r, &mut c, &mut buf))?;
        c.publish(r).map_err(err("publish"))?;
        Ok(frame::check(&buf[..n]) == Some(seq))
    };
    let (samples, errors) = ping_pong(plan, &mut rt)?;
    if !rt(frame::END)? {
        return Err("end marker not echoed".into());
    }
    Ok((samples, errors, peer.finish()?))
}

fn latency_stream<S: Stream>(plan: &Plan, s: S, peer: Peer) -> Res<(Vec<u64>, u64, Tally)> {
    let mut rd = BufReader::with_capacity(64 << 10, s.dup().map_err(err("dup socket"))?);
    let mut w = s;
    let mut m = message(LAT_SIZE);
    let mut buf = vec![0u8; MAX_FRAME];
    let (samples, errors) = ping_pong(plan, |seq| {
        frame::stamp(&mut m[4..], seq);
        w.write_all(&m).map_err(err("send"))?;
        let n = stream_recv(&mut rd, &mut buf)?.ok_or("unexpected end marker")?;
        Ok(frame::check(&buf[..n]) == Some(seq))
    })?;
    w.write_all(&[0; 4]).map_err(err("send end"))?;
    if stream_recv(&mut rd, &mut buf)?.is_some() {
        return Err("end marker not echoed".into());
    }
    Ok((samples, errors, peer.finish()?))
}

fn latency(plan: &Plan, shm: &Shm, kind: Transport) -> Latency {
    let res = match kind {
        Transport::Ring => latency_ring(plan, shm),
        _ => connect(kind, "echo").and_then(|c| match c {
            Conn::Unix(s, p) => latency_stream(plan, s, p),
            Conn::Tcp(s, p) => latency_stream(plan, s, p),
        }),
    };
    match res {
        Ok((mut samples, errors, tally)) => {
            let sent = (LAT_WARMUP + samples.len()) as u64;
            Latency {
                transport: kind,
                summary: Summary::of_ns(&mut samples),
                errors: errors + tally.errors + sent.abs_diff(tally.frames),
                failed: None,
            }
        }
        Err(e) => Latency {
            transport: kind,
            summary: None,
            errors: 1,
            failed: Some(e),
        },
    }
}

// ---------------------------------------------------------------------------------------------
// Independent queues: thread pairs in this process, one region.

/// One scaling figure: `pairs` thread pairs at once.
#[derive(Debug, Clone)]
struct Scaling {
    pairs: usize,
    /// Frames per second of all pairs together in the median trial, and of every trial.
    frames_per_sec: f64,
    trials: Vec<f64>,
    /// Of each pair in the median trial.
    per_pair: Vec<f64>,
    errors: u64,
    failed: Option<String>,
}

/// What one pair did: the sender's [`Run`] and the receiver's tally.
type PairRun = (Run, Tally);

/// One trial of `pairs` pairs on the scaling region: pair `q` sends from peer 0 to peer 1 on
/// queue `q`, from partition `q` of `pairs` of peer 0's pool. All threads start together;
/// each sender runs [`one_way`].
fn scale_trial(plan: &Plan, shm: &Shm, pairs: usize) -> Res<Vec<PairRun>> {
    let (r, g) = (&shm.r, &shm.g);
    if pairs as u32 > Pool::max_partitions(g) {
        return Err(format!(
            "{pairs} pairs: the region has {} queues, its pools {} partitions",
            g.queues,
            Pool::max_partitions(g)
        ));
    }
    shm.reset_rings()?;
    // Everything that can fail is set up before any thread waits on the barrier.
    let mut sides = Vec::new();
    for q in 0..pairs as u32 {
        let tx = Tx::on_partition(g, 0, 1, q, pairs as u32)?;
        let rx = Consumer::new(g, 0, 1, q).map_err(err("consumer"))?;
        sides.push((tx, rx));
    }
    let start = Barrier::new(2 * pairs);
    let start = &start;
    std::thread::scope(|s| {
        let runs: Vec<_> = sides
            .into_iter()
            .map(|(mut tx, mut rx)| {
                let sink = s.spawn(move || {
                    start.wait();
                    sink(r, &mut rx)
                });
                let send = s.spawn(move || {
                    start.wait();
                    ring_one_way(plan, r, &mut tx, SCALE_SIZE)
                });
                (send, sink)
            })
            .collect();
        // Join every thread before looking at any result: a failed sender's receiver gives up
        // on its own after [`STALL`].
        let joined: Vec<_> = runs
            .into_iter()
            .map(|(send, sink)| (send.join(), sink.join()))
            .collect();
        joined
            .into_iter()
            .map(|(send, sink)| {
                let send = send.map_err(|_| "a sender thread panicked".to_string())??;
                let sink = sink.map_err(|_| "a receiver thread panicked".to_string())??;
                Ok((send, sink))
            })
            .collect()
    })
}

/// The scaling figures for 1 to `plan.pairs` pairs, each the median of `plan.trials`
/// interleaved trials.
fn scaling(plan: &Plan, shm: &Shm) -> Vec<Scaling> {
    let mut runs: Vec<Vec<Scaling>> = vec![Vec::new(); plan.pairs];
    for _ in 0..plan.trials.max(1) {
        for (i, runs) in runs.iter_mut().enumerate() {
            let pairs = i + 1;
            runs.push(match scale_trial(plan, shm, pairs) {
                Ok(v) => {
                    let per_pair: Vec<f64> = v
                        .iter()
                        .map(|(run, _)| {
                            if run.secs > 0.0 {
                                run.timed as f64 / run.secs
                            } else {
                                0.0
                            }
                        })
                        .collect();
                    Scaling {
                        pairs,
                        frames_per_sec: per_pair.iter().sum(),
                        trials: Vec::new(),
                        per_pair,
                        errors: v
                            .iter()
                            .map(|(run, t)| t.errors + run.sent.abs_diff(t.frames))
                            .sum(),
                        failed: None,
                    }
                }
                Err(e) => Scaling {
                    pairs,
                    frames_per_sec: 0.0,
                    trials: Vec::new(),
                    per_pair: Vec::new(),
                    errors: 1,
                    failed: Some(e),
                },
            });
        }
    }
    runs.into_iter()
        .map(|mut trials| {
            let rates: Vec<f64> = trials.iter().map(|t| t.frames_per_sec).collect();
            let errors = trials.iter().map(|t| t.errors).sum();
            let failed = trials.iter().find_map(|t| t.failed.clone());
            trials.sort_by(|a, b| a.frames_per_sec.total_cmp(&b.frames_per_sec));
            let mid = trials.swap_remove(trials.len() / 2);
            Scaling {
                trials: rates,
                errors,
                failed,
                ..mid
            }
        })
        .collect()
}

#[derive(Debug, Clone, Copy)]
struct Memcpy {
    bytes: usize,
    copies: u64,
    seconds: f64,
    errors: u64,
}

fn memcpy(plan: &Plan) -> Memcpy {
    const LEN: usize = 64 << 20;
    let src: Vec<u8> = (0..LEN).map(|i| (i % 251) as u8).collect();
    let mut dst = vec![0u8; LEN];
    dst.copy_from_slice(&src); // fault the pages in
    let start = Instant::now();
    let mut copies = 0u64;
    while copies < 2 || start.elapsed() < plan.memcpy {
        dst.copy_from_slice(std::hint::black_box(&src));
        std::hint::black_box(&mut dst);
        copies += 1;
    }
    let seconds = start.elapsed().as_secs_f64();
    let errors = (0..LEN)
        .step_by(4093)
        .filter(|&i| dst[i] != (i % 251) as u8)
        .count() as u64;
    Memcpy {
        bytes: LEN,
        copies,
        seconds,
        errors,
    }
}

impl Memcpy {
    fn gb_per_sec(&self) -> f64 {
        self.bytes as f64 * self.copies as f64 / self.seconds / 1e9
    }
}

struct Report {
    plan: Plan,
    geometry: Geometry,
    throughput: Vec<Throughput>,
    latency: Vec<Latency>,
    /// The scaling region's geometry, if there were scaling runs.
    scaling_geometry: Option<Geometry>,
    scaling: Vec<Scaling>,
    memcpy: Memcpy,
}

impl Report {
    fn errors(&self) -> u64 {
        self.throughput.iter().map(|t| t.errors).sum::<u64>()
            + self.latency.iter().map(|l| l.errors).sum::<u64>()
            + self.scaling.iter().map(|s| s.errors).sum::<u64>()
            + self.memcpy.errors
    }

    /// Frames per second of `pairs` pairs over one pair's, if both ran.
    fn speedup(&self, pairs: usize) -> Option<f64> {
        let of = |n: usize| {
            self.scaling
                .iter()
                .find(|s| s.pairs == n && s.failed.is_none() && s.frames_per_sec > 0.0)
                .map(|s| s.frames_per_sec)
        };
        Some(of(pairs)? / of(1)?)
    }

    fn json(&self) -> Value {
        let g = &self.geometry;
        json!({
            "mode": if self.plan.quick { "quick" } else { "full" },
            "burst": BURST,
            "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
            "region": {
                "len": g.region_len,
                "max_peers": g.max_peers,
                "ring_slots": g.ring_slots,
                "queues": g.queues,
                "pool_len": g.pool_len,
            },
            "throughput": self.throughput.iter().map(|t| json!({
                "transport": t.transport.name(),
                "frame_bytes": t.size,
                "frames": t.frames,
                "seconds": t.seconds,
                "frames_per_sec": t.frames_per_sec(),
                "gb_per_sec": t.gb_per_sec(),
                "trials_frames_per_sec": t.trials,
                "peak_frames_per_sec": t.peak,
                "errors": t.errors,
                "failed": t.failed,
            })).collect::<Vec<_>>(),
            "latency": self.latency.iter().map(|l| {
                let s = l.summary;
                json!({
                    "transport": l.transport.name(),
                    "frame_bytes": LAT_SIZE,
                    "round_trips": s.map_or(0, |s| s.count),
                    "min_us": s.map(|s| s.min_us),
                    "mean_us": s.map(|s| s.mean_us),
                    "p50_us": s.map(|s| s.p50_us),
                    "p90_us": s.map(|s| s.p90_us),
                    "p99_us": s.map(|s| s.p99_us),
                    "max_us": s.map(|s| s.max_us),
                    "errors": l.errors,
                    "failed": l.failed,
                })
            }).collect::<Vec<_>>(),
            "scaling": {
                "frame_bytes": SCALE_SIZE,
                "region": self.scaling_geometry.map(|g| json!({
                    "len": g.region_len,
                    "max_peers": g.max_peers,
                    "queues": g.queues,
                    "pool_len": g.pool_len,
                })),
                "runs": self.scaling.iter().map(|s| json!({
                    "pairs": s.pairs,
                    "frames_per_sec": s.frames_per_sec,
                    "gb_per_sec": s.frames_per_sec * SCALE_SIZE as f64 / 1e9,
                    "speedup": self.speedup(s.pairs),
                    "per_pair_frames_per_sec": s.per_pair,
                    "trials_frames_per_sec": s.trials,
                    "errors": s.errors,
                    "failed": s.failed,
                })).collect::<Vec<_>>(),
            },
            "memcpy": {
                "buffer_bytes": self.memcpy.bytes,
                "copies": self.memcpy.copies,
                "seconds": self.memcpy.seconds,
                "gb_per_sec": self.memcpy.gb_per_sec(),
                "errors": self.memcpy.errors,
            },
            "errors": self.errors(),
        })
    }

    fn table(&self) -> String {
        use std::fmt::Write as _;
        let g = &self.geometry;
        let mut o = String::new();
        let _ = writeln!(
            o,
            "ring-bench ({} run, {} CPUs; ring: {} MiB region, {} peers, {} slots, {:.1} MiB pool per sender)",
            if self.plan.quick { "quick" } else { "full" },
            std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
            g.region_len >> 20,
            g.max_peers,
            g.ring_slots,
            f64::from(g.pool_len) / f64::from(1u32 << 20)
        );
        let _ = writeln!(o);
        let head = match self.plan.trials {
            1 => "one-way throughput".to_string(),
            n => format!("one-way, median of {n}"),
        };
        let _ = write!(o, "{head:<22}");
        for t in TRANSPORTS {
            let _ = write!(o, "  {:<24}", t.title());
        }
        let _ = writeln!(o);
        for size in SIZES {
            let label = if size % 1024 == 0 {
                format!("  {} KiB frames", size / 1024)
            } else {
                format!("  {size} B frames")
            };
            let _ = write!(o, "{label:<22}");
            for t in TRANSPORTS {
                let cell = match self
                    .throughput
                    .iter()
                    .find(|x| x.transport == t && x.size == size)
                {
                    Some(x) if x.failed.is_none() => {
                        format!(
                            "{:>9}/s {:>6.2} GB/s",
                            rate(x.frames_per_sec()),
                            x.gb_per_sec()
                        )
                    }
                    Some(_) => "FAILED".into(),
                    None => "-".into(),
                };
                let _ = write!(o, "  {cell:<24}");
            }
            let _ = writeln!(o);
        }
        let _ = write!(o, "{:<22}", "  best window");
        for t in TRANSPORTS {
            let cell = SIZES
                .iter()
                .map(|&size| {
                    self.throughput
                        .iter()
                        .find(|x| x.transport == t && x.size == size)
                        .and_then(|x| x.peak)
                        .map_or("-".into(), |p| format!("{}/s", rate(p)))
                })
                .collect::<Vec<_>>()
                .join(" ");
            let _ = write!(o, "  {cell:<24}");
        }
        let _ = writeln!(o);
        let _ = writeln!(o);
        let _ = writeln!(o, "ping-pong latency, {LAT_SIZE} B frames (µs)");
        for (name, pick) in [
            ("  p50", (|s: &Summary| s.p50_us) as fn(&Summary) -> f64),
            ("  p99", |s: &Summary| s.p99_us),
            ("  max", |s: &Summary| s.max_us),
        ] {
            let _ = write!(o, "{name:<22}");
            for t in TRANSPORTS {
                let cell = match self.latency.iter().find(|x| x.transport == t) {
                    Some(Latency {
                        summary: Some(s), ..
                    }) => format!("{:>9.2}", pick(s)),
                    Some(_) => "FAILED".into(),
                    None => "-".into(),
                };
                let _ = write!(o, "  {cell:<24}");
            }
            let _ = writeln!(o);
        }
        let _ = write!(o, "{:<22}", "  round trips");
        for t in TRANSPORTS {
            let n = self
                .latency
                .iter()
                .find(|x| x.transport == t)
                .and_then(|x| x.summary)
                .map_or(0, |s| s.count);
            let _ = write!(o, "  {n:>9}{:15}", "");
        }
        let _ = writeln!(o);
        let _ = writeln!(o);
        if let Some(g) = &self.scaling_geometry {
            let _ = writeln!(
                o,
                "thread pairs, {SCALE_SIZE} B frames one way, one region ({} MiB, {} peers, {} \
                 queues); pair q: peer 0 -> peer 1 on queue q, partition q of peer 0's pool",
                g.region_len >> 20,
                g.max_peers,
                g.queues
            );
            for sc in &self.scaling {
                let label = format!(
                    "  {} pair{}",
                    sc.pairs,
                    if sc.pairs == 1 { "" } else { "s" }
                );
                let cell = match &sc.failed {
                    None => format!(
                        "{:>9}/s {:>6.2} GB/s  {:.2}x one pair  (each: {})",
                        rate(sc.frames_per_sec),
                        sc.frames_per_sec * SCALE_SIZE as f64 / 1e9,
                        self.speedup(sc.pairs).unwrap_or(0.0),
                        sc.per_pair
                            .iter()
                            .map(|&v| format!("{}/s", rate(v)))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    Some(e) => format!("FAILED: {e}"),
                };
                let _ = writeln!(o, "{label:<22}  {cell}");
            }
            let _ = writeln!(o);
        }
        let _ = writeln!(
            o,
            "memcpy, 64 MiB buffer: {:.2} GB/s ({} copies in {:.2} s)",
            self.memcpy.gb_per_sec(),
            self.memcpy.copies,
            self.memcpy.seconds
        );
        let _ = writeln!(o, "frame errors: {}", self.errors());
        for t in &self.throughput {
            if let Some(e) = &t.failed {
                let _ = writeln!(
                    o,
                    "  {} {} B one-way failed: {e}",
                    t.transport.name(),
                    t.size
                );
            }
        }
        for l in &self.latency {
            if let Some(e) = &l.failed {
                let _ = writeln!(o, "  {} ping-pong failed: {e}", l.transport.name());
            }
        }
        o
    }
}

/// `12.3 M`, `456 k`, `789`.
fn rate(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2} M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.1} k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

fn run(plan: Plan) -> Res<Report> {
    let shm = Shm::create(2, "")?;
    // Trials outermost, so that a burst of other load on the machine spoils one trial of
    // several transports rather than every trial of one.
    let cases: Vec<(usize, Transport)> = SIZES
        .iter()
        .flat_map(|&s| TRANSPORTS.map(|t| (s, t)))
        .collect();
    let mut runs: Vec<Vec<Throughput>> = vec![Vec::new(); cases.len()];
    for _ in 0..plan.trials.max(1) {
        for (&(size, t), runs) in cases.iter().zip(runs.iter_mut()) {
            runs.push(trial(&plan, &shm, t, size));
        }
    }
    let throughputs = runs.into_iter().map(median).collect();
    let shm_geometry = shm.g;
    let latencies = TRANSPORTS
        .iter()
        .map(|&t| latency(&plan, &shm, t))
        .collect();
    drop(shm);
    let (scaling_geometry, scaling) = if plan.pairs > 0 {
        let shm = Shm::create(2, "-pairs")?;
        (Some(shm.g), scaling(&plan, &shm))
    } else {
        (None, Vec::new())
    };
    let memcpy = memcpy(&plan);
    Ok(Report {
        plan,
        geometry: shm_geometry,
        throughput: throughputs,
        latency: latencies,
        scaling_geometry,
        scaling,
        memcpy,
    })
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--child") {
        return child(&args[1..]);
    }
    let (mut quick, mut as_json, mut pairs) = (false, false, DEFAULT_PAIRS);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--quick" => quick = true,
            "--json" => as_json = true,
            "--pairs" => match ivshmem_bench::num::<usize>("--pairs", it.next().cloned()) {
                Ok(n) if n <= MAX_PAIRS => pairs = n,
                Ok(n) => {
                    eprintln!("ring-bench: --pairs {n}: at most {MAX_PAIRS} (see --help)");
                    return ExitCode::from(64);
                }
                Err(e) => {
                    eprintln!("ring-bench: {e} (see --help)");
                    return ExitCode::from(64);
                }
            },
            "-h" | "--help" => {
                print!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            s => {
                eprintln!("ring-bench: unknown argument {s:?} (see --help)");
                return ExitCode::from(64);
            }
        }
    }
    let report = match run(Plan::new(quick, pairs)) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("ring-bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    if as_json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report.json()).unwrap_or_default()
        );
    } else {
        print!("{}", report.table());
    }
    if report.errors() == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tally(seqs: &[u64], damage: Option<usize>) -> Tally {
        let mut t = Tally::default();
        for (i, &seq) in seqs.iter().enumerate() {
            let mut f = frame::template(64);
            frame::stamp(&mut f, seq);
            if damage == Some(i) {
                f[40] ^= 1;
                f[63] ^= 1;
            }
            if t.take(&f) {
                break;
            }
        }
        t
    }

    #[test]
    fn tally_counts_bad_frames() {
        let t = tally(&[0, 1, 2, frame::END, 9], None);
        assert_eq!((t.frames, t.errors), (3, 0));
        // A gap, then in order again from the new number.
        let t = tally(&[0, 1, 5, 6], None);
        assert_eq!((t.frames, t.errors), (4, 1));
        // A repeat.
        let t = tally(&[0, 1, 1, 2], None);
        assert_eq!((t.frames, t.errors), (4, 1));
        // A damaged frame.
        let t = tally(&[0, 1, 2, 3], Some(2));
        assert_eq!((t.frames, t.errors), (4, 1));
    }

    #[test]
    fn one_way_reports_its_best_window() {
        let mut plan = Plan::new(true, 0);
        plan.warmup = Duration::ZERO;
        plan.throughput = Duration::from_millis(30);
        let mut ends = 0;
        let run = one_way(&plan, |seq| {
            ends += usize::from(seq.is_none());
            Ok(())
        })
        .unwrap();
        assert_eq!(ends, 1);
        assert!(
            run.sent >= run.timed && run.timed > 2 * PEAK_FRAMES,
            "{run:?}"
        );
        // The best window is at least as fast as the windows on average, the whole run
        // being those windows and a partial one.
        let peak = run.peak.expect("windows of PEAK_FRAMES in 30 ms");
        assert!(peak >= 0.5 * run.timed as f64 / run.secs, "{run:?}");
        // A run too short for a window has no peak.
        plan.throughput = Duration::ZERO;
        let run = one_way(&plan, |_| Ok(())).unwrap();
        assert_eq!(run.peak, None, "{run:?}");
    }

    #[test]
    fn rates_are_readable() {
        assert_eq!(rate(12_345_678.0), "12.35 M");
        assert_eq!(rate(456_700.0), "456.7 k");
        assert_eq!(rate(789.0), "789");
    }

    #[test]
    fn ring_frames_round_trip_through_a_region_file() {
        let shm = Shm::create(2, "-test").unwrap();
        shm.reset_rings().unwrap();
        let mut tx = Tx::new(&shm.g, 0, 1, 0).unwrap();
        let mut c = Consumer::new(&shm.g, 0, 1, 0).unwrap();
        let mut buf = vec![0u8; MAX_FRAME];
        let mut t = Tally::default();
        // Enough 64 KiB frames to go round the pool several times, so that frames run past
        // its end and ring_send must reclaim.
        let laps = 3 * shm.g.pool_len as usize / (64 << 10);
        let lens = [64, 1500, 65536]
            .into_iter()
            .chain(std::iter::repeat_n(65536 - 40, laps));
        for (seq, len) in (0..).zip(lens) {
            let mut f = frame::template(len);
            frame::stamp(&mut f, seq);
            ring_send(&shm.r, &mut tx, &f).unwrap();
            let n = ring_recv(&shm.r, &mut c, &mut buf).unwrap().unwrap();
            assert_eq!(n, len);
            assert!(!t.take(&buf[..n]));
            c.publish(&shm.r).unwrap();
        }
        assert_eq!((t.frames, t.errors), (3 + laps as u64, 0));
        assert!(tx.pool.head() > 2 * u64::from(shm.g.pool_len));
        let path = shm.path.clone();
        drop(shm);
        assert!(!path.exists());
    }
}
