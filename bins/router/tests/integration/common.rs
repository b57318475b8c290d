//! The harness: a real `router` process on a free port with its own directories, a small
//! HTTP client for it, seeded vectors and the brute-force answers to check it against.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long a router gets to print its address.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Environment variables the router reads; cleared so the caller's environment cannot change
/// what a test starts.
const ROUTER_ENV: &[&str] = &[
    "VR_CONFIG",
    "QDRANT__SERVICE__HOST",
    "QDRANT__SERVICE__HTTP_PORT",
    "QDRANT__SERVICE__GRPC_PORT",
    "QDRANT__SERVICE__API_KEY",
    "QDRANT__SERVICE__READ_ONLY_API_KEY",
    "QDRANT__STORAGE__STORAGE_PATH",
    "QDRANT__STORAGE__SNAPSHOTS_PATH",
    "QDRANT__SERVICE__MAX_REQUEST_SIZE_MB",
    "VR_MAX_CONCURRENT_REQUESTS",
    "VR_REQUEST_TIMEOUT_SECS",
    "VR_SEARCH_THREADS",
    "VR_CACHE_TTL_SECS",
    "VR_CACHE_MAX_MB",
    "VR_LOG_LEVEL",
    "VR_LOG_JSON",
    "VR_SHUTDOWN_GRACE_SECS",
    "VR_CLUSTER_NODES",
    "VR_CLUSTER_API_KEY",
    "VR_CLUSTER_PARTIAL_ANSWERS",
    "VR_CLUSTER_CALL_TIMEOUT_MS",
];

/// A `router` command with the test environment cleared.
pub fn router_command() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_router"));
    for var in ROUTER_ENV {
        cmd.env_remove(var);
    }
    cmd.stdin(Stdio::null());
    cmd
}

/// Directories a router keeps its data in; removed when dropped.
pub struct DataDirs {
    root: tempfile::TempDir,
}

impl DataDirs {
    pub fn new() -> DataDirs {
        DataDirs {
            root: tempfile::tempdir().expect("temp dir"),
        }
    }

    pub fn root(&self) -> &Path {
        self.root.path()
    }

    pub fn storage(&self) -> PathBuf {
        self.root.path().join("storage")
    }

    pub fn snapshots(&self) -> PathBuf {
        self.root.path().join("snapshots")
    }

    pub fn log(&self) -> PathBuf {
        self.root.path().join("router.log")
    }
}

/// A running router. Killed (and reaped) when dropped, so a failing test leaves nothing behind.
pub struct Router {
    child: Child,
    pub base: String,
    /// The gRPC address (`http://host:port`), from the router's second line.
    pub grpc: String,
    log: PathBuf,
    http: reqwest::Client,
    api_key: Option<String>,
}

impl Router {
    /// The command of a router on `dirs`: a free port, the directories, warnings only.
    pub fn command(dirs: &DataDirs) -> Command {
        Router::command_logging(dirs, "warn")
    }

    /// The same, logging at `level`.
    pub fn command_logging(dirs: &DataDirs, level: &str) -> Command {
        let mut cmd = router_command();
        cmd.arg("--http-port")
            .arg("0")
            .arg("--storage-path")
            .arg(dirs.storage())
            .arg("--snapshots-path")
            .arg(dirs.snapshots())
            .args(["--log-level", level]);
        cmd
    }

    /// A router on `dirs` with `extra` flags after the port and directory flags.
    pub fn start(dirs: &DataDirs, extra: &[&str]) -> Router {
        let mut cmd = Router::command(dirs);
        cmd.args(extra);
        Router::spawn(cmd, &dirs.log())
    }

