// SPDX-License-Identifier: GPL-2.0

//! The event loop: one thread, poll(2) over the signalfd, the listening socket and every
//! client socket.
//!
//! Every message to a client goes through that client's queue and is sent with a non-blocking
//! sendmsg; what the socket does not take now is sent when poll says it is writable. So a
//! client that reads slowly (a QEMU receiving hundreds of eventfds at once) gets everything in
//! order, and one that stops reading never stalls the others: once its queue passes a bound it
//! is disconnected. The protocol is one-way (server to client): a client that sends anything,
//! hangs up or errors is disconnected, and the others get a disconnect notice.
//!
//! Ids are never handed out again soon after they were used: see [`next_free_id`].

use crate::departures::Departures;
use crate::sys::{self, Peek};
use crate::{log, vlog};
use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::rc::Rc;

/// Protocol version sent first on every connection (QEMU 2.5 and later).
pub const PROTOCOL_VERSION: i64 = 0;

/// One message: a little-endian i64, with one descriptor or none. The descriptor is shared, so
/// a queued message keeps its eventfd open even if that peer leaves before it is sent.
struct Msg {
    value: i64,
    fd: Option<Rc<OwnedFd>>,
}

struct Peer {
    stream: UnixStream,
    /// One per vector: the peer receives interrupts on them, the others get copies to send.
    eventfds: Vec<Rc<OwnedFd>>,
    queue: VecDeque<Msg>,
    pid: Option<libc::pid_t>,
}

pub struct Config {
    pub vectors: u32,
    /// Clients connected at once; not a bound on ids.
    pub max_clients: u32,
}

pub struct Server {
    cfg: Config,
    listener: UnixListener,
    shm: Rc<OwnedFd>,
    signals: OwnedFd,
    peers: BTreeMap<u16, Peer>,
    /// Where the search for the next client's id starts: one past the last id handed out.
    next_id: u16,
    /// Held so that an accept failing with EMFILE can still take the connection off the
    /// backlog (close this, accept, close that, reopen) instead of spinning.
    spare: Option<OwnedFd>,
    /// A client with more queued messages than this is not reading and is disconnected.
    queue_limit: usize,
    departures: Departures,
}

/// Why the loop ended.
pub enum Exit {
    Signal(libc::c_int),
    Error(io::Error),
}

impl Server {
    pub fn new(
        cfg: Config,
        listener: UnixListener,
        shm: OwnedFd,
        signals: OwnedFd,
        departures: Departures,
    ) -> Server {
        // The most a client can legitimately have queued: the setup burst (3 + one message per
        // vector of every peer) plus a complete turnover of all the other peers; then some.
        let per_round = cfg.max_clients as usize * cfg.vectors as usize;
        Server {
            queue_limit: 3 + 2 * per_round + cfg.max_clients as usize + 256,
            cfg,
            listener,
            shm: Rc::new(shm),
            signals,
            peers: BTreeMap::new(),
            next_id: 0,
            spare: std::fs::File::open("/dev/null").ok().map(OwnedFd::from),
            departures,
        }
    }

    pub fn run(&mut self) -> Exit {
        if let Err(e) = self.listener.set_nonblocking(true) {
            return Exit::Error(e);
        }
        let mut pollfds: Vec<libc::pollfd> = Vec::new();
        let mut ids: Vec<u16> = Vec::new();
        loop {
            pollfds.clear();
            ids.clear();
            pollfds.push(pollfd(self.signals.as_fd(), libc::POLLIN));
            pollfds.push(pollfd(self.listener.as_fd(), libc::POLLIN));
            for (&id, peer) in &self.peers {
                let mut events = libc::POLLIN;
                if !peer.queue.is_empty() {
                    events |= libc::POLLOUT;
                }
                pollfds.push(pollfd(peer.stream.as_fd(), events));
                ids.push(id);
            }
            match sys::poll(&mut pollfds, -1) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Exit::Error(e),
            }

            if pollfds[0].revents != 0 {
                match sys::read_signal(self.signals.as_fd()) {
                    Ok(Some(sig)) => return Exit::Signal(sig),
                    Ok(None) => {}
                    Err(e) => return Exit::Error(e),
                }
            }

            // Clients first, so that a place freed now (--max-clients) can go to a connection
            // accepted in this same round.
            let mut drops: Vec<(u16, String)> = Vec::new();
            for (pfd, &id) in pollfds[2..].iter().zip(&ids) {
                let rev = pfd.revents;
                if rev == 0 {
                    continue;
                }
                let peer = &self.peers[&id];
                if rev & (libc::POLLIN | libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0 {
                    if let Some(reason) = hangup_reason(peer.stream.as_fd(), rev) {
                        drops.push((id, reason));
                        continue;
                    }
                }
                if rev & libc::POLLOUT != 0 {
                    if let Err(reason) = self.flush(id) {
                        drops.push((id, reason));
                    }
                }
            }
            self.drop_peers(drops);

            if pollfds[1].revents != 0 {
                self.accept_all();
            }
        }
    }

