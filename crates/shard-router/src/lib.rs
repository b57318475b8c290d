//! Shards behind one async trait, and the fan-out that searches them all.
//!
//! A [`Shard`] answers searches, counts, scrolls and retrievals asynchronously and gives up at
//! a deadline. [`LocalShardHandle`] runs a [`storage::LocalShard`] on a bounded thread pool,
//! off the async reactor; [`RemoteShard`] (the `remote` module) reaches a collection on
//! another node (our own router, or a Qdrant server) through gRPC. [`search`] sends a query
//! to every shard at
//! once, merges their sorted answers with a k-way heap ([`merge_shard_results`], a pure
//! function) and cuts to the limit.
//!
//! Re-ranking: each local shard already returns full-precision distances (its quantized
//! segments rescore their `limit · oversampling` candidates with the original vectors), so
//! the merge is exact. A shard whose scores are approximate says so
//! ([`ShardAnswer::exact`] false), and [`search`] then re-ranks the merged candidates with
//! [`Shard::vectors`] before cutting.
//!
//! Writes do not go through this trait: a collection's single write-ahead log
//! (`storage::Collection::update`) orders them and makes batches atomic across its local
//! shards.
//!
//! ```
//! use shard_router::{search, LocalShardHandle, SearchPool, Shard};
//! use std::sync::Arc;
//! # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
//! # rt.block_on(async {
//! let dir = tempfile::tempdir().unwrap();
//! let store = storage::Storage::open(&dir.path().join("s"), &dir.path().join("p")).unwrap();
//! let config = storage::CollectionConfig::from_json(&serde_json::json!({
//!     "vectors": {"size": 1, "distance": "Dot"}, "shard_number": 2
//! })).unwrap();
//! let c = store.create("c", config).unwrap();
//! let points = (0..10u64).map(|i| storage::PointWrite {
//!     id: index_core::PointId::Num(i), vectors: vec![(String::new(), vec![i as f32])], payload: Default::default(),
//!     sparse: Vec::new(), multi: Vec::new() }).collect();
//! c.update(storage::Update::Upsert(points), true).unwrap();
//! let pool = SearchPool::new(2).unwrap();
//! let shards: Vec<Arc<dyn Shard>> = c.shards().iter()
//!     .map(|s| Arc::new(LocalShardHandle::new(s.clone(), pool.clone())) as Arc<dyn Shard>).collect();
//! let req = storage::SearchRequest {
//!     vector_name: String::new(), query: storage::Query::Nearest(vec![1.0]), filter: None,
//!     params: index_core::SearchParams::top(3),
//!     with_payload: payload::PayloadSelector::Nothing, with_vector: storage::VectorSelector::Nothing,
//!     candidates: None,
//! };
//! let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
//! let hits = search(&shards, Arc::new(req), quant::Metric::InnerProduct, deadline).await.unwrap();
//! let ids: Vec<_> = hits.iter().map(|h| h.record.id).collect();
//! assert_eq!(ids, vec![index_core::PointId::Num(9), index_core::PointId::Num(8), index_core::PointId::Num(7)]);
//! # });
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod partial;
mod pool;
pub mod remote;

pub use pool::SearchPool;
pub use remote::{Node, NodeOptions, Placement, RemoteShard};
pub use storage::merge_scroll_pages;

use futures::future::BoxFuture;
use index_core::{merge_top_k, PointId};
use payload::{Filter, PayloadSelector};
use quant::Metric;
use std::sync::Arc;
use std::sync::Weak;
use std::time::Instant;
use storage::{
    Collection, LocalShard, Record, ScoredPoint, ScrollPage, SearchRequest, StorageError,
    VectorSelector,
};