    /// Starts `cmd` (stdout is taken over here) and waits for its address line.
    pub fn spawn(mut cmd: Command, log: &Path) -> Router {
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("router log file");
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log_file))
            .spawn()
            .expect("start the router");
        let stdout = child.stdout.take().expect("router stdout");
        let (tx, rx) = mpsc::channel();
        // Reads on a thread so a router that never prints cannot hang the test; keeps the
        // pipe open afterwards so a later print cannot fail with a broken pipe.
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            // REST's address, then gRPC's.
            let first = lines.next().and_then(Result::ok);
            let second = lines.next().and_then(Result::ok);
            let _ = tx.send((first, second));
            for _ in lines {}
        });
        let (line, grpc_line) = rx.recv_timeout(START_TIMEOUT).unwrap_or((None, None));
        let grpc = grpc_line
            .as_deref()
            .and_then(|l| l.trim().strip_prefix("gRPC listening on "))
            .unwrap_or_default()
            .to_string();
        let base = match line
            .as_deref()
            .and_then(|l| l.trim().strip_prefix("listening on "))
        {
            Some(url) => url.to_string(),
            None => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "router did not start (first line {line:?}); log:\n{}",
                    std::fs::read_to_string(log).unwrap_or_default()
                );
            }
        };
        Router {
            child,
            base,
            grpc,
            log: log.to_path_buf(),
            http: reqwest::Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(60))
                .build()
                .expect("http client"),
            api_key: None,
        }
    }

    /// The router's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `api-key` with every later request of this handle.
    pub fn with_key(mut self, key: &str) -> Router {
        self.api_key = Some(key.to_string());
        self
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A request builder carrying this handle's key.
    pub fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        let r = self.http.request(method, self.url(path));
        match &self.api_key {
            Some(k) => r.header("api-key", k),
            None => r,
        }
    }

    /// Sends a JSON request; the status and the parsed body (`Value::Null` when not JSON).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> (StatusCode, Value) {
        let mut r = self.request(method.clone(), path);
        if let Some(b) = body {
            r = r.json(b);
        }
        let response = r
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = response.status();
        let bytes = response.bytes().await.expect("response body");
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    /// Sends a JSON request that must succeed; its `result`.
    pub async fn ok(&self, method: Method, path: &str, body: Option<&Value>) -> Value {
        let (status, v) = self.call(method.clone(), path, body).await;
        assert_eq!(
            status,
            StatusCode::OK,
            "{method} {path} with {body:?} answered {v}"
        );
        assert_eq!(v["status"], "ok", "{method} {path}: {v}");
        assert!(v["time"].is_f64(), "{method} {path}: no time in {v}");
        v["result"].clone()
    }

    pub async fn get(&self, path: &str) -> Value {
        self.ok(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Value {
        self.ok(Method::POST, path, Some(&body)).await
    }

    pub async fn put(&self, path: &str, body: Value) -> Value {
        self.ok(Method::PUT, path, Some(&body)).await
    }

    /// A text GET: the status and the body.
    pub async fn text(&self, path: &str) -> (StatusCode, String) {
        let response = self
            .request(Method::GET, path)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        let status = response.status();
        (status, response.text().await.expect("text body"))
    }

    pub async fn create(&self, name: &str, config: Value) {
        self.create_at(&format!("/collections/{name}"), config)
            .await;
    }

    /// Creates a collection by its full path (which may carry a query string).
    pub async fn create_at(&self, path: &str, config: Value) {
        assert_eq!(self.put(path, config).await, json!(true), "PUT {path}");
    }

    /// Upserts with `wait=true` and checks the acknowledgement.
    pub async fn upsert(&self, name: &str, body: Value) {
        let r = self
            .put(&format!("/collections/{name}/points?wait=true"), body)
            .await;
        assert_eq!(r["status"], "completed", "upsert into {name}: {r}");
        assert!(r["operation_id"].is_u64(), "upsert into {name}: {r}");
    }

    /// Upserts `points` (id, vector) in the list form, in chunks.
    pub async fn upsert_vectors(&self, name: &str, points: &[(Value, Vec<f32>)]) {
        for chunk in points.chunks(500) {
            let list: Vec<Value> = chunk
                .iter()
                .map(|(id, v)| json!({"id": id, "vector": v}))
                .collect();
            self.upsert(name, json!({ "points": list })).await;
        }
    }

    /// `points` of a query.
    pub async fn query(&self, name: &str, body: Value) -> Vec<Value> {
        let r = self
            .post(&format!("/collections/{name}/points/query"), body)
            .await;
        r["points"].as_array().expect("points").clone()
    }

    pub async fn info(&self, name: &str) -> Value {
        self.get(&format!("/collections/{name}")).await
    }

    /// `GET /metrics`: the value of one sample line (0 when absent).
    pub async fn metric(&self, sample: &str) -> f64 {
        let (status, text) = self.text("/metrics").await;
        assert_eq!(status, StatusCode::OK, "{text}");
        metric_value(&text, sample)
    }

    /// SIGTERM, then the exit status, waiting at most `limit`.
    pub fn terminate(&mut self, limit: Duration) -> Option<ExitStatus> {
        signal(self.child.id(), "-TERM");
        self.wait_exit(limit)
    }

    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// SIGKILL, and reaps the process.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Router {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

pub fn signal(pid: u32, which: &str) {
    let status = Command::new("kill")
        .arg(which)
        .arg(pid.to_string())
        .status()
        .expect("run kill");
    assert!(status.success(), "kill {which} {pid} failed");
}

/// The value on the sample line that starts with `sample` followed by a space.
pub fn metric_value(text: &str, sample: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(sample).and_then(|r| r.strip_prefix(' ')))
        .map_or(0.0, |v| {
            v.trim()
                .parse()
                .unwrap_or_else(|_| panic!("{sample}: {v} is not a number"))
        })
}

/// SplitMix64: a seeded generator, so every failure can be replayed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [-1, 1), rounded to 4 decimals so JSON carries it exactly as an f32 would.
    pub fn coord(&mut self) -> f32 {
        let x = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0;
        ((x * 10_000.0).round() / 10_000.0) as f32
    }

    pub fn vector(&mut self, dim: usize) -> Vec<f32> {
        (0..dim).map(|_| self.coord()).collect()
    }

    pub fn uuid(&mut self) -> String {
        let v = (u128::from(self.next_u64()) << 64) | u128::from(self.next_u64());
        let h = format!("{v:032x}");
        format!(
            "{}-{}-{}-{}-{}",
            &h[0..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..32]
        )
    }
}

