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
