//! Cluster mode: a router whose collections' shards are collections on three node
//! processes (routers themselves, reached over gRPC), checked against one embedded router
//! holding every point: the same ids, scores, payloads and counts for plain, filtered,
//! exact and batch queries, scrolls, retrievals, recommendations and writes; a node killed
//! (`kill -9`) makes reads fail (never a partial answer presented as whole) and, once
//! restarted on its port, serves again identically, with every write it acknowledged,
//! without a restart of the cluster router; bad node lists stop the router with a clear
//! error.

use crate::common::{router_command, DataDirs, Router};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::time::Duration;

/// A free loopback port (bound, then released for the node to take).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A node: a plain router on fixed ports (so that it can come back on the same ones).
fn start_node(dirs: &DataDirs, http: u16, grpc: u16) -> Router {
    let mut cmd = router_command();
    cmd.args(["--http-port", &http.to_string()])
        .args(["--grpc-port", &grpc.to_string()])
        .arg("--storage-path")
        .arg(dirs.storage())
        .arg("--snapshots-path")
        .arg(dirs.snapshots())
        .args(["--log-level", "warn"]);
    Router::spawn(cmd, &dirs.log())
}

fn start_cluster_router(dirs: &DataDirs, nodes: &[String], extra: &[&str]) -> Router {
    let list = nodes.join(",");
    let mut args = vec!["--cluster-nodes", list.as_str(), "--cache-ttl-secs", "0"];
    args.extend_from_slice(extra);
    Router::start(dirs, &args)
}

/// A deterministic vector of point `i`.
fn vector(i: u64, dim: usize) -> Vec<f32> {
    let mut x = i.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..dim)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            ((x >> 40) as f32 / (1u64 << 24) as f32) - 0.5
        })
        .collect()
}

const CITIES: [&str; 4] = ["berlin", "paris", "rome", "oslo"];
const DIM: usize = 16;
const POINTS: u64 = 1_500;

fn points(from: u64, to: u64) -> Vec<Value> {
    (from..to)
        .map(|i| {
            json!({
                "id": i,
                "vector": vector(i, DIM),
                "payload": {"city": CITIES[(i % 4) as usize], "n": i, "half": i as f64 / 2.0,
                            "tags": [format!("t{}", i % 3)]}
            })
        })
        .collect()
}

/// Both routers' answers to the same request, which must succeed and be equal.
async fn same(
    cluster: &Router,
    embedded: &Router,
    method: Method,
    path: &str,
    body: Value,
) -> Value {
    let a = cluster.ok(method.clone(), path, Some(&body)).await;
    let b = embedded.ok(method, path, Some(&body)).await;
    assert_eq!(a, b, "{path} with {body}: the cluster answered otherwise");
    a
}

