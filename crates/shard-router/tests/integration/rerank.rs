//! Shards whose scores are approximate: the fan-out re-ranks their candidates with the
//! full-precision vectors, removes a point two shards both return, and cuts to the limit.

use futures::future::BoxFuture;
use index_core::{PointId, SearchParams};
use payload::{Filter, PayloadSelector};
use quant::Metric;
use shard_router::{
    merge_shard_results, search, RetrieveRequest, ScrollRequest, Shard, ShardAnswer, ShardError,
};
use std::sync::Arc;
use std::time::{Duration, Instant};
use storage::{Record, ScoredPoint, ScrollPage, SearchRequest, VectorSelector};

/// A shard that scores with vectors rounded to one decimal (as a coarse quantization would)
/// and says its scores are approximate; `vectors` gives the exact ones.
struct ApproxShard {
    id: u32,
    points: Vec<(PointId, Vec<f32>)>,
}

impl ApproxShard {
    fn hits(&self, req: &SearchRequest, metric: Metric) -> Vec<ScoredPoint> {
        let kernels = quant::kernels();
        let mut hits: Vec<ScoredPoint> = self
            .points
            .iter()
            .map(|(id, v)| {
                let coarse: Vec<f32> = v.iter().map(|x| (x * 10.0).round() / 10.0).collect();
                let distance = metric.distance(
                    kernels,
                    req.query.nearest().expect("a nearest query"),
                    &coarse,
                );
                ScoredPoint {
                    record: Record {
                        id: *id,
                        payload: None,
                        vectors: None,
                        sparse: Vec::new(),
                        multi: Vec::new(),
                    },
                    distance,
                    score: metric.score(distance),
                }
            })
            .collect();
        hits.sort_by(|a, b| {
            a.distance
                .total_cmp(&b.distance)
                .then(a.record.id.cmp(&b.record.id))
        });
        hits.truncate(req.params.limit);
        hits
    }
}

impl Shard for ApproxShard {
    fn id(&self) -> u32 {
        self.id
    }

    fn search(
        &self,
        req: Arc<SearchRequest>,
        _deadline: Instant,
    ) -> BoxFuture<'static, Result<ShardAnswer, ShardError>> {
        let hits = self.hits(&req, Metric::Euclidean);
        Box::pin(async move { Ok(ShardAnswer { hits, exact: false }) })
    }

    fn count(
        &self,
        _filter: Option<Arc<Filter>>,
        _deadline: Instant,
    ) -> BoxFuture<'static, Result<usize, ShardError>> {
        let n = self.points.len();
        Box::pin(async move { Ok(n) })
    }

    fn facet(
        &self,
        _key: Arc<payload::KeyPath>,
        _filter: Option<Arc<Filter>>,
        _deadline: Instant,
    ) -> BoxFuture<'static, Result<Vec<(serde_json::Value, usize)>, ShardError>> {
        // The test's points carry no payload: no value to count.
        Box::pin(async move { Ok(Vec::new()) })
    }

    fn sample(
        &self,
        _filter: Option<Arc<Filter>>,
        _name: Option<String>,
        _n: usize,
        _seed: u64,
        _deadline: Instant,
    ) -> BoxFuture<'static, Result<storage::matrix::ShardSample, ShardError>> {
        // The re-ranking test never samples.
        unreachable!("not sampled")
    }

    fn vectors(
        &self,
        ids: Vec<PointId>,
        _name: String,
        _deadline: Instant,
    ) -> BoxFuture<'static, Result<Vec<Option<Vec<f32>>>, ShardError>> {
        let out = ids
            .iter()
            .map(|id| {
                self.points
                    .iter()
                    .find(|(p, _)| p == id)
                    .map(|(_, v)| v.clone())
            })
            .collect();
        Box::pin(async move { Ok(out) })
    }

    fn scroll(
        &self,
        _req: Arc<ScrollRequest>,
        _deadline: Instant,
    ) -> BoxFuture<'static, Result<ScrollPage, ShardError>> {
        Box::pin(async { unreachable!("the re-rank tests do not scroll") })
    }

    fn scroll_ordered(
        &self,
        _req: Arc<shard_router::OrderedScrollRequest>,
        _deadline: Instant,
    ) -> BoxFuture<'static, Result<Vec<(Record, storage::OrderValue)>, ShardError>> {
        Box::pin(async { unreachable!("the re-rank tests do not scroll") })
    }

    fn retrieve(
        &self,
        _ids: Vec<PointId>,
        _req: Arc<RetrieveRequest>,
        _deadline: Instant,
    ) -> BoxFuture<'static, Result<Vec<Record>, ShardError>> {
        Box::pin(async { unreachable!("the re-rank tests do not retrieve") })
    }
}

fn request(vector: Vec<f32>, limit: usize) -> Arc<SearchRequest> {
    Arc::new(SearchRequest {
        vector_name: String::new(),
        query: storage::Query::Nearest(vector),
        filter: None,
        params: SearchParams::top(limit),
        with_payload: PayloadSelector::Nothing,
        with_vector: VectorSelector::Nothing,
        candidates: None,
    })
}

