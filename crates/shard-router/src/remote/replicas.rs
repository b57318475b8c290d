//! A node that is a replica set: one gRPC service over the channels of its replicas (a
//! node URL of the form `http://a:6334|http://b:6334|http://c:6334`).
//!
//! - **Reads** go to one replica picked by the power of two choices: two replicas that
//!   answered their last call drawn at random, the one with fewer calls outstanding taken.
//!   A replica that cannot be reached (connection refused, reset, cut) is skipped and the
//!   read sent to the next; with a hedge delay set, a read not answered within it is sent to
//!   a second replica too and the first answer wins (a slow replica costs the delay, not its
//!   whole latency).
//!   The delay is fixed, or a percentile of the set's recent read latencies
//!   ([`Hedge`]): a replica slower than most of its answers costs that much, whatever the
//!   load makes "slow" mean.
//!   A read a replica answers with `UNAVAILABLE` (it has no leader to confirm with, or its
//!   replica set stopped) is sent to the next one too: reads are safe to repeat. A replica
//!   that failed is drawn again a second later.
//! - **Writes** go to the set's leader. Each replica of a vector-router set names its own
//!   Raft id, its term and the leader it knows in a header of every answer
//!   ([`REPLICA_VIEW_HEADER`]); the router follows the leader of the highest term it has
//!   heard of, from reads and writes alike. A write answered by a follower (which hands it on
//!   to its leader, so it is not lost) moves the next write to the leader it names, or, while
//!   that leader's replica has not been heard from, to the next replica: a redirect followed
//!   one write late, never by sending a write twice. Without the header (a Qdrant node) the
//!   replica that took the last write is tried first. A write moves to the next replica when
//!   the first could not be connected to (sent again: nothing left) or answered
//!   `UNAVAILABLE` (not sent again: it may yet be applied, but the next write goes
//!   elsewhere): a write that reached a replica is never sent twice.
//!
//! - **Reads see the router's own writes.** A replica's answer to a write names the log
//!   index it has applied (the write's, or later: the leader answers once it applied it);
//!   the router sends the highest such index with every read
//!   ([`APPLIED_AT_LEAST_HEADER`]), and a replica behind it waits for it (briefly; else it
//!   answers `UNAVAILABLE` and the read moves on). So a search right after an acknowledged
//!   upsert through the same router finds the point on whichever replica answers. Writes
//!   through other routers are seen once the replica asked has applied them (bounded
//!   staleness), or at once with a `consistency` level.
//!
//! The request body (one encoded message: every call through here is unary) is read once
//! and sent as often as needed.

use futures::future::BoxFuture;
use http_body_util::{BodyExt, Full};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tonic::body::Body;
use tonic::codegen::http;
use tonic::transport::Channel;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// One replica's connections and standing.
struct Replica {
    url: String,
    channels: Vec<Channel>,
    next: AtomicUsize,
    outstanding: AtomicUsize,
    up: AtomicBool,
    /// Calls sent to it, and those it did not answer (unreachable, or `UNAVAILABLE`).
    calls: AtomicU64,
    failures: AtomicU64,
    /// Reads it was asked first and another replica answered sooner (a hedge it lost), and
    /// how many in a row without an answer of its own in between.
    hedges_lost: AtomicU64,
    lost_streak: AtomicU64,
    /// When it last failed, in milliseconds since the set was made: a replica down is drawn
    /// again after [`RETRY_DOWN_AFTER`].
    down_since_ms: AtomicU64,
    /// Its Raft id, from its last answer's [`REPLICA_VIEW_HEADER`] ([`NO_ID`] before one).
    raft_id: AtomicU64,
    /// When a write to it last failed (milliseconds since the set was made; [`NEVER`] when
    /// it answered a call since): writes try it last for [`RETRY_DOWN_AFTER`], then one
    /// write tries it in its turn again. Only writes and answers move it, not slow reads.
    unwritable_since_ms: AtomicU64,
}

/// No write failed on a replica since it last answered.
const NEVER: u64 = u64::MAX;

/// Where writes go: the replica first tried, and the term of the leader it was learned
/// from (0 when it is only the replica that took the last write).
#[derive(Debug, Clone, Copy)]
struct Writer {
    replica: usize,
    term: u64,
}

/// The header a replica of a vector-router replica set adds to its gRPC answers: what it
/// knows of its set ([`ReplicaView`]).
pub const REPLICA_VIEW_HEADER: &str = "x-vector-router-replica";

