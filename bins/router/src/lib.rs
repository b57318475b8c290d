//! vector-router: a Qdrant-compatible REST service over durable, sharded collections.
//!
//! The service as a library: the `router` binary (`main.rs`) parses its settings and calls
//! [`serve`]; [`app`] builds the same stack of routes and layers over an [`AppState`] for a
//! caller that drives it in process (the REST-body fuzz target in `fuzz/`).
//!
//! `router` with no flags serves REST on 127.0.0.1:6333 with data under `./storage`. See
//! `router --help` and `config.rs` for every setting; `api.rs` holds the routes.
//!
//! Layers, from the outside in: request id, tracing, metrics, compression, error mapping,
//! load shedding, concurrency limit, timeout, authentication; bodies are limited in the
//! extractor. Searches run on a bounded pool, off the reactor; writes run on the blocking
//! pool. Shutdown (SIGTERM, Ctrl-C) stops accepting, lets requests in flight finish within a
//! grace period, flushes every collection and exits 0.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod api;
mod catalog;
pub mod config;
mod convert;
mod error;
mod grpc;
mod listen;
mod model;
pub mod replica;

pub use listen::raise_open_file_limit;

use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use error::ApiError;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tower::ServiceBuilder;
use tower_http::compression::predicate::{NotForContentType, Predicate, SizeAbove};

/// Responses at least this large are compressed for clients that accept it.
const COMPRESS_ABOVE_BYTES: u16 = 4096;

/// Reported as `commit` by `GET /` (Qdrant always sends 40 hex digits).
pub const COMMIT: &str = "0000000000000000000000000000000000000000";

/// What every handler shares.
pub struct AppState {
    /// The collections.
    pub storage: Arc<storage::Storage>,
    /// Search results by request, when the cache is on.
    pub cache: cache::ResultCache<Vec<u8>>,
    /// Request counters and latencies for `/metrics`.
    pub metrics: metrics::Metrics,
    /// Each collection's shards as the fan-out sees them, and the search pool.
    pub shards: shard_router::ShardHandles,
    /// The request time limit.
    pub timeout: Duration,
    /// Cluster mode: whether a read answers from the shards that answered when others
    /// cannot (marked partial), rather than failing.
    pub partial_answers: bool,
    /// Requests in flight, REST's and gRPC's together (`--max-concurrent-requests`).
    pub in_flight: Arc<tokio::sync::Semaphore>,
    /// Whether `/readyz` answers ready (false while shutting down).
    pub ready: AtomicBool,
    /// Cluster mode: whether the catalog was loaded from the nodes (false while a node has
    /// not answered since start), and why not.
    catalog_loaded: AtomicBool,
    catalog_pending: std::sync::Mutex<String>,
    /// When the server started (uptime in the metrics).
    pub started: Instant,
    api_key: Option<String>,
    read_only_api_key: Option<String>,
    max_body_bytes: usize,
    /// The largest snapshot file an upload may send.
    pub max_upload_bytes: u64,
    /// Hosts snapshot recovery may download from (`host` or `host:port`, lowercase).
    pub snapshot_allowed_hosts: Vec<String>,
    /// The client snapshot downloads go through.
    pub http_client: reqwest::Client,
    /// Replica mode: this node's replica of its set (set once at start-up).
    replica: std::sync::OnceLock<Arc<replica::Replica>>,
}

impl AppState {
    /// The state of a server over `storage` with `settings`.
    /// With a `cluster`, the collections' shards are on its nodes and `storage` holds only
    /// their catalog (configurations, aliases).
    pub fn new(
        storage: storage::Storage,
        settings: &config::Settings,
        cluster: Option<Arc<shard_router::remote::Cluster>>,
    ) -> Result<AppState, String> {
        let http_client = api::snapshot_client(
            settings.snapshot_ca_file.as_deref(),
            &settings.snapshot_allowed_hosts,
        )?;
        let pool =
            shard_router::SearchPool::new(settings.search_threads).map_err(|e| e.to_string())?;
        Ok(AppState {
            storage: Arc::new(storage),
            cache: cache::ResultCache::new(&settings.cache),
            metrics: metrics::Metrics::new(),
            shards: match cluster {
                Some(c) => shard_router::ShardHandles::remote(pool, c),
                None => shard_router::ShardHandles::new(pool),
            },
            timeout: settings.request_timeout,
            partial_answers: settings.cluster.as_ref().is_some_and(|c| c.partial_answers),
            in_flight: Arc::new(tokio::sync::Semaphore::new(
                settings.max_concurrent_requests,
            )),
            ready: AtomicBool::new(true),
            catalog_loaded: AtomicBool::new(true),
            catalog_pending: std::sync::Mutex::new(String::new()),
            started: Instant::now(),
            api_key: settings.api_key.clone(),
            read_only_api_key: settings.read_only_api_key.clone(),
            max_body_bytes: settings.max_body_bytes,
            max_upload_bytes: settings.max_upload_bytes,
            snapshot_allowed_hosts: settings.snapshot_allowed_hosts.clone(),
            http_client,
            replica: std::sync::OnceLock::new(),
        })
    }

