//! A TCP proxy on an ephemeral loopback port that forwards to a target server and can fail
//! on demand. Pointing a service at the proxy instead of at its database, cache or peer lets
//! a test simulate that server going away without touching the (shared) server itself:
//!
//! - [`Proxy::cut_all`] closes every open connection, as a crashing or restarting server does;
//! - [`Proxy::refuse`] stops listening, so new connections are refused (`ECONNREFUSED`);
//! - [`Proxy::reject`] accepts new connections and closes them at once;
//! - [`Proxy::blackhole`] accepts new connections and never answers (a hung server);
//! - [`Proxy::resume`] forwards again.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Mutex, watch};
use tokio::task::JoinHandle;

const FORWARD: u8 = 0;
const REJECT: u8 = 1;
const BLACKHOLE: u8 = 2;

/// How long [`Proxy::resume`] keeps trying to listen on its port again.
const REBIND_FOR: Duration = Duration::from_secs(5);

struct Shared {
    target: SocketAddr,
    /// What a newly accepted connection gets: `FORWARD`, `REJECT` or `BLACKHOLE`.
    mode: AtomicU8,
    /// Bumped by `cut_all`: every connection open at that moment closes.
    cuts: watch::Sender<u64>,
    open: AtomicU64,
    accepted: AtomicU64,
    forwarded: AtomicU64,
    closed_by_cut: AtomicU64,
    turned_away: AtomicU64,
}

pub struct Proxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept_task: Mutex<Option<JoinHandle<()>>>,
}

/// Counters of a proxy's life so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ProxyStats {
    /// Connections open now.
    pub open: u64,
    /// Connections accepted, whatever happened to them.
    pub accepted: u64,
    /// Connections forwarded to the target.
    pub forwarded: u64,
    /// Connections closed by `cut_all`.
    pub closed_by_cut: u64,
    /// Connections accepted and closed at once, or held without an answer.
    pub turned_away: u64,
}

impl Proxy {
    /// Listens on `127.0.0.1:0` and forwards every connection to `target`.
    pub async fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the proxy on an ephemeral port");
        let addr = listener.local_addr().expect("proxy address");
        let (cuts, _) = watch::channel(0);
        let shared = Arc::new(Shared {
            target,
            mode: AtomicU8::new(FORWARD),
            cuts,
            open: AtomicU64::new(0),
            accepted: AtomicU64::new(0),
            forwarded: AtomicU64::new(0),
            closed_by_cut: AtomicU64::new(0),
            turned_away: AtomicU64::new(0),
        });
        let task = tokio::spawn(accept_loop(listener, Arc::clone(&shared)));
        Proxy {
            addr,
            shared,
            accept_task: Mutex::new(Some(task)),
        }
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn target(&self) -> SocketAddr {
        self.shared.target
    }

    /// Closes every open connection; returns how many were open.
    pub fn cut_all(&self) -> u64 {
        let open = self.shared.open.load(Ordering::SeqCst);
        self.shared.cuts.send_modify(|epoch| *epoch += 1);
        open
    }

    /// Stops listening: new connections are refused until [`Proxy::resume`]. Open
    /// connections are left alone (see [`Proxy::cut_all`]).
    pub async fn refuse(&self) {
        let task = self.accept_task.lock().await.take();
        if let Some(task) = task {
            task.abort();
            // The listener is closed once the task is gone.
            let _ = task.await;
        }
    }

    /// Accepts new connections and closes them at once.
    pub async fn reject(&self) {
        self.shared.mode.store(REJECT, Ordering::SeqCst);
        self.ensure_listening().await;
    }

    /// Accepts new connections and never answers them (until resumed or cut).
    pub async fn blackhole(&self) {
        self.shared.mode.store(BLACKHOLE, Ordering::SeqCst);
        self.ensure_listening().await;
    }

    /// Forwards new connections again, listening again on the same port if needed.
    pub async fn resume(&self) {
        self.shared.mode.store(FORWARD, Ordering::SeqCst);
        self.ensure_listening().await;
    }

    /// "The server restarted": cut every connection, refuse new ones for `down`, resume.
    /// Returns the number of connections cut.
    pub async fn restart(&self, down: Duration) -> u64 {
        self.refuse().await;
        let cut = self.cut_all();
        tokio::time::sleep(down).await;
        self.resume().await;
        cut
    }

    pub fn stats(&self) -> ProxyStats {
        ProxyStats {
            open: self.shared.open.load(Ordering::SeqCst),
            accepted: self.shared.accepted.load(Ordering::SeqCst),
            forwarded: self.shared.forwarded.load(Ordering::SeqCst),
            closed_by_cut: self.shared.closed_by_cut.load(Ordering::SeqCst),
            turned_away: self.shared.turned_away.load(Ordering::SeqCst),
        }
    }