/// The header a router sends with a read to a replica set: the highest log index a replica
/// had applied when it answered one of this router's writes. A replica that has not applied
/// it yet waits for it before reading.
pub const APPLIED_AT_LEAST_HEADER: &str = "x-vector-router-applied-at-least";

/// A replica's view of its set, as [`REPLICA_VIEW_HEADER`] carries it:
/// `<id> <term> <leader> <applied>`, the leader `-` while it knows none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplicaView {
    /// The replica's own Raft id.
    pub id: u64,
    /// The term it is in.
    pub term: u64,
    /// The leader it knows in that term.
    pub leader: Option<u64>,
    /// The index of the last log entry it applied (0 before any), or, in the answer to a
    /// write, the write's own index if later (the leader applied it; a follower that handed
    /// it on may not have yet).
    pub applied: u64,
}

impl ReplicaView {
    /// The header's value.
    pub fn to_header(&self) -> String {
        match self.leader {
            Some(l) => format!("{} {} {l} {}", self.id, self.term, self.applied),
            None => format!("{} {} - {}", self.id, self.term, self.applied),
        }
    }

    /// Reads a header's value; `None` when it is not one.
    pub fn parse(value: &str) -> Option<ReplicaView> {
        let mut parts = value.split(' ');
        let id = parts.next()?.parse().ok()?;
        let term = parts.next()?.parse().ok()?;
        let leader = match parts.next()? {
            "-" => None,
            l => Some(l.parse().ok()?),
        };
        let applied = parts.next()?.parse().ok()?;
        if parts.next().is_some() {
            return None;
        }
        Some(ReplicaView {
            id,
            term,
            leader,
            applied,
        })
    }
}

/// No Raft id heard from a replica yet.
const NO_ID: u64 = u64::MAX;

/// When a read is sent to a second replica too.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Hedge {
    /// After a fixed delay.
    After(Duration),
    /// After the `percentile` (0 to 100) of the set's last [`LATENCY_WINDOW`] read latencies,
    /// and never sooner than `floor`. Until the set has answered [`MIN_LATENCY_SAMPLES`]
    /// reads, after `floor` or [`WARMUP_HEDGE_AFTER`], whichever is longer.
    Percentile {
        /// Which percentile, 0 to 100.
        percentile: f64,
        /// The shortest delay.
        floor: Duration,
    },
}

/// A percentile hedge's delay until its window holds a percentile (a new set, a restarted
/// router): long enough that a set's first reads are not all sent twice.
pub const WARMUP_HEDGE_AFTER: Duration = Duration::from_millis(50);

/// Hedges a replica loses in a row, answering nothing in between, before it leaves the draw.
const LOST_HEDGES_BEFORE_DOWN: u64 = 3;

/// Read latencies a percentile hedge is computed over.
pub const LATENCY_WINDOW: usize = 256;
/// Reads answered before a percentile hedge trusts its window.
pub const MIN_LATENCY_SAMPLES: usize = 32;
/// The window's percentile is computed again after this many new samples (a sort of 256
/// numbers every 32 reads, not one per read).
const RECOMPUTE_EVERY: usize = 32;

/// The last [`LATENCY_WINDOW`] read latencies of a set, in microseconds, and their
/// percentile as last computed.
struct LatencyWindow {
    samples: std::sync::Mutex<(Vec<u32>, usize)>,
    /// The percentile in microseconds; 0 until the window holds enough samples.
    cached_us: AtomicU64,
}

impl LatencyWindow {
    fn new() -> LatencyWindow {
        LatencyWindow {
            samples: std::sync::Mutex::new((Vec::with_capacity(LATENCY_WINDOW), 0)),
            cached_us: AtomicU64::new(0),
        }
    }

    fn record(&self, latency: Duration, percentile: f64) {
        let us = u32::try_from(latency.as_micros()).unwrap_or(u32::MAX);
        let mut guard = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        let (samples, added) = &mut *guard;
        if samples.len() < LATENCY_WINDOW {
            samples.push(us);
        } else {
            samples[*added % LATENCY_WINDOW] = us;
        }
        *added += 1;
        if samples.len() >= MIN_LATENCY_SAMPLES && *added % RECOMPUTE_EVERY == 0 {
            let mut sorted = samples.clone();
            sorted.sort_unstable();
            let rank = ((percentile / 100.0) * (sorted.len() - 1) as f64).round() as usize;
            self.cached_us.store(
                u64::from(sorted[rank.min(sorted.len() - 1)]),
                Ordering::Relaxed,
            );
        }
    }

    fn percentile(&self) -> Option<Duration> {
        match self.cached_us.load(Ordering::Relaxed) {
            0 => None,
            us => Some(Duration::from_micros(us)),
        }
    }
}

