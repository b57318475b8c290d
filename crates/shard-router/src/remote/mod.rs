//! Remote shards: a collection held on other nodes (our own routers, or Qdrant servers),
//! reached through Qdrant's gRPC API with the client messages the `qdrant-client` crate
//! generates, on tonic.
//!
//! A [`Node`] is one server: a small pool of HTTP/2 channels (each multiplexes many calls; a
//! few keep one slow stream from holding up the rest), an optional API key, and whether it
//! answered its last call or health probe. A [`RemoteShard`] is one collection on one node,
//! behind the same [`Shard`] trait as a local shard, so the fan-out, merge and re-rank do not
//! change. Writes go through [`RemoteShard::write`], with the part of an update that lands
//! on that shard ([`split_update`] cuts it by each id's shard).
//!
//! Every call carries the request's deadline (as gRPC's `grpc-timeout`, so the node stops
//! too) and is abandoned when it passes. A search is encoded once per request, not once per
//! shard: the shards of a collection share the last message they built ([`EncodedQuery`]).

mod cluster;
pub mod keys;
pub mod regions;
pub mod replicas;
pub mod wire;

pub use cluster::{
    gate_scope, key_config, key_marker, not_keyed, shard_marker, Cluster, ClusterCollectionState,
    Direction, Drained, FoundKey, GateGuard, HashLayout, KeyScan, NewKey, PlacementError,
    ReshardProgress, Resharding, ShardMarker, ShardTemplate, DEFAULT_RESHARD_BATCH, SHARD_MARKER,
};

use crate::{OrderedScrollRequest, RetrieveRequest, ScrollRequest, Shard, ShardAnswer, ShardError};
use futures::future::BoxFuture;
use index_core::PointId;
use payload::Filter;
use qdrant_client::qdrant as pb;
use qdrant_client::qdrant::collections_client::CollectionsClient;
use qdrant_client::qdrant::points_client::PointsClient;
use qdrant_client::qdrant::qdrant_client::QdrantClient;
use quant::Metric;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};
use storage::{Query, Record, ScoredPoint, ScrollPage, SearchRequest, Update, VectorSelector};
use tonic::transport::Endpoint;

/// Where a point lives among a collection's shards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// The rule a local collection places its points by ([`storage::shard_of`]).
    Local,
    /// Jump consistent hashing of the id ([`jump_shard_of`]): adding a shard moves about
    /// 1/n of the points. Cluster collections are placed so.
    Jump,
    /// Any shard may hold the id (the shards of several shard keys, each placing its own
    /// points): a point is looked for on every shard.
    Any,
}

impl Placement {
    /// The shard of `id` among `n`; `None` when any may hold it ([`Placement::Any`]).
    pub fn shard_of(self, id: &PointId, n: usize) -> Option<usize> {
        match self {
            Placement::Local => Some(storage::shard_of(id, n)),
            Placement::Jump => Some(jump_shard_of(id, n)),
            Placement::Any => None,
        }
    }
}