/// Qdrant's distances, as the API names them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Distance {
    Cosine,
    Euclid,
    Dot,
    Manhattan,
}

impl Distance {
    pub const ALL: [Distance; 4] = [
        Distance::Cosine,
        Distance::Euclid,
        Distance::Dot,
        Distance::Manhattan,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Distance::Cosine => "Cosine",
            Distance::Euclid => "Euclid",
            Distance::Dot => "Dot",
            Distance::Manhattan => "Manhattan",
        }
    }

    /// Whether a larger score is closer (Cosine, Dot) rather than a smaller one.
    pub fn higher_is_closer(self) -> bool {
        matches!(self, Distance::Cosine | Distance::Dot)
    }

    /// The score Qdrant reports between a query and a stored vector as sent.
    pub fn score(self, q: &[f32], v: &[f32]) -> f64 {
        let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
        let q: Vec<f64> = q.iter().map(|&x| f64::from(x)).collect();
        let v: Vec<f64> = v.iter().map(|&x| f64::from(x)).collect();
        match self {
            Distance::Cosine => dot(&normalised(&q), &normalised(&v)),
            Distance::Dot => dot(&q, &v),
            Distance::Euclid => q
                .iter()
                .zip(&v)
                .map(|(a, b)| (a - b) * (a - b))
                .sum::<f64>()
                .sqrt(),
            Distance::Manhattan => q.iter().zip(&v).map(|(a, b)| (a - b).abs()).sum(),
        }
    }

    /// Whether `score` passes `score_threshold = t` (Qdrant: `>=` for similarities, `<=` for
    /// distances).
    pub fn passes(self, score: f64, t: f64) -> bool {
        if self.higher_is_closer() {
            score >= t
        } else {
            score <= t
        }
    }
}

pub fn normalised(v: &[f64]) -> Vec<f64> {
    let n = v.iter().map(|x| x * x).sum::<f64>().sqrt();
    if n == 0.0 {
        v.to_vec()
    } else {
        v.iter().map(|x| x / n).collect()
    }
}

/// The exact answer: (id, score) of every point, closest first.
pub fn brute_force(
    distance: Distance,
    query: &[f32],
    points: &[(Value, Vec<f32>)],
) -> Vec<(Value, f64)> {
    let mut scored: Vec<(Value, f64)> = points
        .iter()
        .map(|(id, v)| (id.clone(), distance.score(query, v)))
        .collect();
    scored.sort_by(|a, b| {
        let o = a.1.partial_cmp(&b.1).expect("finite scores");
        if distance.higher_is_closer() {
            o.reverse()
        } else {
            o
        }
    });
    scored
}

pub fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-4 * a.abs().max(b.abs()).max(1.0)
}

/// Checks a result list against the exact answer: same length, the same score at every rank
/// (so near-ties may swap ids), and each returned id's true score equal to the one reported.
pub fn assert_exact(context: &str, got: &[Value], expected: &[(Value, f64)]) {
    assert_eq!(
        got.len(),
        expected.len(),
        "{context}: {} results, expected {}: {got:?}",
        got.len(),
        expected.len()
    );
    for (rank, (g, (_, want))) in got.iter().zip(expected).enumerate() {
        let score = g["score"].as_f64().expect("score");
        assert!(
            close(score, *want),
            "{context}: rank {rank} has score {score}, expected {want} ({g})"
        );
        let truth = expected
            .iter()
            .find(|(id, _)| *id == g["id"])
            .map(|(_, s)| *s);
        assert!(
            truth.is_some_and(|t| close(t, score)),
            "{context}: rank {rank} id {} has true score {truth:?}, reported {score}",
            g["id"]
        );
    }
}

/// Ids of a result list.
pub fn ids(points: &[Value]) -> Vec<Value> {
    points.iter().map(|p| p["id"].clone()).collect()
}

/// Polls `f` until it returns `Some`, or panics after `limit`.
pub async fn eventually<T, F, Fut>(what: &str, limit: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
