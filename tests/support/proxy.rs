//! A TCP proxy on 127.0.0.1 between `dmp` and a database server, for
//! fault tests: it forwards bytes both ways until told to cut every live
//! connection, to stall (hold all traffic for a while, as a network that
//! hangs), or to drop one connection after a number of bytes, in the
//! middle of whatever is flowing (a COPY, a LOAD DATA, a result set).
//!
//! Plain threads, two per connection: the tests move at most a few hundred
//! megabytes through it.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How often a stalled pump looks whether the stall is over.
const STALL_POLL: Duration = Duration::from_millis(20);

/// Which way bytes flow through the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Replies: result sets, a `COPY … TO STDOUT`, a change stream.
    ToClient,
    /// Requests: statements, a `COPY … FROM STDIN`, a `LOAD DATA LOCAL`.
    ToServer,
}

/// A proxy to one upstream server; stops (and cuts everything) on drop.
pub struct Proxy {
    port: u16,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

struct Shared {
    upstream: SocketAddr,
    closing: AtomicBool,
    /// Both sockets of every live connection, by connection number.
    live: Mutex<Vec<(u64, TcpStream, TcpStream)>>,
    /// While set and in the future, no byte is forwarded.
    stalled_until: Mutex<Option<Instant>>,
    /// Bytes still forwarded one way before the connection carrying the
    /// last of them is dropped.
    drop_after: Mutex<Option<(Flow, u64)>>,
    /// Numbers the connections.
    next_id: AtomicU64,
    cuts: AtomicU64,
}

impl Proxy {
    /// Listens on a free port of 127.0.0.1 and forwards to `upstream_port`
    /// there.
    pub fn start(upstream_port: u16) -> Proxy {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("proxy listens");
        let port = listener.local_addr().expect("proxy address").port();
        let shared = Arc::new(Shared {
            upstream: SocketAddr::from((Ipv4Addr::LOCALHOST, upstream_port)),
            closing: AtomicBool::new(false),
            live: Mutex::new(Vec::new()),
            stalled_until: Mutex::new(None),
            drop_after: Mutex::new(None),
            next_id: AtomicU64::new(0),
            cuts: AtomicU64::new(0),
        });
        let acceptor = {
            let shared = shared.clone();
            std::thread::spawn(move || accept_loop(&listener, &shared))
        };
        Proxy {
            port,
            shared,
            acceptor: Some(acceptor),
        }
    }

    /// `url` (a test database's URL on the upstream server) pointed at the
    /// proxy instead.
    pub fn url(&self, url: &str) -> String {
        let upstream = format!("127.0.0.1:{}", self.shared.upstream.port());
        assert!(url.contains(&upstream), "{url} is not on {upstream}");
        url.replacen(&upstream, &format!("127.0.0.1:{}", self.port), 1)
    }

    /// Resets every live connection at once, as a network cut does; new
    /// connections are accepted again right away. Returns how many were cut.
    pub fn cut_all(&self) -> usize {
        let cut: Vec<_> = std::mem::take(&mut *self.shared.live.lock().expect("live"));
        for (_, client, server) in &cut {
            let _ = client.shutdown(Shutdown::Both);
            let _ = server.shutdown(Shutdown::Both);
        }
        self.shared
            .cuts
            .fetch_add(cut.len() as u64, Ordering::Relaxed);
        cut.len()
    }

    /// Forwards nothing, either way, for `duration` (connections stay open
    /// and new ones are accepted, but hang).
    pub fn stall(&self, duration: Duration) {
        *self.shared.stalled_until.lock().expect("stall") = Some(Instant::now() + duration);
    }

    /// Drops the connection that carries the `bytes`-th byte from now
    /// flowing `flow`, after forwarding exactly that many: a reply or an
    /// upload (a COPY, a LOAD DATA) ends in the middle.
    pub fn drop_after(&self, flow: Flow, bytes: u64) {
        *self.shared.drop_after.lock().expect("drop_after") = Some((flow, bytes.max(1)));
    }

    /// Whether a [`Proxy::drop_after`] is still waiting for its bytes.
    pub fn drop_pending(&self) -> bool {
        self.shared.drop_after.lock().expect("drop_after").is_some()
    }

    /// Connections cut or dropped so far.
    pub fn cuts(&self) -> u64 {
        self.shared.cuts.load(Ordering::Relaxed)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.closing.store(true, Ordering::SeqCst);
        // Wakes the blocking accept so that it sees `closing`.
        let _ = TcpStream::connect((Ipv4Addr::LOCALHOST, self.port));
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
        self.cut_all();
    }
}

fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>) {
    for client in listener.incoming() {
        if shared.closing.load(Ordering::SeqCst) {
            return;
        }
        let Ok(client) = client else { continue };
        let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
        // A server that refuses is what the client would have seen directly.
        let Ok(server) = TcpStream::connect(shared.upstream) else {
            continue;
        };
        let _ = client.set_nodelay(true);
        let _ = server.set_nodelay(true);
        let sockets = (
            client.try_clone(),
            server.try_clone(),
            client.try_clone(),
            server.try_clone(),
        );
        let (Ok(c1), Ok(s1), Ok(c2), Ok(s2)) = sockets else {
            continue;
        };
        shared.live.lock().expect("live").push((id, client, server));
        let up = shared.clone();
        std::thread::spawn(move || pump(&up, id, c1, s1, Flow::ToServer));
        let down = shared.clone();
        std::thread::spawn(move || pump(&down, id, s2, c2, Flow::ToClient));
    }
}

/// Copies `from` → `to` until either side closes; then closes both (the
/// other direction's pump ends too) and forgets the connection.
fn pump(shared: &Shared, id: u64, mut from: TcpStream, mut to: TcpStream, flow: Flow) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        wait_while_stalled(shared);
        let (send, drop_now) = take_budget(shared, flow, n);
        if to.write_all(&buf[..send]).is_err() {
            break;
        }
        if drop_now {
            shared.cuts.fetch_add(1, Ordering::Relaxed);
            break;
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
    shared
        .live
        .lock()
        .expect("live")
        .retain(|(c, _, _)| *c != id);
}

fn wait_while_stalled(shared: &Shared) {
    loop {
        let until = *shared.stalled_until.lock().expect("stall");
        match until {
            Some(until) if Instant::now() < until && !shared.closing.load(Ordering::SeqCst) => {
                std::thread::sleep(STALL_POLL);
            }
            _ => return,
        }
    }
}

/// How many of `n` bytes flowing `flow` to forward, and whether the
/// connection is dropped after them (the armed byte budget ran out inside
/// this read).
fn take_budget(shared: &Shared, flow: Flow, n: usize) -> (usize, bool) {
    let mut budget = shared.drop_after.lock().expect("drop_after");
    match *budget {
        Some((armed, left)) if armed == flow && left <= n as u64 => {
            *budget = None;
            (usize::try_from(left).unwrap_or(n), true)
        }
        Some((armed, left)) if armed == flow => {
            *budget = Some((armed, left - n as u64));
            (n, false)
        }
        _ => (n, false),
    }
}
