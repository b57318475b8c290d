//! Helpers shared by the run tests: running the binary, writing datasets, an independent brute
//! force and HTTP client, and a mock Qdrant server with exactly known answers.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};

/// What one run of the binary left behind.
pub struct Outcome {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    /// `report.json`, when it was written.
    pub report: Option<Value>,
    /// The output directory (kept alive with the outcome).
    pub out: tempfile::TempDir,
}

impl Outcome {
    /// The report, or a panic that shows what the binary said.
    pub fn report(&self) -> &Value {
        self.report.as_ref().unwrap_or_else(|| {
            panic!(
                "loadtest wrote no report (exit {:?})\nstdout:\n{}\nstderr:\n{}",
                self.code, self.stdout, self.stderr
            )
        })
    }

    pub fn html(&self) -> String {
        std::fs::read_to_string(self.out.path().join("report.html")).unwrap_or_default()
    }
}

/// Runs the `loadtest` binary with `args` plus `--quiet --out <temp dir>`.
pub fn run_loadtest(args: &[String]) -> Outcome {
    let out = tempfile::tempdir().expect("temp dir");
    let output = Command::new(env!("CARGO_BIN_EXE_loadtest"))
        .args(args)
        .arg("--quiet")
        .arg("--out")
        .arg(out.path())
        .output()
        .expect("the loadtest binary runs");
    let report = std::fs::read(out.path().join("report.json"))
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok());
    Outcome {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        report,
        out,
    }
}

/// Strings from `&str`s, for argument lists.
pub fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// Seeded vectors from SplitMix64, independent of the generator inside loadtest: uniform
/// coordinates around a few centres, so neighbourhoods are not trivial.
pub fn vectors(rows: usize, dim: usize, seed: u64) -> Vec<Vec<f32>> {
    let mut state = seed;
    let mut next = move || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    };
    let centres: Vec<Vec<f64>> = (0..8)
        .map(|_| (0..dim).map(|_| next() * 2.0 - 1.0).collect())
        .collect();
    (0..rows)
        .map(|_| {
            let c = &centres[(next() * 8.0) as usize % 8];
            c.iter()
                .map(|x| (x + (next() - 0.5) * 0.8) as f32)
                .collect()
        })
        .collect()
}

/// Writes rows as TexMex `.fvecs`: per row an `i32` dimension, then the `f32`s, little-endian.
pub fn write_fvecs(path: &Path, rows: &[Vec<f32>]) {
    let mut bytes = Vec::new();
    for row in rows {
        bytes.extend_from_slice(&(row.len() as i32).to_le_bytes());
        for x in row {
            bytes.extend_from_slice(&x.to_le_bytes());
        }
    }
    std::fs::write(path, bytes).expect("write fvecs");
}

/// Exact cosine top-`k` by plain `f64` arithmetic; ties by lower id.
pub fn brute_force_cosine(base: &[Vec<f32>], queries: &[Vec<f32>], k: usize) -> Vec<Vec<u64>> {
    let norm = |v: &[f32]| v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    let base_norms: Vec<f64> = base.iter().map(|b| norm(b)).collect();
    queries
        .iter()
        .map(|q| {
            let qn = norm(q);
            let mut scored: Vec<(f64, u64)> = base
                .iter()
                .enumerate()
                .map(|(i, b)| {
                    let dot: f64 = q
                        .iter()
                        .zip(b)
                        .map(|(x, y)| f64::from(*x) * f64::from(*y))
                        .sum();
                    (dot / (qn * base_norms[i]), i as u64)
                })
                .collect();
            scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
            scored.iter().take(k).map(|s| s.1).collect()
        })
        .collect()
}

/// Mean of |answer ∩ truth| / k, written out again here so the test does not reuse the code
/// it checks.
pub fn mean_recall(answers: &[Vec<u64>], truth: &[Vec<u64>], k: usize) -> f64 {
    let mut total = 0.0;
    for (answer, exact) in answers.iter().zip(truth) {
        let hits = answer
            .iter()
            .take(k)
            .filter(|id| exact[..k].contains(id))
            .count();
        total += hits as f64 / k as f64;
    }
    total / answers.len() as f64
}

