//! The HTTP listener: connections up to a cap, each request's head read within a time limit,
//! TLS when configured, and a drain on shutdown.
//!
//! `axum::serve` accepts without limit and gives hyper no timer, so a client that opens
//! connections and sends its request line a byte at a time (a slowloris) kept each one open
//! for as long as it liked, until the process ran out of file descriptors and refused
//! everyone. Here:
//! - a connection takes a slot from a fixed number before it is accepted: past the cap new
//!   clients wait in the kernel's backlog instead of failing the accept (`EMFILE`), and the
//!   cap stays below the descriptor limit;
//! - a request's head (request line and headers) must arrive within `header_read_timeout`,
//!   from the first byte of the connection or the end of the previous response: hyper then
//!   closes the connection (an idle keep-alive connection is closed after the same time);
//! - a TLS handshake must finish within the same time;
//! - bodies are read by the handlers, inside the request timeout (`time_limit`): a body
//!   trickled in slower is cut off there with 408;
//! - a response the client does not read (its receive window stays shut) fails the
//!   connection after `write_timeout` without progress, so a client cannot hold a slot by
//!   asking for answers and never taking them;
//! - one client address holds at most `max_connections_per_address` connections: past it a
//!   new one is answered 503 at once and closed, so a single address cannot take every slot
//!   with connections it keeps slow within the timeouts.

use axum::extract::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tower::ServiceExt;

/// What one listener allows.
#[derive(Debug, Clone, Copy)]
pub struct ListenLimits {
    /// Connections open at once.
    pub max_connections: usize,
    /// Connections open at once from one client address.
    pub max_connections_per_address: usize,
    /// Time to receive a request's head (and to finish a TLS handshake).
    pub header_read_timeout: Duration,
    /// Time a write may wait without the client taking a byte.
    pub write_timeout: Duration,
}

/// The body a connection refused for its address is answered with (Qdrant's error shape).
const TOO_MANY_FROM_ADDRESS: &str =
    r#"{"status":{"error":"Too many connections from this address; retry later"},"time":0.0}"#;

/// Refused connections answered at once (each holds a descriptor for up to `REFUSAL_TIME`).
const REFUSALS_ANSWERED_AT_ONCE: usize = 64;

/// The most a refused connection is given to take its 503.
const REFUSAL_TIME: Duration = Duration::from_millis(200);

/// The address a connection counts against: an IPv4 address, or an IPv6 address's /64 (one
/// host is routinely given a whole /64, and could otherwise open connections from as many
/// addresses as it likes).
fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// Connections open per client address.
#[derive(Default)]
struct PerAddress(Mutex<HashMap<IpAddr, usize>>);

impl PerAddress {
    /// Counts a connection from `ip` unless it already holds `cap`.
    fn take(self: &Arc<Self>, ip: IpAddr, cap: usize) -> Option<AddressSlot> {
        if cap == 0 {
            return None;
        }
        let ip = address_key(ip);
        let mut open = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let n = open.entry(ip).or_insert(0);
        if *n >= cap {
            return None;
        }
        *n += 1;
        Some(AddressSlot {
            table: self.clone(),
            ip,
        })
    }
}

/// One counted connection; dropping it gives the count back.
struct AddressSlot {
    table: Arc<PerAddress>,
    ip: IpAddr,
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut open = self.table.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = open.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

/// What the REST and gRPC listeners share, so that the connection caps hold across both
/// ports: the connection slots and the per-address counts.
#[derive(Clone)]
pub struct SharedSlots {
    slots: Arc<Semaphore>,
    per_address: Arc<PerAddress>,
}

impl SharedSlots {
    /// Slots for `limits.max_connections` connections in all.
    pub fn new(limits: &ListenLimits) -> SharedSlots {
        SharedSlots {
            slots: Arc::new(Semaphore::new(limits.max_connections)),
            per_address: Arc::new(PerAddress::default()),
        }
    }
}

/// Bytes a gRPC client must send within the header-read time limit: HTTP/2's connection
/// preface. hyper's HTTP/2 handshake waits for it without a limit, and a connection that never
/// sends it would hold its slot (shared with REST) for good.
const HTTP2_PREFACE_BYTES: usize = 24;

/// A connection of the gRPC port: counted against the shared caps while it is open, closed if
/// its first bytes do not come within the header-read time limit, and dropped if a write waits
/// longer than the write timeout.
pub struct CountedConnection {
    io: WriteTimeout<TcpStream>,
    /// Until the client's first `HTTP2_PREFACE_BYTES` have come: when they are due.
    opening: Option<Pin<Box<tokio::time::Sleep>>>,
    /// Bytes read so far, counted until the preface is in.
    opened: usize,
    /// The client's address and ours (tonic hands them to handlers).
    pub remote: std::net::SocketAddr,
    /// Our address.
    pub local: Option<std::net::SocketAddr>,
    _slot: tokio::sync::OwnedSemaphorePermit,
    _address: AddressSlot,
}

impl AsyncRead for CountedConnection {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let read = Pin::new(&mut self.io).poll_read(cx, buf);
        if self.opening.is_some() {
            self.opened += buf.filled().len() - before;
            if self.opened >= HTTP2_PREFACE_BYTES {
                self.opening = None;
            } else if let (Poll::Pending, Some(due)) = (&read, self.opening.as_mut()) {
                if due.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "no HTTP/2 preface within the header-read time limit",
                    )));
                }
            }
        }
        read
    }
}