/// What can go wrong talking to a shard.
#[derive(Debug, thiserror::Error)]
pub enum ShardError {
    /// The shard did not answer before the deadline.
    #[error("Timeout: shard {shard} did not answer in time")]
    Timeout {
        /// Which shard.
        shard: u32,
    },
    /// The shard cannot be reached or its worker died.
    #[error("Service unavailable: shard {shard}: {reason}")]
    Unavailable {
        /// Which shard.
        shard: u32,
        /// Why.
        reason: String,
    },
    /// The shard's work on this request failed (a panic in a worker).
    #[error("Service internal error: shard {shard}: {reason}")]
    Failed {
        /// Which shard.
        shard: u32,
        /// Why.
        reason: String,
    },
    /// A remote shard refused the request, answering what REST calls `status` (4xx, or 501).
    #[error("{reason}")]
    Refused {
        /// Which shard.
        shard: u32,
        /// The HTTP status of the refusal.
        status: u16,
        /// The node's message.
        reason: String,
    },
    /// The shard refused or failed the request.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// Kinds the router maps to statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShardErrorKind {
    /// 408.
    Timeout,
    /// 503.
    Unavailable,
    /// 500.
    Failed,
    /// A remote shard's refusal, with its HTTP status.
    Refused(u16),
    /// What storage says.
    Storage(storage::StorageErrorKind),
}

impl ShardError {
    /// The kind.
    pub fn kind(&self) -> ShardErrorKind {
        match self {
            ShardError::Timeout { .. } => ShardErrorKind::Timeout,
            ShardError::Unavailable { .. } => ShardErrorKind::Unavailable,
            ShardError::Failed { .. } => ShardErrorKind::Failed,
            ShardError::Refused { status, .. } => ShardErrorKind::Refused(*status),
            ShardError::Storage(e) => ShardErrorKind::Storage(e.kind()),
        }
    }
}

/// A shard's answer to a search.
#[derive(Debug, Clone)]
pub struct ShardAnswer {
    /// Hits, closest first.
    pub hits: Vec<ScoredPoint>,
    /// Whether the distances are exact (full precision).
    pub exact: bool,
}

/// One shard of a collection, local or remote.
pub trait Shard: Send + Sync {
    /// Its number within the collection.
    fn id(&self) -> u32;
    /// The rule the collection's points are placed among its shards by.
    fn placement(&self) -> Placement {
        Placement::Local
    }
    /// The closest points, at most `req.params.limit`.
    fn search(
        &self,
        req: Arc<SearchRequest>,
        deadline: Instant,
    ) -> BoxFuture<'static, Result<ShardAnswer, ShardError>>;
    /// Answers on the calling thread, now, when the search is quick enough not to hold up
    /// the async reactor (a local shard walking its graph); `None` means "use [`Shard::search`]".
    ///
    /// Handing a short search to another thread and back costs about as much CPU as the
    /// search itself on a small machine (two wake-ups through the kernel), so the fan-out
    /// runs the last shard's quick search in place while the others work on the pool.
    fn search_now(&self, _req: &SearchRequest) -> Option<Result<ShardAnswer, ShardError>> {
        None
    }
    /// Points matching a filter.
    fn count(
        &self,
        filter: Option<Arc<Filter>>,
        deadline: Instant,
    ) -> BoxFuture<'static, Result<usize, ShardError>>;
    /// How many points matching a filter have each value of a payload key.
    fn facet(
        &self,
        key: Arc<payload::KeyPath>,
        filter: Option<Arc<Filter>>,
        deadline: Instant,
    ) -> BoxFuture<'static, Result<Vec<(serde_json::Value, usize)>, ShardError>>;
    /// A uniform random sample (drawn by `seed`) of up to `n` of the points matching
    /// `filter` that have vector `name`, with that vector; and how many such points there are.
    /// With no `name`, of every point matching, each with an empty vector.
    fn sample(
        &self,
        filter: Option<Arc<Filter>>,
        name: Option<String>,
        n: usize,
        seed: u64,
        deadline: Instant,
    ) -> BoxFuture<'static, Result<storage::matrix::ShardSample, ShardError>>;
    /// Full-precision vectors of some points, for re-ranking.
    fn vectors(
        &self,
        ids: Vec<PointId>,
        name: String,
        deadline: Instant,
    ) -> BoxFuture<'static, Result<Vec<Option<Vec<f32>>>, ShardError>>;
    /// A page of this shard's points in id order (see [`scroll`]).
    fn scroll(
        &self,
        req: Arc<ScrollRequest>,
        deadline: Instant,
    ) -> BoxFuture<'static, Result<ScrollPage, ShardError>>;
    /// Up to `req.limit` of this shard's points in the order of a payload value (see
    /// [`scroll_ordered`]).
    fn scroll_ordered(
        &self,
        req: Arc<OrderedScrollRequest>,
        deadline: Instant,
    ) -> BoxFuture<'static, Result<Vec<(Record, storage::OrderValue)>, ShardError>>;
    /// The points of `ids` this shard holds, in the order asked.
    fn retrieve(
        &self,
        ids: Vec<PointId>,
        req: Arc<RetrieveRequest>,
        deadline: Instant,
    ) -> BoxFuture<'static, Result<Vec<Record>, ShardError>>;
}