/// How long a replica that failed stays out of the draw.
const RETRY_DOWN_AFTER: Duration = Duration::from_secs(1);

/// Counts a call outstanding on a replica while it lives: a call dropped half way (a hedge
/// that lost, a deadline) is uncounted too.
struct Outstanding<'a>(&'a AtomicUsize);

impl<'a> Outstanding<'a> {
    fn new(c: &'a AtomicUsize) -> Outstanding<'a> {
        c.fetch_add(1, Ordering::Relaxed);
        Outstanding(c)
    }
}

impl Drop for Outstanding<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The gRPC status a response carries in its headers (tonic answers an error as a
/// trailers-only response); `None` for a success, whose status follows in the trailers.
fn header_status(r: &http::Response<Body>) -> Option<i32> {
    r.headers()
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

const UNAVAILABLE: i32 = 14;

struct Inner {
    replicas: Vec<Replica>,
    made: std::time::Instant,
    /// The replica writes are sent to first.
    writer: std::sync::Mutex<Writer>,
    hedge: Option<Hedge>,
    /// The highest log index a replica had applied when it answered a write from here:
    /// what reads ask a replica to have applied ([`APPLIED_AT_LEAST_HEADER`]).
    written_up_to: AtomicU64,
    latencies: LatencyWindow,
    /// Reads sent to a second replica because the first was slow.
    hedges: AtomicU64,
    rng: AtomicU64,
}

/// One replica of a set as the router sees it, for the metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplicaStats {
    /// The replica's URL.
    pub url: String,
    /// Whether its last call was answered.
    pub up: bool,
    /// Calls on it now.
    pub outstanding: usize,
    /// Calls sent to it so far.
    pub calls: u64,
    /// Calls it did not answer (unreachable, or `UNAVAILABLE`).
    pub failures: u64,
    /// Reads it was asked first that a second replica answered sooner.
    pub hedges_lost: u64,
    /// Whether writes go to it first: the leader of the highest term heard of, or the
    /// replica tried next after a write failed or was handed on to a leader not heard from.
    pub writes_to: bool,
}

/// The gRPC service of a node: its replicas behind one channel.
#[derive(Clone)]
pub struct ReplicaSet {
    inner: Arc<Inner>,
}

/// Whether a gRPC method changes state (sent to one replica, moved only when not sent).
fn is_write(path: &str) -> bool {
    let method = path.rsplit('/').next().unwrap_or("");
    matches!(
        method,
        "Upsert"
            | "Delete"
            | "UpdateVectors"
            | "DeleteVectors"
            | "SetPayload"
            | "OverwritePayload"
            | "DeletePayload"
            | "ClearPayload"
            | "UpdateBatch"
            | "CreateVectorName"
            | "DeleteVectorName"
            | "CreateFieldIndex"
            | "DeleteFieldIndex"
            | "Create"
            | "Update"
            | "UpdateAliases"
            | "CreateShardKey"
            | "DeleteShardKey"
    )
}

/// Whether a transport error happened before the request left (nothing was sent): a
/// connection that could not be made (tonic's `ConnectError`, which its reconnecting channel
/// also returns for a call made while it has no connection).
fn not_sent(e: &BoxError) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e.as_ref());
    while let Some(s) = source {
        if s.downcast_ref::<tonic::ConnectError>().is_some() {
            return true;
        }
        source = s.source();
    }
    false
}

impl ReplicaSet {
    /// The set over `channels` (each replica's connections, with its URL).
    pub fn new(replicas: Vec<(String, Vec<Channel>)>, hedge: Option<Hedge>) -> ReplicaSet {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
            | 1;
        ReplicaSet {
            inner: Arc::new(Inner {
                replicas: replicas
                    .into_iter()
                    .map(|(url, channels)| Replica {
                        url,
                        channels,
                        next: AtomicUsize::new(0),
                        outstanding: AtomicUsize::new(0),
                        up: AtomicBool::new(true),
                        calls: AtomicU64::new(0),
                        failures: AtomicU64::new(0),
                        hedges_lost: AtomicU64::new(0),
                        lost_streak: AtomicU64::new(0),
                        down_since_ms: AtomicU64::new(0),
                        raft_id: AtomicU64::new(NO_ID),
                        unwritable_since_ms: AtomicU64::new(NEVER),
                    })
                    .collect(),
                made: std::time::Instant::now(),
                writer: std::sync::Mutex::new(Writer {
                    replica: 0,
                    term: 0,
                }),
                hedge,
                written_up_to: AtomicU64::new(0),
                latencies: LatencyWindow::new(),
                hedges: AtomicU64::new(0),
                rng: AtomicU64::new(seed),
            }),
        }
    }

