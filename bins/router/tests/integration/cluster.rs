//! Cluster mode: a router whose collections' shards are collections on three node
//! processes (routers themselves, reached over gRPC), checked against one embedded router
//! holding every point: the same ids, scores, payloads and counts for plain, filtered,
//! exact and batch queries, scrolls, retrievals, recommendations and writes; a node killed
//! (`kill -9`) under a query load makes reads fail, or answer marked partial where the
//! coordinator is told to (never a partial answer presented as whole) and, once
//! restarted on its port, serves again identically, with every write it acknowledged,
//! without a restart of the cluster router; bad node lists stop the router with a clear
//! error, a node down does not (its collections are served once it answers).

use crate::common::{router_command, DataDirs, Router};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::time::Duration;

/// A free loopback port for a node that must come back on the same one after a restart.
///
/// Taken below the kernel's ephemeral range (`ip_local_port_range`, 32768 and up by
/// default), so that neither a process binding port 0 nor an outgoing connection of a
/// test running beside this one can take it between its release here and the node's
/// bind; a port bound and released by the kernel's choice could be (it was, in CI). Ports
/// are handed out in turn within this process, from a start that varies by process.
fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const LOW: u32 = 20_000;
    const SPAN: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let _ = NEXT.compare_exchange(
        u32::MAX,
        std::process::id().wrapping_mul(7919) % SPAN,
        Ordering::Relaxed,
        Ordering::Relaxed,
    );
    for _ in 0..SPAN {
        let port = (LOW + NEXT.fetch_add(1, Ordering::Relaxed) % SPAN) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port in {LOW}..{}", LOW + SPAN);
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

/// Sends `query` to the router, one request after another, for 1.5 s: each answer's status,
/// partial marker (the header) and body.
async fn query_load(router: &Router, query: &Value) -> Vec<(StatusCode, Option<String>, Value)> {
    let mut seen = Vec::new();
    let until = std::time::Instant::now() + Duration::from_millis(1500);
    while std::time::Instant::now() < until {
        let response = router
            .request(Method::POST, "/collections/c/points/query")
            .json(query)
            .send()
            .await
            .expect("the coordinator answers");
        let status = response.status();
        let marked = response
            .headers()
            .get("x-vector-router-partial")
            .map(|v| v.to_str().unwrap_or_default().to_string());
        let body: Value = response.json().await.unwrap_or(Value::Null);
        seen.push((status, marked, body));
    }
    seen
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
    // Killed under a query load, through both coordinators: every answer is whole and
    // equal to the one before, or an error (strict), or marked partial (the other).
    let killer = async {
        tokio::time::sleep(Duration::from_millis(400)).await;
        nodes[1].kill();
    };
    let (strict_a, strict_b, partial_a, partial_b, ()) = tokio::join!(
        query_load(&cluster, &queries[0]),
        query_load(&cluster, &queries[0]),
        query_load(&partial, &queries[0]),
        query_load(&partial, &queries[0]),
        killer
    );
    let (mut whole, mut failed, mut marked_partial) = (0, 0, 0);
    for (status, marked, body) in strict_a.iter().chain(&strict_b) {
        assert!(
            marked.is_none(),
            "a strict coordinator marked an answer partial"
        );
        if *status == StatusCode::OK {
            assert_eq!(
                body["result"], before,
                "an answer presented as whole is not"
            );
            assert!(body.get("partial").is_none(), "{body}");
            whole += 1;
        } else {
            assert!(
                *status == StatusCode::SERVICE_UNAVAILABLE
                    || *status == StatusCode::REQUEST_TIMEOUT,
                "{status}: {body}"
            );
            assert!(body["status"]["error"].is_string(), "{body}");
            failed += 1;
        }
    }
    for (status, marked, body) in partial_a.iter().chain(&partial_b) {
        assert_eq!(*status, StatusCode::OK, "{body}");
        match marked {
            None => {
                assert_eq!(
                    body["result"], before,
                    "an answer presented as whole is not"
                );
                assert!(body.get("partial").is_none(), "{body}");
            }
            Some(m) => {
                assert_eq!(m, "missing-shards=1");
                assert_eq!(body["partial"], json!({"missing_shards": [1]}), "{body}");
                marked_partial += 1;
            }
        }
    }
    assert!(
        whole > 0 && failed > 0 && marked_partial > 0,
        "the load saw the node up and down: {whole} whole, {failed} failed, {marked_partial} partial"
    );
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
        (
            vec![format!("{}|{}", node.grpc, node.grpc)],
            "a replica is listed twice",
        ),
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
    std::fs::write(
        &file,
        format!("[cluster]\nnodes = [\"{unreachable}\", \"{unreachable}\"]\n"),
    )
    .unwrap();
    let hedged = dirs.root().join("hedged.toml");
    std::fs::write(
        &hedged,
        format!(
            "[cluster]\nnodes = [\"{}|{unreachable}\"]\nhedge_percentile = 99.9\n",
            node.grpc
        ),
    )
    .unwrap();
    for (args, expected) in [
        (vec!["--config", file.to_str().unwrap()], "listed twice"),
        (vec!["--cluster-partial-answers"], "need cluster nodes"),
        (
            vec!["--cluster-hedge-percentile", "95"],
            "need cluster nodes",
        ),
        (
            vec!["--config", hedged.to_str().unwrap()],
            "between 50 and 99.5",
        ),
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

/// A node down when a coordinator starts does not stop it: it starts, says the node is down,
/// is not ready, and answers the collections' requests 503 (REST and gRPC) until it has
/// loaded its catalog from every node (a collection missing would read as none, a 404 or a
/// create of a name that exists). The first node (shard 0, which describes the collection's
/// layout) killed: the coordinator restarted on its own catalog, and one on an empty disk,
/// both wait; the node back on its ports, both serve the collection with the answers the
/// cluster gave before.
#[tokio::test]
async fn a_coordinator_starts_with_a_node_down_and_serves_it_once_it_answers() {
    let node_dirs: Vec<DataDirs> = (0..2).map(|_| DataDirs::new()).collect();
    let ports: Vec<(u16, u16)> = (0..2).map(|_| (free_port(), free_port())).collect();
    let mut nodes: Vec<Router> = node_dirs
        .iter()
        .zip(&ports)
        .map(|(d, &(h, g))| start_node(d, h, g))
        .collect();
    let urls: Vec<String> = nodes.iter().map(|n| n.grpc.clone()).collect();
    let coord_dirs = DataDirs::new();
    let mut coord = start_cluster_router(&coord_dirs, &urls, &[]);
    coord
        .create("c", json!({"vectors": {"size": DIM, "distance": "Cosine"}}))
        .await;
    for chunk in points(0, 600).chunks(300) {
        coord.upsert("c", json!({ "points": chunk })).await;
    }
    let query = json!({"query": vector(7, DIM), "limit": 10, "with_payload": true});
    let path = "/collections/c/points/query";
    let before = coord.ok(Method::POST, path, Some(&query)).await;
    assert_eq!(before["points"].as_array().map(Vec::len), Some(10));

    nodes[0].kill();
    assert!(coord.terminate(Duration::from_secs(20)).is_some());
    let coord = start_cluster_router(&coord_dirs, &urls, &[]);
    let fresh_dirs = DataDirs::new();
    let fresh = start_cluster_router(&fresh_dirs, &urls, &[]);
    let up = |url: &str| format!("vector_router_cluster_node_up{{node=\"{url}\"}}");
    for r in [&coord, &fresh] {
        assert_eq!(r.metric(&up(&urls[0])).await, 0.0);
        assert_eq!(r.metric(&up(&urls[1])).await, 1.0);
    }
    let waiting = |body: &Value| {
        body["status"]["error"].as_str().is_some_and(|e| {
            e.contains("the cluster's catalog is not loaded yet") && e.contains(&urls[0])
        })
    };
    for r in [&coord, &fresh] {
        assert_eq!(r.text("/readyz").await.0, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(r.text("/livez").await.0, StatusCode::OK);
        let (status, body) = r.call(Method::POST, path, Some(&query)).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert!(waiting(&body), "{body}");
        let (status, body) = r.call(Method::GET, "/collections/c", None).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        let (status, body) = r
            .call(
                Method::PUT,
                "/collections/c",
                Some(&json!({"vectors": {"size": DIM, "distance": "Dot"}})),
            )
            .await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert!(waiting(&body), "{body}");
    }
    // gRPC too.
    let channel = tonic::transport::Endpoint::from_shared(fresh.grpc.clone())
        .expect("a gRPC URL")
        .connect()
        .await
        .expect("connect over gRPC");
    let mut grpc_client = qdrant_client::qdrant::points_client::PointsClient::new(channel);
    let refused = grpc_client
        .count(qdrant_client::qdrant::CountPoints {
            collection_name: "c".into(),
            ..Default::default()
        })
        .await
        .expect_err("a count before the catalog is loaded");
    assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused:?}");
    assert!(
        refused.message().contains("catalog is not loaded yet"),
        "{refused:?}"
    );

    nodes[0] = start_node(&node_dirs[0], ports[0].0, ports[0].1);
    // Loaded once the node answers a probe (every 2 s).
    for r in [&coord, &fresh] {
        let deadline = std::time::Instant::now() + Duration::from_secs(40);
        loop {
            let (status, body) = r.call(Method::POST, path, Some(&query)).await;
            if status == StatusCode::OK {
                assert_eq!(
                    body["result"], before,
                    "answered otherwise after the restart"
                );
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the collection is not served again: {status} {body}"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        assert_eq!(r.metric(&up(&urls[0])).await, 1.0);
        assert_eq!(r.text("/readyz").await.0, StatusCode::OK);
    }
    let counted = coord
        .post("/collections/c/points/count", json!({"exact": true}))
        .await;
    assert_eq!(counted["count"], json!(600));
}

/// Qdrant's custom sharding over the cluster: each shard key's points live only on its
/// nodes (their metrics count them), a query naming a key reaches only that key's nodes,
/// answers equal an embedded collection holding the same points (per key, and all keys
/// together), and the keys survive the coordinator: a second one started on an empty disk,
/// and the first restarted, find them on the nodes.
#[tokio::test]
async fn shard_keys_keep_points_on_their_nodes_and_keyed_reads_reach_only_them() {
    let node_dirs: Vec<DataDirs> = (0..3).map(|_| DataDirs::new()).collect();
    let nodes: Vec<Router> = node_dirs
        .iter()
        .map(|d| start_node(d, free_port(), free_port()))
        .collect();
    let urls: Vec<String> = nodes.iter().map(|n| n.grpc.clone()).collect();
    let cluster_dirs = DataDirs::new();
    let mut cluster = start_cluster_router(&cluster_dirs, &urls, &[]);
    let embedded_dirs = DataDirs::new();
    let embedded = Router::start(&embedded_dirs, &["--cache-ttl-secs", "0"]);

    let vectors = json!({"size": DIM, "distance": "Cosine"});
    cluster
        .create(
            "k",
            json!({"vectors": vectors, "sharding_method": "custom"}),
        )
        .await;
    // "en" on node 0 alone; "de" over nodes 1 and 2.
    for (key, body) in [
        ("en", json!({"shard_key": "en", "placement": [0]})),
        (
            "de",
            json!({"shard_key": "de", "shards_number": 2, "placement": [2, 1]}),
        ),
    ] {
        assert_eq!(
            cluster.put("/collections/k/shards", body).await,
            json!(true),
            "{key}"
        );
    }
    for name in ["en", "de", "all"] {
        embedded.create(name, json!({ "vectors": vectors })).await;
    }
    let (en, de) = (points(0, 400), points(400, 900));
    for (key, pts) in [("en", &en), ("de", &de)] {
        for chunk in pts.chunks(250) {
            cluster
                .upsert("k", json!({"points": chunk, "shard_key": key}))
                .await;
            embedded.upsert(key, json!({ "points": chunk })).await;
            embedded.upsert("all", json!({ "points": chunk })).await;
        }
    }
    let points_on = |k: usize, c: &'static str| {
        let node = &nodes[k];
        async move {
            node.metric(&format!(
                "vector_router_collection_points{{collection=\"{c}\"}}"
            ))
            .await
        }
    };
    assert_eq!(points_on(0, "k@en").await, 400.0);
    assert_eq!(points_on(1, "k@en").await + points_on(2, "k@en").await, 0.0);
    assert_eq!(points_on(0, "k@de").await, 0.0);
    let (d1, d2) = (points_on(1, "k@de").await, points_on(2, "k@de").await);
    assert_eq!(d1 + d2, 500.0);
    assert!(
        d1 > 100.0 && d2 > 100.0,
        "de's points split over its nodes: {d1}, {d2}"
    );
    for (k, node) in nodes.iter().enumerate() {
        let names: Vec<String> = node.get("/collections").await["collections"]
            .as_array()
            .expect("collections")
            .iter()
            .map(|c| c["name"].as_str().unwrap_or_default().to_string())
            .collect();
        let want: &[&str] = if k == 0 { &["k@en"] } else { &["k@de"] };
        assert_eq!(names, want, "node {k} holds its keys' collections alone");
    }

    // Keyed reads equal the key's own collection; unkeyed ones, all of them.
    let searches = |k: usize, c: &'static str| {
        let node = &nodes[k];
        async move {
            node.metric(&format!(
                "vector_router_search_duration_seconds_count{{collection=\"{c}\"}}"
            ))
            .await
        }
    };
    let de_before = searches(1, "k@de").await + searches(2, "k@de").await;
    let en_before = searches(0, "k@en").await;
    for q in 0..20u64 {
        for (j, (key, oracle)) in [(Some("en"), "en"), (Some("de"), "de"), (None, "all")]
            .into_iter()
            .enumerate()
        {
            // A vector of its own each time: a node's result cache would answer a repeated
            // one without counting a search.
            let v = vector(10_000 + q * 3 + j as u64, DIM);
            let mut body = json!({"query": v, "limit": 7, "with_payload": true,
                                  "params": {"exact": true}});
            if q % 3 == 0 {
                body["filter"] = json!({"must": [{"key": "city", "match": {"value": "rome"}}]});
            }
            let want = embedded.query(oracle, body.clone()).await;
            if let Some(k) = key {
                body["shard_key"] = json!(k);
            }
            let got = cluster.query("k", body.clone()).await;
            assert_eq!(got, want, "query {q} with key {key:?}");
            let count_body = json!({"filter": body.get("filter"), "exact": true,
                                    "shard_key": body.get("shard_key")});
            let got = cluster
                .post("/collections/k/points/count", count_body)
                .await;
            let want = embedded
                .post(
                    &format!("/collections/{oracle}/points/count"),
                    json!({"filter": body.get("filter"), "exact": true}),
                )
                .await;
            assert_eq!(got, want, "count {q} with key {key:?}");
        }
    }
    // 20 keyed queries and 20 unkeyed ones reached "en"'s node; "de"'s nodes saw only the
    // unkeyed 20 and their own 20 (each over both of its nodes).
    assert_eq!(searches(0, "k@en").await - en_before, 40.0);
    assert_eq!(
        searches(1, "k@de").await + searches(2, "k@de").await - de_before,
        80.0
    );
    let en_only = searches(1, "k@de").await + searches(2, "k@de").await;
    for q in 0..5u64 {
        cluster
            .query(
                "k",
                json!({"query": vector(q, DIM), "shard_key": "en", "limit": 3}),
            )
            .await;
    }
    assert_eq!(
        searches(1, "k@de").await + searches(2, "k@de").await,
        en_only,
        "a query naming `en` reached `de`'s nodes"
    );

    // Bad selections are refused with Qdrant's error shape.
    for (body, text) in [
        (
            json!({"query": vector(1, DIM), "shard_key": "fr"}),
            "Shard key fr not found",
        ),
        (
            json!({"query": vector(1, DIM), "shard_key": []}),
            "selects no shard",
        ),
        (
            json!({"query": vector(1, DIM), "shard_key": -3}),
            "unsigned integer",
        ),
    ] {
        let (status, v) = cluster
            .call(Method::POST, "/collections/k/points/query", Some(&body))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {v}");
        let e = v["status"]["error"].as_str().unwrap_or_default();
        assert!(e.contains(text), "{body}: {e}");
    }
    let (status, v) = cluster
        .call(
            Method::PUT,
            "/collections/k/points?wait=true",
            Some(&json!({"points": points(5000, 5001)})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    assert!(v["status"]["error"]
        .as_str()
        .unwrap_or_default()
        .contains("Shard key not specified"));
    for (body, want, text) in [
        (
            json!({"shard_key": "en"}),
            StatusCode::BAD_REQUEST,
            "already exists",
        ),
        (
            json!({"shard_key": "x", "placement": [3]}),
            StatusCode::BAD_REQUEST,
            "node 3",
        ),
        (
            json!({"shard_key": "x", "shards_number": 4}),
            StatusCode::BAD_REQUEST,
            "4 shards",
        ),
        (
            json!({"shard_key": "x", "replication_factor": 2}),
            StatusCode::NOT_IMPLEMENTED,
            "replication_factor",
        ),
    ] {
        let (status, v) = cluster
            .call(Method::PUT, "/collections/k/shards", Some(&body))
            .await;
        assert_eq!(status, want, "{body}: {v}");
        let e = v["status"]["error"].as_str().unwrap_or_default();
        assert!(e.contains(text), "{body}: {e}");
    }

    // A second coordinator on an empty disk finds the collection and its keys.
    let second_dirs = DataDirs::new();
    let second = start_cluster_router(&second_dirs, &urls, &[]);
    let keys = second.get("/collections/k/shards").await;
    assert_eq!(keys, json!({"shard_keys": [{"key": "de"}, {"key": "en"}]}));
    let info = second.info("k").await;
    assert_eq!(
        info["config"]["params"]["sharding_method"], "custom",
        "{info}"
    );
    assert_eq!(info["points_count"], 900, "{info}");
    let body = json!({"query": vector(77, DIM), "limit": 10, "shard_key": "de",
                      "params": {"exact": true}});
    assert_eq!(
        second.query("k", body.clone()).await,
        cluster.query("k", body.clone()).await
    );
    // The first, restarted, too.
    cluster.terminate(Duration::from_secs(30));
    let cluster = start_cluster_router(&cluster_dirs, &urls, &[]);
    assert_eq!(cluster.get("/collections/k/shards").await, keys);
    assert_eq!(
        cluster.query("k", body.clone()).await,
        second.query("k", body).await
    );

    // A key deleted takes its points; the collection deleted takes every key's.
    assert_eq!(
        cluster
            .post("/collections/k/shards/delete", json!({"shard_key": "en"}))
            .await,
        json!(true)
    );
    let count = cluster
        .post("/collections/k/points/count", json!({"exact": true}))
        .await;
    assert_eq!(count["count"], 500);
    assert!(!nodes[0]
        .get("/collections")
        .await
        .to_string()
        .contains("k@en"));
    assert_eq!(
        cluster.ok(Method::DELETE, "/collections/k", None).await,
        json!(true)
    );
    for (k, n) in nodes.iter().enumerate() {
        let list = n.get("/collections").await.to_string();
        assert!(!list.contains("k@"), "node {k} still holds {list}");
    }
    // Placed by a payload field: an upsert names no key, and a query whose filter pins the
    // field reaches only the nodes of its key.
    cluster
        .create(
            "f",
            json!({"vectors": vectors, "sharding_method": "custom", "shard_key_field": "city"}),
        )
        .await;
    for (k, city) in CITIES.iter().enumerate() {
        cluster
            .put(
                "/collections/f/shards",
                json!({"shard_key": city, "placement": [k % 3]}),
            )
            .await;
    }
    for chunk in points(0, 900).chunks(300) {
        cluster.upsert("f", json!({ "points": chunk })).await;
    }
    let searched = |k: usize, c: String| {
        let node = &nodes[k];
        async move {
            node.metric(&format!(
                "vector_router_search_duration_seconds_count{{collection=\"{c}\"}}"
            ))
            .await
        }
    };
    let mut before = Vec::new();
    for (k, city) in CITIES.iter().enumerate() {
        before.push(searched(k % 3, format!("f@{city}")).await);
    }
    for q in 0..6u64 {
        let city = CITIES[(q % 2) as usize * 2]; // berlin and rome
        let body = json!({"query": vector(20_000 + q, DIM), "limit": 5, "with_payload": true,
                          "params": {"exact": true},
                          "filter": {"must": [{"key": "city", "match": {"value": city}}]}});
        assert_eq!(
            cluster.query("f", body.clone()).await,
            embedded.query("all", body).await,
            "pinned query {q} to {city}"
        );
    }
    for (k, city) in CITIES.iter().enumerate() {
        let delta = searched(k % 3, format!("f@{city}")).await - before[k];
        let want = if k % 2 == 0 { 3.0 } else { 0.0 };
        assert_eq!(delta, want, "searches of `{city}`'s node collection");
    }
    // An embedded router refuses custom sharding.
    let (status, v) = embedded
        .call(
            Method::PUT,
            "/collections/custom",
            Some(&json!({"vectors": vectors, "sharding_method": "custom"})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_IMPLEMENTED, "{v}");
}

/// Every point of collection `name` on a node, read from the node directly: id, `tag`.
async fn node_points(node: &Router, name: &str) -> Vec<(u64, Value)> {
    let (status, body) = node
        .call(
            Method::POST,
            &format!("/collections/{name}/points/scroll"),
            Some(&json!({"limit": 100_000, "with_payload": true})),
        )
        .await;
    if status == StatusCode::NOT_FOUND {
        return Vec::new();
    }
    assert_eq!(status, StatusCode::OK, "{body}");
    body["result"]["points"]
        .as_array()
        .expect("points")
        .iter()
        .map(|p| (p["id"].as_u64().unwrap(), p["payload"]["tag"].clone()))
        .collect()
}

/// Checks a hash-placed collection against the writes acknowledged: through the
/// coordinator, every point once with its last payload; on the nodes, each point on the
/// one node its shard among `shards` is, and nowhere else.
async fn check_placed(
    coord: &Router,
    nodes: &[Router],
    shards: usize,
    expected: &std::collections::BTreeMap<u64, Value>,
) {
    let page = coord
        .post(
            "/collections/r/points/scroll",
            json!({"limit": 100_000, "with_payload": true}),
        )
        .await;
    let listed: Vec<(u64, Value)> = page["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["id"].as_u64().unwrap(), p["payload"]["tag"].clone()))
        .collect();
    let as_map: std::collections::BTreeMap<u64, Value> = listed.iter().cloned().collect();
    assert_eq!(as_map.len(), listed.len(), "a point listed twice");
    assert_eq!(&as_map, expected, "the coordinator's points differ");
    let count = coord
        .post("/collections/r/points/count", json!({"exact": true}))
        .await;
    assert_eq!(count["count"], json!(expected.len()));
    let mut seen = std::collections::BTreeMap::new();
    for (k, node) in nodes.iter().enumerate() {
        for (id, tag) in node_points(node, "r").await {
            let home = shard_router::remote::jump_shard_of(&index_core::PointId::Num(id), shards);
            assert_eq!(home, k, "point {id} is on node {k}, its shard is {home}");
            assert!(seen.insert(id, tag).is_none(), "point {id} on two nodes");
        }
    }
    assert_eq!(&seen, expected, "the nodes' points differ");
}

/// Polls `GET /collections/r/cluster` until no resharding runs; the most points the
/// progress reported moved.
async fn wait_resharded(coord: &Router) -> u64 {
    let until = std::time::Instant::now() + Duration::from_secs(180);
    let mut moved = 0;
    loop {
        let info = coord.get("/collections/r/cluster").await;
        let ops = info["resharding_operations"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if ops.is_empty() {
            assert!(info.get("resharding_progress").is_none(), "{info}");
            return moved;
        }
        moved = moved.max(
            info["resharding_progress"]["points_moved"]
                .as_u64()
                .unwrap(),
        );
        assert!(
            std::time::Instant::now() < until,
            "resharding never ended: {info}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Resharding: a collection made on two nodes grows onto a third, listed later, under a
/// load of writes (upserts, deletes, payload writes) and exact reads of a part no write
/// touches: every read equal to the one before (never a point twice or missing), every
/// write applied; afterwards every acknowledged point is once on the node its new shard is.
/// Then it shrinks back, the coordinator killed (`kill -9`) midway: restarted, it resumes
/// the resharding from the nodes' markers and ends it with the same guarantees.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn resharding_under_load_keeps_every_acknowledged_point_once_and_resumes_after_a_kill() {
    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    let node_dirs: Vec<DataDirs> = (0..3).map(|_| DataDirs::new()).collect();
    let nodes: Vec<Router> = node_dirs.iter().map(|d| Router::start(d, &[])).collect();
    let urls: Vec<String> = nodes.iter().map(|n| n.grpc.clone()).collect();
    let coord_dirs = DataDirs::new();
    const START: u64 = 2_000;
    let mut expected: BTreeMap<u64, Value> = (0..START).map(|i| (i, Value::Null)).collect();
    let stable = json!({"must": [{"key": "n", "range": {"gte": 500, "lt": 1000}}]});
    let probe = json!({"query": vector(7, DIM), "filter": stable, "limit": 10,
                       "params": {"exact": true}, "with_payload": true});
    let top = {
        let mut coord =
            start_cluster_router(&coord_dirs, &urls[..2], &["--cluster-reshard-batch", "40"]);
        coord
            .create("r", json!({"vectors": {"size": DIM, "distance": "Cosine"}}))
            .await;
        coord
            .put(
                "/collections/r/index?wait=true",
                json!({"field_name": "city", "field_schema": "keyword"}),
            )
            .await;
        for chunk in points(0, START).chunks(500) {
            coord.upsert("r", json!({ "points": chunk })).await;
        }
        let top = coord.query("r", probe.clone()).await;
        assert_eq!(top.len(), 10);
        assert!(coord.terminate(Duration::from_secs(20)).is_some());
        top
    };
    // All three listed: the collection keeps its two shards until it is resharded.
    let mut coord = start_cluster_router(&coord_dirs, &urls, &["--cluster-reshard-batch", "40"]);
    let info = coord.get("/collections/r/cluster").await;
    assert_eq!(info["shard_count"], json!(2), "{info}");
    assert_eq!(info["resharding_operations"], json!([]), "{info}");
    assert!(node_points(&nodes[2], "r").await.is_empty());
    check_placed(&coord, &nodes[..2], 2, &expected).await;
    // The load.
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(expected.clone()));
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let base = coord.base.clone();
    let writer = {
        let (stop, acked, client, base) =
            (stop.clone(), acked.clone(), client.clone(), base.clone());
        tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let wait = if i.is_multiple_of(2) { "true" } else { "false" };
                let new: Vec<Value> = (0..5).map(|j| START + i * 5 + j).collect::<Vec<_>>()
                    .iter()
                    .map(|&id| json!({"id": id, "vector": vector(id, DIM), "payload": {"n": id, "tag": i}}))
                    .collect();
                let r = client
                    .put(format!("{base}/collections/r/points?wait={wait}"))
                    .json(&json!({ "points": new }))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
                {
                    let mut a = acked.lock().unwrap();
                    for j in 0..5 {
                        a.insert(START + i * 5 + j, json!(i));
                    }
                }
                // Deletes and payload writes, away from the part the reader reads.
                let gone = (i * 7) % 500;
                let r = client
                    .post(format!("{base}/collections/r/points/delete?wait=true"))
                    .json(&json!({ "points": [gone] }))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
                acked.lock().unwrap().remove(&gone);
                let tagged = 1_000 + (i * 13) % 1_000;
                let r = client
                    .post(format!("{base}/collections/r/points/payload?wait=true"))
                    .json(&json!({ "payload": {"tag": i}, "points": [tagged] }))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
                acked.lock().unwrap().insert(tagged, json!(i));
                i += 1;
            }
            i
        })
    };
    let reader = {
        let (stop, client, base, probe, top) = (
            stop.clone(),
            client.clone(),
            base.clone(),
            probe.clone(),
            top.clone(),
        );
        tokio::spawn(async move {
            let mut reads = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let r: Value = client
                    .post(format!("{base}/collections/r/points/query"))
                    .json(&probe)
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                assert_eq!(r["result"]["points"].as_array(), Some(&top), "{r}");
                let r: Value = client
                    .post(format!("{base}/collections/r/points/count"))
                    .json(&json!({"filter": probe["filter"], "exact": true}))
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                assert_eq!(r["result"]["count"], json!(500), "{r}");
                // A batch: its searches run at once, sharing the request's hold of the gate.
                let r: Value = client
                    .post(format!("{base}/collections/r/points/query/batch"))
                    .json(&json!({"searches": [probe, probe, probe]}))
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                for answer in r["result"].as_array().expect("answers") {
                    assert_eq!(answer["points"].as_array(), Some(&top), "{r}");
                }
                reads += 1;
            }
            reads
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let began = coord
        .post(
            "/collections/r/cluster",
            json!({"start_resharding": {"direction": "up"}}),
        )
        .await;
    assert_eq!(began, json!(true));
    // Observable: the added shard, the operation, and its progress.
    let info = coord.get("/collections/r/cluster").await;
    assert_eq!(info["shard_count"], json!(3), "{info}");
    assert_eq!(
        info["remote_shards"][2]["state"],
        json!("Resharding"),
        "{info}"
    );
    let moved = wait_resharded(&coord).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let writes = writer.await.expect("the writer");
    let reads = reader.await.expect("the reader");
    assert!(writes > 0 && reads > 0, "{writes} writes, {reads} reads");
    expected = acked.lock().unwrap().clone();
    // About a third of the points moved to the new shard.
    assert!(moved > START / 5, "{moved} points moved");
    check_placed(&coord, &nodes, 3, &expected).await;
    assert_eq!(coord.query("r", probe.clone()).await, top);
    let info = coord.get("/collections/r/cluster").await;
    assert_eq!(info["shard_count"], json!(3), "{info}");
    let index = nodes[2].info("r").await;
    assert_eq!(
        index["payload_schema"]["city"]["data_type"], "keyword",
        "{index}"
    );
    // Shrinking, the coordinator killed midway (small batches, so that it is midway).
    assert!(coord.terminate(Duration::from_secs(20)).is_some());
    let mut coord = start_cluster_router(&coord_dirs, &urls, &["--cluster-reshard-batch", "4"]);
    coord
        .post(
            "/collections/r/cluster",
            json!({"start_resharding": {"direction": "down", "peer_id": 2}}),
        )
        .await;
    // A second one while it runs is refused (hundreds of batches of 4 are still to run).
    let (status, body) = coord
        .call(
            Method::POST,
            "/collections/r/cluster",
            Some(&json!({"start_resharding": {"direction": "down"}})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["status"]["error"]
            .as_str()
            .unwrap()
            .contains("already resharding"),
        "{body}"
    );
    let until = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let info = coord.get("/collections/r/cluster").await;
        assert_eq!(
            info["remote_shards"][2]["state"],
            json!("ReshardingScaleDown"),
            "{info}"
        );
        if info["resharding_progress"]["points_moved"]
            .as_u64()
            .unwrap()
            >= 40
        {
            break;
        }
        assert!(std::time::Instant::now() < until, "no progress: {info}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    coord.kill();
    let coord = start_cluster_router(&coord_dirs, &urls, &["--cluster-reshard-batch", "40"]);
    // Resumed from the markers: reads wait for its batches, never see a point twice.
    assert_eq!(coord.query("r", probe.clone()).await, top);
    wait_resharded(&coord).await;
    check_placed(&coord, &nodes[..2], 2, &expected).await;
    assert!(node_points(&nodes[2], "r").await.is_empty());
    let (status, _) = nodes[2].call(Method::GET, "/collections/r", None).await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "the removed shard is left on its node"
    );
    let info = coord.get("/collections/r/cluster").await;
    assert_eq!(info["shard_count"], json!(2), "{info}");
    // The shard added goes on the next node; not below one shard.
    let (status, body) = coord
        .call(
            Method::POST,
            "/collections/r/cluster",
            Some(&json!({"start_resharding": {"direction": "up", "peer_id": 0}})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["status"]["error"].as_str().unwrap().contains("node 2"),
        "{body}"
    );
    coord
        .post(
            "/collections/r/cluster",
            json!({"start_resharding": {"direction": "down"}}),
        )
        .await;
    wait_resharded(&coord).await;
    check_placed(&coord, &nodes[..1], 1, &expected).await;
    let (status, body) = coord
        .call(
            Method::POST,
            "/collections/r/cluster",
            Some(&json!({"start_resharding": {"direction": "down"}})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["status"]["error"]
            .as_str()
            .unwrap()
            .contains("one shard"),
        "{body}"
    );
    // Deleted while it reshards, and made again under the same name: the resharding stops,
    // and the new collection holds only its own points, where it places them.
    coord
        .post(
            "/collections/r/cluster",
            json!({"start_resharding": {"direction": "up"}}),
        )
        .await;
    assert_eq!(
        coord.ok(Method::DELETE, "/collections/r", None).await,
        json!(true)
    );
    coord
        .create("r", json!({"vectors": {"size": DIM, "distance": "Cosine"}}))
        .await;
    let fresh: Vec<Value> = (0..40u64)
        .map(|i| json!({"id": i * 31, "vector": vector(i, DIM), "payload": {"tag": i}}))
        .collect();
    coord.upsert("r", json!({ "points": fresh })).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let made: BTreeMap<u64, Value> = (0..40u64).map(|i| (i * 31, json!(i))).collect();
    check_placed(&coord, &nodes, 3, &made).await;
    let info = coord.get("/collections/r/cluster").await;
    assert_eq!(info["shard_count"], json!(3), "{info}");
    assert_eq!(info["resharding_operations"], json!([]), "{info}");
}

/// Whether two answers are equal, numbers within a relative 1e-4 (a Qdrant node sums its
/// scores in another order than ours).
fn close(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            (x - y).abs() <= 1e-4 * x.abs().max(y.abs()).max(1.0)
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| close(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| close(v, w)))
        }
        _ => a == b,
    }
}

/// A real Qdrant server as a node (issue 12), beside one of ours: the flows of the tests
/// above through a cluster router over both, against an embedded router holding the same
/// points: plain, filtered, exact and recommend queries, counts, scrolls and retrievals, after
/// writes of every kind, then after resharding the collection down onto the Qdrant node and up
/// again, and a collection sharded by key with a key on each. Runs when `QDRANT_URL` names the
/// server's gRPC address (`http://127.0.0.1:6334`), a server holding no `qdr_*` collection
/// but those of an earlier run; CI cannot build Qdrant in its time (`../shared/bench/
/// qdrant-build.md`), so the last run's output is kept in `docs/qdrant-backend.md`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_real_qdrant_node_serves_the_same_flows() {
    let Ok(qdrant) = std::env::var("QDRANT_URL") else {
        eprintln!("skipped: QDRANT_URL (a Qdrant server's gRPC address) is not set");
        return;
    };
    let ours_dirs = DataDirs::new();
    let ours = Router::start(&ours_dirs, &[]);
    let embedded_dirs = DataDirs::new();
    let embedded = Router::start(&embedded_dirs, &["--cache-ttl-secs", "0"]);
    let coord_dirs = DataDirs::new();
    let nodes = [qdrant.clone(), ours.grpc.clone()];
    let coord = start_cluster_router(&coord_dirs, &nodes, &["--cluster-reshard-batch", "64"]);
    for name in ["qdr_hash", "qdr_keys"] {
        coord
            .call(Method::DELETE, &format!("/collections/{name}"), None)
            .await;
    }
    let config = json!({"vectors": {"size": DIM, "distance": "Cosine"}});
    for r in [&coord, &embedded] {
        r.create("qdr_hash", config.clone()).await;
        r.put(
            "/collections/qdr_hash/index?wait=true",
            json!({"field_name": "city", "field_schema": "keyword"}),
        )
        .await;
        for chunk in points(0, POINTS).chunks(300) {
            r.upsert("qdr_hash", json!({ "points": chunk })).await;
        }
        r.post(
            "/collections/qdr_hash/points/delete?wait=true",
            json!({"points": [3, 4, 5]}),
        )
        .await;
        r.post(
            "/collections/qdr_hash/points/delete?wait=true",
            json!({"filter": {"must": [{"key": "n", "range": {"gte": 1400, "lt": 1420}}]}}),
        )
        .await;
        r.post(
            "/collections/qdr_hash/points/payload?wait=true",
            json!({"payload": {"star": true}, "points": [10, 11, 12, 13]}),
        )
        .await;
        r.put(
            "/collections/qdr_hash/points/vectors?wait=true",
            json!({"points": [{"id": 20, "vector": vector(99_999, DIM)}]}),
        )
        .await;
    }
    let q = |i: u64| vector(2_000_000 + i, DIM);
    let reads: Vec<(&str, Value)> = vec![
        (
            "query",
            json!({"query": q(0), "limit": 10, "params": {"exact": true}, "with_payload": true}),
        ),
        (
            "query",
            json!({"query": q(1), "limit": 7, "params": {"exact": true}, "with_vector": true}),
        ),
        (
            "query",
            json!({"query": q(2), "limit": 10, "params": {"exact": true},
                         "with_payload": ["city", "star"],
                         "filter": {"must": [{"key": "city", "match": {"any": ["paris", "oslo"]}}],
                                    "must_not": [{"key": "n", "range": {"lt": 100}}]}}),
        ),
        (
            "query",
            json!({"query": {"recommend": {"positive": [10, 20], "negative": [30]}},
                         "limit": 8, "params": {"exact": true}}),
        ),
        ("count", json!({"exact": true})),
        (
            "count",
            json!({"exact": true, "filter": {"must": [{"key": "city", "match": {"value": "rome"}}]}}),
        ),
        (
            "scroll",
            json!({"limit": 40, "offset": 100, "with_payload": true}),
        ),
        (
            "scroll",
            json!({"limit": 20, "filter": {"must": [{"key": "star", "match": {"value": true}}]}}),
        ),
        (
            "",
            json!({"ids": [1, 10, 20, 3, 999], "with_payload": true, "with_vector": true}),
        ),
    ];
    let check = |stage: &'static str| {
        let (coord, embedded, reads) = (&coord, &embedded, &reads);
        async move {
            for (what, body) in reads {
                let path = match *what {
                    "" => "/collections/qdr_hash/points".to_string(),
                    w => format!("/collections/qdr_hash/points/{w}"),
                };
                let a = coord.post(&path, body.clone()).await;
                let b = embedded.post(&path, body.clone()).await;
                assert!(close(&a, &b), "{stage}: {path} with {body}:\n{a}\n{b}");
            }
        }
    };
    check("over Qdrant and ours").await;
    // Resharded down onto the Qdrant node, then up again.
    for (direction, shards) in [("down", 1), ("up", 2)] {
        coord
            .post(
                "/collections/qdr_hash/cluster",
                json!({"start_resharding": {"direction": direction}}),
            )
            .await;
        loop {
            let info = coord.get("/collections/qdr_hash/cluster").await;
            if info["resharding_operations"] == json!([]) {
                assert_eq!(info["shard_count"], json!(shards), "{info}");
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        check(if shards == 1 {
            "resharded down"
        } else {
            "resharded up"
        })
        .await;
        let ours_holds = node_points(&ours, "qdr_hash").await.len();
        assert_eq!(
            ours_holds == 0,
            shards == 1,
            "{ours_holds} points on our node"
        );
    }
    // Sharded by key: one key on the Qdrant node, one on ours.
    coord
        .create(
            "qdr_keys",
            json!({"vectors": {"size": DIM, "distance": "Cosine"}, "sharding_method": "custom"}),
        )
        .await;
    for (key, node) in [("q", 0), ("o", 1)] {
        coord
            .put(
                "/collections/qdr_keys/shards",
                json!({"shard_key": key, "placement": [node]}),
            )
            .await;
    }
    for (key, from, to) in [("q", 0, 300), ("o", 300, 600)] {
        let r = coord
            .put(
                "/collections/qdr_keys/points?wait=true",
                json!({"points": points(from, to), "shard_key": key}),
            )
            .await;
        assert_eq!(r["status"], "completed", "{r}");
    }
    for (key, lo) in [("q", 0u64), ("o", 300)] {
        let count = coord
            .post(
                "/collections/qdr_keys/points/count",
                json!({"exact": true, "shard_key": key}),
            )
            .await;
        assert_eq!(count["count"], json!(300), "{key}: {count}");
        let hits = coord
            .post(
                "/collections/qdr_keys/points/query",
                json!({"query": q(5), "limit": 20, "shard_key": key, "with_payload": ["n"]}),
            )
            .await;
        let hits = hits["points"].as_array().unwrap();
        assert_eq!(hits.len(), 20);
        assert!(hits
            .iter()
            .all(|h| (lo..lo + 300).contains(&h["id"].as_u64().unwrap())));
    }
    assert_eq!(
        coord
            .post("/collections/qdr_keys/points/count", json!({"exact": true}))
            .await["count"],
        json!(600)
    );
    for name in ["qdr_hash", "qdr_keys"] {
        assert_eq!(
            coord
                .ok(Method::DELETE, &format!("/collections/{name}"), None)
                .await,
            json!(true)
        );
    }
    eprintln!("a real Qdrant node ({qdrant}) served every flow");
}

/// The reads the Qdrant cluster test compares: exact, filtered and recommend queries,
/// counts, scrolls and a retrieval, each at `consistency` (none, or a level).
fn qdrant_reads(consistency: &str) -> Vec<(String, Value)> {
    let q = |i: u64| vector(2_000_000 + i, DIM);
    let at = |what: &str| format!("/collections/qdc/points{what}{consistency}");
    vec![
        (
            at("/query"),
            json!({"query": q(0), "limit": 10, "params": {"exact": true}, "with_payload": true}),
        ),
        (
            at("/query"),
            json!({"query": q(2), "limit": 10, "params": {"exact": true},
                   "filter": {"must": [{"key": "city", "match": {"any": ["paris", "oslo"]}}]}}),
        ),
        (
            at("/query"),
            json!({"query": {"recommend": {"positive": [10, 20], "negative": [30]}},
                   "limit": 8, "params": {"exact": true}}),
        ),
        (at("/count"), json!({"exact": true})),
        (
            at("/count"),
            json!({"exact": true, "filter": {"must": [{"key": "city", "match": {"value": "rome"}}]}}),
        ),
        (
            at("/scroll"),
            json!({"limit": 40, "offset": 100, "with_payload": true}),
        ),
        (
            at(""),
            json!({"ids": [1, 10, 20, 3, 1999], "with_payload": true, "with_vector": true}),
        ),
    ]
}

/// Issue 13's second part: real Qdrant clusters (three nodes each, so that a replication
/// factor of 3 puts a replica of every shard on every node; Raft inside
/// Qdrant), each one shard group of a cluster router, its nodes' addresses joined by `|` like
/// a replica set of ours. The collection is made through the router with one shard per
/// cluster, `replication_factor: 3` and `write_consistency_factor: 1`, which reach Qdrant
/// (every node of a cluster holds a replica of every shard it has); written, queried and
/// compared with an embedded router holding the same points (each cluster holding a part of
/// them, the parts adding up). Then the last node of every cluster is killed (SIGKILL), and
/// reads (plain and `consistency=quorum`) and writes through the router go on, compared
/// again. (Qdrant answers `majority` reads with a replica of the shard down with an error: it
/// asks every replica for them.) With `QDRANT_CLUSTER_RESTART`, the killed nodes come back:
/// once Qdrant reports every replica active, the first node of every cluster is killed, so
/// that `quorum` reads need the nodes that came back (and see the writes made while they
/// were down only if they caught up); then those come back too.
///
/// Runs when `QDRANT_CLUSTER_URLS` names the nodes' gRPC addresses (comma-separated; clusters
/// separated by `;`) and `QDRANT_CLUSTER_PIDS` their processes in the same order.
/// `QDRANT_CLUSTER_RESTART` is a shell command that, given a node's position in that order
/// (1-based, across the clusters) as its last word, starts that node again on its storage.
/// CI cannot build Qdrant in its time, so the last run is kept in `docs/qdrant-backend.md`,
/// with the commands that start such clusters.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn real_qdrant_clusters_are_shard_groups() {
    let (Ok(urls), Ok(pids)) = (
        std::env::var("QDRANT_CLUSTER_URLS"),
        std::env::var("QDRANT_CLUSTER_PIDS"),
    ) else {
        eprintln!("skipped: QDRANT_CLUSTER_URLS and QDRANT_CLUSTER_PIDS are not set");
        return;
    };
    let split = |s: &str| -> Vec<Vec<String>> {
        s.split(';')
            .map(|g| g.split(',').map(str::to_string).collect())
            .collect()
    };
    let (groups, pids) = (split(&urls), split(&pids));
    assert!(
        groups.len() == pids.len()
            && groups
                .iter()
                .zip(&pids)
                .all(|(g, p)| g.len() == 3 && g.len() == p.len()),
        "{groups:?} {pids:?}"
    );
    // A node's position across the clusters (1-based), as QDRANT_CLUSTER_RESTART takes it.
    let position = |g: usize, i: usize| groups[..g].iter().map(Vec::len).sum::<usize>() + i + 1;
    let embedded_dirs = DataDirs::new();
    let embedded = Router::start(&embedded_dirs, &["--cache-ttl-secs", "0"]);
    let coord_dirs = DataDirs::new();
    let nodes: Vec<String> = groups.iter().map(|g| g.join("|")).collect();
    let coord = start_cluster_router(&coord_dirs, &nodes, &[]);
    coord.call(Method::DELETE, "/collections/qdc", None).await;
    let config = json!({"vectors": {"size": DIM, "distance": "Cosine"},
                        "shard_number": groups.len(),
                        "replication_factor": 3, "write_consistency_factor": 1});
    for r in [&coord, &embedded] {
        r.create("qdc", config.clone()).await;
        r.put(
            "/collections/qdc/index?wait=true",
            json!({"field_name": "city", "field_schema": "keyword"}),
        )
        .await;
        for chunk in points(0, POINTS).chunks(300) {
            r.upsert("qdc", json!({ "points": chunk })).await;
        }
        r.post(
            "/collections/qdc/points/payload?wait=true",
            json!({"payload": {"star": true}, "points": [10, 11, 12, 13]}),
        )
        .await;
    }
    // Qdrant holds the collection as asked: a replica of every shard on every node of each
    // cluster, and each cluster a part of the points.
    let mut held = Vec::new();
    for g in &groups {
        let channel = tonic::transport::Endpoint::from_shared(g[0].clone())
            .unwrap()
            .connect()
            .await
            .expect("the first Qdrant node of a cluster");
        let mut collections =
            qdrant_client::qdrant::collections_client::CollectionsClient::new(channel);
        let info = collections
            .get(qdrant_client::qdrant::GetCollectionInfoRequest {
                collection_name: "qdc".into(),
            })
            .await
            .expect("collection info")
            .into_inner();
        let params = info.result.and_then(|r| r.config).and_then(|c| c.params);
        let params = params.expect("the collection's parameters");
        assert_eq!(
            (params.replication_factor, params.write_consistency_factor),
            (Some(3), Some(1))
        );
        let cluster = collections
            .collection_cluster_info(qdrant_client::qdrant::CollectionClusterInfoRequest {
                collection_name: "qdc".into(),
            })
            .await
            .expect("collection cluster info")
            .into_inner();
        let mut replicas: std::collections::BTreeMap<u32, usize> = Default::default();
        for s in &cluster.local_shards {
            *replicas.entry(s.shard_id).or_default() += 1;
        }
        for s in &cluster.remote_shards {
            *replicas.entry(s.shard_id).or_default() += 1;
        }
        assert!(
            !replicas.is_empty() && replicas.values().all(|&n| n == 3),
            "replicas per shard: {replicas:?}"
        );
        let mut points = qdrant_client::qdrant::points_client::PointsClient::new(
            tonic::transport::Endpoint::from_shared(g[0].clone())
                .unwrap()
                .connect()
                .await
                .unwrap(),
        );
        let count = points
            .count(qdrant_client::qdrant::CountPoints {
                collection_name: "qdc".into(),
                exact: Some(true),
                ..Default::default()
            })
            .await
            .expect("count")
            .into_inner()
            .result
            .unwrap()
            .count;
        held.push(count);
    }
    assert_eq!(
        held.iter().sum::<u64>(),
        POINTS,
        "points per cluster: {held:?}"
    );
    assert!(held.iter().all(|&n| n > 0), "points per cluster: {held:?}");
    let compare = |stage: &'static str, consistency: &'static str| {
        let (coord, embedded) = (&coord, &embedded);
        async move {
            for (path, body) in qdrant_reads(consistency) {
                let (status, a) = coord.call(Method::POST, &path, Some(&body)).await;
                assert_eq!(status, StatusCode::OK, "{stage}: {path}: {a}");
                let b = embedded.post(&path, body.clone()).await;
                assert!(
                    close(&a["result"], &b),
                    "{stage}: {path} with {body}:\n{a}\n{b}"
                );
            }
        }
    };
    compare("every Qdrant node up", "").await;
    compare(
        "every Qdrant node up, majority reads",
        "?consistency=majority",
    )
    .await;

    // The last node of every cluster down.
    for (g, p) in groups.iter().zip(&pids) {
        kill_qdrant_node(p.last().unwrap(), g.last().unwrap()).await;
    }
    compare("a node down", "").await;
    // The router moved past the dead nodes: its metrics count calls they did not answer.
    let (_, metrics) = coord.text("/metrics").await;
    for g in &groups {
        let dead = format!("replica=\"{}\"", g.last().unwrap());
        let failures: f64 = metrics
            .lines()
            .find(|l| {
                l.starts_with("vector_router_cluster_replica_failures_total{") && l.contains(&dead)
            })
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .unwrap_or_else(|| panic!("no failures counted for {dead}:\n{metrics}"));
        assert!(failures >= 1.0, "{failures}");
    }
    // Qdrant's `majority` asks every replica it holds active and fails when one does not
    // answer (then, once a write found it down, refuses: too few active replicas); `quorum`
    // asks a majority of them.
    compare("a node down, quorum reads", "?consistency=quorum").await;
    // Writes go on: Qdrant marks the dead node's replicas and takes the write on the others
    // (a write may fail while it finds out; the same write again is the same write).
    let writes: Vec<(Method, String, Value)> = vec![
        (
            Method::PUT,
            "/collections/qdc/points?wait=true".into(),
            json!({"points": points(POINTS, POINTS + 500)}),
        ),
        (
            Method::POST,
            "/collections/qdc/points/delete?wait=true".into(),
            json!({"points": [3, 4, 5]}),
        ),
        (
            Method::POST,
            "/collections/qdc/points/payload?wait=true".into(),
            json!({"payload": {"star": false}, "points": [11, 1999]}),
        ),
    ];
    for (method, path, body) in &writes {
        write_until_taken(&coord, &embedded, method.clone(), path, body, "a node down").await;
    }
    compare("written with a node down", "").await;
    compare(
        "written with a node down, quorum reads",
        "?consistency=quorum",
    )
    .await;
    let Ok(restart) = std::env::var("QDRANT_CLUSTER_RESTART") else {
        eprintln!("not run: a node coming back (QDRANT_CLUSTER_RESTART is not set)");
        assert_eq!(
            coord.ok(Method::DELETE, "/collections/qdc", None).await,
            json!(true)
        );
        return;
    };
    // The killed nodes come back. Once Qdrant has recovered their replicas (every replica of
    // every shard active again), the first node of every cluster is killed: reads at
    // `quorum` then need the nodes that came back, so they hold the writes made while those
    // were down only if they caught up.
    for (k, g) in groups.iter().enumerate() {
        restart_qdrant_node(&restart, position(k, g.len() - 1), g.last().unwrap()).await;
    }
    let started = std::time::Instant::now();
    for g in &groups {
        wait_all_replicas_active(&g[0], 3, Duration::from_secs(180)).await;
    }
    eprintln!(
        "the killed nodes back: every replica active after {:.1} s",
        started.elapsed().as_secs_f64()
    );
    compare("the nodes back", "").await;
    compare("the nodes back, majority reads", "?consistency=majority").await;
    for (g, p) in groups.iter().zip(&pids) {
        kill_qdrant_node(&p[0], &g[0]).await;
    }
    compare("the nodes back, the first down", "").await;
    compare(
        "the nodes back, the first down, quorum reads",
        "?consistency=quorum",
    )
    .await;
    write_until_taken(
        &coord,
        &embedded,
        Method::POST,
        "/collections/qdc/points/payload?wait=true",
        &json!({"payload": {"star": "again"}, "points": [20, 21, 22, 23]}),
        "the first down",
    )
    .await;
    compare(
        "written with the first down, quorum reads",
        "?consistency=quorum",
    )
    .await;
    // The first nodes come back too: the clusters are left whole for the next run.
    for (k, g) in groups.iter().enumerate() {
        restart_qdrant_node(&restart, position(k, 0), &g[0]).await;
    }
    for g in &groups {
        wait_all_replicas_active(&g[1], 3, Duration::from_secs(180)).await;
    }
    compare("every node back, majority reads", "?consistency=majority").await;
    assert_eq!(
        coord.ok(Method::DELETE, "/collections/qdc", None).await,
        json!(true)
    );
    eprintln!(
        "{} Qdrant cluster(s) of {:?} nodes served as shard groups: a node of each down, back \
         and caught up",
        groups.len(),
        groups.iter().map(Vec::len).collect::<Vec<_>>()
    );
}

/// Sends a write through the coordinator until it is taken (at most 60 s: Qdrant may refuse
/// while it finds a node down; the same write again is the same write), then to the
/// embedded router.
async fn write_until_taken(
    coord: &Router,
    embedded: &Router,
    method: Method,
    path: &str,
    body: &Value,
    stage: &str,
) {
    let started = std::time::Instant::now();
    let deadline = started + Duration::from_secs(60);
    let mut refused = Vec::new();
    loop {
        let (status, answer) = coord.call(method.clone(), path, Some(body)).await;
        if status == StatusCode::OK {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{path} with {stage}: {status} {answer}"
        );
        refused.push(format!("{status} {}", answer["status"]["error"]));
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    eprintln!(
        "{path} with {stage}: written after {:.1} s, {} refusal(s) first {refused:?}",
        started.elapsed().as_secs_f64(),
        refused.len()
    );
    let (status, answer) = embedded.call(method, path, Some(body)).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
}

/// Kills a Qdrant node (SIGKILL to `pid`) and waits for its port (`url`) to refuse
/// connections: a PID of a wrapper (a shell that started Qdrant) would leave it serving and
/// the test proving nothing.
async fn kill_qdrant_node(pid: &str, url: &str) {
    let killed = std::process::Command::new("kill")
        .args(["-9", pid])
        .status()
        .expect("kill");
    assert!(killed.success());
    let addr = url.trim_start_matches("http://").to_string();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(&addr).await.is_ok() {
        assert!(
            std::time::Instant::now() < deadline,
            "{addr} still accepts connections: QDRANT_CLUSTER_PIDS must name the Qdrant \
             processes themselves"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Starts Qdrant node `position` (1-based, in `QDRANT_CLUSTER_URLS`' order) again through
/// `restart` (a shell command given the position as its last word), then waits for its
/// gRPC port (`url`) to answer.
async fn restart_qdrant_node(restart: &str, position: usize, url: &str) {
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("{restart} {position}"))
        .status()
        .expect("QDRANT_CLUSTER_RESTART");
    assert!(status.success(), "{restart} {position}: {status}");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(endpoint) = tonic::transport::Endpoint::from_shared(url.to_string()) {
            if let Ok(channel) = endpoint.connect().await {
                let mut q = qdrant_client::qdrant::qdrant_client::QdrantClient::new(channel);
                if q.health_check(qdrant_client::qdrant::HealthCheckRequest {})
                    .await
                    .is_ok()
                {
                    return;
                }
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "Qdrant node {position} ({url}) did not come back"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until the Qdrant node at `url` sees `replicas` replicas of every shard of `qdc`, all
/// active (Qdrant recovers a replica that was down by a shard transfer).
async fn wait_all_replicas_active(url: &str, replicas: usize, limit: Duration) {
    use qdrant_client::qdrant::ReplicaState;
    let deadline = std::time::Instant::now() + limit;
    let mut seen = String::new();
    while std::time::Instant::now() < deadline {
        let info = async {
            let channel = tonic::transport::Endpoint::from_shared(url.to_string())
                .ok()?
                .connect()
                .await
                .ok()?;
            let mut c = qdrant_client::qdrant::collections_client::CollectionsClient::new(channel);
            c.collection_cluster_info(qdrant_client::qdrant::CollectionClusterInfoRequest {
                collection_name: "qdc".into(),
            })
            .await
            .ok()
            .map(|r| r.into_inner())
        }
        .await;
        if let Some(info) = info {
            let mut states: std::collections::BTreeMap<u32, Vec<i32>> = Default::default();
            for s in &info.local_shards {
                states.entry(s.shard_id).or_default().push(s.state);
            }
            for s in &info.remote_shards {
                states.entry(s.shard_id).or_default().push(s.state);
            }
            let active = ReplicaState::Active as i32;
            if !states.is_empty()
                && info.shard_transfers.is_empty()
                && states
                    .values()
                    .all(|s| s.len() == replicas && s.iter().all(|&x| x == active))
            {
                return;
            }
            seen = format!("{states:?}, transfers {:?}", info.shard_transfers);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!("the replicas of qdc did not all become active in {limit:?} at {url}: {seen}");
}

/// A coordinator killed in the one window where a batch has moved its points and not yet
/// written its cursor (held open by the `VR_TEST_RESHARD_PAUSE_AFTER_MOVE_MS` fail point):
/// restarted, it runs that batch again before any request, so writes to the moved points sent
/// at once (a delete, a payload write, an upsert) land where the points are, and the
/// resharding ends with every point once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_coordinator_killed_between_a_batch_move_and_its_cursor_resumes_it_exactly() {
    use std::collections::BTreeMap;
    let node_dirs: Vec<DataDirs> = (0..2).map(|_| DataDirs::new()).collect();
    let nodes: Vec<Router> = node_dirs.iter().map(|d| Router::start(d, &[])).collect();
    let urls: Vec<String> = nodes.iter().map(|n| n.grpc.clone()).collect();
    let coord_dirs = DataDirs::new();
    const N: u64 = 400;
    let mut expected: BTreeMap<u64, Value> = (0..N).map(|i| (i, Value::Null)).collect();
    let mut coord = start_cluster_router(&coord_dirs, &urls, &[]);
    coord
        .create("r", json!({"vectors": {"size": DIM, "distance": "Cosine"}}))
        .await;
    coord.upsert("r", json!({ "points": points(0, N) })).await;
    assert!(coord.terminate(Duration::from_secs(20)).is_some());
    // The points of shard 1 in id order: the first batch of a shrink moves the first four.
    let on_second: Vec<u64> = (0..N)
        .filter(|&i| shard_router::remote::jump_shard_of(&index_core::PointId::Num(i), 2) == 1)
        .collect();
    let held = node_points(&nodes[1], "r").await.len();
    assert_eq!(held, on_second.len());
    let list = urls.join(",");
    let mut cmd = Router::command(&coord_dirs);
    cmd.args(["--cluster-nodes", &list, "--cache-ttl-secs", "0"])
        .args(["--cluster-reshard-batch", "4"])
        .env("VR_TEST_RESHARD_PAUSE_AFTER_MOVE_MS", "60000");
    let mut paused = Router::spawn(cmd, &coord_dirs.log());
    paused
        .post(
            "/collections/r/cluster",
            json!({"start_resharding": {"direction": "down"}}),
        )
        .await;
    // In the window: four points moved off node 1, no batch counted, no cursor written.
    let until = std::time::Instant::now() + Duration::from_secs(30);
    while node_points(&nodes[1], "r").await.len() != held - 4 {
        assert!(
            std::time::Instant::now() < until,
            "the first batch never moved"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let info = paused.get("/collections/r/cluster").await;
    assert_eq!(info["resharding_progress"]["batches"], json!(0), "{info}");
    paused.kill();
    let coord = start_cluster_router(&coord_dirs, &urls, &["--cluster-reshard-batch", "40"]);
    let moved = &on_second[..4];
    coord
        .post(
            "/collections/r/points/delete?wait=true",
            json!({ "points": [moved[0]] }),
        )
        .await;
    expected.remove(&moved[0]);
    coord
        .post(
            "/collections/r/points/payload?wait=true",
            json!({"payload": {"tag": "set"}, "points": [moved[1]]}),
        )
        .await;
    expected.insert(moved[1], json!("set"));
    coord
        .upsert(
            "r",
            json!({"points": [{"id": moved[2], "vector": vector(7, DIM), "payload": {"tag": "new"}}]}),
        )
        .await;
    expected.insert(moved[2], json!("new"));
    wait_resharded(&coord).await;
    check_placed(&coord, &nodes[..1], 1, &expected).await;
    assert!(node_points(&nodes[1], "r").await.is_empty());
}

/// Where the region test's point `i` is: a grid of whole and half degrees over the world
/// (so that some points fall on a region's border), every third point around Europe, or,
/// for every 9th, no location.
fn region_location(i: u64) -> Option<(f64, f64)> {
    if i % 9 == 4 {
        return None;
    }
    let x = i.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 20;
    if i.is_multiple_of(3) {
        let lat = (x % 91) as f64 * 0.5 + 30.0; // 30 to 75
        let lon = ((x / 91) % 161) as f64 * 0.5 - 30.0; // -30 to 50
        return Some((lat, lon));
    }
    let lat = (x % 261) as f64 * 0.5 - 60.0; // -60 to 70
    let lon = ((x / 261) % 720) as f64 * 0.5 - 180.0; // -180 to 179.5
    Some((lat, lon))
}

/// The key the region test's point `i` belongs to, worked out here by hand: Europe's box
/// (72°N 25°W to 34°N 45°E) and the Americas' polygon (a rectangle, 72°N to 56°S and 170°W
/// to 30°W), both with their borders, else `rest`.
fn region_key_of(i: u64) -> &'static str {
    match region_location(i) {
        Some((lat, lon)) if (34.0..=72.0).contains(&lat) && (-25.0..=45.0).contains(&lon) => "eu",
        Some((lat, lon)) if (-56.0..=72.0).contains(&lat) && (-170.0..=-30.0).contains(&lon) => {
            "am"
        }
        _ => "rest",
    }
}

fn region_points(from: u64, to: u64) -> Vec<Value> {
    (from..to)
        .map(|i| {
            let mut payload = json!({"n": i, "city": CITIES[(i % 4) as usize]});
            if let Some((lat, lon)) = region_location(i) {
                payload["loc"] = json!({"lat": lat, "lon": lon});
            }
            json!({"id": i, "vector": vector(i, DIM), "payload": payload})
        })
        .collect()
}

#[tokio::test]
async fn regions_place_points_by_location_and_geo_reads_reach_only_the_regions_they_meet() {
    let node_dirs: Vec<DataDirs> = (0..3).map(|_| DataDirs::new()).collect();
    let nodes: Vec<Router> = node_dirs
        .iter()
        .map(|d| start_node(d, free_port(), free_port()))
        .collect();
    let urls: Vec<String> = nodes.iter().map(|n| n.grpc.clone()).collect();
    let cluster_dirs = DataDirs::new();
    let cluster = start_cluster_router(&cluster_dirs, &urls, &[]);
    let embedded_dirs = DataDirs::new();
    let embedded = Router::start(&embedded_dirs, &["--cache-ttl-secs", "0"]);
    let vectors = json!({"size": DIM, "distance": "Cosine"});

    // Bad configurations and regions are refused.
    for (body, text) in [
        (
            json!({"vectors": vectors, "shard_region_field": "loc"}),
            "needs sharding_method `custom`",
        ),
        (
            json!({"vectors": vectors, "sharding_method": "custom",
                   "shard_region_field": "loc", "shard_key_field": "city"}),
            "places its points by one of them",
        ),
    ] {
        let (status, v) = cluster
            .call(Method::PUT, "/collections/bad", Some(&body))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
        assert!(v.to_string().contains(text), "{v}");
    }
    cluster
        .create(
            "g",
            json!({"vectors": vectors, "sharding_method": "custom", "shard_region_field": "loc"}),
        )
        .await;
    cluster
        .create(
            "plain",
            json!({"vectors": vectors, "sharding_method": "custom"}),
        )
        .await;
    let europe = json!({"geo_bounding_box": {
        "top_left": {"lat": 72.0, "lon": -25.0}, "bottom_right": {"lat": 34.0, "lon": 45.0}}});
    let americas = json!({"geo_polygon": {"exterior": {"points": [
        {"lat": 72.0, "lon": -170.0}, {"lat": 72.0, "lon": -30.0}, {"lat": -56.0, "lon": -30.0},
        {"lat": -56.0, "lon": -170.0}, {"lat": 72.0, "lon": -170.0}]}}});
    for (path, body, text) in [
        (
            "/collections/plain/shards",
            json!({"shard_key": "eu", "region": europe}),
            "does not place its points by region",
        ),
        (
            "/collections/g/shards",
            json!({"shard_key": "x", "region": {"geo_bounding_box": {
                "top_left": {"lat": 10.0, "lon": 0.0}, "bottom_right": {"lat": 20.0, "lon": 5.0}}}}),
            "south of",
        ),
        (
            "/collections/g/shards",
            json!({"shard_key": "x", "region": {"geo_radius": {
                "center": {"lat": 10.0, "lon": 0.0}, "radius": 1000.0, "extra": 1}}}),
            "region.geo_radius",
        ),
    ] {
        let (status, v) = cluster.call(Method::PUT, path, Some(&body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
        assert!(v.to_string().contains(text), "{v}");
    }
    // Europe on node 0, the Americas on node 1, the rest of the world on node 2.
    for (key, region, node) in [
        ("eu", Some(&europe), 0),
        ("am", Some(&americas), 1),
        ("rest", None, 2),
    ] {
        let mut body = json!({"shard_key": key, "placement": [node]});
        if let Some(r) = region {
            body["region"] = r.clone();
        }
        assert_eq!(
            cluster.put("/collections/g/shards", body).await,
            json!(true),
            "{key}"
        );
    }
    embedded.create("all", json!({ "vectors": vectors })).await;
    const N: u64 = 1_200;
    for chunk in region_points(0, N).chunks(300) {
        cluster.upsert("g", json!({ "points": chunk })).await;
        embedded.upsert("all", json!({ "points": chunk })).await;
    }

    // Each point on its region's node, and nowhere else.
    let mut expected: std::collections::BTreeMap<&str, Vec<u64>> = Default::default();
    for i in 0..N {
        expected.entry(region_key_of(i)).or_default().push(i);
    }
    assert!(
        expected.values().all(|ids| ids.len() > 100),
        "every region holds points: {:?}",
        expected
            .iter()
            .map(|(k, v)| (k, v.len()))
            .collect::<Vec<_>>()
    );
    let on_border = (0..N)
        .filter_map(region_location)
        .filter(|&(lat, lon)| lon == -25.0 || lon == 45.0 || lat == 34.0 || lon == -30.0)
        .count();
    assert!(on_border > 5, "only {on_border} points on a border");
    for (key, node) in [("eu", 0), ("am", 1), ("rest", 2)] {
        let (status, page) = nodes[node]
            .call(
                Method::POST,
                &format!("/collections/g@{key}/points/scroll"),
                Some(&json!({"limit": 10_000})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let mut ids: Vec<u64> = page["result"]["points"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["id"].as_u64().unwrap())
            .collect();
        ids.sort_unstable();
        assert_eq!(ids, expected[key], "the points of `{key}` on node {node}");
    }

    // Geo-filtered reads equal the embedded router's, and reach only the regions they meet
    // (and `rest`, which holds the points outside every region).
    let searched = |k: usize, key: &'static str| {
        let node = &nodes[k];
        async move {
            node.metric(&format!(
                "vector_router_search_duration_seconds_count{{collection=\"g@{key}\"}}"
            ))
            .await
        }
    };
    let berlin = json!({"key": "loc", "geo_radius": {
        "center": {"lat": 52.5, "lon": 13.4}, "radius": 1_500_000.0}});
    let brazil = json!({"key": "loc", "geo_bounding_box": {
        "top_left": {"lat": 0.0, "lon": -60.0}, "bottom_right": {"lat": -30.0, "lon": -35.0}}});
    let atlantic = json!({"key": "loc", "geo_polygon": {"exterior": {"points": [
        {"lat": 10.0, "lon": -28.0}, {"lat": 30.0, "lon": -28.0}, {"lat": 30.0, "lon": -26.0},
        {"lat": 10.0, "lon": -28.0}]}}});
    let both = json!({"should": [berlin, brazil]});
    for (q, (filter, reach)) in [
        (json!({"must": [berlin]}), [true, false, true]),
        (json!({"must": [brazil]}), [false, true, true]),
        (json!({"must": [atlantic]}), [false, false, true]),
        (
            json!({"must": [{"key": "city", "match": {"value": "rome"}}, {"must": [berlin]}]}),
            [true, false, true],
        ),
        // Not pinned (a `should` of two shapes): every region.
        (both, [true, true, true]),
    ]
    .into_iter()
    .enumerate()
    {
        let before = [
            searched(0, "eu").await,
            searched(1, "am").await,
            searched(2, "rest").await,
        ];
        let body = json!({"query": vector(50_000 + q as u64, DIM), "limit": 10,
                          "with_payload": true, "params": {"exact": true}, "filter": filter});
        let want = embedded.query("all", body.clone()).await;
        assert_eq!(cluster.query("g", body).await, want, "query {q}");
        if q < 2 {
            assert!(!want.is_empty(), "query {q} finds points");
        }
        let count = json!({"filter": filter, "exact": true});
        assert_eq!(
            cluster
                .post("/collections/g/points/count", count.clone())
                .await,
            embedded.post("/collections/all/points/count", count).await,
            "count {q}"
        );
        let after = [
            searched(0, "eu").await,
            searched(1, "am").await,
            searched(2, "rest").await,
        ];
        for (k, key) in ["eu", "am", "rest"].into_iter().enumerate() {
            assert_eq!(
                after[k] - before[k],
                if reach[k] { 1.0 } else { 0.0 },
                "query {q} ({filter}) and `{key}`"
            );
        }
    }

    // Writes that cannot be placed are refused whole.
    let at = |lat: f64, lon: f64| json!({"lat": lat, "lon": lon});
    for (body, text) in [
        (
            json!({"points": [{"id": 5000, "vector": vector(1, DIM), "payload": {"loc": at(48.8, 2.3)}}],
                   "shard_key": "am"}),
            "lies in shard key eu's region, but the request names shard key am",
        ),
        (
            json!({"points": [
                {"id": 5001, "vector": vector(1, DIM), "payload": {"loc": at(48.8, 2.3)}},
                {"id": 5002, "vector": vector(2, DIM), "payload": {"loc": [at(1.0, 1.0), at(2.0, 2.0)]}}]}),
            "points[1]: payload field `loc`: one location places a point in a region, not 2",
        ),
        (
            json!({"points": [{"id": 5003, "vector": vector(1, DIM), "payload": {"loc": "paris"}}]}),
            "points[0]: payload field `loc`",
        ),
    ] {
        let (status, v) = cluster
            .call(Method::PUT, "/collections/g/points?wait=true", Some(&body))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
        assert!(v.to_string().contains(text), "{v}");
    }
    let count = cluster
        .post("/collections/g/points/count", json!({"exact": true}))
        .await;
    assert_eq!(
        count["count"],
        json!(N),
        "nothing of a refused upsert landed"
    );
    // A location may be set only to one its key takes.
    for (body, ok) in [
        (
            json!({"payload": {"loc": at(40.0, -100.0)}, "points": [expected["eu"][0]], "shard_key": "eu"}),
            false,
        ),
        (
            json!({"payload": {"loc": at(50.0, 10.0)}, "points": [expected["eu"][0]], "shard_key": "eu"}),
            true,
        ),
        (
            json!({"payload": {"loc": at(50.0, 10.0)}, "points": [expected["eu"][0]]}),
            false,
        ),
    ] {
        let (status, v) = cluster
            .call(
                Method::POST,
                "/collections/g/points/payload?wait=true",
                Some(&body),
            )
            .await;
        let want = if ok {
            StatusCode::OK
        } else {
            StatusCode::BAD_REQUEST
        };
        assert_eq!(status, want, "{body}: {v}");
    }
    embedded
        .post(
            "/collections/all/points/payload?wait=true",
            json!({"payload": {"loc": at(50.0, 10.0)}, "points": [expected["eu"][0]]}),
        )
        .await;

    // A region over locations points already lie at (under `rest`) is refused: they would
    // not move, and an upsert of one again would write a second copy. One over an empty
    // area (no point of the half-degree grid lies in it) is made.
    let (lat, lon) = (0..N)
        .filter(|&i| region_key_of(i) == "rest")
        .find_map(region_location)
        .expect("a point under `rest`");
    let around = json!({"geo_bounding_box": {
        "top_left": {"lat": (lat + 0.7).min(90.0), "lon": (lon - 0.7).max(-180.0)},
        "bottom_right": {"lat": (lat - 0.7).max(-90.0), "lon": (lon + 0.7).min(180.0)}}});
    let (status, v) = cluster
        .call(
            Method::PUT,
            "/collections/g/shards",
            Some(&json!({"shard_key": "x", "region": around})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    assert!(v.to_string().contains("already lies in it"), "{v}");
    // A region whose bounds hold a point but whose shape does not is made: a triangle with a
    // point of `rest` in its bounding box, beyond its long side, and no point inside.
    let inside = |(plat, plon): (f64, f64), (lat, lon): (f64, f64)| {
        let (dlat, dlon) = (lat - plat, lon - plon);
        dlat >= -2.0 && dlon >= -2.0 && dlat + dlon <= -1.5
    };
    let corner = (0..N)
        .filter(|&i| region_key_of(i) == "rest")
        .filter_map(region_location)
        .filter(|&(lat, lon)| (-58.0..25.0).contains(&lat) && (60.0..170.0).contains(&lon))
        .find(|&p| !(0..N).filter_map(region_location).any(|q| inside(p, q)))
        .expect("a point of `rest` with an empty triangle beside it");
    let (lat, lon) = corner;
    let triangle = json!({"geo_polygon": {"exterior": {"points": [
        {"lat": lat - 2.0, "lon": lon - 2.0}, {"lat": lat + 0.5, "lon": lon - 2.0},
        {"lat": lat - 2.0, "lon": lon + 0.5}, {"lat": lat - 2.0, "lon": lon - 2.0}]}}});
    assert_eq!(
        cluster
            .put(
                "/collections/g/shards",
                json!({"shard_key": "tri", "region": triangle, "placement": [2]}),
            )
            .await,
        json!(true),
        "a point at {corner:?} lies in the triangle's bounds, not in it"
    );
    let empty_box = |west: f64| {
        json!({"geo_bounding_box": {
            "top_left": {"lat": -44.1, "lon": west}, "bottom_right": {"lat": -44.4, "lon": west + 0.3}}})
    };
    let (first, second) = (empty_box(-14.4), empty_box(-13.4));
    assert_eq!(
        cluster
            .put(
                "/collections/g/shards",
                json!({"shard_key": "sa", "region": first, "placement": [0]}),
            )
            .await,
        json!(true)
    );

    // A coordinator that starts afresh reads the regions back from the nodes.
    let fresh_dirs = DataDirs::new();
    let fresh = start_cluster_router(&fresh_dirs, &urls, &[]);
    let keys = fresh.get("/collections/g/shards").await;
    assert_eq!(
        keys["shard_keys"],
        json!([{"key": "am", "region": americas}, {"key": "eu", "region": europe},
               {"key": "rest"}, {"key": "sa", "region": first},
               {"key": "tri", "region": triangle}]),
    );
    let before = searched(1, "am").await;
    let body = json!({"query": vector(60_000, DIM), "limit": 10, "with_payload": true,
                      "params": {"exact": true}, "filter": {"must": [berlin]}});
    assert_eq!(
        fresh.query("g", body.clone()).await,
        embedded.query("all", body).await
    );
    assert_eq!(
        searched(1, "am").await,
        before,
        "a Berlin query reached the Americas"
    );
    fresh
        .upsert(
            "g",
            json!({"points": [{"id": 7000, "vector": vector(7000, DIM), "payload": {"loc": at(-23.5, -46.6)}}]}),
        )
        .await;
    let (status, v) = nodes[1]
        .call(Method::GET, "/collections/g@am/points/7000", None)
        .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "São Paulo lands in the Americas: {v}"
    );

    // The key made again through the second coordinator with another region and node: the
    // first one, which knew the old region, reads the new one from the nodes (its catalog
    // import, every 10 s) and places points by it.
    assert_eq!(
        fresh
            .post("/collections/g/shards/delete", json!({"shard_key": "sa"}))
            .await,
        json!(true)
    );
    assert_eq!(
        fresh
            .put(
                "/collections/g/shards",
                json!({"shard_key": "sa", "region": second, "placement": [1]}),
            )
            .await,
        json!(true)
    );
    let until = std::time::Instant::now() + Duration::from_secs(40);
    loop {
        let keys = cluster.get("/collections/g/shards").await;
        let sa = keys["shard_keys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["key"] == "sa")
            .cloned();
        if sa.is_some_and(|k| k["region"] == second) {
            break;
        }
        assert!(
            std::time::Instant::now() < until,
            "the first coordinator still lists {keys}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    cluster
        .upsert(
            "g",
            json!({"points": [{"id": 7001, "vector": vector(7001, DIM), "payload": {"loc": at(-44.25, -13.25)}}]}),
        )
        .await;
    let (status, v) = nodes[1]
        .call(Method::GET, "/collections/g@sa/points/7001", None)
        .await;
    assert_eq!(status, StatusCode::OK, "placed by the new region: {v}");
}