/// A page of points in id order: from `from` on, at most `limit`, matching `filter`.
#[derive(Debug, Clone)]
pub struct ScrollRequest {
    /// The first id of the page.
    pub from: Option<PointId>,
    /// Page size.
    pub limit: usize,
    /// Filter.
    pub filter: Option<Arc<Filter>>,
    /// Payload to return.
    pub with_payload: PayloadSelector,
    /// Vectors to return.
    pub with_vector: VectorSelector,
}

/// A page of points in the order of a payload value, matching `filter`.
#[derive(Debug, Clone)]
pub struct OrderedScrollRequest {
    /// The order.
    pub order: storage::OrderBy,
    /// Page size.
    pub limit: usize,
    /// Filter.
    pub filter: Option<Arc<Filter>>,
    /// Payload to return.
    pub with_payload: PayloadSelector,
    /// Vectors to return.
    pub with_vector: VectorSelector,
}

/// What a retrieval by id returns of each point.
#[derive(Debug, Clone)]
pub struct RetrieveRequest {
    /// Payload to return.
    pub with_payload: PayloadSelector,
    /// Vectors to return.
    pub with_vector: VectorSelector,
}

/// A local shard behind the [`Shard`] trait.
pub struct LocalShardHandle {
    shard: Arc<LocalShard>,
    pool: SearchPool,
}

impl LocalShardHandle {
    /// Wraps a local shard, searching on `pool`.
    pub fn new(shard: Arc<LocalShard>, pool: SearchPool) -> LocalShardHandle {
        LocalShardHandle { shard, pool }
    }
}

impl Shard for LocalShardHandle {
    fn id(&self) -> u32 {
        self.shard.id()
    }