/// One blocking HTTP/1.1 request with `Connection: close`; returns status and body.
pub fn http(
    addr: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> std::io::Result<(u16, Vec<u8>)> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let body = body.unwrap_or("");
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut reader = BufReader::new(stream);
    let mut status_line = String::new();
    reader.read_line(&mut status_line)?;
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line {status_line:?}")))?;
    let mut length = None;
    let mut chunked = false;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line)?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            let (name, value) = (name.trim().to_ascii_lowercase(), value.trim());
            if name == "content-length" {
                length = value.parse::<usize>().ok();
            } else if name == "transfer-encoding" && value.eq_ignore_ascii_case("chunked") {
                chunked = true;
            }
        }
    }
    let mut out = Vec::new();
    if chunked {
        loop {
            let mut size_line = String::new();
            reader.read_line(&mut size_line)?;
            let size = usize::from_str_radix(size_line.trim().split(';').next().unwrap_or(""), 16)
                .map_err(|_| std::io::Error::other("bad chunk size"))?;
            let mut chunk = vec![0; size + 2];
            reader.read_exact(&mut chunk)?;
            if size == 0 {
                break;
            }
            out.extend_from_slice(&chunk[..size]);
        }
    } else if let Some(n) = length {
        out.resize(n, 0);
        reader.read_exact(&mut out)?;
    } else {
        reader.read_to_end(&mut out)?;
    }
    Ok((status, out))
}

/// The ids of a `points/query` answer.
pub fn answer_ids(body: &[u8]) -> Vec<u64> {
    let v: Value = serde_json::from_slice(body).expect("query answer is JSON");
    v["result"]["points"]
        .as_array()
        .expect("result.points")
        .iter()
        .map(|p| p["id"].as_u64().expect("integer id"))
        .collect()
}

/// A query body as the test writes it (not through loadtest's serialiser).
pub fn query_json(vector: &[f32], limit: usize, params: Value) -> String {
    json!({"query": vector, "limit": limit, "params": params}).to_string()
}

/// How the mock misbehaves, to check that loadtest reports it.
#[derive(Clone, Default)]
pub struct MockConfig {
    /// Every n-th query request (counting from 1) gets a 503.
    pub fail_every: Option<u64>,
    /// Each query answer waits this long (answers on one connection are serial).
    pub delay: Duration,
    /// With `params.hnsw_ef` below this, the last result is replaced by a point that does not
    /// exist, so recall@k is exactly (k-1)/k.
    pub degrade_below_ef: Option<u64>,
}

#[derive(Default)]
struct Collection {
    create_body: Value,
    points: BTreeMap<u64, Vec<f32>>,
}

/// A Qdrant-shaped server with exact cosine search, in this process.
pub struct MockServer {
    pub addr: SocketAddr,
    collections: Arc<Mutex<HashMap<String, Collection>>>,
    /// Query requests received.
    pub queries: Arc<AtomicU64>,
    _runtime: tokio::runtime::Runtime,
}

