//! REST bodies through the whole request path: the input's first byte picks an endpoint, its
//! second a query string, and the rest is the body, sent in process to the router's full
//! stack of routes and layers (the same `router::app` the server serves) over real
//! collections on disk. Whatever the body, the answer is a success or a 4xx or 501 in
//! Qdrant's error shape: a 500, a panic, a hang or an allocation past the limit is a finding.
//!
//! Reads go to two collections loaded at start (`c`: one unnamed 4-dimensional cosine
//! vector with a keyword index; `n`: named `img` (8, dot) and `txt` (4, Euclid) and a
//! sparse `text`). Writes go to `w` (the same schema as `n`), dropped and created again every
//! `WRITES_PER_COLLECTION` writes so that it stays small; a body sent to the create endpoint
//! makes collection `fz`, deleted after each input.
#![no_main]

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use clap::Parser;
use libfuzzer_sys::fuzz_target;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use tower::ServiceExt;

/// (method, path): the endpoints that read a body, by the input's first byte.
const ENDPOINTS: &[(&str, &str)] = &[
    ("POST", "/collections/c/points/query"),
    ("POST", "/collections/n/points/query"),
    ("POST", "/collections/c/points/query/batch"),
    ("POST", "/collections/n/points/query/batch"),
    ("POST", "/collections/c/points/query/groups"),
    ("POST", "/collections/c/points/search"),
    ("POST", "/collections/n/points/search"),
    ("POST", "/collections/c/points/search/batch"),
    ("POST", "/collections/c/points/search/groups"),
    ("POST", "/collections/c/points/recommend"),
    ("POST", "/collections/n/points/recommend/batch"),
    ("POST", "/collections/c/points/recommend/groups"),
    ("POST", "/collections/c/points/discover"),
    ("POST", "/collections/n/points/discover/batch"),
    ("POST", "/collections/c/points/scroll"),
    ("POST", "/collections/n/points/count"),
    ("POST", "/collections/c/points"),
    ("POST", "/collections/c/facet"),
    ("POST", "/collections/c/points/search/matrix/pairs"),
    ("POST", "/collections/n/points/search/matrix/offsets"),
    // Writes, to `w`.
    ("PUT", "/collections/w/points"),
    ("POST", "/collections/w/points/delete"),
    ("POST", "/collections/w/points/batch"),
    ("PUT", "/collections/w/points/vectors"),
    ("POST", "/collections/w/points/vectors/delete"),
    ("POST", "/collections/w/points/payload"),
    ("PUT", "/collections/w/points/payload"),
    ("POST", "/collections/w/points/payload/delete"),
    ("POST", "/collections/w/points/payload/clear"),
    ("PUT", "/collections/w/index"),
    ("PATCH", "/collections/w"),
    ("POST", "/collections/aliases"),
    // Collection creation (`fz`, deleted after each input).
    ("PUT", "/collections/fz"),
];

/// Query strings, by the input's second byte.
const QUERIES: &[&str] = &[
    "",
    "?wait=true",
    "?wait=false",
    "?timeout=1",
    "?consistency=majority",
    "?ordering=strong",
    "?wait=maybe",
    "?timeout=-1",
];

const WRITES_PER_COLLECTION: u32 = 256;

const NAMED_SCHEMA: &str = r#"{"vectors": {"img": {"size": 8, "distance": "Dot"},
    "txt": {"size": 4, "distance": "Euclid"}}, "sparse_vectors": {"text": {}}}"#;

struct Server {
    runtime: tokio::runtime::Runtime,
    app: axum::Router,
    writes: AtomicU32,
    _dir: tempfile::TempDir,
}

impl Server {
    fn send(&self, method: &str, uri: &str, body: Vec<u8>) -> (StatusCode, Vec<u8>) {
        let request = Request::builder()
            .method(Method::from_bytes(method.as_bytes()).unwrap())
            .uri(uri)
            .header("content-type", "application/json")
            .body(Body::from(body))
            .unwrap();
        self.runtime.block_on(async {
            let response = self.app.clone().oneshot(request).await.unwrap();
            let status = response.status();
            let bytes = axum::body::to_bytes(response.into_body(), 64 << 20)
                .await
                .expect("the whole answer");
            (status, bytes.to_vec())
        })
    }

    /// Sends a request the set-up needs; it must succeed.
    fn must(&self, method: &str, uri: &str, body: &str) {
        let (status, answer) = self.send(method, uri, body.as_bytes().to_vec());
        assert!(
            status.is_success(),
            "{method} {uri}: {status} {}",
            String::from_utf8_lossy(&answer)
        );
    }

    fn create_writable(&self) {
        self.must("PUT", "/collections/w", NAMED_SCHEMA);
        self.must("PUT", "/collections/w/points?wait=true", &points(true));
    }
}