    /// Each replica's standing and counts.
    pub fn stats(&self) -> Vec<ReplicaStats> {
        let writer = self.inner.writer().replica;
        self.inner
            .replicas
            .iter()
            .enumerate()
            .map(|(i, r)| ReplicaStats {
                url: r.url.clone(),
                up: r.up.load(Ordering::Relaxed),
                outstanding: r.outstanding.load(Ordering::Relaxed),
                calls: r.calls.load(Ordering::Relaxed),
                failures: r.failures.load(Ordering::Relaxed),
                hedges_lost: r.hedges_lost.load(Ordering::Relaxed),
                writes_to: i == writer,
            })
            .collect()
    }

    /// Reads sent to a second replica because the first had not answered within the hedge
    /// delay.
    pub fn hedged_reads(&self) -> u64 {
        self.inner.hedges.load(Ordering::Relaxed)
    }
}

impl Inner {
    fn random(&self) -> u64 {
        // xorshift64: a draw per read, no lock.
        let mut x = self.rng.load(Ordering::Relaxed);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng.store(x, Ordering::Relaxed);
        x
    }

    /// How long a read waits for its replica before a second one is asked too.
    fn hedge_delay(&self) -> Option<Duration> {
        match self.hedge? {
            Hedge::After(d) => Some(d),
            Hedge::Percentile { floor, .. } => Some(
                self.latencies
                    .percentile()
                    .map_or(floor.max(WARMUP_HEDGE_AFTER), |p| p.max(floor)),
            ),
        }
    }

    /// Replica `i` was asked a read first and another answered it sooner. A replica that
    /// loses [`LOST_HEDGES_BEFORE_DOWN`] in a row without answering anything in between
    /// hangs (a stopped process, a connection that swallows calls): it leaves the draw as
    /// one that failed would, instead of costing a hedge delay on every read drawn to it.
    fn lost_hedge(&self, i: usize) {
        let r = &self.replicas[i];
        r.hedges_lost.fetch_add(1, Ordering::Relaxed);
        if r.lost_streak.fetch_add(1, Ordering::Relaxed) + 1 >= LOST_HEDGES_BEFORE_DOWN {
            r.up.store(false, Ordering::Relaxed);
            r.down_since_ms
                .store(self.made.elapsed().as_millis() as u64, Ordering::Relaxed);
        }
    }

    /// Whether replica `i` is tried in its turn: it answered its last call, or failed more
    /// than [`RETRY_DOWN_AFTER`] ago (`now` in milliseconds since the set was made).
    fn drawable(&self, i: usize, now: u64) -> bool {
        let r = &self.replicas[i];
        r.up.load(Ordering::Relaxed)
            || now.saturating_sub(r.down_since_ms.load(Ordering::Relaxed))
                >= RETRY_DOWN_AFTER.as_millis() as u64
    }

    /// The replicas in the order a read tries them: the power of two choices first, then
    /// the others that are up, then those that are not (a replica thought down is tried
    /// last rather than never: it may be back).
    fn read_order(&self) -> Vec<usize> {
        let n = self.replicas.len();
        let now = self.made.elapsed().as_millis() as u64;
        let up: Vec<usize> = (0..n).filter(|&i| self.drawable(i, now)).collect();
        let mut order = Vec::with_capacity(n);
        if up.len() >= 2 {
            let a = up[(self.random() % up.len() as u64) as usize];
            let mut b = up[(self.random() % (up.len() as u64 - 1)) as usize];
            if b == a {
                b = up[up.len() - 1];
            }
            let load = |i: usize| self.replicas[i].outstanding.load(Ordering::Relaxed);
            let (first, second) = if load(b) < load(a) { (b, a) } else { (a, b) };
            order.push(first);
            order.push(second);
        } else {
            order.extend(&up);
        }
        let start = (self.random() % n as u64) as usize;
        for k in 0..n {
            let i = (start + k) % n;
            if up.contains(&i) && !order.contains(&i) {
                order.push(i);
            }
        }
        for i in 0..n {
            if !order.contains(&i) {
                order.push(i);
            }
        }
        order
    }