impl AsyncWrite for CountedConnection {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// The connections of the gRPC port, under the same caps as REST's (shared with it): a
/// connection waits for a slot before it is accepted, and one past its address's cap is
/// closed at once (an HTTP/2 client cannot read a plain 503).
pub fn counted_connections(
    listener: TcpListener,
    shared: SharedSlots,
    limits: ListenLimits,
) -> impl futures::Stream<Item = std::io::Result<CountedConnection>> {
    futures::stream::unfold(
        (listener, shared, limits),
        |(listener, shared, limits)| async move {
            loop {
                // Accept first, then wait for a slot (as REST's loop does).
                let (stream, remote) = match listener.accept().await {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        if !is_connection_error(&e) {
                            tracing::error!(error = %e, "gRPC accept failed");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                        continue;
                    }
                };
                let slot = shared
                    .slots
                    .clone()
                    .acquire_owned()
                    .await
                    .expect("the semaphore is never closed");
                let Some(address) = shared
                    .per_address
                    .take(remote.ip(), limits.max_connections_per_address)
                else {
                    tracing::debug!(%remote, "too many connections from one address: refused");
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let local = stream.local_addr().ok();
                let connection = CountedConnection {
                    io: WriteTimeout::new(stream, limits.write_timeout),
                    opening: Some(Box::pin(tokio::time::sleep(limits.header_read_timeout))),
                    opened: 0,
                    remote,
                    local,
                    _slot: slot,
                    _address: address,
                };
                return Some((Ok(connection), (listener, shared, limits)));
            }
        },
    )
}

/// Serves `app` on `listener` until `shutdown` resolves, then stops accepting, lets each
/// connection finish the request it is serving, and returns once every connection is closed
/// (the gRPC port's too, which share `shared`).
pub async fn serve(
    listener: TcpListener,
    app: axum::Router,
    limits: ListenLimits,
    shared: SharedSlots,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shutdown: impl Future<Output = ()>,
) {
    let SharedSlots { slots, per_address } = shared;
    let refusals = Arc::new(Semaphore::new(REFUSALS_ANSWERED_AT_ONCE));
    let (closing_tx, closing_rx) = watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        // Accept first, then wait for a slot: an idle listener holds no slot (the gRPC port
        // shares them), and at most one accepted connection waits here.
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Per-connection failures (reset before accept) are the client's; others
                    // (out of descriptors) pass with time, so wait a little and go on.
                    if !is_connection_error(&e) {
                        tracing::error!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let Some(address_slot) = per_address.take(peer.ip(), limits.max_connections_per_address)
        else {
            tracing::debug!(%peer, "too many connections from one address: refused");
            // The slot goes back at once: refused connections must not fill the slots the
            // address was refused so as not to take. Answering them takes one of a few
            // refusal slots, briefly; past those a refused connection is closed unanswered.
            drop(slot);
            if let (true, Ok(answering)) = (tls.is_none(), refusals.clone().try_acquire_owned()) {
                tokio::spawn(async move {
                    refuse(stream).await;
                    drop(answering);
                });
            }
            continue;
        };
        let app = app.clone();
        let tls = tls.clone();
        let mut closing = closing_rx.clone();
        tokio::spawn(async move {
            let stream = WriteTimeout::new(stream, limits.write_timeout);
            connection(stream, app, limits, tls, &mut closing).await;
            drop(address_slot);
            drop(slot);
        });
    }
    drop(listener);
    let _ = closing_tx.send(true);
    // Every slot back: every connection closed.
    let _ = slots.acquire_many(limits.max_connections as u32).await;
}

/// Answers a connection over its address's cap with 503 (plain HTTP only: a TLS client could
/// not read it before a handshake) and closes it, spending at most `REFUSAL_TIME` on it. What
/// the client sent is read and dropped before the close: closing with unread bytes makes the
/// kernel reset the connection, and the client could lose the answer.
async fn refuse(mut stream: TcpStream) {
    use tokio::io::AsyncReadExt;
    let _ = tokio::time::timeout(REFUSAL_TIME, async {
        let answer = format!(
            "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
             retry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{}",
            TOO_MANY_FROM_ADDRESS.len(),
            TOO_MANY_FROM_ADDRESS
        );
        stream.write_all(answer.as_bytes()).await?;
        stream.shutdown().await?;
        let mut sink = [0u8; 1024];
        while stream.read(&mut sink).await? > 0 {}
        Ok::<_, std::io::Error>(())
    })
    .await;
}

async fn connection(
    stream: WriteTimeout<TcpStream>,
    app: axum::Router,
    limits: ListenLimits,
    tls: Option<tokio_rustls::TlsAcceptor>,
    closing: &mut watch::Receiver<bool>,
) {
    match tls {
        None => http(stream, app, limits, closing).await,
        Some(acceptor) => {
            match tokio::time::timeout(limits.header_read_timeout, acceptor.accept(stream)).await {
                Ok(Ok(stream)) => http(stream, app, limits, closing).await,
                Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!("TLS handshake timed out"),
            }
        }
    }
}

async fn http<S>(
    stream: S,
    app: axum::Router,
    limits: ListenLimits,
    closing: &mut watch::Receiver<bool>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = TowerToHyperService::new(
        app.map_request(|r: Request<Incoming>| r.map(axum::body::Body::new)),
    );
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    let mut connection = std::pin::pin!(connection);
    let mut draining = *closing.borrow();
    if draining {
        connection.as_mut().graceful_shutdown();
    }
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            changed = closing.changed(), if !draining => {
                // A closed channel means the server is gone: drain as well.
                let _ = changed;
                draining = true;
                connection.as_mut().graceful_shutdown();
            }
        }
    }
}

