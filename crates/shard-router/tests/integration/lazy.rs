//! Shards whose work starts only when their future is polled, as a remote shard's call does:
//! the fan-out must poll every shard's search at once (here each waits for all the others at
//! a barrier, so a fan-out that awaited one shard first would never finish), and, in a scope
//! allowing partial answers, answer from the shards that could.

use futures::future::BoxFuture;
use index_core::{PointId, SearchParams};
use payload::{Filter, PayloadSelector};
use quant::Metric;
use shard_router::{
    partial, search, search_observed, OrderedScrollRequest, RetrieveRequest, ScrollRequest, Shard,
    ShardAnswer, ShardError,
};
use std::sync::Arc;
use std::time::{Duration, Instant};
use storage::{Record, ScoredPoint, ScrollPage, SearchRequest, VectorSelector};

/// A shard answering one hit (its own id as the point, at distance `id`) once every other
/// shard of the barrier has been asked too; `down` shards cannot be reached.
struct LazyShard {
    id: u32,
    barrier: Arc<tokio::sync::Barrier>,
    down: bool,
}

fn unreachable_shard<T: Send + 'static>(shard: u32) -> BoxFuture<'static, Result<T, ShardError>> {
    Box::pin(async move {
        Err(ShardError::Unavailable {
            shard,
            reason: "not used by this test".into(),
        })
    })
}

impl Shard for LazyShard {
    fn id(&self) -> u32 {
        self.id
    }

    fn search(
        &self,
        _req: Arc<SearchRequest>,
        _deadline: Instant,
    ) -> BoxFuture<'static, Result<ShardAnswer, ShardError>> {
        let (id, barrier, down) = (self.id, self.barrier.clone(), self.down);
        Box::pin(async move {
            if down {
                return Err(ShardError::Unavailable {
                    shard: id,
                    reason: "connection refused".into(),
                });
            }
            barrier.wait().await;
            Ok(ShardAnswer {
                hits: vec![ScoredPoint {
                    record: Record {
                        id: PointId::Num(u64::from(id)),
                        payload: None,
                        vectors: None,
                        sparse: Vec::new(),
                        multi: Vec::new(),
                    },
                    distance: id as f32,
                    score: -(id as f32),
                }],
                exact: true,
            })
        })
    }

    fn count(
        &self,
        _filter: Option<Arc<Filter>>,
        _deadline: Instant,
    ) -> BoxFuture<'static, Result<usize, ShardError>> {
        let (id, down) = (self.id, self.down);
        Box::pin(async move {
            if down {
                Err(ShardError::Timeout { shard: id })
            } else {
                Ok(10 * id as usize)
            }
        })
    }

    fn facet(
        &self,
        _key: Arc<payload::KeyPath>,
        _filter: Option<Arc<Filter>>,
        _deadline: Instant,
    ) -> BoxFuture<'static, Result<Vec<(serde_json::Value, usize)>, ShardError>> {
        unreachable_shard(self.id)
    }

    fn sample(
        &self,
        _filter: Option<Arc<Filter>>,
        _name: Option<String>,
        _n: usize,
        _seed: u64,
        _deadline: Instant,
    ) -> BoxFuture<'static, Result<storage::matrix::ShardSample, ShardError>> {
        unreachable_shard(self.id)
    }

    fn vectors(
        &self,
        _ids: Vec<PointId>,
        _name: String,
        _deadline: Instant,
    ) -> BoxFuture<'static, Result<Vec<Option<Vec<f32>>>, ShardError>> {
        unreachable_shard(self.id)
    }

    fn scroll(
        &self,
        _req: Arc<ScrollRequest>,
        _deadline: Instant,
    ) -> BoxFuture<'static, Result<ScrollPage, ShardError>> {
        unreachable_shard(self.id)
    }

    fn scroll_ordered(
        &self,
        _req: Arc<OrderedScrollRequest>,
        _deadline: Instant,
    ) -> BoxFuture<'static, Result<Vec<(Record, storage::OrderValue)>, ShardError>> {
        unreachable_shard(self.id)
    }

    fn retrieve(
        &self,
        _ids: Vec<PointId>,
        _req: Arc<RetrieveRequest>,
        _deadline: Instant,
    ) -> BoxFuture<'static, Result<Vec<Record>, ShardError>> {
        unreachable_shard(self.id)
    }
}