    fn search(
        &self,
        req: Arc<SearchRequest>,
        deadline: Instant,
    ) -> BoxFuture<'static, Result<ShardAnswer, ShardError>> {
        let shard = self.shard.clone();
        let answer = self
            .pool
            .submit(self.shard.id(), deadline, move || shard.search(&req));
        Box::pin(async move {
            Ok(ShardAnswer {
                hits: answer.await?,
                exact: true,
            })
        })
    }

    fn search_now(&self, req: &SearchRequest) -> Option<Result<ShardAnswer, ShardError>> {
        self.shard.is_quick(req).then(|| {
            self.shard
                .search(req)
                .map(|hits| ShardAnswer { hits, exact: true })
                .map_err(ShardError::from)
        })
    }

    fn count(
        &self,
        filter: Option<Arc<Filter>>,
        deadline: Instant,
    ) -> BoxFuture<'static, Result<usize, ShardError>> {
        let shard = self.shard.clone();
        Box::pin(self.pool.submit(self.shard.id(), deadline, move || {
            Ok(shard.count(filter.as_deref()))
        }))
    }

    fn facet(
        &self,
        key: Arc<payload::KeyPath>,
        filter: Option<Arc<Filter>>,
        deadline: Instant,
    ) -> BoxFuture<'static, Result<Vec<(serde_json::Value, usize)>, ShardError>> {
        let shard = self.shard.clone();
        Box::pin(self.pool.submit(self.shard.id(), deadline, move || {
            Ok(shard.facet_counts(&key, filter.as_deref()))
        }))
    }

    fn sample(
        &self,
        filter: Option<Arc<Filter>>,
        name: Option<String>,
        n: usize,
        seed: u64,
        deadline: Instant,
    ) -> BoxFuture<'static, Result<storage::matrix::ShardSample, ShardError>> {
        let shard = self.shard.clone();
        Box::pin(self.pool.submit(self.shard.id(), deadline, move || {
            shard.sample(filter.as_deref(), name.as_deref(), n, seed)
        }))
    }

    fn vectors(
        &self,
        ids: Vec<PointId>,
        name: String,
        deadline: Instant,
    ) -> BoxFuture<'static, Result<Vec<Option<Vec<f32>>>, ShardError>> {
        let shard = self.shard.clone();
        Box::pin(self.pool.submit(self.shard.id(), deadline, move || {
            ids.iter().map(|&i| shard.vector_of(i, &name)).collect()
        }))
    }

    fn scroll(
        &self,
        req: Arc<ScrollRequest>,
        deadline: Instant,
    ) -> BoxFuture<'static, Result<ScrollPage, ShardError>> {
        let shard = self.shard.clone();
        Box::pin(pool::run_blocking(self.shard.id(), deadline, move || {
            Ok(shard.scroll(
                req.from,
                req.limit,
                req.filter.as_deref(),
                &req.with_payload,
                &req.with_vector,
            ))
        }))
    }

    fn scroll_ordered(
        &self,
        req: Arc<OrderedScrollRequest>,
        deadline: Instant,
    ) -> BoxFuture<'static, Result<Vec<(Record, storage::OrderValue)>, ShardError>> {
        let shard = self.shard.clone();
        Box::pin(pool::run_blocking(self.shard.id(), deadline, move || {
            Ok(shard.scroll_ordered(
                &req.order,
                req.limit,
                req.filter.as_deref(),
                &req.with_payload,
                &req.with_vector,
            ))
        }))
    }

    fn retrieve(
        &self,
        ids: Vec<PointId>,
        req: Arc<RetrieveRequest>,
        deadline: Instant,
    ) -> BoxFuture<'static, Result<Vec<Record>, ShardError>> {
        let shard = self.shard.clone();
        Box::pin(pool::run_blocking(self.shard.id(), deadline, move || {
            Ok(shard.retrieve(&ids, &req.with_payload, &req.with_vector))
        }))
    }
}

/// Each collection's shards as [`Shard`] handles, built once per collection and reused by
/// every request. A collection deleted and created again under the same name is a new
/// collection: its handles are built anew (the entry remembers which collection it was built
/// for, without keeping it alive).
pub struct ShardHandles {
    pool: SearchPool,
    cluster: Option<Arc<remote::Cluster>>,
    built: std::sync::Mutex<HandleMap>,
}

/// Each collection's handles: the collection they were built for, the cluster layout version
/// they were built for (a resharding changes the shards), and the handles.
type HandleMap = std::collections::HashMap<String, (Weak<Collection>, u64, Arc<[Arc<dyn Shard>]>)>;

impl ShardHandles {
    /// Handles whose local shards search on `pool`.
    pub fn new(pool: SearchPool) -> ShardHandles {
        ShardHandles {
            pool,
            cluster: None,
            built: std::sync::Mutex::new(HandleMap::new()),
        }
    }

    /// Handles whose shards are the same-named collections on a cluster's nodes: the local
    /// collection is then the catalog entry (its configuration), holding no points.
    pub fn remote(pool: SearchPool, cluster: Arc<remote::Cluster>) -> ShardHandles {
        ShardHandles {
            pool,
            cluster: Some(cluster),
            built: std::sync::Mutex::new(HandleMap::new()),
        }
    }

    /// The cluster, when the shards are remote.
    pub fn cluster(&self) -> Option<&Arc<remote::Cluster>> {
        self.cluster.as_ref()
    }

