//! API keys: full and read-only keys, both header forms, open health endpoints, and the
//! refusal to bind beyond loopback without a key.

use crate::common::{router_command, DataDirs, Router};
use reqwest::{Method, StatusCode};
use serde_json::json;

const FULL: &str = "full-key-1234";
const READ: &str = "read-key-5678";

async fn status_with(
    r: &Router,
    method: Method,
    path: &str,
    body: Option<serde_json::Value>,
    header: Option<(&str, String)>,
) -> StatusCode {
    let mut req = r.request(method, path);
    if let Some((name, value)) = header {
        req = req.header(name, value);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    req.send().await.expect("request").status()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_gate_reads_and_writes() {
    let dirs = DataDirs::new();
    let r = Router::start(&dirs, &["--api-key", FULL, "--read-only-api-key", READ]);
    let full = Some(("api-key", FULL.to_string()));
    let read = Some(("api-key", READ.to_string()));
    let create = json!({"vectors": {"size": 2, "distance": "Dot"}});
    let upsert = json!({"points": [{"id": 1, "vector": [1.0, 0.0]}]});
    let query = json!({"query": [1.0, 0.0]});

    // No key, or a wrong one: nothing but health.
    for header in [
        None,
        Some(("api-key", "nope".to_string())),
        Some(("authorization", "Bearer nope".to_string())),
    ] {
        let s = status_with(&r, Method::GET, "/collections", None, header.clone()).await;
        assert!(
            s == StatusCode::UNAUTHORIZED || s == StatusCode::FORBIDDEN,
            "{header:?}: {s}"
        );
        let s = status_with(
            &r,
            Method::PUT,
            "/collections/c",
            Some(create.clone()),
            header.clone(),
        )
        .await;
        assert!(
            s == StatusCode::UNAUTHORIZED || s == StatusCode::FORBIDDEN,
            "{s}"
        );
    }
    assert_eq!(
        status_with(&r, Method::GET, "/collections", None, None).await,
        StatusCode::UNAUTHORIZED
    );
    let (status, body) = r.call(Method::GET, "/collections", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body["status"]["error"].is_string(), "{body}");
    for path in ["/healthz", "/livez", "/readyz"] {
        assert_eq!(
            status_with(&r, Method::GET, path, None, None).await,
            StatusCode::OK,
            "{path}"
        );
    }

    // The full key does everything, as api-key or as a bearer token.
    assert_eq!(
        status_with(
            &r,
            Method::PUT,
            "/collections/c",
            Some(create.clone()),
            full.clone()
        )
        .await,
        StatusCode::OK
    );
    assert_eq!(
        status_with(
            &r,
            Method::PUT,
            "/collections/c/points?wait=true",
            Some(upsert.clone()),
            Some(("authorization", format!("Bearer {FULL}")))
        )
        .await,
        StatusCode::OK
    );

    // The read-only key reads (including POST reads) but cannot write.
    for (method, path, body) in [
        (Method::GET, "/collections", None),
        (Method::GET, "/collections/c", None),
        (
            Method::POST,
            "/collections/c/points/query",
            Some(query.clone()),
        ),
        (
            Method::POST,
            "/collections/c/points/scroll",
            Some(json!({})),
        ),
        (Method::POST, "/collections/c/points/count", Some(json!({}))),
        (
            Method::POST,
            "/collections/c/points",
            Some(json!({"ids": [1]})),
        ),
    ] {
        assert_eq!(
            status_with(&r, method.clone(), path, body, read.clone()).await,
            StatusCode::OK,
            "read-only {method} {path}"
        );
    }
    for (method, path, body) in [
        (
            Method::PUT,
            "/collections/c/points?wait=true",
            Some(upsert.clone()),
        ),
        (
            Method::POST,
            "/collections/c/points/delete",
            Some(json!({"points": [1]})),
        ),
        (
            Method::POST,
            "/collections/c/points/payload",
            Some(json!({"payload": {"a": 1}, "points": [1]})),
        ),
        (Method::PUT, "/collections/d", Some(create.clone())),
        (Method::DELETE, "/collections/c", None),
        (Method::POST, "/collections/c/snapshots", None),
    ] {
        assert_eq!(
            status_with(&r, method.clone(), path, body, read.clone()).await,
            StatusCode::FORBIDDEN,
            "read-only {method} {path}"
        );
    }
    assert_eq!(
        status_with(
            &r,
            Method::POST,
            "/collections/c/points/query",
            Some(query.clone()),
            Some(("authorization", format!("Bearer {READ}")))
        )
        .await,
        StatusCode::OK
    );
    // The refused writes changed nothing.
    let r = r.with_key(FULL);
    assert_eq!(r.get("/collections/c").await["points_count"], json!(1));
    assert_eq!(
        r.get("/collections/d/exists").await,
        json!({"exists": false})
    );
    assert_eq!(
        r.ok(Method::DELETE, "/collections/c", None).await,
        json!(true)
    );
}

#[test]
fn binding_beyond_loopback_needs_a_key() {
    let dirs = DataDirs::new();
    let out = router_command()
        .args(["--host", "0.0.0.0", "--http-port", "0", "--storage-path"])
        .arg(dirs.storage())
        .arg("--snapshots-path")
        .arg(dirs.snapshots())
        .output()
        .expect("run router");
    assert!(!out.status.success(), "{:?}", out.status);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("0.0.0.0") && stderr.to_lowercase().contains("api key"),
        "unclear message: {stderr}"
    );
    assert!(out.stdout.is_empty(), "it must not have started serving");
}

/// Test fixtures only: a certificate authority (`tls-ca.pem`, its key thrown away), and a
/// certificate it signed for `localhost` and 127.0.0.1 with its key (`tls-cert.pem`,
/// `tls-key.pem`; P-256, valid 100 years, made with `openssl req` and `openssl x509 -req`).
/// A self-signed certificate would not do: rustls refuses a CA certificate as a server's.
fn fixture(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_is_served_over_tls_from_the_configured_certificate() {
    let dirs = DataDirs::new();
    let cert = fixture("tls-cert.pem");
    let key = fixture("tls-key.pem");
    let mut cmd = Router::command(&dirs);
    cmd.env("QDRANT__SERVICE__ENABLE_TLS", "1")
        .env("QDRANT__TLS__CERT", &cert)
        .env("QDRANT__TLS__KEY", &key);
    let r = Router::spawn(cmd, &dirs.log());
    assert!(r.base.starts_with("https://"), "{}", r.base);
    let port = r.base.rsplit(':').next().unwrap().to_string();
    let trusted = reqwest::Client::builder()
        .no_proxy()
        .add_root_certificate(
            reqwest::Certificate::from_pem(&std::fs::read(fixture("tls-ca.pem")).unwrap()).unwrap(),
        )
        .build()
        .unwrap();
    for (n, host) in ["localhost", "127.0.0.1"].into_iter().enumerate() {
        let base = format!("https://{host}:{port}");
        let answer = trusted
            .put(format!("{base}/collections/tls_{n}"))
            .json(&json!({"vectors": {"size": 2, "distance": "Dot"}}))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{base}: {e:?}"));
        assert_eq!(answer.status(), StatusCode::OK, "{base}");
        let answer = trusted
            .put(format!("{base}/collections/tls_{n}/points?wait=true"))
            .json(&json!({"points": [{"id": 1, "vector": [1.0, 2.0]}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), StatusCode::OK);
        let found: serde_json::Value = trusted
            .post(format!("{base}/collections/tls_{n}/points/query"))
            .json(&json!({"query": [1.0, 0.0], "limit": 1}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(found["result"]["points"][0]["id"], 1, "{found}");
    }
    // gRPC is served over TLS with the same certificate, to a client trusting the authority.
    assert!(r.grpc.starts_with("https://"), "{}", r.grpc);
    let grpc_port = r.grpc.rsplit(':').next().unwrap().to_string();
    let tls = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(
            std::fs::read(fixture("tls-ca.pem")).unwrap(),
        ))
        .domain_name("localhost");
    let channel = tonic::transport::Channel::from_shared(format!("https://localhost:{grpc_port}"))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .expect("gRPC over TLS");
    let listed = qdrant_client::qdrant::collections_client::CollectionsClient::new(channel)
        .list(qdrant_client::qdrant::ListCollectionsRequest {})
        .await
        .expect("list collections over gRPC and TLS")
        .into_inner();
    let mut names: Vec<String> = listed.collections.into_iter().map(|c| c.name).collect();
    names.sort();
    assert_eq!(names, ["tls_0", "tls_1"]);
    // Plain HTTP/2 to the TLS gRPC port gets no gRPC answer.
    let plain = tonic::transport::Channel::from_shared(format!("http://127.0.0.1:{grpc_port}"))
        .unwrap()
        .connect_timeout(std::time::Duration::from_secs(10))
        .timeout(std::time::Duration::from_secs(10))
        .connect_lazy();
    let refused = qdrant_client::qdrant::qdrant_client::QdrantClient::new(plain)
        .health_check(qdrant_client::qdrant::HealthCheckRequest {})
        .await;
    assert!(refused.is_err(), "{refused:?}");
    // A client that does not trust the certificate is refused by its own TLS check.
    let untrusting = reqwest::Client::builder().no_proxy().build().unwrap();
    let e = untrusting
        .get(format!("https://localhost:{port}/collections"))
        .send()
        .await
        .unwrap_err();
    assert!(e.is_connect(), "{e:?}");
    // Plain HTTP to the TLS port is not answered in the clear.
    let plain = reqwest::Client::builder().no_proxy().build().unwrap();
    let answer = plain
        .get(format!("http://127.0.0.1:{port}/collections"))
        .timeout(std::time::Duration::from_secs(30))
        .send()
        .await;
    assert!(answer.is_err(), "{answer:?}");
}

#[test]
fn tls_without_a_usable_certificate_refuses_to_start() {
    let dirs = DataDirs::new();
    let cases: [(&[&str], &str); 3] = [
        (
            &["--enable-tls", "true"],
            "without both a certificate and a key",
        ),
        (
            &[
                "--enable-tls",
                "true",
                "--tls-cert",
                "/nonexistent/cert.pem",
                "--tls-key",
            ],
            "/nonexistent/cert.pem",
        ),
        (
            &["--enable-tls", "true", "--tls-key"],
            "no certificate in the file",
        ),
    ];
    for (i, (flags, expected)) in cases.iter().enumerate() {
        let mut cmd = Router::command(&dirs);
        cmd.args(*flags);
        // The key where a flag asks for one; the key again as the certificate in case 3 (a
        // PEM file without a certificate in it).
        match i {
            1 => {
                cmd.arg(fixture("tls-key.pem"));
            }
            2 => {
                cmd.arg(fixture("tls-key.pem"))
                    .arg("--tls-cert")
                    .arg(fixture("tls-key.pem"));
            }
            _ => {}
        }
        let out = cmd.output().expect("run the router");
        assert!(!out.status.success(), "case {i} started");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(expected), "case {i}: {err}");
    }
}

/// Whether a read-only key may call an endpoint.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Access {
    Read,
    Write,
}

/// Every route the router serves but the health probes, with what Qdrant's read-only key may
/// do on it. `c` is a collection that exists; `s.snapshot` a snapshot that does not.
const ENDPOINTS: &[(&str, &str, Access)] = {
    use Access::{Read, Write};
    &[
        ("GET", "/", Read),
        ("GET", "/metrics", Read),
        ("GET", "/collections", Read),
        ("GET", "/aliases", Read),
        ("POST", "/collections/aliases", Write),
        ("GET", "/collections/c/aliases", Read),
        ("PUT", "/collections/c", Write),
        ("GET", "/collections/c", Read),
        ("DELETE", "/collections/c", Write),
        ("PATCH", "/collections/c", Write),
        ("GET", "/collections/c/exists", Read),
        ("PUT", "/collections/c/vectors/v", Write),
        ("DELETE", "/collections/c/vectors/v", Write),
        ("PUT", "/collections/c/vectors/", Write),
        ("DELETE", "/collections/c/vectors/", Write),
        ("PUT", "/collections/c/shards", Write),
        ("GET", "/collections/c/shards", Read),
        ("POST", "/collections/c/shards/delete", Write),
        ("GET", "/collections/c/cluster", Read),
        ("POST", "/collections/c/cluster", Write),
        ("PUT", "/collections/c/index", Write),
        ("DELETE", "/collections/c/index/f", Write),
        ("PUT", "/collections/c/points", Write),
        ("POST", "/collections/c/points", Read),
        ("GET", "/collections/c/points/1", Read),
        ("POST", "/collections/c/points/delete", Write),
        ("POST", "/collections/c/points/batch", Write),
        ("PUT", "/collections/c/points/vectors", Write),
        ("POST", "/collections/c/points/vectors/delete", Write),
        ("POST", "/collections/c/points/payload", Write),
        ("PUT", "/collections/c/points/payload", Write),
        ("POST", "/collections/c/points/payload/delete", Write),
        ("POST", "/collections/c/points/payload/clear", Write),
        ("POST", "/collections/c/points/scroll", Read),
        ("POST", "/collections/c/points/count", Read),
        ("POST", "/collections/c/facet", Read),
        ("POST", "/collections/c/points/search/matrix/pairs", Read),
        ("POST", "/collections/c/points/search/matrix/offsets", Read),
        ("POST", "/collections/c/points/query", Read),
        ("POST", "/collections/c/points/query/batch", Read),
        ("POST", "/collections/c/points/search", Read),
        ("POST", "/collections/c/points/search/batch", Read),
        ("POST", "/collections/c/points/query/groups", Read),
        ("POST", "/collections/c/points/search/groups", Read),
        ("POST", "/collections/c/points/recommend/groups", Read),
        ("POST", "/collections/c/points/recommend", Read),
        ("POST", "/collections/c/points/recommend/batch", Read),
        ("POST", "/collections/c/points/discover", Read),
        ("POST", "/collections/c/points/discover/batch", Read),
        ("POST", "/collections/c/snapshots", Write),
        ("GET", "/collections/c/snapshots", Read),
        ("PUT", "/collections/c/snapshots/recover", Write),
        ("POST", "/collections/c/snapshots/upload", Write),
        ("GET", "/snapshots", Read),
        ("POST", "/snapshots", Write),
        ("GET", "/snapshots/s.snapshot", Read),
        ("DELETE", "/snapshots/s.snapshot", Write),
        ("GET", "/collections/c/snapshots/s.snapshot", Read),
        ("DELETE", "/collections/c/snapshots/s.snapshot", Write),
    ]
};

/// A body each reading POST accepts on `c` (two-dimensional Dot vectors, ids 1 to 20).
fn read_body(path: &str) -> serde_json::Value {
    let q = json!([1.0, 0.5]);
    match path.rsplit_once("/points").map_or(path, |(_, tail)| tail) {
        "" => json!({"ids": [1, 2]}),
        "/scroll" | "/count" => json!({}),
        "/search/matrix/pairs" | "/search/matrix/offsets" => json!({"sample": 5, "limit": 2}),
        "/query" => json!({"query": q}),
        "/query/batch" => json!({"searches": [{"query": q}]}),
        "/search" => json!({"vector": q, "limit": 3}),
        "/search/batch" => json!({"searches": [{"vector": q, "limit": 3}]}),
        "/query/groups" => json!({"query": q, "group_by": "g"}),
        "/search/groups" => json!({"vector": q, "group_by": "g", "limit": 2, "group_size": 2}),
        "/recommend/groups" => {
            json!({"positive": [1], "group_by": "g", "limit": 2, "group_size": 2})
        }
        "/recommend" => json!({"positive": [1], "limit": 3}),
        "/recommend/batch" => json!({"searches": [{"positive": [1], "limit": 3}]}),
        "/discover" => {
            json!({"target": 1, "context": [{"positive": 2, "negative": 3}], "limit": 3})
        }
        "/discover/batch" => {
            json!({"searches": [{"target": 1, "context": [{"positive": 2, "negative": 3}], "limit": 3}]})
        }
        _ if path.ends_with("/facet") => json!({"key": "g"}),
        other => panic!("no read body for {other}"),
    }
}

/// Every route, under each kind of key: without one (or with a wrong one) everything but the
/// health probes is 401 before the body is read (the body sent is twice the size limit, which
/// would otherwise be 413); the read-only key reads everything Qdrant lets it read and is 403
/// on every write, again before the body; the full key passes the gate everywhere. None of the
/// refused requests changed anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_is_gated_before_its_body_is_read() {
    let dirs = DataDirs::new();
    let r = Router::start(
        &dirs,
        &[
            "--api-key",
            FULL,
            "--read-only-api-key",
            READ,
            "--max-request-size-mb",
            "1",
        ],
    )
    .with_key(FULL);
    let owner = &r;
    owner
        .create("c", json!({"vectors": {"size": 2, "distance": "Dot"}}))
        .await;
    let points: Vec<_> = (1..=20)
        .map(|i| json!({"id": i, "vector": [1.0, i as f32 / 10.0], "payload": {"g": i % 3}}))
        .collect();
    owner.upsert("c", json!({ "points": points })).await;
    let state = || async {
        let scroll = json!({"limit": 100, "with_payload": true, "with_vector": true});
        (
            owner
                .ok(Method::POST, "/collections/c/points/scroll", Some(&scroll))
                .await,
            owner.get("/collections").await,
            owner.get("/aliases").await,
            owner.get("/collections/c/snapshots").await,
            owner.get("/snapshots").await,
            owner.get("/collections/c").await["config"].clone(),
        )
    };
    let before = state().await;

    let oversized = vec![b' '; 2 << 20];
    // Requests of its own: `r`'s carry the full key.
    let http = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("http client");
    let send = |method: &str, path: &str, key: Option<&str>, body: Option<Vec<u8>>| {
        let mut req = http.request(
            Method::from_bytes(method.as_bytes()).expect("a method"),
            r.url(path),
        );
        if let Some(k) = key {
            req = req.header("api-key", k);
        }
        if let Some(b) = body {
            req = req.header("content-type", "application/json").body(b);
        }
        let what = format!("{method} {path} with {key:?}");
        async move {
            let resp = req.send().await.unwrap_or_else(|e| panic!("{what}: {e:?}"));
            let status = resp.status();
            let body: serde_json::Value = resp.json().await.unwrap_or_default();
            (status, body)
        }
    };
    let big = |method: &str| (method != "GET").then(|| oversized.clone());

    for &(method, path, access) in ENDPOINTS {
        let what = format!("{method} {path}");
        for key in [None, Some("wrong-key")] {
            let (status, body) = send(method, path, key, big(method)).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{what} with {key:?}");
            assert!(body["status"]["error"].is_string(), "{what}: {body}");
        }
        match access {
            Access::Write => {
                let (status, body) = send(method, path, Some(READ), big(method)).await;
                assert_eq!(status, StatusCode::FORBIDDEN, "read-only key: {what}");
                assert!(body["status"]["error"].is_string(), "{what}: {body}");
            }
            Access::Read => {
                let body = (method == "POST").then(|| read_body(path).to_string().into_bytes());
                let (status, answer) = send(method, path, Some(READ), body).await;
                assert!(
                    status != StatusCode::UNAUTHORIZED && status != StatusCode::FORBIDDEN,
                    "read-only key refused a read: {what}: {status} {answer}"
                );
                // Each reading POST is answered, not only let through.
                if method == "POST" {
                    assert_eq!(status, StatusCode::OK, "read-only key: {what}: {answer}");
                }
            }
        }
        // The full key passes the gate; its oversized body then meets the size limit (a
        // snapshot upload streams to disk under a limit of its own: sent no body, it is refused
        // for the missing multipart form).
        let upload = path.ends_with("/snapshots/upload");
        let body = if upload {
            Some(Vec::new())
        } else {
            big(method)
        };
        let (status, answer) = send(method, path, Some(FULL), body).await;
        if method == "GET" {
            assert!(
                status != StatusCode::UNAUTHORIZED && status != StatusCode::FORBIDDEN,
                "full key: {what}: {status} {answer}"
            );
        } else if upload {
            assert_eq!(
                status,
                StatusCode::BAD_REQUEST,
                "full key: {what}: {answer}"
            );
        } else {
            assert_eq!(
                status,
                StatusCode::PAYLOAD_TOO_LARGE,
                "full key: {what}: {answer}"
            );
        }
    }
    for path in ["/healthz", "/livez", "/readyz"] {
        assert_eq!(
            send("GET", path, None, None).await.0,
            StatusCode::OK,
            "{path}"
        );
    }
    assert_eq!(state().await, before, "a refused request changed something");
}

/// The keys (the router's two, a wrong one a client tried, and the key a snapshot recovery
/// passes to the host it downloads from) appear in no log line, even at debug level, in no
/// answer, and nowhere in `/metrics`, over REST and gRPC.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_appear_in_no_log_answer_or_metric() {
    const WRONG: &str = "wrong-key-3141";
    const REMOTE: &str = "remote-source-key-2718";
    let dirs = DataDirs::new();
    let mut cmd = Router::command_logging(&dirs, "debug");
    cmd.args([
        "--api-key",
        FULL,
        "--read-only-api-key",
        READ,
        "--snapshot-allowed-hosts",
        "127.0.0.1",
    ]);
    let r = Router::spawn(cmd, &dirs.log());
    let mut answers = String::new();
    let query = json!({"query": [1.0, 0.0]});
    let requests: Vec<(Method, &str, Option<serde_json::Value>)> = vec![
        (
            Method::PUT,
            "/collections/c",
            Some(json!({"vectors": {"size": 2, "distance": "Dot"}})),
        ),
        (
            Method::PUT,
            "/collections/c/points?wait=true",
            Some(json!({"points": [{"id": 1, "vector": [1.0, 0.0]}]})),
        ),
        (Method::POST, "/collections/c/points/query", Some(query)),
        (Method::DELETE, "/collections/c/index/x", None),
        (
            Method::PUT,
            "/collections/c/snapshots/recover",
            Some(json!({"location": "http://127.0.0.1:1/c.snapshot", "api_key": REMOTE})),
        ),
        (Method::GET, "/collections/c", None),
    ];
    for key in [FULL, READ, WRONG] {
        for (header, value) in [
            ("api-key", key.to_string()),
            ("authorization", format!("Bearer {key}")),
        ] {
            for (method, path, body) in &requests {
                let mut req = r.request(method.clone(), path).header(header, &value);
                if let Some(b) = body {
                    req = req.json(b);
                }
                let resp = req.send().await.expect("request");
                answers.push_str(&format!("{:?}", resp.headers()));
                answers.push_str(&resp.text().await.expect("answer"));
            }
        }
        let grpc = qdrant_client::Qdrant::from_url(&r.grpc)
            .skip_compatibility_check()
            .api_key(key.to_string())
            .build()
            .expect("gRPC client");
        answers.push_str(&format!("{:?}", grpc.list_collections().await));
        answers.push_str(&format!("{:?}", grpc.delete_collection("nope").await));
    }
    let (status, metrics) = r
        .request(Method::GET, "/metrics")
        .header("api-key", FULL)
        .send()
        .await
        .map(|resp| (resp.status(), resp))
        .expect("metrics");
    assert_eq!(status, StatusCode::OK);
    let metrics = metrics.text().await.expect("metrics text");
    assert!(metrics.contains("# TYPE"), "{metrics}");
    let log = r.log_text();
    assert!(
        log.lines().count() > 20,
        "the debug log is nearly empty:\n{log}"
    );
    // The recovery ran as far as the download (refused: nothing listens on port 1).
    assert!(answers.contains("127.0.0.1:1"), "{answers}");
    for key in [FULL, READ, WRONG, REMOTE] {
        for (what, text) in [("log", &log), ("/metrics", &metrics), ("answers", &answers)] {
            if let Some(at) = text.find(key) {
                let line = text[..at].rsplit('\n').next().unwrap_or_default();
                panic!("{key} appears in the {what}: {line}{key}...");
            }
        }
    }
}

/// One request written byte for byte (no client normalises its path: `..` segments and
/// percent-escapes reach the server as sent); the status and the body.
fn raw_request(r: &Router, method: &str, target: &str, body: &str) -> (u16, serde_json::Value) {
    use std::io::{Read, Write};
    let authority = r.base.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(authority).expect("connect");
    s.set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    let head = format!(
        "{method} {target} HTTP/1.1\r\nhost: x\r\napi-key: {FULL}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body.as_bytes()).unwrap();
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).expect("read the answer");
    let text = String::from_utf8_lossy(&answer);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("{method} {target}: no status in {text:?}"));
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, serde_json::from_str(body).unwrap_or_default())
}

