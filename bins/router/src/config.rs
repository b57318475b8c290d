//! Configuration: defaults, then a TOML file, then environment variables (Qdrant's names
//! where Qdrant has them), then command-line flags. Checked before anything binds.

use clap::Parser;
use serde::Deserialize;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

/// vector-router: a Qdrant-compatible vector search service over durable, sharded
/// collections. Run with no flags it serves REST on 127.0.0.1:6333 with data under
/// ./storage.
#[derive(Debug, Parser)]
#[command(name = "router", version)]
pub struct Args {
    /// TOML config file (sections `[service]`, `[storage]`, `[cache]`, `[log]`; keys as the flags, with `_`).
    #[arg(long, env = "VR_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to bind (Qdrant: service.host). Beyond loopback an API key is required.
    #[arg(long, env = "QDRANT__SERVICE__HOST")]
    pub host: Option<String>,
    /// REST port; 0 picks a free one (Qdrant: service.http_port). Default 6333.
    #[arg(long, env = "QDRANT__SERVICE__HTTP_PORT")]
    pub http_port: Option<u16>,
    /// gRPC port on the same host; 0 picks a free one (Qdrant: service.grpc_port). Default 6334,
    /// or a free one when the REST port is 0.
    #[arg(long, env = "QDRANT__SERVICE__GRPC_PORT")]
    pub grpc_port: Option<u16>,
    /// API key giving full access, sent as `api-key` or `Authorization: Bearer` (Qdrant: service.api_key).
    #[arg(long, env = "QDRANT__SERVICE__API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// API key giving read-only access (Qdrant: service.read_only_api_key).
    #[arg(
        long,
        env = "QDRANT__SERVICE__READ_ONLY_API_KEY",
        hide_env_values = true
    )]
    pub read_only_api_key: Option<String>,
    /// Where collections live (Qdrant: storage.storage_path). Default ./storage.
    #[arg(long, env = "QDRANT__STORAGE__STORAGE_PATH")]
    pub storage_path: Option<PathBuf>,
    /// Where snapshots are written (Qdrant: storage.snapshots_path). Default ./snapshots.
    #[arg(long, env = "QDRANT__STORAGE__SNAPSHOTS_PATH")]
    pub snapshots_path: Option<PathBuf>,
    /// Largest request body in MB (Qdrant: service.max_request_size_mb). Default 32.
    #[arg(long, env = "QDRANT__SERVICE__MAX_REQUEST_SIZE_MB")]
    pub max_request_size_mb: Option<u64>,
    /// Requests served at once; past it requests are shed with 503 and Retry-After. Default 512.
    #[arg(long, env = "VR_MAX_CONCURRENT_REQUESTS")]
    pub max_concurrent_requests: Option<usize>,
    /// Per-request timeout in seconds (snapshot creation, upload and recovery are not held by
    /// it, over REST or gRPC). Default 60.
    #[arg(long, env = "VR_REQUEST_TIMEOUT_SECS")]
    pub request_timeout_secs: Option<u64>,
    /// Connections open at once; past it new ones wait to be accepted. Default 4096, or
    /// fewer when the open-file limit (`ulimit -n`) leaves less room.
    #[arg(long, env = "VR_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Seconds a client gets to send a request's line and headers (and to finish a TLS
    /// handshake); an idle keep-alive connection is closed after as long. Default 30.
    #[arg(long, env = "VR_HEADER_READ_TIMEOUT_SECS")]
    pub header_read_timeout_secs: Option<u64>,
    /// Connections one client address may hold at once; past it a new one is answered 503
    /// and closed. Default half of --max-connections, so that one address (a slowloris) cannot
    /// take every slot.
    #[arg(long, env = "VR_MAX_CONNECTIONS_PER_ADDRESS")]
    pub max_connections_per_address: Option<usize>,
    /// Seconds a response may wait on a client that reads none of it before the connection
    /// is closed. Default 30.
    #[arg(long, env = "VR_WRITE_TIMEOUT_SECS")]
    pub write_timeout_secs: Option<u64>,
    /// Serve REST over TLS (Qdrant: service.enable_tls), with --tls-cert and --tls-key.
    /// Accepts `true`/`false`, `1`/`0`, `yes`/`no`, `on`/`off` (any case); bare means true.
    #[arg(long, env = "QDRANT__SERVICE__ENABLE_TLS", num_args = 0..=1,
          default_missing_value = "true", value_parser = clap::builder::BoolishValueParser::new())]
    pub enable_tls: Option<bool>,
    /// PEM certificate chain for TLS (Qdrant: tls.cert).
    #[arg(long, env = "QDRANT__TLS__CERT")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for TLS (Qdrant: tls.key).
    #[arg(long, env = "QDRANT__TLS__KEY")]
    pub tls_key: Option<PathBuf>,
    /// Threads searches run on. Default: one per core.
    #[arg(long, env = "VR_SEARCH_THREADS")]
    pub search_threads: Option<usize>,
    /// What the threads that build indexes in the background add to their nice value while
    /// writes arrive, 0 to 19 (Linux; putting them back needs CAP_SYS_NICE): a bulk load runs
    /// first, the builds take the cores it leaves (10 loaded 1.1x to 1.5x faster here; green comes
    /// later if queries follow). Default 0: level.
    #[arg(long, env = "VR_OPTIMIZER_NICE")]
    pub optimizer_nice: Option<i32>,
    /// Result cache time to live in seconds; 0 disables the cache. Default 60 (0 in cluster
    /// mode, where writes through another coordinator would not invalidate it).
    #[arg(long, env = "VR_CACHE_TTL_SECS")]
    pub cache_ttl_secs: Option<f64>,
    /// Result cache budget in MB. Default 64.
    #[arg(long, env = "VR_CACHE_MAX_MB")]
    pub cache_max_mb: Option<u64>,
    /// Log level filter (tracing's syntax). Default info.
    #[arg(long, env = "VR_LOG_LEVEL")]
    pub log_level: Option<String>,
    /// Log as JSON lines.
    #[arg(long, env = "VR_LOG_JSON")]
    pub log_json: bool,
    /// Largest snapshot file an upload may send, in MB (streamed to disk; not held by the
    /// request timeout). Default 65536.
    #[arg(long, env = "VR_MAX_SNAPSHOT_UPLOAD_MB")]
    pub max_snapshot_upload_mb: Option<u64>,
    /// Hosts (`host` or `host:port`, comma-separated) that snapshot recovery may download
    /// from over http(s). Default none: only this server's own snapshot URLs.
    #[arg(long, env = "VR_SNAPSHOT_ALLOWED_HOSTS", value_delimiter = ',')]
    pub snapshot_allowed_hosts: Option<Vec<String>>,
    /// PEM file of extra root certificates trusted when downloading snapshots over https.
    #[arg(long, env = "VR_SNAPSHOT_CA_FILE")]
    pub snapshot_ca_file: Option<PathBuf>,
    /// A full snapshot to restore at start-up, before serving (Qdrant: --storage-snapshot).
    #[arg(long)]
    pub storage_snapshot: Option<PathBuf>,
    /// With --storage-snapshot, replace collections that exist (Qdrant: --force-snapshot).
    #[arg(long)]
    pub force_snapshot: bool,
    /// Seconds in-flight requests get to finish after SIGTERM or Ctrl-C. Default 30.
    #[arg(long, env = "VR_SHUTDOWN_GRACE_SECS")]
    pub shutdown_grace_secs: Option<u64>,
    /// Cluster mode: the gRPC URLs of the nodes holding the shards (comma-separated,
    /// `http://host:port`), node k holding shard k of every collection. A node may be a
    /// replica set (`--replica-id` nodes): its replicas' URLs joined by `|`; reads go to one
    /// replica (fewer outstanding of two drawn), writes to the leader the replicas name.
    /// Unset: the embedded single-process router.
    #[arg(long, env = "VR_CLUSTER_NODES", value_delimiter = ',')]
    pub cluster_nodes: Option<Vec<String>>,
    /// The API key the router presents to its nodes, when they want one.
    #[arg(long, env = "VR_CLUSTER_API_KEY", hide_env_values = true)]
    pub cluster_api_key: Option<String>,
    /// Cluster mode: a search or count some of whose nodes cannot answer answers from the
    /// others, marked partial (an `x-vector-router-partial` header and a `partial` field),
    /// instead of failing. Accepts `true`/`false`; bare means true. Default false.
    #[arg(long, env = "VR_CLUSTER_PARTIAL_ANSWERS", num_args = 0..=1,
          default_missing_value = "true", value_parser = clap::builder::BoolishValueParser::new())]
    pub cluster_partial_answers: Option<bool>,
    /// Cluster mode: the longest one call to a node may take, in milliseconds (within the
    /// request's own limit). Default: the request's limit.
    #[arg(long, env = "VR_CLUSTER_CALL_TIMEOUT_MS")]
    pub cluster_call_timeout_ms: Option<u64>,
    /// Cluster mode, nodes that are replica sets: a read a replica has not answered within
    /// this many milliseconds is sent to a second replica too, and the first answer wins.
    /// Default: off.
    #[arg(long, env = "VR_CLUSTER_HEDGE_AFTER_MS")]
    pub cluster_hedge_after_ms: Option<u64>,
    /// Cluster mode, nodes that are replica sets: hedge a read after this percentile (50 to
    /// 99.5) of the set's last 256 read latencies instead; --cluster-hedge-after-ms is then
    /// the shortest delay (default 1 ms). Default: off.
    #[arg(long, env = "VR_CLUSTER_HEDGE_PERCENTILE")]
    pub cluster_hedge_percentile: Option<f64>,
    /// Cluster mode: the points a resharding batch reads at once (each batch holds the
    /// collection's requests while it moves its points). Default 256.
    #[arg(long, env = "VR_CLUSTER_RESHARD_BATCH")]
    pub cluster_reshard_batch: Option<usize>,
    /// Replica mode: this node's id in its replica set (a Raft group; unique in the set,
    /// never reused). With it every write is a Raft entry, committed by a majority of the
    /// set before it is acknowledged. Unset: a node of its own.
    #[arg(long, env = "VR_REPLICA_ID")]
    pub replica_id: Option<u64>,
    /// Replica mode: log entries between snapshots of the whole storage (after which the
    /// log before the snapshot is dropped). Default 10000.
    #[arg(long, env = "VR_REPLICA_SNAPSHOT_ENTRIES")]
    pub replica_snapshot_entries: Option<u64>,
    /// Replica mode: the leader's heartbeat interval in milliseconds; a follower that hears
    /// none for 6.5 to 8 intervals starts an election. Default 100.
    #[arg(long, env = "VR_REPLICA_HEARTBEAT_MS")]
    pub replica_heartbeat_ms: Option<u64>,
    /// Replica mode: the set's first voters, `id=REST URL` joined by commas
    /// (`0=http://node-0:6333,1=http://node-1:6333,2=http://node-2:6333`), the same on each
    /// of them. A replica with no state yet forms the set with them at start (as
    /// `POST /cluster/replica/initialize` would), unless another member says it has a set
    /// already; one that has state ignores it; one the list does not name waits to be
    /// added. A replica that lost its disk asks the other voters for their votes before it
    /// rejoins (it must never grant a vote below one it gave and forgot).
    #[arg(long, env = "VR_REPLICA_INITIAL_MEMBERS")]
    pub replica_initial_members: Option<String>,
    /// Voters (ids, comma-separated) that a replica which lost its disk does not wait for
    /// when it rejoins: voters gone for good, or that lost their disks too. Each one left
    /// out is a vote this replica may have given and cannot recover; an operator's decision.
    #[arg(long, env = "VR_REPLICA_REJOIN_WITHOUT", value_delimiter = ',')]
    pub replica_rejoin_without: Option<Vec<u64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    #[serde(default)]
    service: FileService,
    #[serde(default)]
    storage: FileStorage,
    #[serde(default)]
    cache: FileCache,
    #[serde(default)]
    log: FileLog,
    #[serde(default)]
    tls: FileTls,
    #[serde(default)]
    cluster: FileCluster,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileCluster {
    nodes: Option<Vec<String>>,
    api_key: Option<String>,
    connections_per_node: Option<usize>,
    partial_answers: Option<bool>,
    call_timeout_ms: Option<u64>,
    reshard_batch: Option<usize>,
    hedge_after_ms: Option<u64>,
    hedge_percentile: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileTls {
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileService {
    host: Option<String>,
    http_port: Option<u16>,
    grpc_port: Option<u16>,
    api_key: Option<String>,
    read_only_api_key: Option<String>,
    max_request_size_mb: Option<u64>,
    max_concurrent_requests: Option<usize>,
    request_timeout_secs: Option<u64>,
    max_connections: Option<usize>,
    header_read_timeout_secs: Option<u64>,
    max_connections_per_address: Option<usize>,
    write_timeout_secs: Option<u64>,
    enable_tls: Option<bool>,
    search_threads: Option<usize>,
    shutdown_grace_secs: Option<u64>,
    max_snapshot_upload_mb: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileStorage {
    storage_path: Option<PathBuf>,
    snapshots_path: Option<PathBuf>,
    snapshot_allowed_hosts: Option<Vec<String>>,
    snapshot_ca_file: Option<PathBuf>,
    optimizer_nice: Option<i32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileCache {
    ttl_secs: Option<f64>,
    max_mb: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileLog {
    level: Option<String>,
    json: Option<bool>,
}

/// The most nodes a cluster lists (each search fans out to every one).
const MAX_CLUSTER_NODES: usize = 256;

/// The effective settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Where REST listens.
    pub addr: SocketAddr,
    /// Where gRPC listens (the REST host).
    pub grpc_addr: SocketAddr,
    /// The key every request but the health probes must present.
    pub api_key: Option<String>,
    /// A key that may read but not write.
    pub read_only_api_key: Option<String>,
    /// The directory of the collections.
    pub storage_path: PathBuf,
    /// The directory of the snapshots.
    pub snapshots_path: PathBuf,
    /// The largest request body read (`max_request_size_mb`).
    pub max_body_bytes: usize,
    /// Requests served at once; more are shed with 503.
    pub max_concurrent_requests: usize,
    /// How long a request may take before it answers 504 (Qdrant's `timeout`).
    pub request_timeout: Duration,
    /// Connection limits of the listener.
    pub listen: crate::listen::ListenLimits,
    /// (certificate chain, private key), PEM files, when REST is served over TLS.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Threads of the search pool.
    pub search_threads: usize,
    /// What background index builds add to their nice value.
    pub optimizer_nice: i32,
    /// The result cache.
    pub cache: cache::CacheConfig,
    /// The log filter (`info`, `router=debug`, ...).
    pub log_level: String,
    /// Whether log lines are JSON.
    pub log_json: bool,
    /// How long a shutdown waits for requests in flight.
    pub shutdown_grace: Duration,
    /// The largest snapshot file an upload may send.
    pub max_upload_bytes: u64,
    /// Lowercase `host` or `host:port` entries.
    pub snapshot_allowed_hosts: Vec<String>,
    /// Extra CA certificates snapshot downloads trust.
    pub snapshot_ca_file: Option<PathBuf>,
    /// A full snapshot restored before serving.
    pub storage_snapshot: Option<PathBuf>,
    /// Whether that restore replaces collections that exist.
    pub force_snapshot: bool,
    /// Cluster mode: the nodes holding the shards, and how they are reached.
    pub cluster: Option<ClusterSettings>,
    /// Replica mode: this node's place in its replica set.
    pub replica: Option<ReplicaSettings>,
}

/// A replica's settings (`--replica-id`).
#[derive(Debug, Clone)]
pub struct ReplicaSettings {
    /// Its id in the set.
    pub id: u64,
    /// Log entries between snapshots.
    pub snapshot_entries: u64,
    /// The heartbeat interval.
    pub heartbeat: Duration,
    /// The set's first voters (id and REST URL), when the set forms itself at start.
    pub initial_members: Option<std::collections::BTreeMap<u64, String>>,
    /// Voters a replica that lost its disk does not wait for (`--replica-rejoin-without`).
    pub rejoin_without: std::collections::BTreeSet<u64>,
}

/// Reads `--replica-initial-members` (`id=url,...`): 1 to 9 voters, each id once (this
/// replica may be missing: it then waits to be added).
fn parse_initial_members(list: &str) -> Result<std::collections::BTreeMap<u64, String>, String> {
    let mut members = std::collections::BTreeMap::new();
    for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (id, url) = item.split_once('=').ok_or_else(|| {
            format!("replica initial members: `{item}` is not id=http://host:port")
        })?;
        let id: u64 = id
            .trim()
            .parse()
            .map_err(|_| format!("replica initial members: `{id}` is not an id"))?;
        let url = url.trim();
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(format!(
                "replica initial members: `{url}` is not an http(s)://host:port URL"
            ));
        }
        if members.insert(id, url.to_string()).is_some() {
            return Err(format!("replica initial members: id {id} is listed twice"));
        }
    }
    if members.is_empty() || members.len() > 9 {
        return Err("replica initial members: between 1 and 9 voters".into());
    }
    Ok(members)
}

/// The nodes of a cluster-mode router.
#[derive(Debug, Clone)]
pub struct ClusterSettings {
    /// Each node's gRPC URL, in shard order.
    pub nodes: Vec<String>,
    /// Connections, timeouts and the key sent to the nodes.
    pub options: shard_router::NodeOptions,
    /// Whether reads answer partially when nodes cannot answer.
    pub partial_answers: bool,
    /// Points a resharding batch reads at once.
    pub reshard_batch: usize,
}

impl Settings {
    /// Merges flags/env over the file over defaults, and checks the result.
    pub fn resolve(args: Args) -> Result<Settings, String> {
        let file: FileConfig = match &args.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("config file {}: {e}", path.display()))?;
                toml::from_str(&text).map_err(|e| format!("config file {}: {e}", path.display()))?
            }
            None => FileConfig::default(),
        };
        let host = args
            .host
            .or(file.service.host)
            .unwrap_or_else(|| "127.0.0.1".into());
        let ip: IpAddr = host
            .parse()
            .map_err(|_| format!("host `{host}` is not an IP address"))?;
        let port = args.http_port.or(file.service.http_port).unwrap_or(6333);
        let api_key = args
            .api_key
            .or(file.service.api_key)
            .filter(|k| !k.is_empty());
        let read_only_api_key = args
            .read_only_api_key
            .or(file.service.read_only_api_key)
            .filter(|k| !k.is_empty());
        if !ip.is_loopback() && api_key.is_none() {
            return Err(format!(
                "refusing to bind {ip} (beyond loopback) without an API key: set --api-key or QDRANT__SERVICE__API_KEY"
            ));
        }
        if read_only_api_key.is_some() && api_key.is_none() {
            return Err("a read-only API key needs a full API key as well".into());
        }
        let max_mb = args
            .max_request_size_mb
            .or(file.service.max_request_size_mb)
            .unwrap_or(32);
        if max_mb == 0 || max_mb > 1024 {
            return Err(format!(
                "max_request_size_mb {max_mb} is not between 1 and 1024"
            ));
        }
        let concurrency = args
            .max_concurrent_requests
            .or(file.service.max_concurrent_requests)
            .unwrap_or(512);
        if concurrency == 0 {
            return Err("max_concurrent_requests must be at least 1".into());
        }
        let timeout = args
            .request_timeout_secs
            .or(file.service.request_timeout_secs)
            .unwrap_or(60);
        if timeout == 0 || timeout > 3600 {
            return Err(format!(
                "request_timeout_secs {timeout} is not between 1 and 3600"
            ));
        }
        // Descriptors kept for the storage's files (logs, graph files being written).
        let budget = crate::listen::descriptor_budget(256).unwrap_or(4096).max(1);
        let max_connections = match args.max_connections.or(file.service.max_connections) {
            None => budget.min(4096),
            Some(n) if n == 0 || n > 1_000_000 => {
                return Err(format!(
                    "max_connections {n} is not between 1 and 1000000"
                ))
            }
            Some(n) if n > budget => {
                return Err(format!(
                    "max_connections {n} is more than the open-file limit leaves room for ({budget}): raise `ulimit -n` or lower it"
                ))
            }
            Some(n) => n,
        };
        let header_timeout = args
            .header_read_timeout_secs
            .or(file.service.header_read_timeout_secs)
            .unwrap_or(30);
        if header_timeout == 0 || header_timeout > 3600 {
            return Err(format!(
                "header_read_timeout_secs {header_timeout} is not between 1 and 3600"
            ));
        }
        let per_address = match args
            .max_connections_per_address
            .or(file.service.max_connections_per_address)
        {
            None => (max_connections / 2).max(1),
            Some(n) if n == 0 || n > max_connections => {
                return Err(format!(
                    "max_connections_per_address {n} is not between 1 and max_connections ({max_connections})"
                ))
            }
            Some(n) => n,
        };
        let write_timeout = args
            .write_timeout_secs
            .or(file.service.write_timeout_secs)
            .unwrap_or(30);
        if write_timeout == 0 || write_timeout > 3600 {
            return Err(format!(
                "write_timeout_secs {write_timeout} is not between 1 and 3600"
            ));
        }
        let tls = if args.enable_tls.or(file.service.enable_tls).unwrap_or(false) {
            match (
                args.tls_cert.or(file.tls.cert),
                args.tls_key.or(file.tls.key),
            ) {
                (Some(cert), Some(key)) => Some((cert, key)),
                _ => {
                    return Err(
                        "TLS is enabled without both a certificate and a key: set --tls-cert and --tls-key (QDRANT__TLS__CERT, QDRANT__TLS__KEY)".into(),
                    )
                }
            }
        } else {
            None
        };
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let search_threads = args
            .search_threads
            .or(file.service.search_threads)
            .unwrap_or(cores);
        if search_threads == 0 || search_threads > 1024 {
            return Err(format!(
                "search_threads {search_threads} is not between 1 and 1024"
            ));
        }
        let optimizer_nice = args
            .optimizer_nice
            .or(file.storage.optimizer_nice)
            .unwrap_or(storage::priority::DEFAULT_BACKGROUND_NICE);
        if !(0..=19).contains(&optimizer_nice) {
            return Err(format!(
                "optimizer_nice {optimizer_nice} is not between 0 and 19"
            ));
        }
        // In cluster mode the cache is off unless asked for: writes made through another
        // coordinator (or to a node directly) do not invalidate this one's answers.
        let in_cluster = args.cluster_nodes.is_some() || file.cluster.nodes.is_some();
        let ttl = args
            .cache_ttl_secs
            .or(file.cache.ttl_secs)
            .unwrap_or(if in_cluster { 0.0 } else { 60.0 });
        if !(ttl.is_finite() && ttl >= 0.0) {
            return Err(format!("cache ttl {ttl} is not a number of seconds"));
        }
        let cache = cache::CacheConfig {
            enabled: ttl > 0.0,
            ttl: Duration::from_secs_f64(ttl.max(0.001)),
            max_bytes: args.cache_max_mb.or(file.cache.max_mb).unwrap_or(64) << 20,
        };
        if cache.enabled {
            cache.validate().map_err(|e| format!("cache: {e}"))?;
        }
        let upload_mb = args
            .max_snapshot_upload_mb
            .or(file.service.max_snapshot_upload_mb)
            .unwrap_or(65_536);
        if upload_mb == 0 || upload_mb > (1 << 24) {
            return Err(format!(
                "max_snapshot_upload_mb {upload_mb} is not between 1 and {}",
                1 << 24
            ));
        }
        let allowed_hosts: Vec<String> = args
            .snapshot_allowed_hosts
            .or(file.storage.snapshot_allowed_hosts)
            .unwrap_or_default()
            .into_iter()
            .map(|h| h.trim().to_ascii_lowercase())
            .filter(|h| !h.is_empty())
            .collect();
        if let Some(h) = allowed_hosts
            .iter()
            .find(|h| h.contains('/') || h.contains('@') || h.contains('*'))
        {
            return Err(format!(
                "snapshot_allowed_hosts: `{h}` is not a host or host:port"
            ));
        }
        let call_timeout_ms = args
            .cluster_call_timeout_ms
            .or(file.cluster.call_timeout_ms);
        if let Some(ms) = call_timeout_ms {
            if !(1..=3_600_000).contains(&ms) {
                return Err(format!(
                    "cluster call_timeout_ms {ms} is not between 1 and 3600000"
                ));
            }
        }
        let partial_asked = args
            .cluster_partial_answers
            .or(file.cluster.partial_answers);
        let reshard_batch = args.cluster_reshard_batch.or(file.cluster.reshard_batch);
        if let Some(b) = reshard_batch {
            if !(1..=10_000).contains(&b) {
                return Err(format!(
                    "cluster reshard_batch {b} is not between 1 and 10000"
                ));
            }
        }
        let replica = match args.replica_id {
            None => {
                if args.replica_snapshot_entries.is_some()
                    || args.replica_heartbeat_ms.is_some()
                    || args.replica_initial_members.is_some()
                    || args.replica_rejoin_without.is_some()
                {
                    return Err("replica settings need a replica id (--replica-id)".into());
                }
                None
            }
            Some(_) if args.storage_snapshot.is_some() => {
                return Err(
                    "a replica (--replica-id) restores snapshots through its replica set, not \
                     --storage-snapshot"
                        .into(),
                )
            }
            Some(_) if args.cluster_nodes.is_some() || file.cluster.nodes.is_some() => {
                return Err(
                    "a node is a replica (--replica-id) or a cluster router (--cluster-nodes), \
                     not both"
                        .into(),
                )
            }
            Some(id) => {
                let snapshot_entries = args.replica_snapshot_entries.unwrap_or(10_000);
                if !(100..=100_000_000).contains(&snapshot_entries) {
                    return Err(format!(
                        "replica snapshot_entries {snapshot_entries} is not between 100 and 100000000"
                    ));
                }
                let heartbeat_ms = args.replica_heartbeat_ms.unwrap_or(100);
                if !(20..=10_000).contains(&heartbeat_ms) {
                    return Err(format!(
                        "replica heartbeat_ms {heartbeat_ms} is not between 20 and 10000"
                    ));
                }
                let initial_members = match &args.replica_initial_members {
                    None => None,
                    Some(list) => Some(parse_initial_members(list)?),
                };
                if args.replica_rejoin_without.is_some() && initial_members.is_none() {
                    return Err(
                        "--replica-rejoin-without applies to a replica rejoining its initial \
                         members (--replica-initial-members)"
                            .into(),
                    );
                }
                Some(ReplicaSettings {
                    id,
                    snapshot_entries,
                    heartbeat: Duration::from_millis(heartbeat_ms),
                    initial_members,
                    rejoin_without: args
                        .replica_rejoin_without
                        .clone()
                        .unwrap_or_default()
                        .into_iter()
                        .collect(),
                })
            }
        };
        let hedge_after_ms = args.cluster_hedge_after_ms.or(file.cluster.hedge_after_ms);
        let hedge_percentile = args
            .cluster_hedge_percentile
            .or(file.cluster.hedge_percentile);
        if let Some(ms) = hedge_after_ms {
            if !(1..=60_000).contains(&ms) {
                return Err(format!(
                    "cluster hedge_after_ms {ms} is not between 1 and 60000"
                ));
            }
        }
        if let Some(p) = hedge_percentile {
            // Below the median most reads would be sent twice; above 99.5 the "percentile"
            // of 256 samples is their maximum, one outlier.
            if !(50.0..=99.5).contains(&p) {
                return Err(format!(
                    "cluster hedge_percentile {p} is not between 50 and 99.5"
                ));
            }
        }
        let hedge = match (hedge_percentile, hedge_after_ms) {
            (Some(percentile), floor) => Some(shard_router::remote::replicas::Hedge::Percentile {
                percentile,
                floor: Duration::from_millis(floor.unwrap_or(1)),
            }),
            (None, Some(ms)) => Some(shard_router::remote::replicas::Hedge::After(
                Duration::from_millis(ms),
            )),
            (None, None) => None,
        };
        let cluster = match args.cluster_nodes.or(file.cluster.nodes) {
            None if partial_asked.is_some()
                || hedge.is_some()
                || call_timeout_ms.is_some()
                || reshard_batch.is_some() =>
            {
                return Err(
                    "cluster partial answers, call timeout, hedging and reshard batch need \
                     cluster nodes (--cluster-nodes)"
                        .into(),
                )
            }
            None => None,
            Some(nodes) => {
                // A replica set's members are cleaned one by one.
                let nodes: Vec<String> = nodes
                    .into_iter()
                    .map(|n| {
                        n.split('|')
                            .map(|m| m.trim().trim_end_matches('/'))
                            .filter(|m| !m.is_empty())
                            .collect::<Vec<_>>()
                            .join("|")
                    })
                    .filter(|n| !n.is_empty())
                    .collect();
                if nodes.is_empty() {
                    return Err("cluster nodes: the list is empty".into());
                }
                for n in &nodes {
                    let members: Vec<&str> = n.split('|').collect();
                    let distinct: std::collections::HashSet<&&str> = members.iter().collect();
                    if distinct.len() != members.len() {
                        return Err(format!("cluster node {n}: a replica is listed twice"));
                    }
                }
                if nodes.len() > MAX_CLUSTER_NODES {
                    return Err(format!(
                        "cluster nodes: {} listed, at most {MAX_CLUSTER_NODES}",
                        nodes.len()
                    ));
                }
                let connections = file.cluster.connections_per_node.unwrap_or(2);
                if !(1..=64).contains(&connections) {
                    return Err(format!(
                        "cluster connections_per_node {connections} is not between 1 and 64"
                    ));
                }
                Some(ClusterSettings {
                    partial_answers: partial_asked.unwrap_or(false),
                    reshard_batch: reshard_batch
                        .unwrap_or(shard_router::remote::DEFAULT_RESHARD_BATCH),
                    nodes,
                    options: shard_router::NodeOptions {
                        connections,
                        connect_timeout: Duration::from_secs(2),
                        api_key: args
                            .cluster_api_key
                            .or(file.cluster.api_key)
                            .filter(|k| !k.is_empty()),
                        call_timeout: call_timeout_ms.map(Duration::from_millis),
                        hedge,
                    },
                })
            }
        };
        Ok(Settings {
            addr: SocketAddr::new(ip, port),
            // A REST port picked free (tests, side-by-side servers) picks the gRPC one free too,
            // so that two such servers never contend for 6334.
            grpc_addr: SocketAddr::new(
                ip,
                args.grpc_port
                    .or(file.service.grpc_port)
                    .unwrap_or(if port == 0 { 0 } else { 6334 }),
            ),
            api_key,
            read_only_api_key,
            storage_path: args
                .storage_path
                .or(file.storage.storage_path)
                .unwrap_or_else(|| "./storage".into()),
            snapshots_path: args
                .snapshots_path
                .or(file.storage.snapshots_path)
                .unwrap_or_else(|| "./snapshots".into()),
            max_body_bytes: (max_mb << 20) as usize,
            max_concurrent_requests: concurrency,
            request_timeout: Duration::from_secs(timeout),
            listen: crate::listen::ListenLimits {
                max_connections,
                max_connections_per_address: per_address,
                header_read_timeout: Duration::from_secs(header_timeout),
                write_timeout: Duration::from_secs(write_timeout),
            },
            tls,
            search_threads,
            optimizer_nice,
            cache,
            log_level: args
                .log_level
                .or(file.log.level)
                .unwrap_or_else(|| "info".into()),
            log_json: args.log_json || file.log.json.unwrap_or(false),
            shutdown_grace: Duration::from_secs(
                args.shutdown_grace_secs
                    .or(file.service.shutdown_grace_secs)
                    .unwrap_or(30),
            ),
            max_upload_bytes: upload_mb << 20,
            snapshot_allowed_hosts: allowed_hosts,
            snapshot_ca_file: args.snapshot_ca_file.or(file.storage.snapshot_ca_file),
            storage_snapshot: args.storage_snapshot,
            force_snapshot: args.force_snapshot,
            cluster,
            replica,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::parse_initial_members;

    #[test]
    fn initial_members_are_read_and_checked() {
        let m = parse_initial_members("0=http://a:6333, 1=http://b:6333,2=https://c:6333").unwrap();
        assert_eq!(m.len(), 3);
        assert_eq!(m[&2], "https://c:6333");
        for (list, error) in [
            ("0=http://a:6333,0=http://b:6333", "listed twice"),
            ("0=a:6333", "not an http(s)"),
            ("x=http://a:6333", "not an id"),
            ("http://a:6333", "not id="),
            ("", "between 1 and 9"),
        ] {
            let e = parse_initial_members(list).unwrap_err();
            assert!(e.contains(error), "{list}: {e}");
        }
        let ten: Vec<String> = (0..10).map(|i| format!("{i}=http://n{i}:6333")).collect();
        assert!(parse_initial_members(&ten.join(","))
            .unwrap_err()
            .contains("between 1 and 9"));
    }
}
