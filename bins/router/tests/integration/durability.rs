//! Shutdown and restart: SIGTERM drains requests in flight and exits 0, a restart on the same
//! directories gives the same answers, and after SIGKILL every acknowledged write is there.

use crate::common::{signal, DataDirs, Rng, Router};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};

const SLOW_POINTS: u64 = 2000;

/// A collection on which [`SlowBatch`] is slow: every point has a text payload that an
/// unindexed `match: {text}` condition tokenises anew for each point of each search.
pub async fn slow_collection(r: &Router, name: &str) {
    r.create(
        name,
        json!({"vectors": {"size": 4, "distance": "Dot"}, "shard_number": 2}),
    )
    .await;
    let mut rng = Rng::new(99);
    let list: Vec<Value> = (0..SLOW_POINTS)
        .map(|i| {
            let words: Vec<String> = (0..40)
                .map(|_| format!("w{}", rng.next_u64() % 100))
                .collect();
            json!({"id": i, "vector": rng.vector(4), "payload": {"s": words.join(" ")}})
        })
        .collect();
    for chunk in list.chunks(500) {
        r.upsert(name, json!({ "points": chunk })).await;
    }
}

/// A batch of exact, filtered searches by point id over [`slow_collection`], sized on this
/// machine so that it takes about a second, whatever the CPU.
pub struct SlowBatch {
    searches: u64,
    conditions: u64,
}

impl SlowBatch {
    /// Doubles the work until one batch takes at least half a second, then doubles it once
    /// more.
    pub async fn calibrate(r: &Router, name: &str) -> SlowBatch {
        let mut slow = SlowBatch {
            searches: 8,
            conditions: 1,
        };
        for round in 1000.. {
            let started = Instant::now();
            let result = r
                .post(
                    &format!("/collections/{name}/points/query/batch"),
                    slow.body(round),
                )
                .await;
            assert_eq!(
                result.as_array().map(Vec::len),
                Some(slow.searches as usize)
            );
            if started.elapsed() >= Duration::from_millis(500) {
                break;
            }
            slow.double();
            assert!(slow.conditions <= 4096, "cannot make a slow request");
        }
        slow.double();
        slow
    }

    fn double(&mut self) {
        if self.searches < 1000 {
            self.searches = (self.searches * 2).min(1000);
        } else {
            self.conditions *= 2;
        }
    }

    pub fn searches(&self) -> usize {
        self.searches as usize
    }