    /// Accepts every pending connection.
    fn accept_all(&mut self) {
        // Bounded, so that a flood of connections cannot starve the clients' events.
        for _ in 0..64 {
            match self.listener.accept() {
                Ok((stream, _)) => self.add_peer(stream),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e)
                    if e.kind() == io::ErrorKind::Interrupted
                        || e.raw_os_error() == Some(libc::ECONNABORTED) => {}
                Err(e) if matches!(e.raw_os_error(), Some(libc::EMFILE) | Some(libc::ENFILE)) => {
                    log!("refusing a connection: out of file descriptors ({e})");
                    self.spare = None;
                    drop(self.listener.accept());
                    self.spare = std::fs::File::open("/dev/null").ok().map(OwnedFd::from);
                    return;
                }
                Err(e) => {
                    log!("accept failed: {e}");
                    return;
                }
            }
        }
    }

    fn add_peer(&mut self, stream: UnixStream) {
        let pid = sys::peer_pid(stream.as_fd());
        let who = match pid {
            Some(p) => format!("pid {p}"),
            None => "unknown pid".to_string(),
        };
        if let Err(e) = stream.set_nonblocking(true) {
            log!("refusing a connection ({who}): {e}");
            return;
        }
        // Another ivshmem-server checking whether this socket is alive (when /proc/net/unix did
        // not tell it) is not a client. Checked before the hang-up test below: if the prober
        // is already gone from /proc, its socket is closed, which that test sees.
        if pid.is_some_and(is_other_server) {
            vlog!("connection ({who}) is another ivshmem-server's liveness probe: closed");
            return;
        }
        // A connection that is already gone is dropped before it gets an id, so the others hear
        // nothing of it.
        let mut pfd = [pollfd(stream.as_fd(), libc::POLLIN | libc::POLLRDHUP)];
        if matches!(sys::poll(&mut pfd, 0), Ok(1)) {
            let reason =
                hangup_reason(stream.as_fd(), pfd[0].revents).unwrap_or_else(|| "hung up".into());
            vlog!("connection ({who}) closed before setup: {reason}");
            return;
        }
        if self.peers.len() >= self.cfg.max_clients as usize {
            log!(
                "refusing a connection ({who}): {} clients connected, the limit (--max-clients)",
                self.peers.len()
            );
            return;
        }
        let Some(id) = next_free_id(self.next_id, &self.peers) else {
            // Only if --max-clients allowed all 65536 ids at once, and they are.
            log!("refusing a connection ({who}): all 65536 ids are in use");
            return;
        };
        let mut eventfds = Vec::with_capacity(self.cfg.vectors as usize);
        for _ in 0..self.cfg.vectors {
            match sys::eventfd() {
                Ok(fd) => eventfds.push(Rc::new(fd)),
                Err(e) => {
                    log!("refusing a connection ({who}): cannot create an eventfd: {e}");
                    return;
                }
            }
        }

        // The order is the protocol's: version, id, shared memory; then the new peer is
        // announced to the others; then the others are announced to it; last its own eventfds.
        let mut queue = VecDeque::new();
        queue.push_back(Msg {
            value: PROTOCOL_VERSION,
            fd: None,
        });
        queue.push_back(Msg {
            value: i64::from(id),
            fd: None,
        });
        queue.push_back(Msg {
            value: -1,
            fd: Some(self.shm.clone()),
        });
        for other in self.peers.values_mut() {
            for fd in &eventfds {
                other.queue.push_back(Msg {
                    value: i64::from(id),
                    fd: Some(fd.clone()),
                });
            }
        }
        for (&other_id, other) in &self.peers {
            for fd in &other.eventfds {
                queue.push_back(Msg {
                    value: i64::from(other_id),
                    fd: Some(fd.clone()),
                });
            }
        }
        for fd in &eventfds {
            queue.push_back(Msg {
                value: i64::from(id),
                fd: Some(fd.clone()),
            });
        }
        vlog!(
            "peer {id}: socket fd {}, eventfds {:?}, {} setup messages",
            stream.as_raw_fd(),
            eventfds.iter().map(|f| f.as_raw_fd()).collect::<Vec<_>>(),
            queue.len()
        );
        self.next_id = id.wrapping_add(1);
        self.peers.insert(
            id,
            Peer {
                stream,
                eventfds,
                queue,
                pid,
            },
        );
        log!(
            "peer {id} connected ({who}); {} connected",
            self.peers.len()
        );
        self.flush_all();
    }

    /// Sends what the socket takes of `id`'s queue.
    fn flush(&mut self, id: u16) -> Result<(), String> {
        let limit = self.queue_limit;
        let peer = self.peers.get_mut(&id).expect("flush of a known peer");
        while let Some(msg) = peer.queue.front() {
            let fd = msg.fd.as_ref().map(|f| f.as_fd());
            match sys::send_msg(peer.stream.as_fd(), msg.value, fd) {
                Ok(8) => {
                    peer.queue.pop_front();
                }
                Ok(n) => return Err(format!("short send ({n} of 8 bytes)")),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("send failed: {e}")),
            }
        }
        if peer.queue.len() > limit {
            return Err(format!(
                "not reading: {} messages waiting (limit {limit})",
                peer.queue.len()
            ));
        }
        if !peer.queue.is_empty() {
            vlog!(
                "peer {id}: socket full, {} messages waiting",
                peer.queue.len()
            );
        }
        Ok(())
    }

    /// Flushes every client with something queued, dropping those that fail (which queues
    /// disconnect notices to the rest, which are flushed in turn).
    fn flush_all(&mut self) {
        let pending: Vec<u16> = self
            .peers
            .iter()
            .filter(|(_, p)| !p.queue.is_empty())
            .map(|(&id, _)| id)
            .collect();
        let drops: Vec<(u16, String)> = pending
            .into_iter()
            .filter_map(|id| self.flush(id).err().map(|r| (id, r)))
            .collect();
        self.drop_peers(drops);
    }

    fn drop_peers(&mut self, drops: Vec<(u16, String)>) {
        if drops.is_empty() {
            return;
        }
        for (id, reason) in drops {
            let Some(peer) = self.peers.remove(&id) else {
                continue;
            };
            let who = match peer.pid {
                Some(p) => format!("pid {p}"),
                None => "unknown pid".to_string(),
            };
            log!(
                "peer {id} disconnected ({who}): {reason}; {} connected",
                self.peers.len()
            );
            drop(peer);
            for other in self.peers.values_mut() {
                other.queue.push_back(Msg {
                    value: i64::from(id),
                    fd: None,
                });
            }
        }
        // The guests hear nothing of the notices above (QEMU keeps them): an ivshmem-net
        // region gets the departure counted and everyone rung (see `departures`).
        if self.departures.announce() {
            for (id, other) in &self.peers {
                let Some(fd) = other.eventfds.first() else {
                    continue;
                };
                match sys::eventfd_signal(fd.as_fd()) {
                    Ok(()) => vlog!("peer {id}: rung about the departure"),
                    Err(e) => log!("peer {id}: ringing about the departure failed: {e}"),
                }
            }
        }
        self.flush_all();
    }

    /// Number of connected clients.
    pub fn connected(&self) -> usize {
        self.peers.len()
    }
}