impl MockServer {
    pub fn start(config: MockConfig) -> MockServer {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let collections: Arc<Mutex<HashMap<String, Collection>>> = Arc::default();
        let queries = Arc::new(AtomicU64::new(0));
        let state = (
            Arc::clone(&collections),
            Arc::clone(&queries),
            Arc::new(config),
        );
        runtime.spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let state = state.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let state = state.clone();
                        async move {
                            Ok::<_, Infallible>(handle(&state.0, &state.1, &state.2, req).await)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        MockServer {
            addr,
            collections,
            queries,
            _runtime: runtime,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The body the collection was created with.
    pub fn create_body(&self, name: &str) -> Option<Value> {
        let map = self.collections.lock().unwrap();
        map.get(name).map(|c| c.create_body.clone())
    }

    pub fn point_count(&self, name: &str) -> Option<usize> {
        let map = self.collections.lock().unwrap();
        map.get(name).map(|c| c.points.len())
    }
}

fn reply(status: u16, body: Value) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("response")
}

fn ok(result: Value) -> Response<Full<Bytes>> {
    reply(200, json!({"result": result, "status": "ok", "time": 0.0}))
}

fn error(status: u16, message: &str) -> Response<Full<Bytes>> {
    reply(status, json!({"status": {"error": message}, "time": 0.0}))
}

async fn handle(
    collections: &Mutex<HashMap<String, Collection>>,
    queries: &AtomicU64,
    config: &MockConfig,
    request: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let body = match request.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return error(400, "body"),
    };
    let json: Value = if body.is_empty() {
        Value::Null
    } else {
        match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(e) => return error(400, &format!("Wrong input: {e}")),
        }
    };
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (method.as_str(), segments.as_slice()) {
        ("GET", [""]) => reply(200, json!({"title": "mock qdrant", "version": "0.0.0"})),
        ("PUT", ["collections", name]) => {
            let mut map = collections.lock().unwrap();
            if map.contains_key(*name) {
                return error(409, "Wrong input: already exists");
            }
            map.insert(
                name.to_string(),
                Collection {
                    create_body: json,
                    points: BTreeMap::new(),
                },
            );
            ok(json!(true))
        }
        ("DELETE", ["collections", name]) => {
            ok(json!(collections.lock().unwrap().remove(*name).is_some()))
        }
        ("GET", ["collections", name]) => match collections.lock().unwrap().get(*name) {
            Some(c) => ok(json!({"status": "green", "points_count": c.points.len()})),
            None => error(404, "Not found"),
        },
        ("PUT", ["collections", name, "points"]) => {
            let mut map = collections.lock().unwrap();
            let Some(c) = map.get_mut(*name) else {
                return error(404, "Not found");
            };
            let ids = json["batch"]["ids"].as_array().cloned().unwrap_or_default();
            let vectors = json["batch"]["vectors"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            for (id, v) in ids.iter().zip(&vectors) {
                let vector: Vec<f32> = v
                    .as_array()
                    .unwrap_or(&Vec::new())
                    .iter()
                    .map(|x| x.as_f64().unwrap_or(f64::NAN) as f32)
                    .collect();
                c.points.insert(id.as_u64().unwrap_or(u64::MAX), vector);
            }
            ok(json!({"operation_id": 0, "status": "completed"}))
        }
        ("POST", ["collections", name, "points", "query"]) => {
            let n = queries.fetch_add(1, Ordering::SeqCst) + 1;
            if !config.delay.is_zero() {
                tokio::time::sleep(config.delay).await;
            }
            if config
                .fail_every
                .is_some_and(|every| n.is_multiple_of(every))
            {
                return error(503, "Service unavailable: mock failure");
            }
            let limit = json["limit"].as_u64().unwrap_or(10) as usize;
            let query: Vec<f32> = json["query"]
                .as_array()
                .map(|a| a.iter().map(|x| x.as_f64().unwrap_or(0.0) as f32).collect())
                .unwrap_or_default();
            let map = collections.lock().unwrap();
            let Some(c) = map.get(*name) else {
                return error(404, "Not found");
            };
            let base: Vec<Vec<f32>> = c.points.values().cloned().collect();
            let ids: Vec<u64> = c.points.keys().copied().collect();
            let mut top: Vec<u64> = brute_force_cosine(&base, &[query], limit)[0]
                .iter()
                .map(|row| ids[*row as usize])
                .collect();
            let ef = json["params"]["hnsw_ef"].as_u64();
            if let (Some(below), Some(ef)) = (config.degrade_below_ef, ef) {
                if ef < below {
                    if let Some(last) = top.last_mut() {
                        *last = 999_999_999;
                    }
                }
            }
            let points: Vec<Value> = top
                .iter()
                .map(|id| json!({"id": id, "version": 0, "score": 0.5}))
                .collect();
            ok(json!({"points": points}))
        }
        _ => error(404, &format!("no route {method} {path}")),
    }
}

/// A dataset written to disk by the test itself.
pub struct Files {
    pub dir: tempfile::TempDir,
    pub base: Vec<Vec<f32>>,
    pub queries: Vec<Vec<f32>>,
}

impl Files {
    pub fn new(points: usize, queries: usize, dim: usize, seed: u64) -> Files {
        let dir = tempfile::tempdir().expect("temp dir");
        // Queries come from the same clusters as the base (one draw, split), as real queries
        // come from the same distribution as the data.
        let mut base = vectors(points + queries, dim, seed);
        let queries = base.split_off(points);
        write_fvecs(&dir.path().join("base.fvecs"), &base);
        write_fvecs(&dir.path().join("query.fvecs"), &queries);
        Files { dir, base, queries }
    }

    pub fn path(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }
}

/// The run of a report whose label is `label`.
pub fn run_labelled<'a>(report: &'a Value, label: &str) -> &'a Value {
    report["runs"]
        .as_array()
        .expect("runs")
        .iter()
        .find(|r| r["label"] == label)
        .unwrap_or_else(|| panic!("no run `{label}` in {report:#}"))
}

/// Writes rows as a 2-D little-endian `float32` `.npy` file (format version 1.0).
pub fn write_npy(path: &Path, rows: &[Vec<f32>]) {
    let dim = rows.first().map_or(0, Vec::len);
    let mut header = format!(
        "{{'descr': '<f4', 'fortran_order': False, 'shape': ({}, {}), }}",
        rows.len(),
        dim
    );
    // Magic (6) + version (2) + length (2) + header, padded with spaces to a multiple of 64
    // and ended by a newline.
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    for row in rows {
        for x in row {
            bytes.extend_from_slice(&x.to_le_bytes());
        }
    }
    std::fs::write(path, bytes).expect("write npy");
}

/// Writes neighbour ids as TexMex `.ivecs`.
pub fn write_ivecs(path: &Path, rows: &[Vec<u64>]) {
    let mut bytes = Vec::new();
    for row in rows {
        bytes.extend_from_slice(&(row.len() as i32).to_le_bytes());
        for id in row {
            bytes.extend_from_slice(&(*id as i32).to_le_bytes());
        }
    }
    std::fs::write(path, bytes).expect("write ivecs");
}