    /// The shards of `c` that the shard keys `keys` reach: all of them without keys. Keys
    /// are an error unless `c` is a collection sharded by key on a cluster.
    ///
    /// Without keys, a collection placed by a payload field (`shard_key_field`) whose field
    /// `filter` pins reaches only the keys of the values pinned (none, when no such key
    /// exists: the answer is empty); one placed by region (`shard_region_field`) whose
    /// field `filter` pins to shapes reaches the keys whose regions meet them and the keys
    /// without a region ([`remote::regions::reached_keys`]).
    pub fn selected(
        &self,
        c: &Arc<Collection>,
        keys: Option<&remote::keys::KeySelection>,
        filter: Option<&Filter>,
    ) -> Result<Arc<[Arc<dyn Shard>]>, ShardError> {
        use remote::keys::FieldPlacement;
        let pinned = match (&self.cluster, keys, filter) {
            (Some(cluster), None, Some(f)) if cluster.is_keyed(c.name()) => {
                let placement = c.with_config(FieldPlacement::of);
                let field = placement
                    .as_ref()
                    .and_then(|p| payload::KeyPath::parse(p.field()).ok());
                let layout = || cluster.key_layout(c.name()).unwrap_or_default();
                match (placement, field) {
                    (Some(FieldPlacement::Value(_)), Some(field)) => {
                        remote::keys::pinned_keys(f, &field).map(|pinned| {
                            let layout = layout();
                            pinned
                                .into_iter()
                                .filter(|k| layout.contains_key(k))
                                .collect::<Vec<_>>()
                        })
                    }
                    (Some(FieldPlacement::Region(_)), Some(field)) => {
                        let regions = cluster.regions(c.name());
                        remote::regions::reached_keys(f, &field, &layout(), &regions)
                    }
                    _ => None,
                }
            }
            _ => None,
        };
        if let Some(pinned) = pinned {
            if pinned.is_empty() {
                return Ok(Arc::from(Vec::new()));
            }
            let selection = remote::keys::KeySelection::Keys(pinned);
            return self.selected(c, Some(&selection), None);
        }
        match (&self.cluster, keys) {
            (Some(cluster), _) if cluster.is_keyed(c.name()) => cluster
                .keyed_shards(c.name(), metrics_of(c), keys)
                .map_err(|e| ShardError::Refused {
                    shard: 0,
                    status: 400,
                    reason: format!("Bad request: {e}"),
                }),
            (_, Some(k)) => Err(remote::not_keyed(c.name(), k)),
            (_, None) => Ok(self.of(c)),
        }
    }

    /// The shards of `c`, built on first use (every key's, for a collection sharded by key:
    /// built each time, as its keys come and go).
    pub fn of(&self, c: &Arc<Collection>) -> Arc<[Arc<dyn Shard>]> {
        if let Some(cluster) = self.cluster.as_ref().filter(|k| k.is_keyed(c.name())) {
            return cluster
                .keyed_shards(c.name(), metrics_of(c), None)
                .unwrap_or_else(|_| Arc::from(Vec::new()));
        }
        let version = match &self.cluster {
            Some(cluster) => cluster.hash_version(c.name()),
            None => 0,
        };
        let mut built = self.built.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((owner, v, shards)) = built.get(c.name()) {
            if owner.as_ptr() == Arc::as_ptr(c) && *v == version {
                return shards.clone();
            }
        }
        // Entries of collections gone meanwhile (a request that held one across its delete
        // can build it again after `forget`) are dropped here, not kept until the name returns.
        built.retain(|_, (owner, _, _)| owner.strong_count() > 0);
        let (version, shards): (u64, Arc<[Arc<dyn Shard>]>) = match &self.cluster {
            Some(cluster) => cluster.shards(c.name(), metrics_of(c)),
            None => (
                0,
                c.shards()
                    .iter()
                    .map(|s| {
                        Arc::new(LocalShardHandle::new(s.clone(), self.pool.clone()))
                            as Arc<dyn Shard>
                    })
                    .collect(),
            ),
        };
        built.insert(
            c.name().to_string(),
            (Arc::downgrade(c), version, shards.clone()),
        );
        shards
    }

    /// Drops the handles of a collection (deleted, or replaced by a recovery).
    pub fn forget(&self, name: &str) {
        self.built
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name);
    }
}

/// Each dense vector's metric in `c`.
fn metrics_of(c: &Collection) -> std::collections::HashMap<String, quant::Metric> {
    c.with_config(|cfg| {
        cfg.vectors
            .params()
            .into_iter()
            .map(|(name, p)| (name, p.distance.metric()))
            .collect()
    })
}

/// Merges shards' answers, each sorted closest first, into the `limit` closest (a point
/// appearing twice keeps its closest hit).
pub fn merge_shard_results(lists: &[Vec<ScoredPoint>], limit: usize) -> Vec<ScoredPoint> {
    merge_top_k(lists, limit, |h| h.distance, |h| h.record.id)
}