/// The id for a new client: the first one at or after `cursor`, wrapping from 65535 to 0,
/// that is not a key of `in_use`; `None` if all 65536 are. The caller moves the cursor past
/// the id it hands out, so an id that was used comes back only after all the others have been
/// handed out since (or were in use when their turn came).
///
/// Why not the lowest free id: QEMU's ivshmem device (7.2 at least) cannot take a peer id back.
/// On a peer's disconnect notice it closes and frees that peer's array of eventfds but leaves
/// the peer's entry pointing at the freed memory, and a later connect notice for the same id
/// stores the new eventfds through that pointer: every QEMU that saw the peer go corrupts its
/// heap when the id returns (seen as "malloc(): unaligned fastbin chunk detected" aborts when
/// a killed guest was restarted and got its old id). QEMU's example server sidesteps this the
/// same way, with a cursor that skips ids in use.
pub fn next_free_id<V>(cursor: u16, in_use: &BTreeMap<u16, V>) -> Option<u16> {
    // The first gap in the ids in use from `cursor` up, then from 0 up to `cursor`.
    let mut want = u32::from(cursor);
    for &id in in_use.range(cursor..).map(|(id, _)| id) {
        if u32::from(id) != want {
            break;
        }
        want += 1;
    }
    if want <= u32::from(u16::MAX) {
        return Some(want as u16);
    }
    let mut want = 0u16;
    for &id in in_use.range(..cursor).map(|(id, _)| id) {
        if id != want {
            break;
        }
        want += 1;
    }
    (want < cursor).then_some(want)
}

fn is_other_server(pid: libc::pid_t) -> bool {
    pid != sys::getpid()
        && std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .is_ok_and(|comm| comm.trim_end() == "ivshmem-server")
}

