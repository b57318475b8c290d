//! End to end: start the router binary on a free port with a temporary data directory, run
//! loadtest against it on a small dataset, and check loadtest's recall against a recall this
//! test computes on its own (its own brute force, its own HTTP queries).

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::{
    answer_ids, args, brute_force_cosine, http, mean_recall, query_json, run_labelled,
    run_loadtest, Files,
};

/// `target/<profile>/router`: the test executable is `target/<profile>/deps/integration-…`.
fn router_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>/deps/<test>");
    profile_dir.join(format!("router{}", std::env::consts::EXE_SUFFIX))
}

/// A router process, killed when dropped; its log is shown if the test failed.
struct Router {
    child: Child,
    addr: String,
    data: tempfile::TempDir,
}

impl Router {
    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.data.path().join("router.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for Router {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "--- last lines of the router's log ---\n{}",
                self.log_tail()
            );
        }
    }
}

fn start_router() -> Router {
    let binary = router_binary();
    assert!(
        binary.is_file(),
        "router binary not found at {}: build it first with `cargo build --release -p router` \
         (or run `cargo test --release --workspace`, which builds every binary)",
        binary.display()
    );
    let data = tempfile::tempdir().expect("temp dir");
    let log = std::fs::File::create(data.path().join("router.log")).expect("log file");
    let mut child = Command::new(&binary)
        .args(["--host", "127.0.0.1", "--http-port", "0"])
        .arg("--storage-path")
        .arg(data.path().join("storage"))
        .arg("--snapshots-path")
        .arg(data.path().join("snapshots"))
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
    // The router prints `listening on http://HOST:PORT` once it listens; keep draining its
    // stdout afterwards so that it never blocks on a full pipe.
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(url) = line.trim().strip_prefix("listening on http://") {
                let _ = tx.send(url.to_string());
            }
        }
    });
    let addr = match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(addr) => addr,
        Err(_) => {
            let status = child.try_wait().ok().flatten();
            let _ = child.kill();
            let log = std::fs::read_to_string(data.path().join("router.log")).unwrap_or_default();
            panic!(
                "{} printed no `listening on http://HOST:PORT` line within 60 s (exit status: {status:?}); its log:\n{log}",
                binary.display()
            );
        }
    };
    let router = Router { child, addr, data };
    // It listens; wait until it answers `GET /` as Qdrant does.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match http(&router.addr, "GET", "/", None) {
            Ok((200, _)) => break,
            other if Instant::now() >= deadline => {
                // Dropping `router` (while panicking) kills it and prints its log.
                panic!(
                    "router at {} does not answer GET / with 200: {other:?}",
                    router.addr
                );
            }
            _ => std::thread::sleep(Duration::from_millis(200)),
        }
    }
    router
}

#[test]
fn loadtest_recall_against_the_router_matches_an_independent_count() {
    let router = start_router();
    let files = Files::new(3000, 200, 24, 5);
    let dir = files.path();
    let outcome = run_loadtest(
        &[
            args(&[
                "--url",
                &format!("http://{}", router.addr),
                "--collection",
                "e2e",
            ]),
            args(&["--base", &dir.join("base.fvecs").display().to_string()]),
            args(&["--queries", &dir.join("query.fvecs").display().to_string()]),
            // A small graph and an indexing threshold below the set, so that the HNSW path (and
            // not exact search) answers and recall can fall below 1.
            args(&[
                "--m",
                "8",
                "--ef-construct",
                "32",
                "--indexing-threshold",
                "100",
            ]),
            args(&[
                "--sweep",
                "hnsw_ef=8,64",
                "--clients",
                "2",
                "--warmup",
                "20",
            ]),
            args(&["--batch-size", "500", "--ready-timeout", "300"]),
        ]
        .concat(),
    );
    let report = outcome.report();
    assert_eq!(
        outcome.code,
        Some(0),
        "{}\n{}",
        outcome.stdout,
        outcome.stderr
    );
    assert_eq!(report["load"]["points"], 3000);
    assert!(
        report["server"]["version"].is_string(),
        "GET / banner: {}",
        report["server"]
    );

    let truth = brute_force_cosine(&files.base, &files.queries, 10);
    for ef in [8, 64] {
        let answers: Vec<Vec<u64>> = files
            .queries
            .iter()
            .map(|q| {
                let body = query_json(q, 10, json!({"hnsw_ef": ef}));
                let (status, bytes) = http(
                    &router.addr,
                    "POST",
                    "/collections/e2e/points/query",
                    Some(&body),
                )
                .expect("query the router");
                assert_eq!(status, 200, "{}", String::from_utf8_lossy(&bytes));
                answer_ids(&bytes)
            })
            .collect();
        let independent = mean_recall(&answers, &truth, 10);
        let run = run_labelled(report, &format!("hnsw_ef={ef}"));
        assert_eq!(run["ok"], 200, "{run:#}");
        assert_eq!(run["errors"], json!({}));
        let reported = run["recall"]["mean"].as_f64().expect("recall");
        eprintln!("hnsw_ef {ef}: loadtest recall {reported}, independent {independent}");
        // Two brute forces (f32 kernels inside loadtest, f64 here) may order exact ties
        // differently: allow two swaps in 200 × 10.
        assert!(
            (reported - independent).abs() <= 2.0 / 2000.0 + 1e-12,
            "ef {ef}: loadtest reports recall {reported}, the test counts {independent}"
        );
    }
}