    /// The request body; each `round` gives distinct searches, so none is a cache hit.
    pub fn body(&self, round: u64) -> Value {
        let conditions: Vec<Value> = (0..self.conditions)
            .map(|j| json!({"key": "s", "match": {"text": format!("absent{j}")}}))
            .collect();
        let searches: Vec<Value> = (0..self.searches)
            .map(|i| {
                json!({
                    "query": {"nearest": (i * 7 + round) % SLOW_POINTS},
                    "limit": 5,
                    "filter": {"must_not": conditions},
                    "params": {"exact": true},
                })
            })
            .collect();
        json!({ "searches": searches })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_then_restart_answers_the_same() {
    let dirs = DataDirs::new();
    let mut r = Router::start(&dirs, &["--shutdown-grace-secs", "20"]);
    slow_collection(&r, "slow").await;
    let slow_batch = SlowBatch::calibrate(&r, "slow").await;
    r.create(
        "keep",
        json!({"vectors": {"size": 5, "distance": "Manhattan"}, "shard_number": 3}),
    )
    .await;
    let mut rng = Rng::new(8);
    let points: Vec<(Value, Vec<f32>)> = (0u64..400).map(|i| (json!(i), rng.vector(5))).collect();
    r.upsert_vectors("keep", &points).await;
    r.post(
        "/collections/keep/points/payload?wait=true",
        json!({"payload": {"kept": true}, "points": [1, 2]}),
    )
    .await;
    let queries: Vec<Value> = (0..5)
        .map(|_| json!({"query": rng.vector(5), "limit": 7, "with_payload": true, "with_vector": true}))
        .collect();
    let mut before = Vec::new();
    for q in &queries {
        before.push(r.query("keep", q.clone()).await);
    }
    let info_before = r.info("keep").await;

    // SIGTERM while a slow request is in flight: it still gets its full answer.
    let slow = {
        let request = r
            .request(
                reqwest::Method::POST,
                "/collections/slow/points/query/batch",
            )
            .json(&slow_batch.body(1));
        tokio::spawn(async move {
            let response = request.send().await.expect("in-flight request");
            let status = response.status();
            let body: Value = response.json().await.expect("json");
            (status, body, Instant::now())
        })
    };
    tokio::time::sleep(Duration::from_millis(150)).await;
    let signalled = Instant::now();
    signal(r.pid(), "-TERM");
    // Not ready from the signal on, while the slow request drains: a probe finds the
    // listener closed (or, on a connection accepted just before, 503), never an answer of
    // another kind (a load balancer would keep sending it requests).
    tokio::time::sleep(Duration::from_millis(50)).await;
    let probe = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .get(r.url("/readyz"))
        .timeout(Duration::from_secs(5))
        .send()
        .await;
    let probed = Instant::now();
    match &probe {
        Ok(answer) => assert_eq!(
            answer.status(),
            reqwest::StatusCode::SERVICE_UNAVAILABLE,
            "/readyz while draining"
        ),
        Err(e) => assert!(e.is_connect(), "/readyz while draining: {e}"),
    }
    let status = tokio::task::block_in_place(|| r.wait_exit(Duration::from_secs(30)))
        .expect("router did not exit within 30 s of SIGTERM");
    let exited = Instant::now();
    assert!(
        status.success(),
        "exit status {status}; log:\n{}",
        r.log_text()
    );
    let (code, body, answered) = slow.await.expect("slow request task");
    assert_eq!(code, reqwest::StatusCode::OK, "{body}");
    assert_eq!(
        body["result"].as_array().map(Vec::len),
        Some(slow_batch.searches())
    );
    assert!(body["result"][0]["points"]
        .as_array()
        .is_some_and(|p| p.len() == 5));
    assert!(
        answered > probed,
        "the slow request finished before the readiness probe; it must be made slower"
    );
    assert!(
        exited.duration_since(signalled) < Duration::from_secs(15),
        "shutdown took {:?}",
        exited.duration_since(signalled)
    );

    let r = Router::start(&dirs, &[]);
    for (q, b) in queries.iter().zip(&before) {
        assert_eq!(&r.query("keep", q.clone()).await, b, "after restart: {q}");
    }
    let info = r.info("keep").await;
    assert_eq!(info["points_count"], info_before["points_count"]);
    assert_eq!(info["config"], info_before["config"]);
    assert_eq!(r.info("slow").await["points_count"], json!(SLOW_POINTS));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_keeps_every_acknowledged_write() {
    let dirs = DataDirs::new();
    let mut router = Router::start(&dirs, &[]);
    router
        .create(
            "crash",
            json!({"vectors": {"size": 3, "distance": "Cosine"}, "shard_number": 2}),
        )
        .await;
    // Writers record what the router acknowledged; the kill lands while they are writing.
    let acked = Arc::new(std::sync::Mutex::new(Vec::<(u64, bool)>::new()));
    let mut writers = Vec::new();
    let base = router.base.clone();
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    for w in 0u64..2 {
        let (acked, http, base) = (acked.clone(), http.clone(), base.clone());
        writers.push(tokio::spawn(async move {
            for i in 0u64.. {
                let id = w * 1_000_000 + i;
                // Alternate upserts and payload updates of an earlier point.
                let (path, body, is_payload) = if i % 3 == 2 {
                    (
                        "/collections/crash/points/payload?wait=true",
                        json!({"payload": {"touched": true}, "points": [id - 1]}),
                        true,
                    )
                } else {
                    (
                        "/collections/crash/points?wait=true",
                        json!({"points": [{"id": id, "vector": [1.0, i as f64, w as f64], "payload": {"i": i}}]}),
                        false,
                    )
                };
                let method = if is_payload {
                    reqwest::Method::POST
                } else {
                    reqwest::Method::PUT
                };
                let sent = http.request(method, format!("{base}{path}")).json(&body);
                match sent.send().await {
                    Ok(resp) if resp.status().is_success() => {
                        let v: Value = match resp.json().await {
                            Ok(v) => v,
                            Err(_) => return,
                        };
                        assert_eq!(v["result"]["status"], "completed");
                        let target = if is_payload { id - 1 } else { id };
                        acked.lock().unwrap().push((target, is_payload));
                    }
                    _ => return,
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    router.kill();
    for w in writers {
        w.await.expect("writer");
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() > 20,
        "only {} writes before the kill",
        acked.len()
    );

    let r = Router::start(&dirs, &[]);
    let upserted: Vec<u64> = acked
        .iter()
        .filter(|(_, p)| !p)
        .map(|(id, _)| *id)
        .collect();
    let touched: Vec<u64> = acked
        .iter()
        .filter(|(_, p)| *p)
        .map(|(id, _)| *id)
        .collect();
    for chunk in upserted.chunks(500) {
        let got = r
            .post(
                "/collections/crash/points",
                json!({"ids": chunk, "with_vector": true}),
            )
            .await;
        let got = got.as_array().unwrap();
        assert_eq!(
            got.len(),
            chunk.len(),
            "acknowledged points missing after SIGKILL"
        );
        for p in got {
            let v = p["vector"].as_array().unwrap();
            assert!(
                v.iter().all(|x| x.as_f64().is_some_and(f64::is_finite)),
                "{p}"
            );
        }
    }
    let got = r
        .post("/collections/crash/points", json!({"ids": touched}))
        .await;
    assert!(
        got.as_array()
            .unwrap()
            .iter()
            .all(|p| p["payload"]["touched"] == json!(true)),
        "acknowledged payload lost"
    );
    // No phantom points: everything present was at least sent.
    let count = r
        .post("/collections/crash/points/count", json!({"exact": true}))
        .await["count"]
        .as_u64()
        .unwrap();
    assert!(count >= upserted.len() as u64 && count <= upserted.len() as u64 + 2);
    assert_eq!(r.info("crash").await["points_count"], json!(count));
}