/// Searches every shard at once and merges: the closest `req.params.limit` points over the
/// collection, closest first. Approximate answers are re-ranked exactly, under `metric`,
/// before the cut.
pub async fn search(
    shards: &[Arc<dyn Shard>],
    req: Arc<SearchRequest>,
    metric: Metric,
    deadline: Instant,
) -> Result<Vec<ScoredPoint>, ShardError> {
    search_observed(shards, req, metric, deadline, &|_, _| {}).await
}

/// [`search`], telling `observe` how long each shard took to answer (its id and the time
/// from the call to its answer, queueing included; an error's time too), as each answers.
pub async fn search_observed(
    shards: &[Arc<dyn Shard>],
    req: Arc<SearchRequest>,
    metric: Metric,
    deadline: Instant,
    observe: &(dyn Fn(u32, std::time::Duration) + Send + Sync),
) -> Result<Vec<ScoredPoint>, ShardError> {
    let Some((last, rest)) = shards.split_last() else {
        return Ok(Vec::new());
    };
    // Local shards queue their work as soon as `search` is called: start the others, then
    // answer the last one here if it is quick, then collect. A remote shard's call starts
    // when its future is first polled: every future is awaited together, never one first.
    let ask = |s: &Arc<dyn Shard>| {
        let shard = s.id();
        let asked = Instant::now();
        let answer = s.search(req.clone(), deadline);
        async move {
            let answer = answer.await;
            observe(shard, asked.elapsed());
            (shard, answer)
        }
    };
    let mut pending: Vec<_> = rest.iter().map(ask).collect();
    let asked_last = Instant::now();
    let results = match last.search_now(&req) {
        Some(answer) => {
            observe(last.id(), asked_last.elapsed());
            let mut results = futures::future::join_all(pending).await;
            results.push((last.id(), answer));
            results
        }
        None => {
            pending.push(ask(last));
            futures::future::join_all(pending).await
        }
    };
    // Each answer with the shard it came from: the re-rank asks that shard for vectors.
    let (answered, answers): (Vec<usize>, Vec<ShardAnswer>) = partial::keep_answered(
        results
            .into_iter()
            .enumerate()
            .map(|(k, (shard, r))| (shard, r.map(|a| (k, a))))
            .collect(),
    )?
    .into_iter()
    .unzip();
    if answers.iter().all(|a| a.exact) {
        let lists: Vec<Vec<ScoredPoint>> = answers.into_iter().map(|a| a.hits).collect();
        return Ok(merge_shard_results(&lists, req.params.limit));
    }
    // Re-rank every candidate with its full-precision vector, then cut.
    let mut all: Vec<(usize, ScoredPoint)> = Vec::new();
    for (k, a) in answers.into_iter().enumerate() {
        all.extend(a.hits.into_iter().map(|h| (k, h)));
    }
    let mut by_shard: Vec<Vec<PointId>> = vec![Vec::new(); shards.len()];
    for (k, h) in &all {
        by_shard[answered[*k]].push(h.record.id);
    }
    let fetched =
        futures::future::try_join_all(by_shard.into_iter().enumerate().map(|(k, ids)| {
            // A shard with no candidate (one a partial answer left out) is not asked.
            if ids.is_empty() {
                return Box::pin(futures::future::ready(Ok(Vec::new())))
                    as BoxFuture<'static, Result<Vec<Option<Vec<f32>>>, ShardError>>;
            }
            shards[k].vectors(ids, req.vector_name.clone(), deadline)
        }))
        .await?;
    let mut cursor = vec![0usize; shards.len()];
    let kernels = quant::kernels();
    // How a full-precision vector is measured: its distance to the query vector, or its
    // negated score against the examples (prepared once the vectors' dimension is known).
    let nearest = req.query.nearest().map(|q| {
        let mut q = q.to_vec();
        metric.prepare(&mut q);
        q
    });
    let mut examples: Option<storage::PreparedExamples> = None;
    let mut reranked: Vec<ScoredPoint> = Vec::with_capacity(all.len());
    for (k, mut h) in all {
        let k = answered[k];
        let v = fetched[k].get(cursor[k]).cloned().flatten();
        cursor[k] += 1;
        if let Some(v) = v {
            if let Some(q) = &nearest {
                h.distance = metric.distance(kernels, q, &v);
                h.score = metric.score(h.distance);
            } else if let storage::Query::Examples(ex) = &req.query {
                let ex = match &examples {
                    Some(ex) => ex,
                    None => examples.insert(ex.prepare(v.len(), metric)?),
                };
                h.score = ex.score(kernels, &v);
                h.distance = -h.score;
            }
        }
        reranked.push(h);
    }
    Ok(rank_and_cut(reranked, req.params.limit))
}