/// A deterministic pseudo-random value in [0, 1).
fn unit(seed: u64) -> f32 {
    let x = seed
        .wrapping_mul(0x9e37_79b9_7f4a_7c15)
        .rotate_left(29)
        .wrapping_mul(0xbf58_476d_1ce4_e5b9);
    (x >> 40) as f32 / (1u64 << 24) as f32
}

fn vector(id: u64, dim: usize) -> Vec<f32> {
    (0..dim).map(|d| unit(id * 131 + d as u64)).collect()
}

/// Points and their vectors.
type Points = Vec<(PointId, Vec<f32>)>;

/// Three shards over 300 points in 8 dimensions, ids 0..300 placed by `id % 3`, plus ids
/// 0..20 also held by the next shard (as while a point moves between shards).
fn shards() -> (Vec<Arc<dyn Shard>>, Points) {
    let all: Points = (0..300u64)
        .map(|i| (PointId::Num(i), vector(i, 8)))
        .collect();
    let shards = (0..3u64)
        .map(|k| {
            let points = all
                .iter()
                .filter(|(id, _)| {
                    let PointId::Num(n) = id else { unreachable!() };
                    n % 3 == k || (*n < 20 && (n + 1) % 3 == k)
                })
                .cloned()
                .collect();
            Arc::new(ApproxShard {
                id: k as u32,
                points,
            }) as Arc<dyn Shard>
        })
        .collect();
    (shards, all)
}

/// Exact top `limit` among `candidates` under Euclidean distance.
fn exact_top(
    query: &[f32],
    candidates: &[(PointId, Vec<f32>)],
    limit: usize,
) -> Vec<(PointId, f32)> {
    let kernels = quant::kernels();
    let mut scored: Vec<(PointId, f32)> = candidates
        .iter()
        .map(|(id, v)| (*id, Metric::Euclidean.distance(kernels, query, v)))
        .collect();
    scored.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
    scored.dedup_by_key(|s| s.0);
    scored.truncate(limit);
    scored
}

#[tokio::test]
async fn approximate_answers_are_re_ranked_exactly_and_deduplicated() {
    let (shards, all) = shards();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut reordered = 0;
    for q in 0..20u64 {
        let query = vector(10_000 + q, 8);
        // Every shard returns all its points: the re-ranked answer is the exact top 10.
        let req = request(query.clone(), 300);
        let got = search(&shards, req.clone(), Metric::Euclidean, deadline)
            .await
            .expect("search");
        let want = exact_top(&query, &all, 300);
        assert_eq!(
            got.len(),
            want.len(),
            "query {q}: a duplicate was kept or a point lost"
        );
        for (rank, (g, (id, d))) in got.iter().zip(&want).enumerate() {
            assert_eq!(g.record.id, *id, "query {q} rank {rank}");
            assert!(
                (g.distance - d).abs() <= 1e-5 * d.max(1.0),
                "query {q} rank {rank}"
            );
            assert_eq!(g.score, Metric::Euclidean.score(g.distance));
        }
        // The approximate order alone differs, so the re-rank is what made the answer exact.
        let approx: Vec<Vec<ScoredPoint>> = shards
            .iter()
            .map(|s| {
                let a = futures::executor::block_on(s.search(req.clone(), deadline)).unwrap();
                a.hits
            })
            .collect();
        let merged = merge_shard_results(&approx, 10);
        if merged
            .iter()
            .map(|h| h.record.id)
            .ne(want.iter().take(10).map(|w| w.0))
        {
            reordered += 1;
        }
    }
    assert!(
        reordered >= 5,
        "the approximate scores reorder too few queries ({reordered}) to test the re-rank"
    );
}

#[tokio::test]
async fn a_cut_keeps_the_closest_of_the_candidates_shards_returned() {
    let (shards, _) = shards();
    let deadline = Instant::now() + Duration::from_secs(10);
    for q in 0..20u64 {
        let query = vector(20_000 + q, 8);
        let req = request(query.clone(), 5);
        // The candidates: what each shard returns for a limit of 5, by its approximate order.
        let mut candidates = Vec::new();
        for s in &shards {
            let a = s.search(req.clone(), deadline).await.unwrap();
            let exact = s
                .vectors(
                    a.hits.iter().map(|h| h.record.id).collect(),
                    String::new(),
                    deadline,
                )
                .await
                .unwrap();
            for (h, v) in a.hits.iter().zip(exact) {
                candidates.push((h.record.id, v.unwrap()));
            }
        }
        let want = exact_top(&query, &candidates, 5);
        let got = search(&shards, req, Metric::Euclidean, deadline)
            .await
            .unwrap();
        let got: Vec<PointId> = got.iter().map(|h| h.record.id).collect();
        let want: Vec<PointId> = want.iter().map(|w| w.0).collect();
        assert_eq!(got, want, "query {q}");
    }
}
