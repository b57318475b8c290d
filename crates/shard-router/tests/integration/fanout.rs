//! Real local shards of a collection on disk behind the `Shard` trait: the fan-out's merged
//! answer is the collection's exact answer, counts add up, and a deadline is kept.

use index_core::{PointId, SearchParams};
use payload::{Filter, PayloadSelector};
use shard_router::{
    count, retrieve, scroll, search, LocalShardHandle, RetrieveRequest, ScrollRequest, SearchPool,
    Shard, ShardError,
};
use std::sync::Arc;
use std::time::{Duration, Instant};
use storage::{CollectionConfig, PointWrite, SearchRequest, Storage, Update, VectorSelector};

fn unit(seed: u64) -> f32 {
    let x = seed
        .wrapping_mul(0x9e37_79b9_7f4a_7c15)
        .rotate_left(29)
        .wrapping_mul(0xbf58_476d_1ce4_e5b9);
    (x >> 40) as f32 / (1u64 << 24) as f32 - 0.5
}

/// A collection of 4 shards holding 3,000 points of 16 dimensions under `distance`, with a
/// payload `bucket` in 0..7, indexed (graphs built) unless `indexed` is false.
fn collection(
    dir: &std::path::Path,
    distance: &str,
    indexed: bool,
) -> (Storage, Arc<storage::Collection>) {
    let store = Storage::open(&dir.join("s"), &dir.join("p")).unwrap();
    let config = CollectionConfig::from_json(&serde_json::json!({
        "vectors": {"size": 16, "distance": distance},
        "shard_number": 4,
        "optimizers_config": {"indexing_threshold": if indexed { 1 } else { 0 }},
    }))
    .unwrap();
    let c = store.create("c", config).unwrap();
    for chunk in (0..3000u64).collect::<Vec<_>>().chunks(500) {
        let points = chunk
            .iter()
            .map(|&i| PointWrite {
                id: PointId::Num(i),
                vectors: vec![(String::new(), (0..16).map(|d| unit(i * 17 + d)).collect())],
                payload: serde_json::json!({"bucket": i % 7})
                    .as_object()
                    .unwrap()
                    .clone(),
                sparse: Vec::new(),
                multi: Vec::new(),
            })
            .collect();
        c.update(Update::Upsert(points), true).unwrap();
    }
    if indexed {
        c.optimize_now().unwrap();
    }
    (store, c)
}

fn handles(c: &storage::Collection, pool: &SearchPool) -> Vec<Arc<dyn Shard>> {
    c.shards()
        .iter()
        .map(|s| Arc::new(LocalShardHandle::new(s.clone(), pool.clone())) as Arc<dyn Shard>)
        .collect()
}