    /// Replica mode: this node's replica.
    pub fn replica(&self) -> Option<&Arc<replica::Replica>> {
        self.replica.get()
    }

    /// Cluster mode: why the catalog is not loaded yet, while it is not (the collections'
    /// requests answer 503 meanwhile).
    pub fn catalog_unavailable(&self) -> Option<String> {
        if self
            .catalog_loaded
            .load(std::sync::atomic::Ordering::Acquire)
        {
            return None;
        }
        Some(
            self.catalog_pending
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        )
    }

    /// The catalog is not loaded, for `why`.
    fn catalog_waits(&self, why: String) {
        *self
            .catalog_pending
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = why;
        self.catalog_loaded
            .store(false, std::sync::atomic::Ordering::Release);
    }

    /// Refuses what a replica does not serve (its state changes only through the replica
    /// set's log): 400, naming it.
    pub fn not_on_replica(&self, what: &str) -> Result<(), error::ApiError> {
        match self.replica() {
            None => Ok(()),
            Some(_) => Err(error::ApiError::bad_request(format!(
                "Bad request: {what} not served by a replica (--replica-id): its collections \
                 change only through its replica set's log"
            ))),
        }
    }

    /// The cluster, in cluster mode.
    pub fn cluster(&self) -> Option<&Arc<shard_router::remote::Cluster>> {
        self.shards.cluster()
    }

    /// Runs `read` at a read consistency (REST's `consistency`, gRPC's `read_consistency`,
    /// already checked). In replica mode a level above one replica waits for the replica
    /// set's read barrier first (linearizable); other reads answer from what this replica
    /// has applied. In cluster mode the level goes with the reads to every node (a replica
    /// set of ours, a Qdrant cluster): they must be made on this task, inside the scope. One
    /// router holding everything reads the same data at every level.
    pub async fn read_at<T>(
        &self,
        level: Option<qdrant_client::qdrant::ReadConsistency>,
        timeout: Option<u64>,
        read: impl std::future::Future<Output = T>,
    ) -> Result<T, error::ApiError> {
        if let Some(r) = self.replica() {
            if shard_router::remote::is_strong_read(level.as_ref()) {
                // Within the read's own `timeout` when it asks a shorter one (a timeout of 0
                // is left for the read to refuse), less a tenth: a gRPC client's deadline is
                // its timeout too, and the barrier's refusal says why, where a deadline
                // passed would not. The read then has its own timeout.
                let limit = timeout
                    .filter(|&s| s >= 1)
                    .map_or(self.timeout, |s| Duration::from_secs(s).min(self.timeout));
                r.read_barrier(Instant::now() + limit.mul_f32(0.9)).await?;
            }
            return Ok(read.await);
        }
        if self.cluster().is_none() {
            return Ok(read.await);
        }
        Ok(shard_router::remote::with_read_consistency(level, read).await)
    }

    /// Refuses an operation cluster mode does not serve yet (501, naming it: `what` is the
    /// sentence's subject and verb, "snapshots are").
    pub fn local_only(&self, what: &str) -> Result<(), error::ApiError> {
        match self.cluster() {
            None => Ok(()),
            Some(_) => Err(error::ApiError::not_implemented(format!(
                "{what} not yet served in cluster mode"
            ))),
        }
    }

    /// The collection's shards, for one request.
    pub async fn shard_handles(
        &self,
        c: &Arc<storage::Collection>,
    ) -> Result<RequestShards, error::ApiError> {
        let gate = self.gate(c).await?;
        Ok(RequestShards {
            shards: self.shards.of(c),
            _gate: gate,
        })
    }

    /// The collection's shards that the shard keys `keys` reach (all of them without, or
    /// those of the keys `filter` pins under payload-field placement), for one request; keys
    /// are a 400 unless the collection is sharded by key.
    pub async fn shards_for(
        &self,
        c: &Arc<storage::Collection>,
        keys: Option<&shard_router::remote::keys::KeySelection>,
        filter: Option<&payload::Filter>,
    ) -> Result<RequestShards, error::ApiError> {
        let gate = self.gate(c).await?;
        Ok(RequestShards {
            shards: self.shards.selected(c, keys, filter)?,
            _gate: gate,
        })
    }