/// The shard of `id` among `n` by jump consistent hashing (Lamping and Veach, 2014) of the
/// id's 64-bit mix: when `n` grows by one, each point moves to the new shard with
/// probability 1/(n+1) and otherwise stays.
pub fn jump_shard_of(id: &PointId, n: usize) -> usize {
    let mut key = match *id {
        PointId::Num(x) => x,
        PointId::Uuid(u) => (u as u64) ^ ((u >> 64) as u64).rotate_left(17),
    };
    // splitmix64's finaliser first: sequential ids would otherwise share their low bits.
    key = key.wrapping_add(0x9e37_79b9_7f4a_7c15);
    key = (key ^ (key >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    key = (key ^ (key >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    key ^= key >> 31;
    let (mut b, mut j): (i64, i64) = (-1, 0);
    while j < n.max(1) as i64 {
        b = j;
        key = key.wrapping_mul(2_862_933_555_777_941_757).wrapping_add(1);
        j = ((b + 1) as f64 * ((1u64 << 31) as f64 / ((key >> 33) + 1) as f64)) as i64;
    }
    b as usize
}

/// How a node is reached.
#[derive(Debug, Clone)]
pub struct NodeOptions {
    /// HTTP/2 connections kept to the node.
    pub connections: usize,
    /// How long connecting may take.
    pub connect_timeout: Duration,
    /// Sent as `api-key` with every call, when the node wants one.
    pub api_key: Option<String>,
    /// The longest one call may take, when shorter than what is left of its request's time:
    /// a node that hangs is then given up on in time for a partial answer.
    pub call_timeout: Option<Duration>,
    /// A node that is a replica set: when a read its first replica has not answered is sent
    /// to a second one too (the first answer wins). `None`: no second request.
    pub hedge: Option<replicas::Hedge>,
}

impl Default for NodeOptions {
    fn default() -> NodeOptions {
        NodeOptions {
            connections: 2,
            connect_timeout: Duration::from_secs(2),
            api_key: None,
            call_timeout: None,
            hedge: None,
        }
    }
}

/// One server holding shards: its gRPC channels and its health.
pub struct Node {
    url: String,
    /// The node's connections (a replica set's: each replica's, behind one service).
    set: replicas::ReplicaSet,
    api_key: Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>,
    call_timeout: Option<Duration>,
    up: AtomicBool,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node").field("url", &self.url).finish()
    }
}

impl Node {
    /// A node at `url` (`http://host:port`, its gRPC port), or a replica set of nodes
    /// (`http://a:port|http://b:port|...`, see [`replicas`]). Connections are made when
    /// first used and remade after a failure, so a node that was down is used again once it
    /// is back; [`Node::probe`] checks it now.
    pub fn new(url: &str, options: &NodeOptions) -> Result<Node, String> {
        let mut members = Vec::new();
        for member in url.split('|') {
            let endpoint = Endpoint::from_shared(member.to_string())
                .map_err(|e| format!("node `{member}`: not a URL: {e}"))?
                .connect_timeout(options.connect_timeout)
                .tcp_nodelay(true)
                .http2_keep_alive_interval(Duration::from_secs(10))
                .keep_alive_timeout(Duration::from_secs(5))
                .keep_alive_while_idle(true);
            if endpoint.uri().scheme_str() != Some("http") {
                return Err(format!(
                    "node `{member}`: only `http://` node URLs are served (TLS to nodes is not yet)"
                ));
            }
            let channels = (0..options.connections.max(1))
                .map(|_| endpoint.connect_lazy())
                .collect();
            members.push((member.to_string(), channels));
        }
        let api_key = match &options.api_key {
            Some(k) => Some(
                k.parse()
                    .map_err(|_| format!("node `{url}`: the API key is not a header value"))?,
            ),
            None => None,
        };
        Ok(Node {
            url: url.to_string(),
            set: replicas::ReplicaSet::new(members, options.hedge),
            api_key,
            call_timeout: options.call_timeout,
            up: AtomicBool::new(true),
        })
    }

    /// Its URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Whether its last call or probe was answered (a refusal counts as an answer).
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    fn channel(&self) -> replicas::ReplicaSet {
        self.set.clone()
    }

    /// A replica set's replicas (the node itself when it is not one), each with its
    /// standing and counts.
    pub fn replicas(&self) -> Vec<replicas::ReplicaStats> {
        self.set.stats()
    }

    /// Reads hedged to a second replica of this node's set.
    pub fn hedged_reads(&self) -> u64 {
        self.set.hedged_reads()
    }

    /// A read's deadline: the request's, or sooner by the call timeout. Writes and
    /// collection changes keep the request's whole time: giving up on them early would leave
    /// them applied on the node but unanswered.
    fn cap(&self, deadline: Instant) -> Instant {
        match self.call_timeout {
            Some(t) => deadline.min(Instant::now() + t),
            None => deadline,
        }
    }

    fn request<T>(&self, message: T, deadline: Instant) -> tonic::Request<T> {
        let mut r = tonic::Request::new(message);
        r.set_timeout(deadline.saturating_duration_since(Instant::now()));
        if let Some(k) = &self.api_key {
            r.metadata_mut().insert("api-key", k.clone());
        }
        r
    }

    /// Runs one call under the deadline, noting whether the node answered.
    async fn call<T, F>(&self, shard: u32, deadline: Instant, call: F) -> Result<T, ShardError>
    where
        F: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let answer = tokio::time::timeout_at(deadline.into(), call).await;
        let result = match answer {
            Err(_) => Err(ShardError::Timeout { shard }),
            Ok(Ok(r)) => Ok(r.into_inner()),
            Ok(Err(status)) => Err(status_error(shard, &self.url, status)),
        };
        let answered = !matches!(
            result,
            Err(ShardError::Unavailable { .. } | ShardError::Timeout { .. })
        );
        self.up.store(answered, Ordering::Relaxed);
        result
    }

    /// Asks the node whether it serves (Qdrant's `HealthCheck`), and records the answer.
    pub async fn probe(&self, timeout: Duration) -> Result<String, ShardError> {
        let deadline = Instant::now() + timeout;
        let mut client = QdrantClient::new(self.channel());
        let reply = self
            .call(
                0,
                deadline,
                client.health_check(self.request(pb::HealthCheckRequest {}, deadline)),
            )
            .await?;
        Ok(reply.version)
    }

    fn points(&self) -> PointsClient<replicas::ReplicaSet> {
        PointsClient::new(self.channel()).max_decoding_message_size(MAX_ANSWER_BYTES)
    }

    fn collections(&self) -> CollectionsClient<replicas::ReplicaSet> {
        CollectionsClient::new(self.channel())
    }

    /// The names of the node's collections.
    pub async fn list_collections(&self, deadline: Instant) -> Result<Vec<String>, ShardError> {
        let mut c = self.collections();
        let answer = self
            .call(
                0,
                deadline,
                c.list(self.request(pb::ListCollectionsRequest {}, deadline)),
            )
            .await?;
        Ok(answer.collections.into_iter().map(|d| d.name).collect())
    }

    /// The node's description of a collection (status, counts).
    pub async fn collection_info(
        &self,
        name: &str,
        deadline: Instant,
    ) -> Result<pb::CollectionInfo, ShardError> {
        let mut c = self.collections();
        let message = pb::GetCollectionInfoRequest {
            collection_name: name.to_string(),
        };
        let answer = self
            .call(0, deadline, c.get(self.request(message, deadline)))
            .await?;
        answer.result.ok_or_else(|| ShardError::Failed {
            shard: 0,
            reason: format!(
                "node {}: a collection description without a result",
                self.url
            ),
        })
    }

    /// Creates a collection on the node.
    pub async fn create_collection(
        &self,
        message: pb::CreateCollection,
        deadline: Instant,
    ) -> Result<(), ShardError> {
        let mut c = self.collections();
        self.call(0, deadline, c.create(self.request(message, deadline)))
            .await
            .map(|_| ())
    }

    /// Merges `metadata` into a collection's metadata on the node (a key set to null goes).
    pub async fn update_metadata(
        &self,
        name: &str,
        metadata: HashMap<String, pb::Value>,
        deadline: Instant,
    ) -> Result<(), ShardError> {
        let mut c = self.collections();
        let message = pb::UpdateCollection {
            collection_name: name.to_string(),
            metadata,
            ..Default::default()
        };
        self.call(0, deadline, c.update(self.request(message, deadline)))
            .await
            .map(|_| ())
    }

    /// Deletes a collection from the node; whether it was there.
    pub async fn delete_collection(
        &self,
        name: &str,
        deadline: Instant,
    ) -> Result<bool, ShardError> {
        let mut c = self.collections();
        let message = pb::DeleteCollection {
            collection_name: name.to_string(),
            timeout: None,
        };
        self.call(0, deadline, c.delete(self.request(message, deadline)))
            .await
            .map(|r| r.result)
    }

    /// Creates a payload index on the node's collection, waiting for it.
    pub async fn create_field_index(
        &self,
        collection: &str,
        field: &str,
        field_type: pb::FieldType,
        deadline: Instant,
    ) -> Result<(), ShardError> {
        let mut p = self.points();
        let message = pb::CreateFieldIndexCollection {
            collection_name: collection.to_string(),
            wait: Some(true),
            field_name: field.to_string(),
            field_type: Some(field_type as i32),
            field_index_params: None,
            ordering: None,
            timeout: None,
        };
        self.call(
            0,
            deadline,
            p.create_field_index(self.request(message, deadline)),
        )
        .await
        .map(|_| ())
    }

    /// Drops a payload index on the node's collection, waiting for it.
    pub async fn delete_field_index(
        &self,
        collection: &str,
        field: &str,
        deadline: Instant,
    ) -> Result<(), ShardError> {
        let mut p = self.points();
        let message = pb::DeleteFieldIndexCollection {
            collection_name: collection.to_string(),
            wait: Some(true),
            field_name: field.to_string(),
            ordering: None,
            timeout: None,
        };
        self.call(
            0,
            deadline,
            p.delete_field_index(self.request(message, deadline)),
        )
        .await
        .map(|_| ())
    }
}

/// The largest answer read from a node: a page of large vectors with payloads.
const MAX_ANSWER_BYTES: usize = 256 << 20;

tokio::task_local! {
    /// The read consistency the request being served asked for (Qdrant's `consistency`),
    /// carried to every node its reads reach. A task-local rather than an argument: the
    /// [`Shard`] calls are the same for local shards, to which a consistency means nothing,
    /// and the level is the whole request's, set once where the request is read.
    static READ_CONSISTENCY: Option<pb::ReadConsistency>;
}

/// Runs `read` (a request's reads, on this task) asking every node it reaches for `level`:
/// a node that is a replica set of ours then answers only after its read barrier
/// (linearizable); a Qdrant cluster reads from as many of its replicas as the level says.
pub async fn with_read_consistency<F: std::future::Future>(
    level: Option<pb::ReadConsistency>,
    read: F,
) -> F::Output {
    READ_CONSISTENCY.scope(level, read).await
}

/// The level set by [`with_read_consistency`] around the current task; `None` outside it.
pub fn read_consistency() -> Option<pb::ReadConsistency> {
    READ_CONSISTENCY.try_with(|l| *l).ok().flatten()
}

/// Qdrant's REST `consistency` parameter (`majority`, `quorum`, `all`, or a number of
/// replicas) as gRPC carries it.
pub fn parse_read_consistency(text: &str) -> Result<pb::ReadConsistency, String> {
    use pb::read_consistency::Value;
    let value = match text {
        "majority" => Value::Type(pb::ReadConsistencyType::Majority as i32),
        "quorum" => Value::Type(pb::ReadConsistencyType::Quorum as i32),
        "all" => Value::Type(pb::ReadConsistencyType::All as i32),
        n => match n.parse::<u64>() {
            Ok(n) if n >= 1 => Value::Factor(n),
            _ => {
                return Err(format!(
                    "consistency `{text}`: expected majority, quorum, all or a number of \
                     replicas of at least 1"
                ))
            }
        },
    };
    Ok(pb::ReadConsistency { value: Some(value) })
}

/// Whether `level`, as a gRPC message carries it, is one Qdrant reads by: a known type, or
/// a factor of at least 1.
pub fn check_read_consistency(level: &pb::ReadConsistency) -> Result<(), String> {
    use pb::read_consistency::Value;
    match level.value {
        None => Ok(()),
        Some(Value::Type(t)) if pb::ReadConsistencyType::try_from(t).is_ok() => Ok(()),
        Some(Value::Type(t)) => Err(format!("read_consistency: unknown type {t}")),
        Some(Value::Factor(0)) => Err("read_consistency: a factor of at least 1".to_string()),
        Some(Value::Factor(_)) => Ok(()),
    }
}

/// Whether `level` asks more than one replica's own state: such a read waits for a replica
/// set's read barrier. A factor of 1, or no level, reads whatever the replica asked holds.
pub fn is_strong_read(level: Option<&pb::ReadConsistency>) -> bool {
    use pb::read_consistency::Value;
    match level.and_then(|l| l.value) {
        None => false,
        Some(Value::Type(_)) => true,
        Some(Value::Factor(n)) => n > 1,
    }
}

/// A gRPC status as a shard error: the node refused (a 4xx in REST terms), could not be
/// reached, or failed.
fn status_error(shard: u32, url: &str, s: tonic::Status) -> ShardError {
    use tonic::Code;
    // A status with a source was made here, from the connection's failure (a node killed
    // with the call in flight answers "transport error", code Unknown), not sent by the
    // node: the node is unreachable, which a partial answer may leave out.
    if std::error::Error::source(&s).is_some() && s.code() != Code::DeadlineExceeded {
        return ShardError::Unavailable {
            shard,
            reason: format!("node {url}: {}", s.message()),
        };
    }
    let status = match s.code() {
        Code::InvalidArgument | Code::OutOfRange | Code::FailedPrecondition => 400,
        Code::NotFound => 404,
        Code::AlreadyExists => 409,
        Code::Unauthenticated | Code::PermissionDenied => {
            // The node refused the router's key: a configuration fault, not the client's.
            return ShardError::Unavailable {
                shard,
                reason: format!(
                    "node {url} refused the router's credentials: {}",
                    s.message()
                ),
            };
        }
        Code::DeadlineExceeded => return ShardError::Timeout { shard },
        Code::Unavailable | Code::Cancelled | Code::ResourceExhausted | Code::Aborted => {
            return ShardError::Unavailable {
                shard,
                reason: format!("node {url}: {}", s.message()),
            }
        }
        Code::Unimplemented => 501,
        _ => {
            return ShardError::Failed {
                shard,
                reason: format!("node {url}: {}", s.message()),
            }
        }
    };
    ShardError::Refused {
        shard,
        status,
        reason: s.message().to_string(),
    }
}

fn unreadable(shard: u32, url: &str, e: String) -> ShardError {
    ShardError::Failed {
        shard,
        reason: format!("node {url}: {e}"),
    }
}

/// A filter as gRPC's, or the request's fault naming what cannot be carried.
fn filter_pb(shard: u32, f: Option<&Filter>) -> Result<Option<pb::Filter>, ShardError> {
    f.map(wire::filter)
        .transpose()
        .map_err(|e| bad_request(shard, e))
}

fn bad_request(shard: u32, e: String) -> ShardError {
    ShardError::Refused {
        shard,
        status: 400,
        reason: format!("Bad request: {e}"),
    }
}

/// The query message of the last search, shared by a collection's remote shards so that a
/// request sent to n shards is encoded once: the first shard to see a request builds its
/// message, the others reuse it (the weak reference keeps the request's address from being
/// reused while it is remembered).
#[derive(Default)]
pub struct EncodedQuery {
    last: Mutex<Option<(Weak<SearchRequest>, Arc<pb::QueryPoints>)>>,
}

impl EncodedQuery {
    fn get_or_encode(
        &self,
        req: &Arc<SearchRequest>,
        encode: impl FnOnce() -> Result<pb::QueryPoints, String>,
    ) -> Result<Arc<pb::QueryPoints>, String> {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((seen, message)) = last.as_ref() {
            if Weak::ptr_eq(seen, &Arc::downgrade(req)) && seen.strong_count() > 0 {
                return Ok(message.clone());
            }
        }
        let message = Arc::new(encode()?);
        *last = Some((Arc::downgrade(req), message.clone()));
        Ok(message)
    }
}

/// One collection on one node, as a shard.
pub struct RemoteShard {
    node: Arc<Node>,
    collection: String,
    shard: u32,
    /// Each dense vector's metric, to turn the node's scores back into distances.
    metrics: Arc<HashMap<String, Metric>>,
    encoded: Arc<EncodedQuery>,
    placement: Placement,
}

impl RemoteShard {
    /// Shard `shard` of a collection: `collection` on `node`. `metrics` gives each dense
    /// vector's metric; `encoded` is shared by the collection's shards.
    pub fn new(
        node: Arc<Node>,
        collection: &str,
        shard: u32,
        metrics: Arc<HashMap<String, Metric>>,
        encoded: Arc<EncodedQuery>,
    ) -> RemoteShard {
        RemoteShard {
            node,
            collection: collection.to_string(),
            shard,
            metrics,
            encoded,
            placement: Placement::Jump,
        }
    }

    /// The shard, placed by `placement` among the shards it is searched with.
    pub fn with_placement(self, placement: Placement) -> RemoteShard {
        RemoteShard { placement, ..self }
    }

    /// The node.
    pub fn node(&self) -> &Arc<Node> {
        &self.node
    }

    fn encode_search(&self, req: &SearchRequest) -> Result<pb::QueryPoints, String> {
        use pb::query::Variant as Q;
        let nearest = |input| Q::Nearest(input);
        let variant = match &req.query {
            Query::Nearest(v) => nearest(wire::dense_input(v)),
            Query::Examples(ex) => wire::examples_query(ex, |v| wire::dense_input(v)),
            Query::Sparse(s) => nearest(wire::sparse_input(s)),
            Query::SparseExamples(ex) => wire::examples_query(ex, wire::sparse_input),
            Query::Multi(m) => nearest(wire::multi_input(m)),
            Query::MultiExamples(ex) => wire::examples_query(ex, wire::multi_input),
        };
        let p = &req.params;
        if p.ivf_nprobe.is_some() {
            return Err("`ivf_nprobe` cannot be sent to a remote shard".into());
        }
        let mut filter = req.filter.as_deref().cloned();
        if let Some(ids) = &req.candidates {
            // Only these points, each scored exactly.
            let only = Filter::has_id(ids.iter().copied());
            filter = Some(match filter {
                Some(f) => f.merged(&only),
                None => only,
            });
        }
        let quantization = (p.rescore.is_some() || p.oversampling.is_some()).then(|| {
            pb::QuantizationSearchParams {
                ignore: None,
                rescore: p.rescore,
                oversampling: p.oversampling.map(f64::from),
            }
        });
        let score_threshold = p.max_distance.map(|d| self.score_of(req, d));
        Ok(pb::QueryPoints {
            collection_name: self.collection.clone(),
            query: Some(pb::Query {
                variant: Some(variant),
            }),
            using: (!req.vector_name.is_empty()).then(|| req.vector_name.clone()),
            filter: filter.as_ref().map(wire::filter).transpose()?,
            params: Some(pb::SearchParams {
                hnsw_ef: p.hnsw_ef.map(|e| e as u64),
                exact: Some(p.exact || req.candidates.is_some()),
                quantization,
                ..Default::default()
            }),
            score_threshold,
            limit: Some(p.limit as u64),
            with_vectors: Some(wire::with_vectors(&req.with_vector)),
            with_payload: Some(wire::with_payload(&req.with_payload)),
            ..Default::default()
        })
    }

    /// The metric a nearest query is measured by, dense or by a matrix (whose hits carry the
    /// metric's distance of their MaxSim sum, as local shards answer them); `None` for the
    /// queries whose score is a similarity (examples, sparse), whose distance is the negated
    /// score.
    fn metric_of(&self, req: &SearchRequest) -> Option<Metric> {
        match req.query {
            Query::Nearest(_) | Query::Multi(_) => self.metrics.get(&req.vector_name).copied(),
            _ => None,
        }
    }

    fn score_of(&self, req: &SearchRequest, distance: f32) -> f32 {
        match self.metric_of(req) {
            Some(m) => m.score(distance),
            None => -distance,
        }
    }

    /// Applies the part of an update that lands on this shard; the node's operation id.
    pub fn write(
        &self,
        update: Update,
        wait: bool,
        deadline: Instant,
    ) -> BoxFuture<'static, Result<u64, ShardError>> {
        let node = self.node.clone();
        let shard = self.shard;
        let name = self.collection.clone();
        Box::pin(async move {
            let mut p = node.points();
            let w = Some(wait);
            let selector =
                |s: &storage::PointSelector| wire::selector(s).map_err(|e| bad_request(shard, e));
            let answer = match update {
                Update::Upsert(points) => {
                    let m = pb::UpsertPoints {
                        collection_name: name,
                        wait: w,
                        points: points.iter().map(wire::point).collect(),
                        ..Default::default()
                    };
                    node.call(shard, deadline, p.upsert(node.request(m, deadline)))
                        .await?
                }
                Update::ConditionalUpsert {
                    points,
                    mode,
                    filter,
                } => {
                    let m = pb::UpsertPoints {
                        collection_name: name,
                        wait: w,
                        points: points.iter().map(wire::point).collect(),
                        update_filter: filter_pb(shard, filter.as_deref())?,
                        update_mode: Some(match mode {
                            storage::UpsertMode::Upsert => pb::UpdateMode::Upsert,
                            storage::UpsertMode::InsertOnly => pb::UpdateMode::InsertOnly,
                            storage::UpsertMode::UpdateOnly => pb::UpdateMode::UpdateOnly,
                        } as i32),
                        ..Default::default()
                    };
                    node.call(shard, deadline, p.upsert(node.request(m, deadline)))
                        .await?
                }
                Update::Delete(s) => {
                    let m = pb::DeletePoints {
                        collection_name: name,
                        wait: w,
                        points: Some(selector(&s)?),
                        ..Default::default()
                    };
                    node.call(shard, deadline, p.delete(node.request(m, deadline)))
                        .await?
                }
                Update::SetPayload {
                    payload,
                    selector: s,
                    key,
                } => {
                    let m = pb::SetPayloadPoints {
                        collection_name: name,
                        wait: w,
                        payload: wire::json_map(&payload),
                        points_selector: Some(selector(&s)?),
                        key,
                        ..Default::default()
                    };
                    node.call(shard, deadline, p.set_payload(node.request(m, deadline)))
                        .await?
                }
                Update::OverwritePayload {
                    payload,
                    selector: s,
                } => {
                    let m = pb::SetPayloadPoints {
                        collection_name: name,
                        wait: w,
                        payload: wire::json_map(&payload),
                        points_selector: Some(selector(&s)?),
                        ..Default::default()
                    };
                    let call = p.overwrite_payload(node.request(m, deadline));
                    node.call(shard, deadline, call).await?
                }
                Update::DeletePayload { keys, selector: s } => {
                    let m = pb::DeletePayloadPoints {
                        collection_name: name,
                        wait: w,
                        keys,
                        points_selector: Some(selector(&s)?),
                        ..Default::default()
                    };
                    let call = p.delete_payload(node.request(m, deadline));
                    node.call(shard, deadline, call).await?
                }
                Update::ClearPayload(s) => {
                    let m = pb::ClearPayloadPoints {
                        collection_name: name,
                        wait: w,
                        points: Some(selector(&s)?),
                        ..Default::default()
                    };
                    let call = p.clear_payload(node.request(m, deadline));
                    node.call(shard, deadline, call).await?
                }
                Update::UpdateVectors { points, filter } => {
                    let m = pb::UpdatePointVectors {
                        collection_name: name,
                        wait: w,
                        points: points
                            .iter()
                            .map(|pt| pb::PointVectors {
                                id: Some(wire::id(pt.id)),
                                vectors: Some(wire::vectors(pt)),
                            })
                            .collect(),
                        update_filter: filter_pb(shard, filter.as_deref())?,
                        ..Default::default()
                    };
                    let call = p.update_vectors(node.request(m, deadline));
                    node.call(shard, deadline, call).await?
                }
                Update::DeleteVectors { selector: s, names } => {
                    let m = pb::DeletePointVectors {
                        collection_name: name,
                        wait: w,
                        points_selector: Some(selector(&s)?),
                        vectors: Some(pb::VectorsSelector { names }),
                        ..Default::default()
                    };
                    let call = p.delete_vectors(node.request(m, deadline));
                    node.call(shard, deadline, call).await?
                }
                Update::Batch(_) => {
                    return Err(ShardError::Refused {
                        shard,
                        status: 501,
                        reason: "Not implemented: batches of updates are not yet served by \
                                 remote shards (send the updates one by one)"
                            .into(),
                    })
                }
            };
            Ok(answer.result.and_then(|r| r.operation_id).unwrap_or(0))
        })
    }
}

impl Shard for RemoteShard {
    fn id(&self) -> u32 {
        self.shard
    }

    fn placement(&self) -> Placement {
        self.placement
    }

    fn search(
        &self,
        req: Arc<SearchRequest>,
        deadline: Instant,
    ) -> BoxFuture<'static, Result<ShardAnswer, ShardError>> {
        let shard = self.shard;
        let message = self
            .encoded
            .get_or_encode(&req, || self.encode_search(&req));
        let node = self.node.clone();
        let deadline = node.cap(deadline);
        let metric = self.metric_of(&req);
        let collection = self.collection.clone();
        let level = read_consistency();
        Box::pin(async move {
            let message = message.map_err(|e| bad_request(shard, e))?;
            let mut p = node.points();
            // The shared message names the collection of the shard that built it: the shards
            // of several shard keys hold collections of different names.
            let mut message = (*message).clone();
            message.collection_name = collection;
            message.read_consistency = level;
            let call = p.query(node.request(message, deadline));
            let answer = node.call(shard, deadline, call).await?;
            let hits = answer
                .result
                .into_iter()
                .map(|h| {
                    let record = wire::record(
                        h.id,
                        h.payload,
                        h.vectors,
                        &req.with_payload,
                        &req.with_vector,
                    )?;
                    let distance = match metric {
                        Some(m) => m.distance_from_score(h.score),
                        None => -h.score,
                    };
                    Ok(ScoredPoint {
                        record,
                        distance,
                        score: h.score,
                    })
                })
                .collect::<Result<Vec<_>, String>>()
                .map_err(|e| unreadable(shard, node.url(), e))?;
            Ok(ShardAnswer {
                hits,
                // A node rescoring with full-precision vectors (the default) answers exact
                // scores; told not to, its scores are the quantized ones.
                exact: req.params.rescore != Some(false),
            })
        })
    }

    fn count(
        &self,
        filter: Option<Arc<Filter>>,
        deadline: Instant,
    ) -> BoxFuture<'static, Result<usize, ShardError>> {
        let (node, shard, name) = (self.node.clone(), self.shard, self.collection.clone());
        let deadline = self.node.cap(deadline);
        let level = read_consistency();
        Box::pin(async move {
            let m = pb::CountPoints {
                collection_name: name,
                filter: filter_pb(shard, filter.as_deref())?,
                exact: Some(true),
                read_consistency: level,
                ..Default::default()
            };
            let mut p = node.points();
            let answer = node
                .call(shard, deadline, p.count(node.request(m, deadline)))
                .await?;
            Ok(answer.result.map_or(0, |r| r.count as usize))
        })
    }

    fn facet(
        &self,
        key: Arc<payload::KeyPath>,
        filter: Option<Arc<Filter>>,
        deadline: Instant,
    ) -> BoxFuture<'static, Result<Vec<(serde_json::Value, usize)>, ShardError>> {
        let (node, shard, name) = (self.node.clone(), self.shard, self.collection.clone());
        let deadline = self.node.cap(deadline);
        let level = read_consistency();
        Box::pin(async move {
            let m = pb::FacetCounts {
                collection_name: name,
                key: key.to_string(),
                filter: filter_pb(shard, filter.as_deref())?,
                // As many values as a node gives: the router adds the shards' counts, then cuts.
                limit: Some(FACET_VALUES_PER_SHARD),
                exact: Some(true),
                read_consistency: level,
                ..Default::default()
            };
            let mut p = node.points();
            let answer = node
                .call(shard, deadline, p.facet(node.request(m, deadline)))
                .await?;
            Ok(answer
                .hits
                .into_iter()
                .map(|h| (wire::facet_value(h.value), h.count as usize))
                .collect())
        })
    }

    fn sample(
        &self,
        filter: Option<Arc<Filter>>,
        name: Option<String>,
        n: usize,
        _seed: u64,
        deadline: Instant,
    ) -> BoxFuture<'static, Result<storage::matrix::ShardSample, ShardError>> {
        // The node draws with its own randomness: Qdrant's protocol carries no seed.
        let (node, shard, collection) = (self.node.clone(), self.shard, self.collection.clone());
        let deadline = self.node.cap(deadline);
        let level = read_consistency();
        Box::pin(async move {
            let mut f = filter.as_deref().cloned().unwrap_or_default();
            if let Some(v) = &name {
                f = f.merged(&Filter {
                    must: vec![payload::Condition::HasVector(v.clone())],
                    ..Filter::default()
                });
            }
            let pf = wire::filter(&f).map_err(|e| bad_request(shard, e))?;
            let mut p = node.points();
            let count = pb::CountPoints {
                collection_name: collection.clone(),
                filter: Some(pf.clone()),
                exact: Some(true),
                read_consistency: level,
                ..Default::default()
            };
            let matched = node
                .call(shard, deadline, p.count(node.request(count, deadline)))
                .await?
                .result
                .map_or(0, |r| r.count as usize);
            let selector = match &name {
                Some(v) => VectorSelector::Only(vec![v.clone()]),
                None => VectorSelector::Nothing,
            };
            let m = pb::QueryPoints {
                collection_name: collection,
                query: Some(pb::Query {
                    variant: Some(pb::query::Variant::Sample(pb::Sample::Random as i32)),
                }),
                filter: Some(pf),
                limit: Some(n as u64),
                with_vectors: Some(wire::with_vectors(&selector)),
                with_payload: Some(wire::with_payload(&payload::PayloadSelector::Nothing)),
                read_consistency: level,
                ..Default::default()
            };
            let answer = node
                .call(shard, deadline, p.query(node.request(m, deadline)))
                .await?;
            let points = answer
                .result
                .into_iter()
                .map(|h| {
                    let r = wire::record(
                        h.id,
                        HashMap::new(),
                        h.vectors,
                        &payload::PayloadSelector::Nothing,
                        &selector,
                    )?;
                    let v = match &name {
                        // Drawn among the points that have it: one without it is a fault.
                        Some(v) => dense_of(&r, v)
                            .ok_or_else(|| format!("a sampled point without its vector `{v}`"))?,
                        None => Vec::new(),
                    };
                    Ok((r.id, v))
                })
                .collect::<Result<Vec<_>, String>>()
                .map_err(|e| unreadable(shard, node.url(), e))?;
            Ok(storage::matrix::ShardSample { matched, points })
        })
    }

    fn vectors(
        &self,
        ids: Vec<PointId>,
        name: String,
        deadline: Instant,
    ) -> BoxFuture<'static, Result<Vec<Option<Vec<f32>>>, ShardError>> {
        let req = Arc::new(RetrieveRequest {
            with_payload: payload::PayloadSelector::Nothing,
            with_vector: VectorSelector::Only(vec![name.clone()]),
        });
        let found = self.retrieve(ids.clone(), req, deadline);
        Box::pin(async move {
            let by_id: HashMap<PointId, Record> =
                found.await?.into_iter().map(|r| (r.id, r)).collect();
            Ok(ids
                .iter()
                .map(|id| by_id.get(id).and_then(|r| dense_of(r, &name)))
                .collect())
        })
    }

    fn scroll(
        &self,
        req: Arc<ScrollRequest>,
        deadline: Instant,
    ) -> BoxFuture<'static, Result<ScrollPage, ShardError>> {
        let (node, shard, name) = (self.node.clone(), self.shard, self.collection.clone());
        let deadline = self.node.cap(deadline);
        let level = read_consistency();
        Box::pin(async move {
            let m = pb::ScrollPoints {
                collection_name: name,
                filter: filter_pb(shard, req.filter.as_deref())?,
                offset: req.from.map(wire::id),
                limit: Some(u32::try_from(req.limit).unwrap_or(u32::MAX)),
                with_payload: Some(wire::with_payload(&req.with_payload)),
                with_vectors: Some(wire::with_vectors(&req.with_vector)),
                read_consistency: level,
                ..Default::default()
            };
            let mut p = node.points();
            let answer = node
                .call(shard, deadline, p.scroll(node.request(m, deadline)))
                .await?;
            let read = || -> Result<ScrollPage, String> {
                let points = answer
                    .result
                    .into_iter()
                    .map(|r| {
                        wire::record(
                            r.id,
                            r.payload,
                            r.vectors,
                            &req.with_payload,
                            &req.with_vector,
                        )
                    })
                    .collect::<Result<Vec<_>, String>>()?;
                let next = answer
                    .next_page_offset
                    .as_ref()
                    .map(|i| wire::point_id(Some(i)))
                    .transpose()?;
                Ok(ScrollPage { points, next })
            };
            read().map_err(|e| unreadable(shard, node.url(), e))
        })
    }

    fn scroll_ordered(
        &self,
        req: Arc<OrderedScrollRequest>,
        deadline: Instant,
    ) -> BoxFuture<'static, Result<Vec<(Record, storage::OrderValue)>, ShardError>> {
        let (node, shard, name) = (self.node.clone(), self.shard, self.collection.clone());
        let deadline = self.node.cap(deadline);
        let level = read_consistency();
        Box::pin(async move {
            let m = pb::ScrollPoints {
                collection_name: name,
                filter: filter_pb(shard, req.filter.as_deref())?,
                limit: Some(u32::try_from(req.limit).unwrap_or(u32::MAX)),
                with_payload: Some(wire::with_payload(&req.with_payload)),
                with_vectors: Some(wire::with_vectors(&req.with_vector)),
                order_by: Some(wire::order_by(&req.order)),
                read_consistency: level,
                ..Default::default()
            };
            let mut p = node.points();
            let answer = node
                .call(shard, deadline, p.scroll(node.request(m, deadline)))
                .await?;
            answer
                .result
                .into_iter()
                .map(|r| {
                    let value = wire::order_value(r.order_value.as_ref()).ok_or_else(|| {
                        "a point of an ordered page without its value".to_string()
                    })?;
                    let record = wire::record(
                        r.id,
                        r.payload,
                        r.vectors,
                        &req.with_payload,
                        &req.with_vector,
                    )?;
                    Ok((record, value))
                })
                .collect::<Result<Vec<_>, String>>()
                .map_err(|e| unreadable(shard, node.url(), e))
        })
    }

    fn retrieve(
        &self,
        ids: Vec<PointId>,
        req: Arc<RetrieveRequest>,
        deadline: Instant,
    ) -> BoxFuture<'static, Result<Vec<Record>, ShardError>> {
        let (node, shard, name) = (self.node.clone(), self.shard, self.collection.clone());
        let deadline = self.node.cap(deadline);
        let level = read_consistency();
        Box::pin(async move {
            let m = pb::GetPoints {
                collection_name: name,
                ids: ids.into_iter().map(wire::id).collect(),
                with_payload: Some(wire::with_payload(&req.with_payload)),
                with_vectors: Some(wire::with_vectors(&req.with_vector)),
                read_consistency: level,
                ..Default::default()
            };
            let mut p = node.points();
            let answer = node
                .call(shard, deadline, p.get(node.request(m, deadline)))
                .await?;
            answer
                .result
                .into_iter()
                .map(|r| {
                    wire::record(
                        r.id,
                        r.payload,
                        r.vectors,
                        &req.with_payload,
                        &req.with_vector,
                    )
                })
                .collect::<Result<Vec<_>, String>>()
                .map_err(|e| unreadable(shard, node.url(), e))
        })
    }
}