fn shards(n: u32, down: &[u32]) -> Vec<Arc<dyn Shard>> {
    let up = n - down.len() as u32;
    let barrier = Arc::new(tokio::sync::Barrier::new(up as usize));
    (0..n)
        .map(|id| {
            Arc::new(LazyShard {
                id,
                barrier: barrier.clone(),
                down: down.contains(&id),
            }) as Arc<dyn Shard>
        })
        .collect()
}

fn request() -> Arc<SearchRequest> {
    Arc::new(SearchRequest {
        vector_name: String::new(),
        query: storage::Query::Nearest(vec![0.0]),
        filter: None,
        params: SearchParams::top(10),
        with_payload: PayloadSelector::Nothing,
        with_vector: VectorSelector::Nothing,
        candidates: None,
    })
}

fn ids(hits: &[ScoredPoint]) -> Vec<PointId> {
    hits.iter().map(|h| h.record.id).collect()
}

#[tokio::test]
async fn every_shard_is_asked_at_once() {
    let deadline = Instant::now() + Duration::from_secs(5);
    let all = shards(4, &[]);
    let fanout = search(&all, request(), Metric::Euclidean, deadline);
    let hits = tokio::time::timeout(Duration::from_secs(5), fanout)
        .await
        .expect("the fan-out waited on one shard before asking the others")
        .unwrap();
    assert_eq!(ids(&hits), (0..4u64).map(PointId::Num).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_shard_down_fails_the_search_unless_partial_answers_are_allowed() {
    let deadline = Instant::now() + Duration::from_secs(5);
    let down = shards(4, &[2]);
    let err = search(&down, request(), Metric::Euclidean, deadline)
        .await
        .unwrap_err();
    assert!(
        matches!(err, ShardError::Unavailable { shard: 2, .. }),
        "{err}"
    );
    let (hits, missing) = tokio::time::timeout(
        Duration::from_secs(5),
        partial::allowing(search(&down, request(), Metric::Euclidean, deadline)),
    )
    .await
    .expect("the fan-out waited on one shard before asking the others");
    assert_eq!(
        ids(&hits.unwrap()),
        [0, 1, 3].map(PointId::Num).to_vec(),
        "the answer of the shards that answered"
    );
    assert_eq!(missing, vec![2]);
    let (count, missing) = partial::allowing(shard_router::count(&down, None, deadline)).await;
    assert_eq!(count.unwrap(), 10 + 30);
    assert_eq!(missing, vec![2]);
    // Every shard down: an error, never an empty answer presented as an answer.
    let all_down = shards(2, &[0, 1]);
    let (hits, _) =
        partial::allowing(search(&all_down, request(), Metric::Euclidean, deadline)).await;
    assert!(hits.is_err());
}

#[tokio::test]
async fn each_shards_answer_time_is_observed_once_a_failure_too() {
    let deadline = Instant::now() + Duration::from_secs(5);
    let down = shards(4, &[2]);
    let seen = std::sync::Mutex::new(Vec::new());
    let observe = |shard: u32, took: Duration| seen.lock().unwrap().push((shard, took));
    let started = Instant::now();
    let (hits, missing) = tokio::time::timeout(
        Duration::from_secs(5),
        partial::allowing(search_observed(
            &down,
            request(),
            Metric::Euclidean,
            deadline,
            &observe,
        )),
    )
    .await
    .expect("the fan-out waited on one shard before asking the others");
    let whole = started.elapsed();
    assert_eq!(ids(&hits.unwrap()), [0u64, 1, 3].map(PointId::Num));
    assert_eq!(missing, vec![2]);
    let mut seen = seen.into_inner().unwrap();
    seen.sort_by_key(|(shard, _)| *shard);
    assert_eq!(
        seen.iter().map(|(shard, _)| *shard).collect::<Vec<_>>(),
        [0, 1, 2, 3]
    );
    assert!(seen.iter().all(|(_, took)| *took <= whole), "{seen:?}");
}