    /// In cluster mode, the collection's gate, shared: no resharding batch moves points
    /// while the request reads them (taken before the shards are built, so that they are
    /// those of the layout the request reads). Waiting for it is bounded by the request
    /// timeout (a resharding resumed at start-up holds it until its nodes answer).
    async fn gate(
        &self,
        c: &Arc<storage::Collection>,
    ) -> Result<Option<shard_router::remote::GateGuard>, error::ApiError> {
        let Some(cluster) = self.cluster() else {
            return Ok(None);
        };
        let gate = tokio::time::timeout(self.timeout, cluster.read_gate(c.name()))
            .await
            .map_err(|_| shard_router::ShardError::Timeout { shard: 0 })?;
        Ok(gate?)
    }

    /// What `/metrics` reports besides the request counters.
    pub fn metrics_snapshot(&self) -> metrics::Snapshot {
        let collections = self
            .storage
            .all()
            .iter()
            .map(|c| {
                let s = c.stats();
                metrics::CollectionStats {
                    name: c.name().to_string(),
                    points: s.points as u64,
                    segments: s.segments as u64,
                    optimizer_queue: u64::from(s.optimizing),
                    wal_bytes: s.wal_bytes,
                    indexed_vectors: s.indexed_points as u64,
                    index_vector_bytes: s.index_vector_bytes as u64,
                }
            })
            .collect();
        let c = self.cache.stats();
        metrics::Snapshot {
            collections,
            cache: Some(metrics::CacheCounters {
                hits: c.hits,
                misses: c.misses,
                evictions: c.evictions.total(),
                entries: c.entries,
                weighted_bytes: c.weighted_size,
            }),
            process: Some(metrics::ProcessStats::current(self.started)),
            nodes: self
                .cluster()
                .map(|c| {
                    c.nodes()
                        .iter()
                        .map(|n| metrics::NodeStatus {
                            url: n.url().to_string(),
                            up: n.is_up(),
                            replicas: n
                                .replicas()
                                .into_iter()
                                .map(|r| metrics::ReplicaStatus {
                                    url: r.url,
                                    up: r.up,
                                    outstanding: r.outstanding as u64,
                                    calls: r.calls,
                                    failures: r.failures,
                                    hedges_lost: r.hedges_lost,
                                    write_target: r.writes_to,
                                })
                                .collect(),
                            hedged_reads: n.hedged_reads(),
                        })
                        .collect()
                })
                .unwrap_or_default(),
            reshardings: self
                .cluster()
                .map(|c| {
                    c.reshardings()
                        .into_iter()
                        .map(|(name, r, p)| metrics::ReshardingStatus {
                            collection: name,
                            points_moved: p.moved,
                            shards_left: r
                                .drained
                                .values()
                                .filter(|d| **d != shard_router::remote::Drained::Done)
                                .count() as u64,
                            failing: p.error.is_some(),
                        })
                        .collect()
                })
                .unwrap_or_default(),
            filesystems: [
                ("storage", self.storage.collections_dir()),
                ("snapshots", self.storage.snapshots_dir()),
            ]
            .into_iter()
            .filter_map(|(volume, dir)| filesystem_stats(volume, dir))
            .collect(),
        }
    }
}