/// Sorts re-ranked hits closest first (ties by id), keeps each point's closest hit (a point
/// two shards both return, as during a resharding, counts once, as in the exact merge), and
/// cuts to `limit`.
fn rank_and_cut(mut hits: Vec<ScoredPoint>, limit: usize) -> Vec<ScoredPoint> {
    hits.sort_by(|a, b| {
        a.distance
            .total_cmp(&b.distance)
            .then(a.record.id.cmp(&b.record.id))
    });
    let mut seen = std::collections::HashSet::with_capacity(hits.len());
    hits.retain(|h| seen.insert(h.record.id));
    hits.truncate(limit);
    hits
}

/// Counts over every shard.
pub async fn count(
    shards: &[Arc<dyn Shard>],
    filter: Option<Arc<Filter>>,
    deadline: Instant,
) -> Result<usize, ShardError> {
    let counts = futures::future::join_all(shards.iter().map(|s| {
        let (shard, count) = (s.id(), s.count(filter.clone(), deadline));
        async move { (shard, count.await) }
    }))
    .await;
    Ok(partial::keep_answered(counts)?.into_iter().sum())
}

/// How many points matching `filter` have each value of `key`, over every shard (a point
/// lives in one shard, so the counts add up).
pub async fn facet(
    shards: &[Arc<dyn Shard>],
    key: Arc<payload::KeyPath>,
    filter: Option<Arc<Filter>>,
    deadline: Instant,
) -> Result<Vec<(serde_json::Value, usize)>, ShardError> {
    let lists = futures::future::try_join_all(
        shards
            .iter()
            .map(|s| s.facet(key.clone(), filter.clone(), deadline)),
    )
    .await?;
    let mut total: std::collections::HashMap<String, (serde_json::Value, usize)> =
        std::collections::HashMap::new();
    for (value, n) in lists.into_iter().flatten() {
        total
            .entry(value.to_string())
            .or_insert_with(|| (value, 0))
            .1 += n;
    }
    Ok(total.into_values().collect())
}

/// Up to `n` points drawn uniformly without replacement from those matching `filter` that
/// have vector `name`, over every shard, with that vector (the search matrix's sample); with
/// no `name`, from every point matching, with empty vectors (a random sample query).
pub async fn sample(
    shards: &[Arc<dyn Shard>],
    filter: Option<Arc<Filter>>,
    name: Option<&str>,
    n: usize,
    seed: u64,
    deadline: Instant,
) -> Result<Vec<(PointId, Vec<f32>)>, ShardError> {
    let mut state = seed;
    let samples = futures::future::try_join_all(shards.iter().map(|s| {
        // Each shard draws with a seed of its own: equal seeds would draw the same positions.
        let seed = storage::matrix::next_random(&mut state);
        s.sample(filter.clone(), name.map(str::to_string), n, seed, deadline)
    }))
    .await?;
    Ok(storage::matrix::merge_samples(
        samples,
        n,
        storage::matrix::next_random(&mut state),
    ))
}

/// A page of points in id order over every shard: each shard's page from `req.from`, merged,
/// cut to `req.limit`; the next page starts at the first id not returned.
pub async fn scroll(
    shards: &[Arc<dyn Shard>],
    req: Arc<ScrollRequest>,
    deadline: Instant,
) -> Result<ScrollPage, ShardError> {
    let pages =
        futures::future::try_join_all(shards.iter().map(|s| s.scroll(req.clone(), deadline)))
            .await?;
    Ok(merge_scroll_pages(pages, req.limit))
}