fn pollfd(fd: BorrowedFd<'_>, events: libc::c_short) -> libc::pollfd {
    libc::pollfd {
        fd: fd.as_raw_fd(),
        events,
        revents: 0,
    }
}

/// Why a client socket that poll reported readable, hung up or in error is to be dropped;
/// `None` if it is fine after all.
fn hangup_reason(sock: BorrowedFd<'_>, revents: libc::c_short) -> Option<String> {
    match sys::peek(sock) {
        Peek::Data => Some("sent data (the protocol is server-to-client only)".into()),
        Peek::Eof => Some("hung up".into()),
        Peek::Error(e) => Some(format!("socket error: {e}")),
        Peek::Nothing if revents & (libc::POLLHUP | libc::POLLRDHUP) != 0 => Some("hung up".into()),
        Peek::Nothing if revents & (libc::POLLERR | libc::POLLNVAL) != 0 => {
            Some("socket error".into())
        }
        Peek::Nothing => None,
    }
}

#[cfg(test)]
mod tests {
    use super::next_free_id;
    use std::collections::BTreeMap;

    fn used(ids: &[u16]) -> BTreeMap<u16, ()> {
        ids.iter().map(|&i| (i, ())).collect()
    }

    #[test]
    fn the_cursor_itself_when_free() {
        assert_eq!(next_free_id(0, &used(&[])), Some(0));
        assert_eq!(next_free_id(7, &used(&[0, 1, 6, 8])), Some(7));
        assert_eq!(next_free_id(65535, &used(&[0])), Some(65535));
    }

    #[test]
    fn ids_in_use_at_the_cursor_are_skipped() {
        assert_eq!(next_free_id(0, &used(&[0, 1, 2, 4])), Some(3));
        assert_eq!(next_free_id(5, &used(&[5, 6, 9])), Some(7));
    }

    #[test]
    fn a_departed_id_below_the_cursor_is_not_reused() {
        // Ids 0, 1, 2 were handed out (cursor 3), then 1 left: the next is 3, not 1.
        assert_eq!(next_free_id(3, &used(&[0, 2])), Some(3));
        // All of them left: still 3.
        assert_eq!(next_free_id(3, &used(&[])), Some(3));
    }

    #[test]
    fn wraps_after_65535_skipping_ids_in_use() {
        assert_eq!(next_free_id(65534, &used(&[65534, 65535])), Some(0));
        assert_eq!(next_free_id(65535, &used(&[65535, 0, 1, 3])), Some(2));
        assert_eq!(
            next_free_id(
                65530,
                &used(&[0, 1, 65530, 65531, 65532, 65533, 65534, 65535])
            ),
            Some(2)
        );
        // The cursor's own range is searched up to 65535 before wrapping.
        assert_eq!(next_free_id(65533, &used(&[0, 65533])), Some(65534));
    }

    #[test]
    fn only_the_last_free_id_left() {
        let mut all: BTreeMap<u16, ()> = (0..=u16::MAX).map(|i| (i, ())).collect();
        all.remove(&12);
        assert_eq!(next_free_id(13, &all), Some(12), "after wrapping");
        assert_eq!(next_free_id(12, &all), Some(12));
        assert_eq!(next_free_id(5, &all), Some(12));
        all.remove(&65535);
        all.insert(12, ());
        assert_eq!(next_free_id(0, &all), Some(65535));
        assert_eq!(next_free_id(65535, &all), Some(65535));
    }

    #[test]
    fn none_when_all_65536_are_in_use() {
        let all: BTreeMap<u16, ()> = (0..=u16::MAX).map(|i| (i, ())).collect();
        for cursor in [0, 1, 12345, 65535] {
            assert_eq!(next_free_id(cursor, &all), None);
        }
    }

    /// The server's sequence: hand out, move the cursor past, let some leave.
    #[test]
    fn a_freed_id_returns_only_after_all_others() {
        let mut in_use = used(&[]);
        let mut cursor = 0u16;
        let mut take = |in_use: &mut BTreeMap<u16, ()>| {
            let id = next_free_id(cursor, in_use).unwrap();
            cursor = id.wrapping_add(1);
            in_use.insert(id, ());
            id
        };
        assert_eq!(take(&mut in_use), 0);
        assert_eq!(take(&mut in_use), 1);
        in_use.remove(&0);
        // 65534 clients come and go: ids 2..=65535; then 0 comes back, and 1 (still
        // connected) is skipped.
        for want in 2..=u16::MAX {
            assert_eq!(take(&mut in_use), want);
            in_use.remove(&want);
        }
        assert_eq!(take(&mut in_use), 0);
        assert_eq!(take(&mut in_use), 2);
    }
}