/// Constant-time comparison, so response timing does not reveal how much of a key matched
/// (only the length of the configured key, which `subtle` compares first).
fn same_key(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq;
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

fn presented_key(headers: &HeaderMap) -> Option<&str> {
    headers
        .get("api-key")
        .and_then(|v| v.to_str().ok())
        .or_else(|| {
            headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
        })
}

/// The POST routes that only read (Qdrant's read-only key may call them), by route template.
const READING_POSTS: &[&str] = &[
    "/collections/{name}/points",
    "/collections/{name}/points/scroll",
    "/collections/{name}/points/count",
    "/collections/{name}/facet",
    "/collections/{name}/points/search/matrix/pairs",
    "/collections/{name}/points/search/matrix/offsets",
    "/collections/{name}/points/query",
    "/collections/{name}/points/query/batch",
    "/collections/{name}/points/query/groups",
    "/collections/{name}/points/search",
    "/collections/{name}/points/search/batch",
    "/collections/{name}/points/search/groups",
    "/collections/{name}/points/recommend",
    "/collections/{name}/points/recommend/batch",
    "/collections/{name}/points/recommend/groups",
    "/collections/{name}/points/discover",
    "/collections/{name}/points/discover/batch",
];

/// Requests a read-only key may make: reads, and POSTs that only read. Decided on the route
/// the request matched, not on its path's text (a collection may be named `search`); a path
/// no route matched is not a read.
fn is_read_only(method: &Method, route: Option<&str>) -> bool {
    if method == Method::GET || method == Method::HEAD {
        return true;
    }
    method == Method::POST && route.is_some_and(|r| READING_POSTS.contains(&r))
}

async fn authenticate(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let Some(full) = &state.api_key else {
        return next.run(req).await;
    };
    let path = req.uri().path();
    // Probes, and the dashboard's static files (no data: the page asks the API with the
    // key its user types in).
    if matches!(path, "/healthz" | "/livez" | "/readyz" | "/dashboard")
        || path.starts_with("/dashboard/")
    {
        return next.run(req).await;
    }
    // As Qdrant: no key or an unknown one is 401; a read-only key asking to write is 403.
    let refusal = match presented_key(req.headers()) {
        None => Some((
            StatusCode::UNAUTHORIZED,
            "Unauthorized: an api-key or an Authorization bearer token is required",
        )),
        Some(key) if same_key(key, full) => None,
        Some(key)
            if state
                .read_only_api_key
                .as_deref()
                .is_some_and(|ro| same_key(key, ro)) =>
        {
            (!is_read_only(
                req.method(),
                req.extensions()
                    .get::<MatchedPath>()
                    .map(MatchedPath::as_str),
            ))
            .then_some((
                StatusCode::FORBIDDEN,
                "Forbidden: write access denied to the read-only api-key",
            ))
        }
        Some(_) => Some((StatusCode::UNAUTHORIZED, "Unauthorized: invalid api-key")),
    };
    let Some((status, message)) = refusal else {
        return next.run(req).await;
    };
    // The body is not buffered, only drained while the answer goes out (`drain_unread`).
    drain_unread(req.into_body(), state.max_body_bytes);
    let mut response = ApiError::new(status, message).into_response();
    response.headers_mut().insert(
        axum::http::header::CONNECTION,
        axum::http::HeaderValue::from_static("close"),
    );
    response
}

async fn record_metrics(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let endpoint = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched".to_string(), |p| p.as_str().to_string());
    let method = req.method().clone();
    let response = next.run(req).await;
    let seconds = start.elapsed().as_secs_f64();
    state.metrics.observe_request(
        &endpoint,
        method.as_str(),
        response.status().as_u16(),
        seconds,
    );
    tracing::info!(target: "access", %method, endpoint, status = response.status().as_u16(), ms = seconds * 1e3);
    response
}

/// The header a partial answer carries (REST and gRPC): the shards left out.
pub const PARTIAL_HEADER: &str = "x-vector-router-partial";

/// The partial header's value, `missing-shards=1,2`, when shards were left out.
fn partial_header(missing: &[u32]) -> Option<axum::http::HeaderValue> {
    if missing.is_empty() {
        return None;
    }
    let list: Vec<String> = missing.iter().map(u32::to_string).collect();
    axum::http::HeaderValue::from_str(&format!("missing-shards={}", list.join(","))).ok()
}

/// Runs the request in the scope that notes the collection gates it holds; in cluster mode with
/// partial answers on, also in a scope where searches and counts may leave out shards that
/// cannot answer, and marks the response when they did (the header here; the envelope's
/// `partial` field is written with the body).
async fn partial_answers(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    // The gates of the collections the request reads are noted in its scope: one taken
    // again by the same request is not waited for.
    let run = shard_router::remote::gate_scope(next.run(req));
    if !state.partial_answers {
        return run.await;
    }
    let (mut response, missing) = shard_router::partial::allowing(run).await;
    if let Some(v) = partial_header(&missing) {
        response.headers_mut().insert(PARTIAL_HEADER, v);
    }
    response
}

/// Whether a request is a snapshot upload: its body is streamed to disk by the handler,
/// bounded by its own limit, and it takes as long as the network needs.
fn is_snapshot_upload(req: &Request) -> bool {
    req.method() == axum::http::Method::POST && req.uri().path().ends_with("/snapshots/upload")
}

/// Whether a request makes a snapshot (of a collection, or the full one) or recovers a
/// collection from one: each copies the data, which takes as long as the data is large, and
/// goes on once begun. A timeout would answer 408 while the work still finishes: a snapshot
/// left behind with no name given to delete it by, or a collection replaced after its client
/// was told the request failed.
fn is_long_snapshot_operation(req: &Request) -> bool {
    let path = req.uri().path();
    let method = req.method();
    (method == axum::http::Method::POST
        && (path == "/snapshots"
            || (path.starts_with("/collections/") && path.ends_with("/snapshots"))))
        || (method == axum::http::Method::PUT
            && path.starts_with("/collections/")
            && path.ends_with("/snapshots/recover"))
}

/// The request timeout, for everything but the snapshot operations that copy data.
async fn time_limit(State(limit): State<Duration>, req: Request, next: Next) -> Response {
    if is_snapshot_upload(&req) || is_long_snapshot_operation(&req) {
        return next.run(req).await;
    }
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(response) => response,
        Err(_) => ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "Timeout: the request took longer than the server's limit",
        )
        .into_response(),
    }
}