/// Twenty points for a collection of either schema, with payloads of every kind.
fn points(named: bool) -> String {
    let items: Vec<String> = (0..20)
        .map(|i| {
            let f = |d: usize| -> String {
                (0..d)
                    .map(|j| format!("{:.3}", ((i * 7 + j * 3) % 11) as f32 / 10.0 - 0.4))
                    .collect::<Vec<_>>()
                    .join(",")
            };
            let vector = if named {
                format!(
                    r#"{{"img": [{}], "txt": [{}], "text": {{"indices": [{}, 7], "values": [0.5, 1.5]}}}}"#,
                    f(8),
                    f(4),
                    i % 5
                )
            } else {
                format!("[{}]", f(4))
            };
            format!(
                r#"{{"id": {i}, "vector": {vector}, "payload": {{"city": "{}", "n": {i},
                    "tags": ["a", "b{}"], "geo": {{"lat": {}, "lon": 0.5}}, "nested": {{"k": [{i}, "x"]}}}}}}"#,
                ["London", "Paris", "Berlin"][i % 3],
                i % 4,
                i as f32 * 2.5 - 20.0
            )
        })
        .collect();
    format!(r#"{{"points": [{}]}}"#, items.join(","))
}

fn server() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        let args = router::config::Args::parse_from([
            "router".into(),
            "--storage-path".into(),
            dir.path().join("storage").into_os_string(),
            "--snapshots-path".into(),
            dir.path().join("snapshots").into_os_string(),
            "--cache-ttl-secs".into(),
            "0".into(),
            "--search-threads".into(),
            "1".into(),
        ]);
        let settings = router::config::Settings::resolve(args).expect("settings");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let storage = storage::Storage::open(&settings.storage_path, &settings.snapshots_path)
            .expect("storage");
        let state = std::sync::Arc::new(router::AppState::new(storage, &settings, None).expect("state"));
        let app = {
            let _entered = runtime.enter();
            router::app(state, &settings)
        };
        let server = Server {
            runtime,
            app,
            writes: AtomicU32::new(0),
            _dir: dir,
        };
        server.must(
            "PUT",
            "/collections/c",
            r#"{"vectors": {"size": 4, "distance": "Cosine"}}"#,
        );
        server.must("PUT", "/collections/c/points?wait=true", &points(false));
        server.must(
            "PUT",
            "/collections/c/index?wait=true",
            r#"{"field_name": "city", "field_schema": "keyword"}"#,
        );
        server.must("PUT", "/collections/n", NAMED_SCHEMA);
        server.must("PUT", "/collections/n/points?wait=true", &points(true));
        server.create_writable();
        server
    })
}

fuzz_target!(|data: &[u8]| {
    let [endpoint, query, body @ ..] = data else {
        return;
    };
    let (method, path) = ENDPOINTS[*endpoint as usize % ENDPOINTS.len()];
    let uri = format!("{path}{}", QUERIES[*query as usize % QUERIES.len()]);
    let s = server();
    let (status, answer) = s.send(method, &uri, body.to_vec());
    let shown = || String::from_utf8_lossy(&answer[..answer.len().min(2000)]).into_owned();
    if std::env::var_os("VR_FUZZ_SHOW").is_some() {
        // Triage: what each input was answered (`VR_FUZZ_SHOW=1 rest_body -runs=0 seeds/...`).
        eprintln!(
            "{method} {uri} -> {status} {}",
            &shown()[..shown().len().min(200)]
        );
    }
    // A query string asking for a one-second timeout may get 504 on a slow (sanitised,
    // unoptimised) build: that is the answer it asked for.
    let timed_out = status == StatusCode::GATEWAY_TIMEOUT && uri.contains("timeout=1");
    assert!(
        status.is_success()
            || status.is_client_error()
            || status == StatusCode::NOT_IMPLEMENTED
            || timed_out,
        "{method} {uri} answered {status}: {}",
        shown()
    );
    if !status.is_success() {
        // Qdrant's error shape: {"status": {"error": "..."}, "time": ...}.
        let v: serde_json::Value = serde_json::from_slice(&answer).unwrap_or_else(|e| {
            panic!(
                "{method} {uri}: {status} with a body that is not JSON ({e}): {}",
                shown()
            )
        });
        assert!(
            v["status"]["error"].is_string(),
            "{method} {uri}: {status} without Qdrant's error shape: {}",
            shown()
        );
    }
    if path == "/collections/fz" {
        let _ = s.send("DELETE", "/collections/fz", Vec::new());
    } else if path.starts_with("/collections/w") || path == "/collections/aliases" {
        if s.writes.fetch_add(1, Ordering::Relaxed) % WRITES_PER_COLLECTION
            == WRITES_PER_COLLECTION - 1
        {
            s.must("DELETE", "/collections/w", "");
            s.create_writable();
        }
    }
});