/// A stream whose writes fail with `TimedOut` once one has waited `limit` without the peer
/// taking a byte. hyper has no write timeout of its own: a response to a client that never
/// reads would hold its connection (and a slot) for good.
struct WriteTimeout<S> {
    inner: S,
    limit: Duration,
    /// Armed when a write or flush first waits, disarmed by any progress.
    stalled: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<S> WriteTimeout<S> {
    fn new(inner: S, limit: Duration) -> Self {
        WriteTimeout {
            inner,
            limit,
            stalled: None,
        }
    }

    /// After the inner stream answered `poll`: progress disarms the timer; waiting arms it
    /// (once) and fails when it has run out.
    fn watch<T>(
        &mut self,
        cx: &mut Context<'_>,
        poll: Poll<std::io::Result<T>>,
    ) -> Poll<std::io::Result<T>> {
        if poll.is_ready() {
            self.stalled = None;
            return poll;
        }
        let limit = self.limit;
        let timer = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the client took nothing of the response within the write timeout",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for WriteTimeout<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WriteTimeout<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.watch(cx, poll)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.watch(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_flush(cx);
        this.watch(cx, poll)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_shutdown(cx);
        this.watch(cx, poll)
    }
}

fn is_connection_error(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::ConnectionReset
    )
}

/// The TLS settings from a PEM certificate chain and a PEM private key.
pub fn tls_acceptor(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Result<tokio_rustls::TlsAcceptor, String> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<_, _>>())
        .map_err(|e| format!("TLS certificate {}: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!(
            "TLS certificate {}: no certificate in the file",
            cert.display()
        ));
    }
    let key =
        PrivateKeyDer::from_pem_file(key).map_err(|e| format!("TLS key {}: {e}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| format!("TLS certificate and key: {e}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// Raises the process's soft open-file limit to its hard limit (capped at the kernel's
/// `fs.nr_open`, 2^20 where it cannot be read), as servers do at start: distributions set
/// the soft limit to 1,024 for the sake of `select(2)`, which nothing here uses, while every
/// connection and every collection's open log file needs a descriptor. The limits before and
/// after; an error leaves the limit as it was.
pub fn raise_open_file_limit() -> std::io::Result<(Option<u64>, Option<u64>)> {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let limit = getrlimit(Resource::Nofile);
    // An unlimited hard limit still cannot pass nr_open: setrlimit would refuse the raise.
    let nr_open = std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(1 << 20);
    let target = limit.maximum.map_or(nr_open, |hard| hard.min(nr_open));
    if limit.current.is_some_and(|soft| soft < target) {
        setrlimit(
            Resource::Nofile,
            Rlimit {
                current: Some(target),
                maximum: limit.maximum,
            },
        )?;
    }
    Ok((limit.current, getrlimit(Resource::Nofile).current))
}

/// The most connections the process's descriptor limit allows, keeping `reserve` for files.
/// Linux's `/proc/self/limits`; `None` where it cannot be read.
pub fn descriptor_budget(reserve: usize) -> Option<usize> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    let soft = line
        .trim_start_matches("Max open files")
        .split_whitespace()
        .next()?;
    match soft {
        "unlimited" => Some(usize::MAX),
        n => Some(n.parse::<usize>().ok()?.saturating_sub(reserve)),
    }
}