async fn limit_body(State(limit): State<usize>, req: Request, next: Next) -> Response {
    use http_body_util::BodyExt;
    if is_snapshot_upload(&req) {
        return next.run(req).await;
    }
    let (parts, mut body) = req.into_parts();
    // Sized once from the declared length (bounded by the limit), not grown by doubling.
    let declared = axum::body::HttpBody::size_hint(&body).lower();
    let mut bytes = Vec::with_capacity(usize::try_from(declared).unwrap_or(limit).min(limit));
    loop {
        match body.frame().await {
            None => break,
            Some(Err(e)) => {
                return ApiError::new(
                    StatusCode::BAD_REQUEST,
                    format!("Bad request: cannot read the request body: {e}"),
                )
                .into_response()
            }
            Some(Ok(frame)) => {
                let Ok(data) = frame.into_data() else {
                    continue;
                };
                if bytes.len() + data.len() > limit {
                    // The rest is drained, not read into memory (see `drain_unread`).
                    drain_unread(body, limit);
                    let mut response = ApiError::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        format!(
                            "Bad request: the request body is larger than the limit of {limit} bytes"
                        ),
                    )
                    .into_response();
                    response.headers_mut().insert(
                        axum::http::header::CONNECTION,
                        axum::http::HeaderValue::from_static("close"),
                    );
                    return response;
                }
                bytes.extend_from_slice(&data);
            }
        }
    }
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

/// Reads and drops what is left of a refused request's body (up to twice `limit` and at least
/// 16 MiB more, for 5 s at most) while the answer goes out. A server that closes a connection with unread
/// data makes the kernel reset it, and a client still sending the body sees a broken pipe
/// instead of the answer; draining lets it read the answer, and nothing is kept in memory.
fn drain_unread(body: Body, limit: usize) {
    tokio::spawn(async move {
        use http_body_util::BodyExt;
        let mut body = body;
        let cap = limit.saturating_mul(2).max(16 << 20);
        let mut read = 0usize;
        let drain = async {
            while let Some(Ok(frame)) = body.frame().await {
                read += frame.data_ref().map_or(0, |d| d.len());
                if read > cap {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(5), drain).await;
    });
}

/// `x-request-id` for requests that come without one: a per-process random prefix and a
/// counter. Unique within a process and across restarts (the prefix), and free of the
/// `getrandom` system call a random UUID costs per request.
#[derive(Clone)]
struct RequestIds {
    prefix: u64,
    next: Arc<std::sync::atomic::AtomicU64>,
}

impl RequestIds {
    fn new() -> RequestIds {
        use std::hash::{BuildHasher, Hasher};
        // RandomState is seeded from the OS once per process.
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        RequestIds {
            prefix: h.finish(),
            next: Arc::new(std::sync::atomic::AtomicU64::new(0)),
        }
    }
}

impl tower_http::request_id::MakeRequestId for RequestIds {
    fn make_request_id<B>(
        &mut self,
        _request: &axum::http::Request<B>,
    ) -> Option<tower_http::request_id::RequestId> {
        let n = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let id = format!("{:016x}-{n:016x}", self.prefix);
        axum::http::HeaderValue::from_str(&id)
            .ok()
            .map(tower_http::request_id::RequestId::new)
    }
}

/// Space on the filesystem holding `dir`, or `None` where it cannot be read (the directory
/// gone, or no `statvfs` here): the alert on a filling disk then sees no series rather than a
/// false figure.
fn filesystem_stats(volume: &str, dir: &std::path::Path) -> Option<metrics::FilesystemStats> {
    #[cfg(unix)]
    {
        let stat = rustix::fs::statvfs(dir).ok()?;
        Some(metrics::FilesystemStats {
            volume: volume.to_string(),
            available_bytes: stat.f_bavail.saturating_mul(stat.f_frsize),
            size_bytes: stat.f_blocks.saturating_mul(stat.f_frsize),
        })
    }
    #[cfg(not(unix))]
    {
        let _ = (volume, dir);
        None
    }
}

/// REST requests refused because `--max-concurrent-requests` were in flight (one process,
/// one count: `/metrics` shows it as `vector_router_http_requests_shed_total`).
pub static REQUESTS_SHED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

async fn map_layer_error(err: tower::BoxError) -> Response {
    if err.is::<tower::timeout::error::Elapsed>() {
        ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "Timeout: the request took longer than the server's limit",
        )
        .into_response()
    } else if err.is::<tower::load_shed::error::Overloaded>() {
        REQUESTS_SHED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "Service unavailable: too many requests in flight, retry later",
        )
        .into_response()
    } else {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("Service internal error: {err}"),
        )
        .into_response()
    }
}

