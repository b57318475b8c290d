//! Load shedding, body limits, the fixed endpoints (`/`, health, `/metrics`) and unknown
//! paths.

use crate::common::{metric_value, DataDirs, Rng, Router};
use crate::durability::{slow_collection, SlowBatch};
use reqwest::{header, Method, StatusCode};
use serde_json::{json, Value};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_request_at_a_time_sheds_the_rest_with_retry_after() {
    let dirs = DataDirs::new();
    let r = Router::start(&dirs, &["--max-concurrent-requests", "1"]);
    slow_collection(&r, "slow").await;
    let slow_batch = SlowBatch::calibrate(&r, "slow").await;
    // A slow request holds the only slot; others are refused at once, not queued. Whether
    // one lands inside the window is timing: retry with another slow request a few times.
    for round in 1..=3 {
        let slow = r
            .request(Method::POST, "/collections/slow/points/query/batch")
            .json(&slow_batch.body(round));
        let slow = tokio::spawn(async move { slow.send().await.expect("slow").status() });
        let mut shed = None;
        while !slow.is_finished() {
            let response = r
                .request(Method::GET, "/collections")
                .send()
                .await
                .expect("probe");
            if response.status() == StatusCode::SERVICE_UNAVAILABLE {
                let retry = response.headers().get(header::RETRY_AFTER).cloned();
                let body: Value = response.json().await.expect("json error");
                shed = Some((retry, body));
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        assert_eq!(slow.await.expect("slow task"), StatusCode::OK);
        if let Some((retry, body)) = shed {
            let retry = retry.expect("a 503 carries Retry-After");
            assert!(retry.to_str().unwrap().parse::<u64>().is_ok(), "{retry:?}");
            assert!(body["status"]["error"].is_string(), "{body}");
            assert!(body["time"].is_number(), "{body}");
            // The slot is free again.
            r.get("/collections").await;
            // Counted apart from other 503s, for its own alert.
            assert!(r.metric("vector_router_http_requests_shed_total").await >= 1.0);
            return;
        }
    }
    panic!("no request was shed in three rounds: the slow request is too fast on this machine");
}

fn upsert_body(points: usize, dim: usize) -> Value {
    let mut rng = Rng::new(4);
    let list: Vec<Value> = (0..points)
        .map(|i| json!({"id": i, "vector": rng.vector(dim)}))
        .collect();
    json!({ "points": list })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_over_the_limit_get_413() {
    let dirs = DataDirs::new();
    let r = Router::start(&dirs, &["--max-request-size-mb", "1"]);
    r.create("c", json!({"vectors": {"size": 64, "distance": "Dot"}}))
        .await;
    let small = upsert_body(100, 64);
    r.upsert("c", small).await;
    let big = upsert_body(3000, 64);
    assert!(serde_json::to_vec(&big).unwrap().len() > 1 << 20);
    let (status, body) = r
        .call(Method::PUT, "/collections/c/points?wait=true", Some(&big))
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert!(
        body["status"]["error"].is_string(),
        "Qdrant's error shape: {body}"
    );
    assert!(body["time"].is_number(), "{body}");
    assert_eq!(r.info("c").await["points_count"], json!(100));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_under_the_default_limit_are_accepted() {
    // The default limit is 32 MB: a 3 MB upsert must not meet some smaller limit on the way.
    let dirs = DataDirs::new();
    let r = Router::start(&dirs, &[]);
    r.create("c", json!({"vectors": {"size": 128, "distance": "Dot"}}))
        .await;
    let big = upsert_body(4000, 128);
    assert!(serde_json::to_vec(&big).unwrap().len() > 3 << 20);
    r.upsert("c", big).await;
    assert_eq!(r.info("c").await["points_count"], json!(4000));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixed_endpoints_and_unknown_paths() {
    let dirs = DataDirs::new();
    let r = Router::start(&dirs, &[]);
    for (path, text) in [
        ("/healthz", "healthz check passed"),
        ("/livez", "healthz check passed"),
        ("/readyz", "all shards are ready"),
    ] {
        let response = r.request(Method::GET, path).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let ct = response.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .to_string();
        assert!(ct.starts_with("text/plain"), "{path}: {ct}");
        assert_eq!(response.text().await.unwrap(), text, "{path}");
    }

    let (status, root) = r.call(Method::GET, "/", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(root["title"], "qdrant - vector search engine");
    assert_eq!(root["version"], "1.20.0");
    let commit = root["commit"].as_str().expect("commit");
    assert!(
        commit.len() == 40 && commit.chars().all(|c| c.is_ascii_hexdigit()),
        "{commit}"
    );
    assert!(root.get("result").is_none(), "`/` is not wrapped: {root}");

    let (status, body) = r.call(Method::GET, "/no/such/path", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(
        body["status"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("/no/such/path")),
        "{body}"
    );

    r.create("m", json!({"vectors": {"size": 2, "distance": "Dot"}}))
        .await;
    for _ in 0..3 {
        r.query("m", json!({"query": [1.0, 1.0]})).await;
    }
    let response = r.request(Method::GET, "/metrics").send().await.unwrap();
    let ct = response.headers()[header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .to_string();
    assert!(ct.starts_with("text/plain"), "{ct}");
    let text = response.text().await.unwrap();
    assert!(
        text.contains("# TYPE vector_router_http_requests_total counter"),
        "{text}"
    );
    let query_sample = r#"vector_router_http_requests_total{endpoint="/collections/{name}/points/query",method="POST",status="200"}"#;
    assert_eq!(metric_value(&text, query_sample), 3.0, "{text}");
    assert!(
        !text.contains("endpoint=\"/collections/m/"),
        "labels are route templates, not concrete paths"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("vector_router_http_requests_total{")
                && l.contains("status=\"404\"")),
        "{text}"
    );
}

/// `promtool check metrics` (Prometheus' own linter) accepts `/metrics` after traffic of
/// every kind: writes, searches, cache hits, errors, an unknown path. Skipped with a notice
/// where promtool is not installed, unless `VR_REQUIRE_PROMTOOL` is set (CI installs Debian's
/// `prometheus` package and sets it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_pass_promtool() {
    let required = std::env::var_os("VR_REQUIRE_PROMTOOL").is_some();
    if std::process::Command::new("promtool")
        .arg("--version")
        .output()
        .is_err()
    {
        assert!(
            !required,
            "VR_REQUIRE_PROMTOOL is set and promtool is not installed"
        );
        eprintln!("SKIPPED: promtool is not installed");
        return;
    }
    let dirs = DataDirs::new();
    let r = Router::start(&dirs, &[]);
    r.create("m", json!({"vectors": {"size": 4, "distance": "Dot"}}))
        .await;
    r.upsert("m", upsert_body(50, 4)).await;
    let q = json!({"query": [1.0, 0.0, 0.0, 0.0], "limit": 3});
    for _ in 0..2 {
        // The second is a cache hit.
        r.post("/collections/m/points/query", q.clone()).await;
    }
    let (status, _) = r
        .call(
            Method::POST,
            "/collections/m/points/query",
            Some(&json!({"query": [1.0]})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = r.call(Method::GET, "/no/such/path", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, text) = r.text("/metrics").await;
    assert_eq!(status, StatusCode::OK);
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run promtool");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool: {}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
