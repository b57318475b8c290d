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
