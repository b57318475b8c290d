//! The result cache never serves an answer older than an acknowledged write, expires after
//! its TTL, and is off with a TTL of 0. Hits and misses are read from `/metrics`.

use crate::common::{ids, DataDirs, Rng, Router};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

const HITS: &str = "vector_router_cache_hits_total";
const MISSES: &str = "vector_router_cache_misses_total";

/// 50 small points far from `[1, 0, 0, 0]` under Dot.
async fn small_collection(r: &Router, name: &str) {
    r.create(
        name,
        json!({"vectors": {"size": 4, "distance": "Dot"}, "shard_number": 2}),
    )
    .await;
    let mut rng = Rng::new(3);
    let points: Vec<(Value, Vec<f32>)> = (0u64..50)
        .map(|i| (json!(i), rng.vector(4).iter().map(|x| x / 10.0).collect()))
        .collect();
    r.upsert_vectors(name, &points).await;
}

/// The answer through query, legacy search and batch query, which must agree.
async fn all_forms(r: &Router, query: &Value, search: &Value, batch: &Value) -> Vec<Value> {
    let a = r.query("c", query.clone()).await;
    let b = r.post("/collections/c/points/search", search.clone()).await;
    let c = r
        .post("/collections/c/points/query/batch", batch.clone())
        .await;
    let b = b.as_array().unwrap().clone();
    let c = c[0]["points"].as_array().unwrap().clone();
    assert_eq!(a, b, "query and legacy search disagree");
    assert_eq!(a, c, "query and batch query disagree");
    a
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_are_never_hidden_by_the_cache() {
    let dirs = DataDirs::new();
    let r = Router::start(&dirs, &[]);
    small_collection(&r, "c").await;
    let query = json!({"query": [1.0, 0.0, 0.0, 0.0], "limit": 3, "with_payload": true});
    let search = json!({"vector": [1.0, 0.0, 0.0, 0.0], "limit": 3, "with_payload": true});
    let batch = json!({"searches": [query.clone()]});
    let hits_before = r.metric(HITS).await;
    for round in 0..25u64 {
        // Fill the cache with the current answer (twice: the second is a hit).
        let plain = all_forms(&r, &query, &search, &batch).await;
        assert_eq!(all_forms(&r, &query, &search, &batch).await, plain);
        assert!(
            !ids(&plain).contains(&json!(1000)),
            "round {round}: {plain:?}"
        );

        let top = 10.0 * (round + 1) as f64;
        r.upsert(
            "c",
            json!({"points": [{"id": 1000, "vector": [top, 0.0, 0.0, 0.0]}]}),
        )
        .await;
        let got = all_forms(&r, &query, &search, &batch).await;
        assert_eq!(
            got[0]["id"],
            json!(1000),
            "round {round}: upsert hidden: {got:?}"
        );
        assert_eq!(got[0]["score"].as_f64(), Some(top));
        assert_eq!(got[0]["payload"], json!({}), "round {round}");

        r.post(
            "/collections/c/points/payload?wait=true",
            json!({"payload": {"round": round}, "points": [1000]}),
        )
        .await;
        let got = all_forms(&r, &query, &search, &batch).await;
        assert_eq!(
            got[0]["payload"],
            json!({"round": round}),
            "round {round}: payload hidden"
        );

        r.post(
            "/collections/c/points/delete?wait=true",
            json!({"points": [1000]}),
        )
        .await;
        let got = all_forms(&r, &query, &search, &batch).await;
        assert_eq!(got, plain, "round {round}: delete hidden");
    }
    // The loop means something only if the cache was really answering in between.
    let hits = r.metric(HITS).await - hits_before;
    assert!(hits >= 25.0 * 3.0, "only {hits} cache hits");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_and_readers_see_every_acknowledged_write() {
    let dirs = DataDirs::new();
    let r = Arc::new(Router::start(&dirs, &[]));
    small_collection(&r, "c").await;
    const WRITERS: u64 = 2;
    const ROUNDS: u64 = 40;
    // acked[w] = the last value writer w had acknowledged.
    let acked: Arc<Vec<AtomicU64>> = Arc::new((0..WRITERS).map(|_| AtomicU64::new(0)).collect());
    let done = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let (r, acked, done) = (r.clone(), acked.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            for k in 1..=ROUNDS {
                // Score under [1, 0, 0, 0] is 1000 + k: the answer says which write it saw.
                r.upsert(
                    "c",
                    json!({"points": [{"id": 2000 + w, "vector": [1000.0 + k as f64, 0.0, 0.0, 0.0], "payload": {"k": k}}]}),
                )
                .await;
                acked[w as usize].store(k, Ordering::SeqCst);
            }
            done.fetch_add(1, Ordering::SeqCst);
        }));
    }
    let mut readers = Vec::new();
    for _ in 0..4 {
        let (r, acked, done) = (r.clone(), acked.clone(), done.clone());
        readers.push(tokio::spawn(async move {
            let mut checked = 0u64;
            while done.load(Ordering::SeqCst) < WRITERS || checked == 0 {
                let floor: Vec<u64> = acked.iter().map(|a| a.load(Ordering::SeqCst)).collect();
                let got = r
                    .query(
                        "c",
                        json!({"query": [1.0, 0.0, 0.0, 0.0], "limit": 2, "with_payload": true}),
                    )
                    .await;
                for w in 0..WRITERS {
                    if floor[w as usize] == 0 {
                        continue;
                    }
                    let p = got
                        .iter()
                        .find(|p| p["id"] == json!(2000 + w))
                        .unwrap_or_else(|| panic!("writer {w}'s point missing: {got:?}"));
                    let seen = p["score"].as_f64().unwrap() - 1000.0;
                    assert!(
                        seen >= floor[w as usize] as f64,
                        "writer {w} had acknowledged {} but the answer shows {seen}",
                        floor[w as usize]
                    );
                    assert_eq!(p["payload"]["k"].as_f64(), Some(seen));
                }
                checked += 1;
            }
            checked
        }));
    }
    for t in tasks {
        t.await.expect("writer");
    }
    for t in readers {
        assert!(t.await.expect("reader") > 0);
    }
    let got = r
        .query("c", json!({"query": [1.0, 0.0, 0.0, 0.0], "limit": 2}))
        .await;
    assert!(got
        .iter()
        .all(|p| p["score"].as_f64() == Some(1000.0 + ROUNDS as f64)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_expire_after_the_ttl() {
    let dirs = DataDirs::new();
    let r = Router::start(&dirs, &["--cache-ttl-secs", "0.5"]);
    small_collection(&r, "c").await;
    let query = json!({"query": [0.0, 1.0, 0.0, 0.0], "limit": 5});
    let (h0, m0) = (r.metric(HITS).await, r.metric(MISSES).await);
    // Back to back, well inside the TTL: computed once, then served from the cache.
    let first = r.query("c", query.clone()).await;
    assert_eq!(r.query("c", query.clone()).await, first);
    assert_eq!(r.metric(MISSES).await, m0 + 1.0, "first answer is computed");
    assert_eq!(
        r.metric(HITS).await,
        h0 + 1.0,
        "second answer is served from the cache"
    );
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(r.query("c", query.clone()).await, first);
    assert_eq!(r.metric(HITS).await, h0 + 1.0, "expired: no hit");
    assert_eq!(r.metric(MISSES).await, m0 + 2.0, "expired: recomputed");
    assert_eq!(r.query("c", query).await, first);
    assert_eq!(r.metric(HITS).await, h0 + 2.0, "cached again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ttl_zero_disables_the_cache() {
    let dirs = DataDirs::new();
    let r = Router::start(&dirs, &["--cache-ttl-secs", "0"]);
    small_collection(&r, "c").await;
    let query = json!({"query": [0.0, 0.0, 1.0, 0.0], "limit": 5});
    let first = r.query("c", query.clone()).await;
    for _ in 0..3 {
        assert_eq!(r.query("c", query.clone()).await, first);
    }
    assert_eq!(r.metric(HITS).await, 0.0);
    assert_eq!(
        r.metric(MISSES).await,
        0.0,
        "a disabled cache is never consulted"
    );
    r.upsert(
        "c",
        json!({"points": [{"id": 7, "vector": [0.0, 0.0, 100.0, 0.0]}]}),
    )
    .await;
    assert_eq!(r.query("c", query).await[0]["id"], json!(7));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recreated_collection_never_sees_the_old_answers() {
    let dirs = DataDirs::new();
    let r = Router::start(&dirs, &[]);
    let query = json!({"query": [1.0, 0.0], "limit": 3});
    for round in 0..5u64 {
        r.create("re", json!({"vectors": {"size": 2, "distance": "Dot"}}))
            .await;
        let id = 100 + round;
        r.upsert("re", json!({"points": [{"id": id, "vector": [1.0, 0.0]}]}))
            .await;
        for _ in 0..2 {
            assert_eq!(ids(&r.query("re", query.clone()).await), vec![json!(id)]);
        }
        assert_eq!(
            r.ok(reqwest::Method::DELETE, "/collections/re", None).await,
            json!(true)
        );
        let (status, _) = r
            .call(
                reqwest::Method::POST,
                "/collections/re/points/query",
                Some(&query),
            )
            .await;
        assert_eq!(
            status,
            reqwest::StatusCode::NOT_FOUND,
            "deleted, yet answered"
        );
    }
}