/// Up to `req.limit` points over every shard in the order of a payload value (ties by id):
/// each shard's first `limit`, merged. A point appears once per distinct value it has.
pub async fn scroll_ordered(
    shards: &[Arc<dyn Shard>],
    req: Arc<OrderedScrollRequest>,
    deadline: Instant,
) -> Result<Vec<(Record, storage::OrderValue)>, ShardError> {
    let pages = futures::future::try_join_all(
        shards
            .iter()
            .map(|s| s.scroll_ordered(req.clone(), deadline)),
    )
    .await?;
    let mut all: Vec<(Record, storage::OrderValue)> = pages.into_iter().flatten().collect();
    all.sort_by(|a, b| req.order.compare(a.1, b.1).then(a.0.id.cmp(&b.0.id)));
    // A point two shards both hold (one id under two shard keys) is listed once for each of
    // its values, as a point of one shard is: entries sorted by value then id, so the
    // repeats are neighbours.
    all.dedup_by(|a, b| a.0.id == b.0.id && a.1 == b.1);
    all.truncate(req.limit);
    Ok(all)
}

/// The points of `ids` over every shard, each asked of the shard that holds it
/// ([`Shard::placement`], the rule writes are placed by), in the order asked, each id once;
/// ids not stored are left out.
pub async fn retrieve(
    shards: &[Arc<dyn Shard>],
    ids: &[PointId],
    req: Arc<RetrieveRequest>,
    deadline: Instant,
) -> Result<Vec<Record>, ShardError> {
    let n = shards.len();
    if n == 0 {
        return Ok(Vec::new());
    }
    let mut seen = std::collections::HashSet::with_capacity(ids.len());
    let order: Vec<PointId> = ids.iter().copied().filter(|id| seen.insert(*id)).collect();
    let placement = shards[0].placement();
    let mut by_shard: Vec<Vec<PointId>> = vec![Vec::new(); n];
    for id in &order {
        match placement.shard_of(id, n) {
            Some(k) => by_shard[k].push(*id),
            // Any shard may hold it: every shard is asked (the first in shard order keeps it).
            None => by_shard.iter_mut().for_each(|ids| ids.push(*id)),
        }
    }
    let found = futures::future::try_join_all(
        by_shard
            .into_iter()
            .enumerate()
            .filter(|(_, ids)| !ids.is_empty())
            .map(|(k, ids)| shards[k].retrieve(ids, req.clone(), deadline)),
    )
    .await?;
    let mut by_id: std::collections::HashMap<PointId, Record> =
        std::collections::HashMap::with_capacity(order.len());
    for r in found.into_iter().flatten() {
        by_id.entry(r.id).or_insert(r);
    }
    Ok(order.iter().filter_map(|id| by_id.remove(id)).collect())
}

/// The dense vector `name` of each of `ids` (in the order given; `None` where the point or
/// its vector is not stored), each asked of the shard that holds it, or of every shard
/// when any may ([`Placement::Any`]).
pub async fn vectors(
    shards: &[Arc<dyn Shard>],
    ids: &[PointId],
    name: &str,
    deadline: Instant,
) -> Result<Vec<Option<Vec<f32>>>, ShardError> {
    let n = shards.len();
    let Some(first) = shards.first() else {
        return Ok(vec![None; ids.len()]);
    };
    let placement = first.placement();
    let mut by_shard: Vec<Vec<PointId>> = vec![Vec::new(); n];
    for id in ids {
        match placement.shard_of(id, n) {
            Some(k) => by_shard[k].push(*id),
            None => by_shard.iter_mut().for_each(|s| s.push(*id)),
        }
    }
    let mut fetched: Vec<std::vec::IntoIter<Option<Vec<f32>>>> = futures::future::try_join_all(
        by_shard
            .into_iter()
            .enumerate()
            .map(|(k, ids)| shards[k].vectors(ids, name.to_string(), deadline)),
    )
    .await?
    .into_iter()
    .map(Vec::into_iter)
    .collect();
    Ok(ids
        .iter()
        .map(|id| match placement.shard_of(id, n) {
            Some(k) => fetched[k].next().flatten(),
            // Every shard was asked: the first that holds it.
            None => fetched
                .iter_mut()
                .fold(None, |found, f| found.or(f.next().flatten())),
        })
        .collect())
}