    fn writer(&self) -> Writer {
        *self.writer.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The replicas in the order a write tries them: the one writes go to first, the
    /// others after it in turn; one a write failed on last. A leader the router cannot reach
    /// costs one write's attempt every [`RETRY_DOWN_AFTER`] (the write that claims the retry),
    /// not one a write: a follower hands the writes on meanwhile.
    fn write_order(&self) -> Vec<usize> {
        let n = self.replicas.len();
        let now = self.made.elapsed().as_millis() as u64;
        let first = self.writer().replica % n;
        let mut order = Vec::with_capacity(n);
        let mut last = Vec::new();
        for i in (0..n).map(|k| (first + k) % n) {
            let failed = &self.replicas[i].unwritable_since_ms;
            let since = failed.load(Ordering::Relaxed);
            let retry = since != NEVER
                && now.saturating_sub(since) >= RETRY_DOWN_AFTER.as_millis() as u64
                && failed
                    .compare_exchange(since, now, Ordering::Relaxed, Ordering::Relaxed)
                    .is_ok();
            if since == NEVER || retry {
                order.push(i);
            } else {
                last.push(i);
            }
        }
        order.extend(last);
        order
    }

    /// A write to replica `i` failed (not connected, cut, or refused for want of a leader).
    fn unwritable(&self, i: usize) {
        self.replicas[i]
            .unwritable_since_ms
            .store(self.made.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// Writes go to replica `to`, the leader of `term`, unless a leader of a later term was
    /// heard of.
    fn follow(&self, to: usize, term: u64) {
        let mut w = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        if term >= w.term {
            *w = Writer { replica: to, term };
        }
    }

    /// Writes go to the replica after `from` if they still went to `from` (it failed one,
    /// or named a leader not heard from yet); not when another was learned meanwhile.
    fn move_on(&self, from: usize) {
        let mut w = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        if w.replica == from {
            w.replica = (from + 1) % self.replicas.len();
        }
    }

    /// Reads replica `i`'s [`REPLICA_VIEW_HEADER`] in an answer: its id, and the leader it
    /// names. A leader heard from before (its id known) takes the writes; one not heard from
    /// yet still makes views of older terms stale. Returns the view, `None` when the answer
    /// has none (not a vector-router replica).
    fn observe(&self, i: usize, r: &http::Response<Body>) -> Option<ReplicaView> {
        let view = r
            .headers()
            .get(REPLICA_VIEW_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(ReplicaView::parse)?;
        self.replicas[i].raft_id.store(view.id, Ordering::Relaxed);
        match view.leader.map(|l| self.by_raft_id(l)) {
            Some(Some(j)) => self.follow(j, view.term),
            // A newer term whose leader is not heard from yet: views of older terms are stale,
            // and the replica that answered (which hands writes on to that leader) takes them
            // meanwhile, rather than a replica of an older term.
            Some(None) => {
                let mut w = self.writer.lock().unwrap_or_else(|e| e.into_inner());
                if view.term > w.term {
                    *w = Writer {
                        replica: i,
                        term: view.term,
                    };
                }
            }
            None => {}
        }
        Some(view)
    }

    /// Every replica refused a read that asked for `written` applied: the set may have been
    /// formed anew (its log counting from 0 again, never reaching the router's mark), or
    /// be far behind. The mark is dropped (unless a write raised it meanwhile), so the next
    /// read does not wait for it; the next write sets it again.
    fn no_replica_caught_up(&self, written: u64) {
        if written > 0 {
            let _ = self.written_up_to.compare_exchange(
                written,
                0,
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
        }
    }

    fn by_raft_id(&self, id: u64) -> Option<usize> {
        self.replicas
            .iter()
            .position(|r| r.raft_id.load(Ordering::Relaxed) == id)
    }

    async fn send(
        &self,
        i: usize,
        req: http::Request<Body>,
    ) -> Result<http::Response<Body>, BoxError> {
        use tonic::codegen::Service;
        let r = &self.replicas[i];
        let mut channel =
            r.channels[r.next.fetch_add(1, Ordering::Relaxed) % r.channels.len()].clone();
        let _counted = Outstanding::new(&r.outstanding);
        r.calls.fetch_add(1, Ordering::Relaxed);
        let result = async {
            std::future::poll_fn(|cx| channel.poll_ready(cx)).await?;
            channel.call(req).await
        }
        .await;
        let answered = match &result {
            Ok(resp) => {
                self.observe(i, resp);
                header_status(resp) != Some(UNAVAILABLE)
            }
            Err(_) => false,
        };
        self.mark(i, answered);
        result.map_err(|e| Box::new(e) as BoxError)
    }

    fn mark(&self, i: usize, answered: bool) {
        let r = &self.replicas[i];
        r.up.store(answered, Ordering::Relaxed);
        if answered {
            r.lost_streak.store(0, Ordering::Relaxed);
            r.unwritable_since_ms.store(NEVER, Ordering::Relaxed);
        } else {
            r.failures.fetch_add(1, Ordering::Relaxed);
            r.down_since_ms
                .store(self.made.elapsed().as_millis() as u64, Ordering::Relaxed);
        }
    }
}

fn rebuild(parts: &http::request::Parts, body: &bytes_type::Bytes) -> http::Request<Body> {
    let mut b = http::Request::builder()
        .method(parts.method.clone())
        .uri(parts.uri.clone())
        .version(parts.version);
    if let Some(h) = b.headers_mut() {
        *h = parts.headers.clone();
    }
    b.body(Body::new(Full::new(body.clone())))
        .expect("parts of a request that was built")
}

mod bytes_type {
    pub use tonic::codegen::Bytes;
}

impl tonic::codegen::Service<http::Request<Body>> for ReplicaSet {
    type Response = http::Response<Body>;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<http::Response<Body>, BoxError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        // Each call waits for its replica's channel itself.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let inner = self.inner.clone();
        Box::pin(async move {
            if inner.replicas.len() == 1 {
                return inner.send(0, req).await;
            }
            let (parts, body) = req.into_parts();
            let body = body.collect().await?.to_bytes();
            if is_write(parts.uri.path()) {
                let mut last = None;
                for i in inner.write_order() {
                    match inner.send(i, rebuild(&parts, &body)).await {
                        Err(e) if not_sent(&e) => {
                            inner.unwritable(i);
                            last = Some(e);
                        }
                        Ok(r) if header_status(&r) == Some(UNAVAILABLE) => {
                            // Reached but could not commit (no leader, cut off): not sent
                            // again, as it may yet be applied; the next write tries elsewhere
                            // (unless a leader was heard of meanwhile).
                            inner.unwritable(i);
                            inner.move_on(i);
                            return Ok(r);
                        }
                        Ok(r) => {
                            // `send` read the view already; only whether there was one, and
                            // whom it names, matter here.
                            let view = r
                                .headers()
                                .get(REPLICA_VIEW_HEADER)
                                .and_then(|v| v.to_str().ok())
                                .and_then(ReplicaView::parse);
                            if let Some(v) = view {
                                inner.written_up_to.fetch_max(v.applied, Ordering::Relaxed);
                            }
                            match view {
                                // A Qdrant node: the replica that took it takes the next.
                                None => inner.follow(i, 0),
                                // A follower handed it on to a leader not heard from yet:
                                // the next write tries the next replica.
                                Some(v)
                                    if v.leader != Some(v.id)
                                        && v.leader.and_then(|l| inner.by_raft_id(l)).is_none() =>
                                {
                                    inner.move_on(i)
                                }
                                Some(_) => {}
                            }
                            return Ok(r);
                        }
                        Err(e) => {
                            inner.unwritable(i);
                            inner.move_on(i);
                            return Err(e);
                        }
                    }
                }
                return Err(last.unwrap_or_else(|| "no replica to write to".into()));
            }
            // This router's writes, as far as a replica answered them: a read waits for them.
            let mut parts = parts;
            let written = inner.written_up_to.load(Ordering::Relaxed);
            if written > 0 && parts.uri.path() != "/qdrant.Qdrant/HealthCheck" {
                parts
                    .headers
                    .insert(APPLIED_AT_LEAST_HEADER, http::HeaderValue::from(written));
            }
            let order = inner.read_order();
            let answered = |r: &http::Response<Body>, since: std::time::Instant| {
                if let Some(Hedge::Percentile { percentile, .. }) = inner.hedge {
                    if header_status(r).is_none() {
                        inner.latencies.record(since.elapsed(), percentile);
                    }
                }
            };
            let usable = |r: &http::Response<Body>| header_status(r) != Some(UNAVAILABLE);
            let mut last = None;
            let mut last_unavailable = None;
            let mut k = 0;
            while k < order.len() {
                let first_replica = order[k];
                // Each answer's latency is counted from its own call: a read that waited for
                // a failed or hung replica first would otherwise push the percentile up.
                let first_at = std::time::Instant::now();
                let first = inner.send(first_replica, rebuild(&parts, &body));
                let hedge = match (inner.hedge_delay(), order.get(k + 1)) {
                    (Some(d), Some(&second)) => Some((d, second)),
                    _ => None,
                };
                let (result, since) = match hedge {
                    None => (first.await, first_at),
                    Some((delay, second)) => {
                        tokio::pin!(first);
                        tokio::select! {
                            r = &mut first => (r, first_at),
                            _ = tokio::time::sleep(delay) => {
                                // The first is slow: a second replica races it.
                                k += 1;
                                inner.hedges.fetch_add(1, Ordering::Relaxed);
                                let second_at = std::time::Instant::now();
                                let other = inner.send(second, rebuild(&parts, &body));
                                tokio::pin!(other);
                                tokio::select! {
                                    r = &mut first => match r {
                                        Ok(r) if usable(&r) => (Ok(r), first_at),
                                        _ => (other.await, second_at),
                                    },
                                    r = &mut other => match r {
                                        Ok(r) if usable(&r) => {
                                            inner.lost_hedge(first_replica);
                                            (Ok(r), second_at)
                                        }
                                        _ => (first.await, first_at),
                                    },
                                }
                            }
                        }
                    }
                };
                match result {
                    Ok(r) if !usable(&r) && k + 1 < order.len() => {
                        // Kept in case every replica answers so.
                        last_unavailable = Some(r);
                    }
                    Ok(r) => {
                        if !usable(&r) {
                            inner.no_replica_caught_up(written);
                        }
                        answered(&r, since);
                        return Ok(r);
                    }
                    Err(e) => last = Some(e),
                }
                k += 1;
            }
            if let Some(r) = last_unavailable {
                inner.no_replica_caught_up(written);
                return Ok(r);
            }
            Err(last.unwrap_or_else(|| "no replica to read from".into()))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_and_reads_are_told_apart() {
        assert!(is_write("/qdrant.Points/Upsert"));
        assert!(is_write("/qdrant.Collections/Create"));
        assert!(is_write("/qdrant.Points/UpdateBatch"));
        assert!(!is_write("/qdrant.Points/Query"));
        assert!(!is_write("/qdrant.Points/Scroll"));
        assert!(!is_write("/qdrant.Collections/Get"));
        assert!(!is_write("/qdrant.Qdrant/HealthCheck"));
    }

    #[test]
    fn a_percentile_hedge_follows_the_recent_latencies() {
        let w = LatencyWindow::new();
        // Too few samples: no percentile yet.
        for _ in 0..MIN_LATENCY_SAMPLES - 1 {
            w.record(Duration::from_millis(5), 90.0);
        }
        assert_eq!(w.percentile(), None);
        // 1..=256 ms, shuffled by a stride: the 90th percentile is about 231 ms.
        let w = LatencyWindow::new();
        for i in 0..LATENCY_WINDOW as u64 {
            w.record(Duration::from_millis((i * 97) % 256 + 1), 90.0);
        }
        let p = w.percentile().unwrap().as_millis();
        assert!((229..=233).contains(&p), "{p}");
        // A window of faster reads replaces it.
        for _ in 0..LATENCY_WINDOW {
            w.record(Duration::from_millis(2), 90.0);
        }
        assert_eq!(w.percentile(), Some(Duration::from_millis(2)));
    }

    #[tokio::test]
    async fn reads_prefer_fewer_outstanding_and_skip_replicas_down() {
        let ch = |port: u16| {
            vec![
                tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
                    .unwrap()
                    .connect_lazy(),
            ]
        };
        let set = ReplicaSet::new(
            vec![
                ("a".into(), ch(1)),
                ("b".into(), ch(2)),
                ("c".into(), ch(3)),
            ],
            None,
        );
        let inner = &set.inner;
        inner.replicas[0].outstanding.store(10, Ordering::Relaxed);
        inner.replicas[1].outstanding.store(10, Ordering::Relaxed);
        // With two of three loaded, the idle one is first whenever it is drawn, and it is
        // drawn in two draws of two out of three: most of the time.
        let firsts = (0..300).filter(|_| inner.read_order()[0] == 2).count();
        assert!(firsts > 150, "{firsts}");
        inner.mark(2, false);
        for _ in 0..50 {
            let order = inner.read_order();
            assert_eq!(order.len(), 3);
            assert_eq!(order[2], 2, "a replica down is tried last");
        }
        // A second later it is drawn again.
        inner.replicas[2].down_since_ms.store(0, Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(1100));
        assert!((0..100).any(|_| inner.read_order()[0] == 2));
        {
            let _a = Outstanding::new(&inner.replicas[0].outstanding);
            assert_eq!(inner.replicas[0].outstanding.load(Ordering::Relaxed), 11);
        }
        assert_eq!(inner.replicas[0].outstanding.load(Ordering::Relaxed), 10);
        inner.follow(1, 0);
        assert_eq!(inner.write_order(), vec![1, 2, 0]);
        // A replica a write failed on goes last...
        inner.unwritable(2);
        assert_eq!(inner.write_order(), vec![1, 0, 2]);
        // ... until a second has passed (the set is over a second old here): then one write
        // tries it in its turn, the others still last.
        let now = inner.made.elapsed().as_millis() as u64;
        inner.replicas[2]
            .unwritable_since_ms
            .store(now - 1_050, Ordering::Relaxed);
        assert_eq!(inner.write_order(), vec![1, 2, 0]);
        assert_eq!(inner.write_order(), vec![1, 0, 2]);
        // An answer makes it writable again; a slow read does not make it unwritable.
        inner.mark(2, true);
        inner.lost_hedge(2);
        assert_eq!(inner.write_order(), vec![1, 2, 0]);
    }

    #[test]
    fn a_replica_view_reads_back_what_was_written() {
        for view in [
            ReplicaView {
                id: 2,
                term: 7,
                leader: Some(3),
                applied: 120,
            },
            ReplicaView {
                id: 1,
                term: 0,
                leader: None,
                applied: 0,
            },
        ] {
            assert_eq!(ReplicaView::parse(&view.to_header()), Some(view));
        }
        for bad in [
            "",
            "1",
            "1 2",
            "1 2 3",
            "1 2 x 4",
            "a 2 3 4",
            "1 2 3 4 5",
            "1  2 3 4",
        ] {
            assert_eq!(ReplicaView::parse(bad), None, "{bad:?}");
        }
    }

    #[tokio::test]
    async fn writes_follow_the_leader_of_the_highest_term_heard_of() {
        let ch = |port: u16| {
            vec![
                tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
                    .unwrap()
                    .connect_lazy(),
            ]
        };
        let set = ReplicaSet::new(
            vec![
                ("a".into(), ch(1)),
                ("b".into(), ch(2)),
                ("c".into(), ch(3)),
            ],
            None,
        );
        let inner = &set.inner;
        let answer = |id: u64, term: u64, leader: Option<u64>| {
            http::Response::builder()
                .header(
                    REPLICA_VIEW_HEADER,
                    ReplicaView {
                        id,
                        term,
                        leader,
                        applied: 0,
                    }
                    .to_header(),
                )
                .body(Body::empty())
                .unwrap()
        };
        // Replica 0 (Raft id 10) names leader 30, not heard from yet: nothing to follow.
        assert!(inner.observe(0, &answer(10, 4, Some(30))).is_some());
        assert_eq!(inner.write_order()[0], 0);
        // Replica 2 answers as 30, the leader of term 4.
        inner.observe(2, &answer(30, 4, Some(30)));
        assert_eq!(inner.write_order(), vec![2, 0, 1]);
        assert!(set.stats()[2].writes_to && !set.stats()[0].writes_to);
        // Replica 1 (20) leads term 5; an older view naming 30 afterwards changes nothing.
        inner.observe(1, &answer(20, 5, Some(20)));
        assert_eq!(inner.write_order()[0], 1);
        inner.observe(0, &answer(10, 4, Some(30)));
        assert_eq!(inner.write_order()[0], 1);
        // A replica that knows no leader says nothing of one.
        inner.observe(2, &answer(30, 6, None));
        assert_eq!(inner.write_order()[0], 1);
        // A failure moves writes on, keeping the term: a view of a newer term still
        // overrules it; moving on from a replica writes no longer go to changes nothing.
        inner.move_on(1);
        assert_eq!(inner.write_order()[0], 2);
        inner.move_on(1);
        assert_eq!(inner.write_order()[0], 2);
        inner.observe(0, &answer(10, 6, Some(10)));
        assert_eq!(inner.write_order()[0], 0);
        // A leader of term 7 not heard from yet (id 40): the replica naming it takes the
        // writes (it hands them on), and views of term 6 are stale now.
        inner.observe(1, &answer(20, 7, Some(40)));
        assert_eq!(inner.write_order()[0], 1);
        inner.observe(0, &answer(10, 6, Some(10)));
        assert_eq!(
            inner.write_order()[0],
            1,
            "a view of an older term is not followed"
        );
        // A replica a write failed on: tried after the others.
        inner.unwritable(1);
        assert_eq!(inner.write_order(), vec![2, 0, 1]);
        // An answer without the header (a Qdrant node) is not a view.
        let plain = http::Response::builder().body(Body::empty()).unwrap();
        assert!(inner.observe(1, &plain).is_none());
    }
}