/// How many values a node's facet answer may hold: the most a facet request may ask of our
/// nodes (and of Qdrant's). A key with more distinct values on one node is counted over each
/// node's most frequent 100,000, as Qdrant's own distributed facet counts it.
const FACET_VALUES_PER_SHARD: u64 = 100_000;

fn dense_of(r: &Record, name: &str) -> Option<Vec<f32>> {
    r.vectors
        .as_ref()?
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.clone())
}

/// Cuts an update into the part each of `n` shards receives (`None`: nothing for that
/// shard). Points named by id go to the shard `place` names (below `n`: jump hashing, or a
/// resharding's current layout); an update selecting points by filter goes to every shard.
pub fn split_update(
    update: Update,
    n: usize,
    place: &dyn Fn(&PointId) -> usize,
) -> Vec<Option<Update>> {
    use storage::PointSelector as S;
    let by_ids = |ids: Vec<PointId>| -> Vec<Vec<PointId>> {
        let mut parts = vec![Vec::new(); n];
        for id in ids {
            parts[place(&id)].push(id);
        }
        parts
    };
    let by_points = |points: Vec<storage::PointWrite>| -> Vec<Vec<storage::PointWrite>> {
        let mut parts: Vec<Vec<storage::PointWrite>> = (0..n).map(|_| Vec::new()).collect();
        for p in points {
            let k = place(&p.id);
            parts[k].push(p);
        }
        parts
    };
    // Each shard's selector: its ids (none: the shard is skipped), or the whole filter.
    let selectors = |s: S| -> Vec<Option<S>> {
        match s {
            S::Ids(ids) => by_ids(ids)
                .into_iter()
                .map(|ids| (!ids.is_empty()).then_some(S::Ids(ids)))
                .collect(),
            S::Filter(f) => (0..n).map(|_| Some(S::Filter(f.clone()))).collect(),
        }
    };
    let nonempty = |points: Vec<storage::PointWrite>,
                    make: &dyn Fn(Vec<storage::PointWrite>) -> Update| {
        (!points.is_empty()).then(|| make(points))
    };
    match update {
        Update::Upsert(points) => by_points(points)
            .into_iter()
            .map(|p| nonempty(p, &Update::Upsert))
            .collect(),
        Update::ConditionalUpsert {
            points,
            mode,
            filter,
        } => by_points(points)
            .into_iter()
            .map(|p| {
                nonempty(p, &|points| Update::ConditionalUpsert {
                    points,
                    mode,
                    filter: filter.clone(),
                })
            })
            .collect(),
        Update::UpdateVectors { points, filter } => by_points(points)
            .into_iter()
            .map(|p| {
                nonempty(p, &|points| Update::UpdateVectors {
                    points,
                    filter: filter.clone(),
                })
            })
            .collect(),
        Update::Delete(s) => selectors(s)
            .into_iter()
            .map(|s| s.map(Update::Delete))
            .collect(),
        Update::SetPayload {
            payload,
            selector,
            key,
        } => selectors(selector)
            .into_iter()
            .map(|s| {
                s.map(|selector| Update::SetPayload {
                    payload: payload.clone(),
                    selector,
                    key: key.clone(),
                })
            })
            .collect(),
        Update::OverwritePayload { payload, selector } => selectors(selector)
            .into_iter()
            .map(|s| {
                s.map(|selector| Update::OverwritePayload {
                    payload: payload.clone(),
                    selector,
                })
            })
            .collect(),
        Update::DeletePayload { keys, selector } => selectors(selector)
            .into_iter()
            .map(|s| {
                s.map(|selector| Update::DeletePayload {
                    keys: keys.clone(),
                    selector,
                })
            })
            .collect(),
        Update::ClearPayload(s) => selectors(s)
            .into_iter()
            .map(|s| s.map(Update::ClearPayload))
            .collect(),
        Update::DeleteVectors { selector, names } => selectors(selector)
            .into_iter()
            .map(|s| {
                s.map(|selector| Update::DeleteVectors {
                    selector,
                    names: names.clone(),
                })
            })
            .collect(),
        // Sent whole to every shard, which refuses it (see `RemoteShard::write`).
        Update::Batch(ops) => (0..n).map(|_| Some(Update::Batch(ops.clone()))).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_consistency_is_parsed_and_carried_within_its_scope_only() {
        use pb::read_consistency::Value;
        let level = |s| parse_read_consistency(s).map(|l| l.value);
        let majority = pb::ReadConsistencyType::Majority as i32;
        assert_eq!(level("majority"), Ok(Some(Value::Type(majority))));
        assert_eq!(
            level("all"),
            Ok(Some(Value::Type(pb::ReadConsistencyType::All as i32)))
        );
        assert_eq!(level("3"), Ok(Some(Value::Factor(3))));
        for bad in ["0", "-1", "most", "", "Majority"] {
            assert!(level(bad).is_err(), "{bad}");
        }
        let strong = |s| is_strong_read(Some(&parse_read_consistency(s).unwrap()));
        assert!(strong("quorum") && strong("2") && !strong("1"));
        assert!(!is_strong_read(None));
        use pb::read_consistency::Value as V;
        let msg = |value| pb::ReadConsistency { value: Some(value) };
        assert!(check_read_consistency(&msg(V::Type(majority))).is_ok());
        assert!(check_read_consistency(&msg(V::Factor(2))).is_ok());
        assert!(check_read_consistency(&msg(V::Factor(0))).is_err());
        assert!(check_read_consistency(&msg(V::Type(7))).is_err());

        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let asked = parse_read_consistency("quorum").unwrap();
        let (inside, nested) = rt.block_on(with_read_consistency(Some(asked), async {
            let inside = read_consistency();
            let nested = with_read_consistency(None, async { read_consistency() }).await;
            (inside, nested)
        }));
        assert_eq!(inside, Some(asked));
        assert_eq!(nested, None);
        assert_eq!(read_consistency(), None);
    }

    #[test]
    fn jump_placement_moves_about_one_in_n_plus_one() {
        let ids: Vec<PointId> = (0..20_000u64).map(PointId::Num).collect();
        for n in [1usize, 2, 3, 7] {
            let moved = ids
                .iter()
                .filter(|id| jump_shard_of(id, n) != jump_shard_of(id, n + 1))
                .count();
            // Every moved point moves to the new shard.
            assert!(ids
                .iter()
                .filter(|id| jump_shard_of(id, n) != jump_shard_of(id, n + 1))
                .all(|id| jump_shard_of(id, n + 1) == n));
            let expected = ids.len() / (n + 1);
            assert!(
                moved.abs_diff(expected) < expected / 10,
                "{moved} of {} moved from {n} to {} shards, expected about {expected}",
                ids.len(),
                n + 1
            );
            let mut per = vec![0usize; n];
            for id in &ids {
                per[jump_shard_of(id, n)] += 1;
            }
            let even = ids.len() / n;
            assert!(per.iter().all(|&c| c.abs_diff(even) < even / 10), "{per:?}");
        }
    }

    #[test]
    fn updates_split_by_placement_and_filters_go_everywhere() {
        let ids: Vec<PointId> = (0..50u64).map(PointId::Num).collect();
        let parts = split_update(
            Update::Delete(storage::PointSelector::Ids(ids.clone())),
            3,
            &|id| jump_shard_of(id, 3),
        );
        let mut seen = Vec::new();
        for (k, part) in parts.into_iter().enumerate() {
            match part {
                Some(Update::Delete(storage::PointSelector::Ids(part))) => {
                    assert!(part.iter().all(|id| jump_shard_of(id, 3) == k));
                    seen.extend(part);
                }
                None => {}
                other => panic!("{other:?}"),
            }
        }
        seen.sort();
        assert_eq!(seen, ids);
        let f = Arc::new(Filter::has_id([PointId::Num(1)]));
        let parts = split_update(
            Update::ClearPayload(storage::PointSelector::Filter(f)),
            3,
            &|id| jump_shard_of(id, 3),
        );
        assert!(parts.iter().all(Option::is_some));
    }
}