/// Every file under `dir`, relative to it.
fn files_under(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p.clone());
            }
            out.push(p.strip_prefix(dir).unwrap().display().to_string());
        }
    }
    out.sort();
    out
}

/// Collection and snapshot names that would reach outside their directory (`..`, absolute
/// paths, separators, NUL and control bytes, a leading dot, over 255 bytes) are refused with a
/// 4xx in Qdrant's error shape, sent as raw bytes so that no client cleans them first; no file
/// is created, read or removed anywhere under the router's directories.
#[test]
fn hostile_names_are_refused_and_touch_no_file() {
    let dirs = DataDirs::new();
    let r = Router::start(&dirs, &["--api-key", FULL]);
    // A collection with a snapshot, which no refused request may remove.
    assert_eq!(
        raw_request(
            &r,
            "PUT",
            "/collections/c",
            r#"{"vectors": {"size": 2, "distance": "Dot"}}"#
        )
        .0,
        200
    );
    let (status, made) = raw_request(&r, "POST", "/collections/c/snapshots", "");
    assert_eq!(status, 200, "{made}");
    let snapshot = made["result"]["name"]
        .as_str()
        .expect("a snapshot name")
        .to_string();
    let files = || (files_under(&dirs.storage()), files_under(&dirs.snapshots()));
    let before = files();

    let long = "x".repeat(256);
    let names = [
        "..",
        ".",
        "%2E%2E",
        ".hidden",
        "..%2F..%2Fetc",
        "%2Fetc",
        "a%2Fb",
        "a%5Cb",
        "a%00b",
        "a%07b",
        "%0A",
        long.as_str(),
    ];
    let create = r#"{"vectors": {"size": 2, "distance": "Dot"}}"#;
    for name in names {
        for (method, target, body) in [
            ("PUT", format!("/collections/{name}"), create),
            ("GET", format!("/collections/{name}"), ""),
            ("DELETE", format!("/collections/{name}"), ""),
            ("POST", format!("/collections/{name}/snapshots"), ""),
            ("GET", format!("/collections/c/snapshots/{name}"), ""),
            ("DELETE", format!("/collections/c/snapshots/{name}"), ""),
            ("GET", format!("/snapshots/{name}"), ""),
            ("DELETE", format!("/snapshots/{name}"), ""),
            (
                "PUT",
                format!("/collections/{name}/snapshots/recover"),
                r#"{"location": "file:///etc/passwd"}"#,
            ),
        ] {
            let (status, answer) = raw_request(&r, method, &target, body);
            // Deleting a collection that does not exist is `false`, as Qdrant answers.
            if method == "DELETE" && target == format!("/collections/{name}") && status == 200 {
                assert_eq!(answer["result"], json!(false), "{method} {target}");
                continue;
            }
            assert!(
                (400..500).contains(&status),
                "{method} {target}: {status} {answer}"
            );
            assert!(
                answer["status"]["error"].is_string(),
                "{method} {target}: {status} {answer}"
            );
        }
    }
    // Snapshot names that walk out of the snapshots directory, with the real one's file name.
    for target in [
        format!("/collections/c/snapshots/..%2Fc%2F{snapshot}"),
        format!("/collections/c/snapshots/%2E%2E%2F..%2Fstorage%2Fc%2F{snapshot}"),
        format!("/snapshots/c%2F{snapshot}"),
    ] {
        for method in ["GET", "DELETE"] {
            let (status, answer) = raw_request(&r, method, &target, "");
            assert!(
                (400..500).contains(&status),
                "{method} {target}: {status} {answer}"
            );
        }
    }
    assert_eq!(files(), before, "a refused request changed the files");
    let (status, listed) = raw_request(&r, "GET", "/collections", "");
    assert_eq!(status, 200);
    assert_eq!(listed["result"]["collections"], json!([{"name": "c"}]));
}