/// Logs to stderr at `level` (an `EnvFilter` directive), as JSON lines when `json`.
pub fn init_logging(level: &str, json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_new(level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colour codes only for a terminal: a log file or journal gets plain lines, and each
    // access line costs less to format.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}

/// Cluster mode, the catalog not loaded yet: the collections', aliases' and snapshots'
/// requests answer 503, saying why.
async fn catalog_gate(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    let gated = ["/collections", "/aliases", "/snapshots"]
        .iter()
        .any(|p| path == *p || path.starts_with(&format!("{p}/")));
    if gated {
        if let Some(why) = state.catalog_unavailable() {
            return catalog_error(&why).into_response();
        }
    }
    next.run(req).await
}

/// The answer while the catalog is not loaded.
pub(crate) fn catalog_error(why: &str) -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("Service unavailable: the cluster's catalog is not loaded yet: {why}"),
    )
}

/// The value of the query-string parameter `name`, as sent.
fn query_param<'a>(query: Option<&'a str>, name: &str) -> Option<&'a str> {
    query?
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find_map(|(k, v)| (k == name).then_some(v))
}

/// A read's `consistency` (Qdrant's: `majority`, `quorum`, `all`, or a number of replicas),
/// read by [`AppState::read_at`]. A level that does not read is refused.
async fn read_consistency(
    State(state): State<Arc<AppState>>,
    req: Request,
    next: Next,
) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string());
    // The collections' reads: probes, metrics and the service routes take no level.
    let collection_read = route
        .as_deref()
        .is_some_and(|r| r.starts_with("/collections/"))
        && is_read_only(req.method(), route.as_deref());
    if !collection_read {
        return next.run(req).await;
    }
    let query = req.uri().query();
    // A malformed timeout is the handler's to refuse.
    let timeout = query_param(query, "timeout").and_then(|t| t.parse::<u64>().ok());
    let level =
        match query_param(query, "consistency").map(shard_router::remote::parse_read_consistency) {
            None => None,
            Some(Ok(level)) => Some(level),
            Some(Err(e)) => {
                return ApiError::bad_request(format!("Format error in query string: {e}"))
                    .into_response()
            }
        };
    state
        .read_at(level, timeout, next.run(req))
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

/// The routes with every layer the server puts around them (authentication, limits, timeout,
/// load shedding, compression, metrics, request ids), over `state`.
pub fn app(state: Arc<AppState>, settings: &config::Settings) -> axum::Router {
    let api = api::routes(state.clone())
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            read_consistency,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            catalog_gate,
        ))
        // `limit_body` enforces max_request_size_mb; without this the `Bytes` extractor
        // would also apply axum's own 2 MB default and refuse bodies the settings allow.
        .layer(axum::extract::DefaultBodyLimit::disable())
        .layer(axum::middleware::from_fn_with_state(
            settings.max_body_bytes,
            limit_body,
        ))
        // Outside the body limit: a request without a valid key is refused before its body
        // is read, so an unauthenticated client cannot make the server buffer one.
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            authenticate,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            partial_answers,
        ))
        .layer(axum::middleware::from_fn_with_state(
            settings.request_timeout,
            time_limit,
        ))
        .layer(
            ServiceBuilder::new()
                .layer(axum::error_handling::HandleErrorLayer::new(map_layer_error))
                .load_shed()
                // Global: axum applies a layer to each route separately, and a plain
                // concurrency limit would then allow this many requests per route.
                .layer(tower::limit::GlobalConcurrencyLimitLayer::with_semaphore(
                    state.in_flight.clone(),
                )),
        );
    // The calls between replicas: under the keys, outside the API's size, time and
    // concurrency limits (a heartbeat refused under load would start an election).
    let api = if settings.replica.is_some() {
        api.merge(
            replica::internal_routes(state.clone())
                .layer(axum::extract::DefaultBodyLimit::disable())
                .layer(axum::middleware::from_fn_with_state(
                    state.clone(),
                    authenticate,
                )),
        )
    } else {
        api
    };
    api
        // Snapshot downloads are streamed files: gzip over that stream cut the body short
        // (the client saw an incomplete chunked read), and an archive gains little from it.
        // Only bodies past `COMPRESS_ABOVE_BYTES`: a search answer of a few hundred bytes costs
        // more CPU to gzip (the compressor's set-up alone) than it saves on any network.
        .layer(
            tower_http::compression::CompressionLayer::new().compress_when(
                SizeAbove::new(COMPRESS_ABOVE_BYTES)
                    .and(NotForContentType::GRPC)
                    .and(NotForContentType::SSE)
                    .and(NotForContentType::const_new("application/octet-stream")),
            ),
        )
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            record_metrics,
        ))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .layer(tower_http::request_id::PropagateRequestIdLayer::x_request_id())
        .layer(tower_http::request_id::SetRequestIdLayer::x_request_id(
            RequestIds::new(),
        ))
}