    async fn ensure_listening(&self) {
        let mut task = self.accept_task.lock().await;
        if task.is_some() {
            return;
        }
        // The port was free a moment ago and is in no one's ephemeral range allocation
        // while we are away only by chance, so retry briefly before giving up.
        let started = Instant::now();
        let listener = loop {
            match TcpListener::bind(self.addr).await {
                Ok(listener) => break listener,
                Err(error) if started.elapsed() < REBIND_FOR => {
                    tracing::debug!(%error, addr = %self.addr, "proxy rebind failed, retrying");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(error) => panic!("the proxy cannot listen on {} again: {error}", self.addr),
            }
        };
        *task = Some(tokio::spawn(accept_loop(
            listener,
            Arc::clone(&self.shared),
        )));
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Ok(mut task) = self.accept_task.try_lock()
            && let Some(task) = task.take()
        {
            task.abort();
        }
        self.shared.cuts.send_modify(|epoch| *epoch += 1);
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let (client, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::debug!(%error, "proxy accept failed");
                tokio::time::sleep(Duration::from_millis(5)).await;
                continue;
            }
        };
        shared.accepted.fetch_add(1, Ordering::SeqCst);
        let _ = client.set_nodelay(true);
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            let mut cut = shared.cuts.subscribe();
            let _open = OpenGuard::new(&shared);
            match shared.mode.load(Ordering::SeqCst) {
                REJECT => {
                    shared.turned_away.fetch_add(1, Ordering::SeqCst);
                    drop(client);
                }
                BLACKHOLE => {
                    shared.turned_away.fetch_add(1, Ordering::SeqCst);
                    let _ = cut.changed().await;
                    drop(client);
                }
                _ => forward(client, &shared, cut).await,
            }
        });
    }
}

async fn forward(mut client: TcpStream, shared: &Shared, mut cut: watch::Receiver<u64>) {
    let connect = tokio::select! {
        connected = TcpStream::connect(shared.target) => connected,
        _ = cut.changed() => {
            shared.closed_by_cut.fetch_add(1, Ordering::SeqCst);
            return;
        }
    };
    let mut server = match connect {
        Ok(server) => server,
        Err(error) => {
            tracing::debug!(%error, "proxy cannot reach its target");
            let _ = client.shutdown().await;
            return;
        }
    };
    let _ = server.set_nodelay(true);
    shared.forwarded.fetch_add(1, Ordering::SeqCst);
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
        _ = cut.changed() => {
            shared.closed_by_cut.fetch_add(1, Ordering::SeqCst);
        }
    }
    // Dropping both ends closes both connections.
}

struct OpenGuard<'a>(&'a Shared);

impl<'a> OpenGuard<'a> {
    fn new(shared: &'a Shared) -> Self {
        shared.open.fetch_add(1, Ordering::SeqCst);
        Self(shared)
    }
}

impl Drop for OpenGuard<'_> {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::SeqCst);
    }
}

/// `scheme://[user@]host:port/rest` with `host:port` replaced by `addr`.
pub fn with_address(url: &str, addr: SocketAddr) -> String {
    let scheme_end = url.find("://").map(|i| i + 3).unwrap_or(0);
    let rest = &url[scheme_end..];
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let user = authority
        .rfind('@')
        .map(|i| &authority[..=i])
        .unwrap_or_default();
    format!(
        "{}{user}{addr}{}",
        &url[..scheme_end],
        &rest[authority_end..]
    )
}

/// The `host:port` of `scheme://[user@]host[:port]/…`, resolved; `default_port` when the url
/// names none.
pub async fn address_of(url: &str, default_port: u16) -> SocketAddr {
    let scheme_end = url.find("://").map(|i| i + 3).unwrap_or(0);
    let rest = &url[scheme_end..];
    let authority = &rest[..rest.find(['/', '?']).unwrap_or(rest.len())];
    let host_port = authority
        .rfind('@')
        .map(|i| &authority[i + 1..])
        .unwrap_or(authority);
    let host_port = if host_port.contains(':') {
        host_port.to_owned()
    } else {
        format!("{host_port}:{default_port}")
    };
    tokio::net::lookup_host(host_port.as_str())
        .await
        .ok()
        .and_then(|mut addrs| addrs.next())
        .unwrap_or_else(|| panic!("cannot resolve {host_port}"))
}

#[cfg(test)]
mod tests {
    use super::with_address;

    #[test]
    fn the_address_of_a_url_is_replaced() {
        let proxy = "127.0.0.1:40000".parse().expect("addr");
        assert_eq!(
            with_address(
                "postgres://postgres@127.0.0.1:5432/db_1?sslmode=disable",
                proxy
            ),
            "postgres://postgres@127.0.0.1:40000/db_1?sslmode=disable"
        );
        assert_eq!(
            with_address("redis://127.0.0.1:6379", proxy),
            "redis://127.0.0.1:40000"
        );
        assert_eq!(
            with_address("redis://127.0.0.1:6379/11", proxy),
            "redis://127.0.0.1:40000/11"
        );
    }
}