#[tokio::test]
async fn cluster_answers_equal_an_embedded_router_and_survive_a_node_restart() {
    let node_dirs: Vec<DataDirs> = (0..3).map(|_| DataDirs::new()).collect();
    let ports: Vec<(u16, u16)> = (0..3).map(|_| (free_port(), free_port())).collect();
    let mut nodes: Vec<Router> = node_dirs
        .iter()
        .zip(&ports)
        .map(|(d, &(h, g))| start_node(d, h, g))
        .collect();
    let urls: Vec<String> = nodes.iter().map(|n| n.grpc.clone()).collect();
    let cluster_dirs = DataDirs::new();
    let cluster = start_cluster_router(&cluster_dirs, &urls, &["--request-timeout-secs", "5"]);
    let embedded_dirs = DataDirs::new();
    let embedded = Router::start(&embedded_dirs, &["--cache-ttl-secs", "0"]);

    let config = json!({"vectors": {"size": DIM, "distance": "Cosine"}});
    for r in [&cluster, &embedded] {
        r.create("c", config.clone()).await;
        r.put(
            "/collections/c/index",
            json!({"field_name": "city", "field_schema": "keyword"}),
        )
        .await;
        r.put(
            "/collections/c/index",
            json!({"field_name": "n", "field_schema": "integer"}),
        )
        .await;
        for chunk in points(0, POINTS).chunks(300) {
            r.upsert("c", json!({ "points": chunk })).await;
        }
    }
    // A second coordinator over the same nodes, started on an empty disk: it finds the
    // collection (its configuration and payload indexes) on the nodes, and answers from the
    // nodes it can reach when one is down.
    let partial_dirs = DataDirs::new();
    let partial = start_cluster_router(
        &partial_dirs,
        &urls,
        &[
            "--cluster-partial-answers",
            "--cluster-call-timeout-ms",
            "2000",
        ],
    );
    let found = partial.info("c").await;
    assert_eq!(
        found["config"]["params"]["vectors"]["size"],
        json!(DIM),
        "{found}"
    );
    assert_eq!(
        found["payload_schema"]["city"]["data_type"], "keyword",
        "{found}"
    );
    assert_eq!(found["points_count"], json!(POINTS));
    assert!(
        found["config"]["metadata"].is_null(),
        "the shard marker leaked: {found}"
    );
    // The same nodes in another order: the collection's shards would be read where they are
    // not; the router refuses to start.
    let reordered: Vec<String> = urls.iter().rev().cloned().collect();
    let wrong_dirs = DataDirs::new();
    let output = router_command()
        .args(["--http-port", "0", "--cluster-nodes", &reordered.join(",")])
        .arg("--storage-path")
        .arg(wrong_dirs.storage())
        .arg("--snapshots-path")
        .arg(wrong_dirs.snapshots())
        .output()
        .expect("run the router");
    assert!(!output.status.success(), "a reordered node list was served");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("in the order"), "{stderr}");
    // Every node holds its part, and the parts add up.
    let mut held = Vec::new();
    for n in &nodes {
        let info = n.info("c").await;
        assert_eq!(
            info["payload_schema"]["city"]["data_type"], "keyword",
            "{info}"
        );
        held.push(info["points_count"].as_u64().unwrap());
    }
    assert!(
        held.iter().all(|&h| h > POINTS / 5),
        "unbalanced placement: {held:?}"
    );
    assert_eq!(held.iter().sum::<u64>(), POINTS);
    assert_eq!(cluster.info("c").await["points_count"], json!(POINTS));

    // Writes of every kind, the same on both.
    for r in [&cluster, &embedded] {
        r.post(
            "/collections/c/points/delete?wait=true",
            json!({"points": [3, 4, 5]}),
        )
        .await;
        r.post(
            "/collections/c/points/delete?wait=true",
            json!({"filter": {"must": [{"key": "n", "range": {"gte": 1400, "lt": 1420}}]}}),
        )
        .await;
        r.post(
            "/collections/c/points/payload?wait=true",
            json!({"payload": {"star": true}, "points": [10, 11, 12, 13]}),
        )
        .await;
        r.post(
            "/collections/c/points/payload/delete?wait=true",
            json!({"keys": ["half"], "filter": {"must": [{"key": "city", "match": {"value": "oslo"}}]}}),
        )
        .await;
        r.put(
            "/collections/c/points/vectors?wait=true",
            json!({"points": [{"id": 20, "vector": vector(99_999, DIM)}]}),
        )
        .await;
    }

    let q = |i: u64| vector(1_000_000 + i, DIM);
    let mut queries = Vec::new();
    for i in 0..6 {
        queries.push(json!({"query": q(i), "limit": 10, "with_payload": true}));
        queries.push(
            json!({"query": q(i), "limit": 7, "params": {"exact": true}, "with_vector": true}),
        );
        queries.push(
            json!({"query": q(i), "limit": 10, "with_payload": ["city", "star"],
            "filter": {"must": [{"key": "city", "match": {"any": ["paris", "oslo"]}}],
                       "must_not": [{"key": "n", "range": {"lt": 100}}]}}),
        );
        queries.push(json!({"query": q(i), "limit": 5, "offset": 3, "score_threshold": 0.1}));
    }
    queries.push(
        json!({"query": {"recommend": {"positive": [10, 20], "negative": [30]}}, "limit": 8}),
    );
    queries.push(json!({"query": 20, "limit": 4, "with_payload": true}));
    // Diversity: candidates' vectors are fetched from the nodes that hold them.
    queries.push(json!({"query": {"nearest": q(2), "mmr": {"diversity": 0.6, "candidates_limit": 40}}, "limit": 8}));
    for body in &queries {
        let answer = same(
            &cluster,
            &embedded,
            Method::POST,
            "/collections/c/points/query",
            body.clone(),
        )
        .await;
        let points = answer["points"].as_array().unwrap();
        assert!(!points.is_empty(), "{body}: no hits");
    }
    same(
        &cluster,
        &embedded,
        Method::POST,
        "/collections/c/points/query/batch",
        json!({"searches": queries[..6].to_vec()}),
    )
    .await;
    same(&cluster, &embedded, Method::POST, "/collections/c/points/search/batch", json!({"searches": [
        {"vector": q(7), "limit": 6, "with_payload": true},
        {"vector": q(8), "limit": 3, "filter": {"must": [{"key": "star", "match": {"value": true}}]}},
    ]})).await;
    for body in [
        json!({"exact": true}),
        json!({"filter": {"must": [{"key": "city", "match": {"value": "rome"}}]}}),
    ] {
        same(
            &cluster,
            &embedded,
            Method::POST,
            "/collections/c/points/count",
            body,
        )
        .await;
    }
    // A whole scroll, page by page.
    let mut offset = Value::Null;
    let mut pages = 0;
    loop {
        let page = same(
            &cluster,
            &embedded,
            Method::POST,
            "/collections/c/points/scroll",
            json!({"limit": 200, "offset": offset, "with_payload": true,
                   "filter": {"must_not": [{"key": "city", "match": {"value": "berlin"}}]}}),
        )
        .await;
        pages += 1;
        offset = page["next_page_offset"].clone();
        if offset.is_null() {
            break;
        }
    }
    assert!(pages >= 5, "{pages} pages");
    same(
        &cluster,
        &embedded,
        Method::POST,
        "/collections/c/points",
        json!({"ids": [1, 2, 3, 10, 20, 1_000_000], "with_payload": true, "with_vector": true}),
    )
    .await;
    same(
        &cluster,
        &embedded,
        Method::POST,
        "/collections/c/facet",
        json!({"key": "city", "exact": true}),
    )
    .await;

    // A node killed: reads fail, never a partial answer presented as whole.
    let before = cluster
        .ok(
            Method::POST,
            "/collections/c/points/query",
            Some(&queries[0]),
        )
        .await;
    nodes[1].kill();
    let (status, body) = cluster
        .call(
            Method::POST,
            "/collections/c/points/query",
            Some(&queries[0]),
        )
        .await;
    assert!(
        status == StatusCode::SERVICE_UNAVAILABLE || status == StatusCode::REQUEST_TIMEOUT,
        "a query with a node down answered {status}: {body}"
    );
    assert!(body["status"]["error"].is_string(), "{body}");
    // The partial coordinator answers from nodes 0 and 2, says so, and its answer is exactly
    // theirs merged: their own top hits, by score.
    let response = partial
        .request(Method::POST, "/collections/c/points/query")
        .json(&queries[0])
        .send()
        .await
        .expect("partial query");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["x-vector-router-partial"],
        "missing-shards=1"
    );
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["partial"], json!({"missing_shards": [1]}), "{body}");
    let mut merged: Vec<Value> = Vec::new();
    for k in [0, 2] {
        let r = nodes[k]
            .post("/collections/c/points/query", queries[0].clone())
            .await;
        merged.extend(r["points"].as_array().unwrap().iter().cloned());
    }
    merged.sort_by(|a, b| {
        b["score"]
            .as_f64()
            .unwrap()
            .total_cmp(&a["score"].as_f64().unwrap())
    });
    merged.truncate(10);
    assert_eq!(body["result"]["points"], json!(merged), "partial answer");
    let counted = partial
        .post("/collections/c/points/count", json!({"exact": true}))
        .await;
    let mut live = 0;
    for k in [0, 2] {
        live += nodes[k]
            .post("/collections/c/points/count", json!({"exact": true}))
            .await["count"]
            .as_u64()
            .unwrap();
    }
    assert_eq!(counted["count"], json!(live));
    // What cannot be answered in part (a page of a scroll) still fails.
    let (status, _) = partial
        .call(
            Method::POST,
            "/collections/c/points/scroll",
            Some(&json!({"limit": 5})),
        )
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let up = |url: &str| format!("vector_router_cluster_node_up{{node=\"{url}\"}}");
    assert_eq!(
        cluster.metric(&up(&urls[1])).await,
        0.0,
        "the dead node is reported down"
    );
    assert_eq!(cluster.metric(&up(&urls[0])).await, 1.0);
    // Points written as they are already (berlin points, which no write above changed), so
    // that what the live nodes applied changes nothing.
    let rewrite: Vec<Value> = points(100, 400)
        .into_iter()
        .filter(|p| p["payload"]["city"] == "berlin")
        .collect();
    let (status, _) = cluster
        .call(
            Method::PUT,
            "/collections/c/points?wait=true",
            Some(&json!({"points": rewrite})),
        )
        .await;
    assert_ne!(
        status,
        StatusCode::OK,
        "a write reaching a dead node was acknowledged"
    );
    // Back on its ports with its data: used again, with no restart of the cluster router.
    nodes[1] = start_node(&node_dirs[1], ports[1].0, ports[1].1);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (status, body) = cluster
            .call(
                Method::POST,
                "/collections/c/points/query",
                Some(&queries[0]),
            )
            .await;
        if status == StatusCode::OK {
            assert_eq!(
                body["result"], before,
                "the restarted node answers otherwise"
            );
            assert_eq!(cluster.metric(&up(&urls[1])).await, 1.0);
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the node is not used again: {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        cluster.info("c").await["points_count"],
        embedded.info("c").await["points_count"]
    );

    // Deleting the collection deletes it on every node.
    assert_eq!(
        cluster.ok(Method::DELETE, "/collections/c", None).await,
        json!(true)
    );
    for n in &nodes {
        let (status, _) = n.call(Method::GET, "/collections/c", None).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
}

#[tokio::test]
async fn cluster_refuses_what_it_cannot_carry_and_keeps_no_half_created_collection() {
    let node_dirs: Vec<DataDirs> = (0..2).map(|_| DataDirs::new()).collect();
    let nodes: Vec<Router> = node_dirs.iter().map(|d| Router::start(d, &[])).collect();
    let urls: Vec<String> = nodes.iter().map(|n| n.grpc.clone()).collect();
    let dirs = DataDirs::new();
    let cluster = start_cluster_router(&dirs, &urls, &[]);
    // A setting the nodes cannot be given: refused by name, and nothing is created anywhere.
    let (status, body) = cluster
        .call(
            Method::PUT,
            "/collections/q",
            Some(&json!({
            "vectors": {"size": 4, "distance": "Dot"},
            "quantization_config": {"scalar": {"type": "int8"}}})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["status"]["error"]
            .as_str()
            .unwrap()
            .contains("quantization_config"),
        "{body}"
    );
    // A collection one node already holds: the create fails, and the other node's copy and
    // the catalog entry are removed again.
    nodes[1]
        .create("taken", json!({"vectors": {"size": 4, "distance": "Dot"}}))
        .await;
    let (status, body) = cluster
        .call(
            Method::PUT,
            "/collections/taken",
            Some(&json!({"vectors": {"size": 4, "distance": "Dot"}})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    for (r, expected) in [
        (&cluster, StatusCode::NOT_FOUND),
        (&nodes[0], StatusCode::NOT_FOUND),
    ] {
        let (status, _) = r.call(Method::GET, "/collections/taken", None).await;
        assert_eq!(status, expected);
    }
    // Operations not served in cluster mode say so.
    cluster
        .create("ok", json!({"vectors": {"size": 4, "distance": "Dot"}}))
        .await;
    let (status, body) = cluster
        .call(Method::POST, "/collections/ok/snapshots", None)
        .await;
    assert_eq!(status, StatusCode::NOT_IMPLEMENTED, "{body}");
    let (status, body) = cluster
        .call(
            Method::POST,
            "/collections/ok/points/batch",
            Some(&json!({"operations": [
            {"upsert": {"points": [{"id": 1, "vector": [1, 0, 0, 0]}]}}]})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_IMPLEMENTED, "{body}");
    // A bad dimension is refused whole by the coordinator (checked against its catalog)
    // before any node receives a part.
    let (status, body) = cluster
        .call(
            Method::PUT,
            "/collections/ok/points?wait=true",
            Some(&json!({"points": [{"id": 1, "vector": [1, 0]}]})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
}

#[test]
fn bad_node_lists_stop_the_router_with_a_clear_error() {
    let node_dirs = DataDirs::new();
    let node = Router::start(&node_dirs, &[]);
    let unreachable = format!("http://127.0.0.1:{}", free_port());
    let cases: [(Vec<String>, &str); 3] = [
        (vec![node.grpc.clone(), node.grpc.clone()], "listed twice"),
        (vec![node.grpc.clone(), unreachable.clone()], &unreachable),
        (vec!["ftp://127.0.0.1:1".to_string()], "http://"),
    ];
    for (list, expected) in cases {
        let dirs = DataDirs::new();
        let output = router_command()
            .args(["--http-port", "0", "--cluster-nodes", &list.join(",")])
            .arg("--storage-path")
            .arg(dirs.storage())
            .arg("--snapshots-path")
            .arg(dirs.snapshots())
            .output()
            .expect("run the router");
        assert!(!output.status.success(), "{list:?} started");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(expected), "{list:?}: {stderr}");
    }
    // The same list from the configuration file; and cluster options without nodes.
    let dirs = DataDirs::new();
    let file = dirs.root().join("router.toml");
    std::fs::write(&file, format!("[cluster]\nnodes = [\"{unreachable}\"]\n")).unwrap();
    for (args, expected) in [
        (
            vec!["--config", file.to_str().unwrap()],
            unreachable.as_str(),
        ),
        (vec!["--cluster-partial-answers"], "need cluster nodes"),
    ] {
        let output = router_command()
            .args(["--http-port", "0"])
            .args(&args)
            .arg("--storage-path")
            .arg(dirs.storage())
            .arg("--snapshots-path")
            .arg(dirs.snapshots())
            .output()
            .expect("run the router");
        assert!(!output.status.success(), "{args:?} started");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
}