/// Serves `settings` until SIGTERM or Ctrl-C, then drains requests in flight and flushes
/// every collection.
pub async fn serve(settings: config::Settings) -> Result<(), String> {
    let (sp, snp) = (
        settings.storage_path.clone(),
        settings.snapshots_path.clone(),
    );
    // Before any collection starts its optimizer threads.
    storage::priority::set_background_nice(settings.optimizer_nice);
    let storage = tokio::task::spawn_blocking(move || storage::Storage::open(&sp, &snp))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("cannot open storage: {e}"))?;
    let storage =
        match settings.storage_snapshot.clone() {
            None => storage,
            Some(archive) => {
                let force = settings.force_snapshot;
                tokio::task::spawn_blocking(move || {
                let restored = storage.recover_full(&archive, force).map_err(|e| {
                    format!("cannot restore the full snapshot {}: {e}", archive.display())
                })?;
                tracing::info!(?restored, snapshot = %archive.display(), "full snapshot restored");
                Ok::<_, String>(storage)
            })
            .await
            .map_err(|e| e.to_string())??
            }
        };
    let cluster = match &settings.cluster {
        None => None,
        Some(c) => {
            let cluster = shard_router::remote::Cluster::new(&c.nodes, &c.options)
                .map_err(|e| format!("cluster: {e}"))?;
            cluster.set_reshard_batch(c.reshard_batch);
            // A node down does not stop the router: it starts, says so in its metrics and
            // logs, and loads its catalog once every node answers (below).
            for down in cluster.probe(std::time::Duration::from_secs(5)).await {
                tracing::warn!(%down, "cluster: a node does not answer at start");
            }
            tracing::info!(nodes = ?c.nodes, "cluster mode: every collection's shards are on these nodes");
            Some(Arc::new(cluster))
        }
    };
    let state = Arc::new(AppState::new(storage, &settings, cluster)?);
    if let Some(rs) = &settings.replica {
        let r = replica::Replica::start(
            rs,
            state.storage.clone(),
            &settings.storage_path,
            settings.api_key.clone(),
        )
        .await?;
        r.attach(&state);
        tracing::info!(
            id = rs.id,
            "replica mode: writes go through the replica set's log"
        );
        let _ = state.replica.set(Arc::new(r));
    }
    if let Some(c) = state.cluster().cloned() {
        let down: Vec<String> = c
            .nodes()
            .iter()
            .filter(|n| !n.is_up())
            .map(|n| n.url().to_string())
            .collect();
        if down.is_empty() {
            let added = catalog::import(&state, true)
                .await
                .map_err(|e| format!("cluster: {e}"))?;
            if !added.is_empty() {
                tracing::info!(?added, "collections the nodes hold added to the catalog");
            }
        } else {
            // Which collections and shard keys the nodes hold is known only from all of
            // them: until then a collection missing would read as none (404, or a create
            // of a name that exists), and a key missing as an answer without its points.
            state.catalog_waits(format!(
                "node {} has not answered since the router started (tried every 2 s)",
                down.join(", ")
            ));
            tracing::warn!(?down, "cluster: the catalog is loaded once every node answers; the collections' requests answer 503 until then");
        }
        // Nodes' health, probed in the background: a node down is reported in the metrics
        // and is used again once it answers. Every fifth round also picks up collections
        // another coordinator created.
        let st = state.clone();
        tokio::spawn(async move {
            for round in 1u64.. {
                tokio::time::sleep(std::time::Duration::from_secs(2)).await;
                for node in c.nodes() {
                    let _ = node.probe(std::time::Duration::from_secs(1)).await;
                }
                if st.catalog_unavailable().is_some() {
                    let down: Vec<&str> = c
                        .nodes()
                        .iter()
                        .filter(|n| !n.is_up())
                        .map(|n| n.url())
                        .collect();
                    if !down.is_empty() {
                        st.catalog_waits(format!(
                            "node {} does not answer (tried every 2 s)",
                            down.join(", ")
                        ));
                        continue;
                    }
                    match catalog::import(&st, true).await {
                        Ok(added) => {
                            st.catalog_loaded
                                .store(true, std::sync::atomic::Ordering::Release);
                            tracing::info!(
                                ?added,
                                "cluster: every node answers; the catalog is loaded"
                            );
                        }
                        // Kept unloaded, with the reason: a check failing at start (nodes
                        // listed in another order) would have stopped the router.
                        Err(e) => {
                            tracing::error!(error = %e, "cluster: the catalog cannot be loaded");
                            st.catalog_waits(e);
                        }
                    }
                    continue;
                }
                if round % 5 == 0 {
                    if let Err(e) = catalog::import(&st, false).await {
                        tracing::warn!(error = %e, "cannot bring the catalog in step with the nodes");
                    }
                }
            }
        });
    }
    let app = app(state.clone(), &settings);
    let tls = match &settings.tls {
        Some((cert, key)) => Some(listen::tls_acceptor(cert, key)?),
        None => None,
    };
    let grpc_tls = grpc::tls_config(&settings)?;
    let listener = tokio::net::TcpListener::bind(settings.addr)
        .await
        .map_err(|e| format!("cannot bind {}: {e}", settings.addr))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let grpc_listener = tokio::net::TcpListener::bind(settings.grpc_addr)
        .await
        .map_err(|e| format!("cannot bind {} for gRPC: {e}", settings.grpc_addr))?;
    let grpc_addr = grpc_listener.local_addr().map_err(|e| e.to_string())?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    // REST's line first: scripts and tests read its address from the first line.
    println!("listening on {scheme}://{addr}");
    println!("gRPC listening on {scheme}://{grpc_addr}");
    tracing::info!(%addr, %grpc_addr, scheme, storage = %settings.storage_path.display(), "vector-router serving");
    let grace = settings.shutdown_grace;
    // One signal stops both servers; each then finishes what is in flight.
    let stop = tokio_util::sync::CancellationToken::new();
    let signal = stop.clone();
    let st = state.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutting down: finishing requests in flight");
        // Not ready from the signal on: a load balancer polling `/readyz` on a connection
        // still open sees 503 while requests in flight drain.
        st.ready.store(false, std::sync::atomic::Ordering::Release);
        signal.cancel();
    });
    let shared = listen::SharedSlots::new(&settings.listen);
    let rest = listen::serve(
        listener,
        app,
        settings.listen,
        shared.clone(),
        tls,
        stop.clone().cancelled_owned(),
    );
    // Where a failed gRPC server leaves its error: read after both servers stop, however the
    // stop came.
    let grpc_failed = std::sync::Mutex::new(None);
    let grpc = async {
        let served = grpc::serve(
            state.clone(),
            &settings,
            grpc_tls,
            grpc_listener,
            shared,
            stop.clone().cancelled_owned(),
        )
        .await;
        // A gRPC server that cannot run stops REST too: the router exits with the error
        // rather than serving half of its API.
        if let Err(e) = served {
            tracing::error!(error = %e, "gRPC server failed");
            *grpc_failed.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
            stop.cancel();
        }
    };
    let forced = async {
        stop.cancelled().await;
        tokio::time::sleep(grace).await;
    };
    tokio::select! {
        _ = async { tokio::join!(rest, grpc) } => {}
        _ = forced => tracing::warn!("grace period over; closing with requests still in flight"),
    }
    let grpc_failed = grpc_failed.into_inner().unwrap_or_else(|p| p.into_inner());
    state
        .ready
        .store(false, std::sync::atomic::Ordering::Release);
    if let Some(r) = state.replica() {
        if let Err(e) = r.raft.shutdown().await {
            tracing::warn!(error = %e, "replica: raft did not stop cleanly");
        }
    }
    let st = state.clone();
    tokio::task::spawn_blocking(move || st.storage.close())
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("flush on shutdown: {e}"))?;
    if let Some(e) = grpc_failed {
        return Err(e);
    }
    tracing::info!("stopped");
    Ok(())
}

/// A collection's shards for one request. In cluster mode it holds the collection's gate
/// (shared) while it lives: the shards a resharding is moving points between are read
/// between its batches, never across one.
pub struct RequestShards {
    shards: Arc<[Arc<dyn shard_router::Shard>]>,
    _gate: Option<shard_router::remote::GateGuard>,
}

impl std::ops::Deref for RequestShards {
    type Target = Arc<[Arc<dyn shard_router::Shard>]>;

    fn deref(&self) -> &Self::Target {
        &self.shards
    }
}