fn request(q: u64, exact: bool, filter: Option<Arc<Filter>>) -> Arc<SearchRequest> {
    let mut params = SearchParams::top(25);
    params.exact = exact;
    Arc::new(SearchRequest {
        vector_name: String::new(),
        query: storage::Query::Nearest((0..16).map(|d| unit(1_000_000 + q * 17 + d)).collect()),
        filter,
        params,
        with_payload: PayloadSelector::All,
        with_vector: VectorSelector::Nothing,
        candidates: None,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_merged_answer_is_the_collections_exact_answer() {
    for (distance, metric) in [
        ("Cosine", quant::Metric::Cosine),
        ("Euclid", quant::Metric::Euclidean),
        ("Dot", quant::Metric::InnerProduct),
    ] {
        for indexed in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let (_store, c) = collection(dir.path(), distance, indexed);
            let pool = SearchPool::new(2).unwrap();
            let shards = handles(&c, &pool);
            let odd = Arc::new(
                Filter::from_json(
                    &serde_json::json!({"must": {"key": "bucket", "match": {"any": [1, 3, 5]}}}),
                )
                .unwrap(),
            );
            for q in 0..10 {
                for filter in [None, Some(odd.clone())] {
                    let req = request(q, true, filter.clone());
                    let deadline = Instant::now() + Duration::from_secs(30);
                    let got = search(&shards, req.clone(), metric, deadline)
                        .await
                        .unwrap();
                    let want = c.search(&req).unwrap();
                    let ctx = format!(
                        "{distance} indexed {indexed} query {q} filter {}",
                        filter.is_some()
                    );
                    assert_eq!(got.len(), 25, "{ctx}");
                    for (g, w) in got.iter().zip(&want) {
                        assert_eq!(g.record.id, w.record.id, "{ctx}");
                        assert_eq!(g.score, w.score, "{ctx}");
                        assert_eq!(g.record.payload, w.record.payload, "{ctx}");
                    }
                    if filter.is_some() {
                        assert!(
                            got.iter().all(|h| [1, 3, 5].contains(
                                &h.record.payload.as_ref().unwrap()["bucket"]
                                    .as_u64()
                                    .unwrap()
                            )),
                            "{ctx}"
                        );
                    }
                    // The approximate walk of the indexed shards finds most of the exact answer.
                    if indexed {
                        let mut approx = (*req).clone();
                        approx.params.exact = false;
                        approx.params.hnsw_ef = Some(64);
                        let walked = search(&shards, Arc::new(approx), metric, deadline)
                            .await
                            .unwrap();
                        let found = walked
                            .iter()
                            .filter(|h| want.iter().any(|w| w.record.id == h.record.id))
                            .count();
                        assert!(found >= 20, "{ctx}: the walk found {found} of 25");
                    }
                }
            }
            let all = count(&shards, None, Instant::now() + Duration::from_secs(5))
                .await
                .unwrap();
            assert_eq!(all, 3000);
            let odd_count = count(&shards, Some(odd), Instant::now() + Duration::from_secs(5))
                .await
                .unwrap();
            assert_eq!(
                odd_count,
                (0..3000u64)
                    .filter(|i| [1, 3, 5].contains(&(i % 7)))
                    .count()
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_passed_deadline_is_a_timeout_not_an_answer() {
    let dir = tempfile::tempdir().unwrap();
    let (_store, c) = collection(dir.path(), "Dot", false);
    let pool = SearchPool::new(1).unwrap();
    let shards = handles(&c, &pool);
    let past = Instant::now() - Duration::from_millis(1);
    match search(
        &shards,
        request(0, true, None),
        quant::Metric::InnerProduct,
        past,
    )
    .await
    {
        Err(ShardError::Timeout { .. }) => {}
        other => panic!("expected a timeout, got {:?}", other.map(|h| h.len())),
    }
    match count(&shards, None, past).await {
        Err(ShardError::Timeout { .. }) => {}
        other => panic!("expected a timeout, got {other:?}"),
    }
    // The pool still serves afterwards.
    let n = count(&shards, None, Instant::now() + Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(n, 3000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handles_are_built_once_per_collection() {
    let dir = tempfile::tempdir().unwrap();
    let (store, c) = collection(dir.path(), "Dot", false);
    let handles = shard_router::ShardHandles::new(SearchPool::new(1).unwrap());
    let first = handles.of(&c);
    assert_eq!(first.len(), 4);
    assert!(Arc::ptr_eq(&first, &handles.of(&c)), "built twice");
    // The same name, a new collection: new handles, over the new shards.
    drop(c);
    assert!(store.delete("c").unwrap());
    let config = CollectionConfig::from_json(&serde_json::json!({
        "vectors": {"size": 16, "distance": "Dot"}, "shard_number": 2
    }))
    .unwrap();
    let again = store.create("c", config).unwrap();
    let second = handles.of(&again);
    assert_eq!(second.len(), 2);
    assert!(!Arc::ptr_eq(&first, &second));
    let n = count(&second, None, Instant::now() + Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(n, 0);
    handles.forget("c");
    assert!(
        !Arc::ptr_eq(&second, &handles.of(&again)),
        "forget kept the handles"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scroll_and_retrieve_over_shards_give_the_collections_answer() {
    let dir = tempfile::tempdir().unwrap();
    let (_store, c) = collection(dir.path(), "Euclid", true);
    let pool = SearchPool::new(2).unwrap();
    let shards = handles(&c, &pool);
    let deadline = || Instant::now() + Duration::from_secs(10);
    let odd = Arc::new(
        Filter::from_json(
            &serde_json::json!({"must": {"key": "bucket", "match": {"any": [1, 3, 5]}}}),
        )
        .unwrap(),
    );
    // Every page of a full scroll, filtered and not, equals the collection's.
    for filter in [None, Some(odd)] {
        let mut from = None;
        let mut pages = 0;
        loop {
            let req = ScrollRequest {
                from,
                limit: 128,
                filter: filter.clone(),
                with_payload: PayloadSelector::All,
                with_vector: VectorSelector::All,
            };
            let got = scroll(&shards, Arc::new(req.clone()), deadline())
                .await
                .unwrap();
            let want = c.scroll(
                from,
                128,
                filter.as_deref(),
                &req.with_payload,
                &req.with_vector,
            );
            let ids = |p: &storage::ScrollPage| p.points.iter().map(|r| r.id).collect::<Vec<_>>();
            assert_eq!(ids(&got), ids(&want), "page {pages}");
            assert_eq!(got.next, want.next, "page {pages}");
            for (g, w) in got.points.iter().zip(&want.points) {
                assert_eq!(g.payload, w.payload);
                assert_eq!(g.vectors, w.vectors);
            }
            pages += 1;
            match got.next {
                Some(next) => from = Some(next),
                None => break,
            }
        }
        assert!(pages > 3, "a scroll of {pages} pages tests no merge");
    }
    // Retrieval keeps the order asked, each id once, and leaves out ids not stored.
    let ids: Vec<PointId> = [2999u64, 5, 7777, 5, 1234, 0, 1].map(PointId::Num).to_vec();
    let req = Arc::new(RetrieveRequest {
        with_payload: PayloadSelector::All,
        with_vector: VectorSelector::Nothing,
    });
    let got = retrieve(&shards, &ids, req.clone(), deadline())
        .await
        .unwrap();
    let got_ids: Vec<PointId> = got.iter().map(|r| r.id).collect();
    assert_eq!(got_ids, [2999u64, 5, 1234, 0, 1].map(PointId::Num));
    let want = c.retrieve(&ids, &req.with_payload, &req.with_vector);
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(&want) {
        assert_eq!((g.id, &g.payload), (w.id, &w.payload));
    }
}
