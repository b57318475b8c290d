//! Runs the Python end-to-end suite (`tests/e2e/`) against the real router binary, with the
//! Python `qdrant-client==1.20.0` as the client (in REST mode, then over gRPC for the files in
//! `GRPC_FILES`) and its in-memory mode as the oracle.
//!
//! The venv lives at `$VR_E2E_VENV` or `<repo>/data/e2e-venv`; it is created and the pinned
//! packages installed only when they are missing. The router started here runs with
//! `--max-request-size-mb 1` (the suite sends an oversized body), is handed to pytest through
//! `VR_E2E_URL`, and must exit 0 on SIGTERM afterwards. pytest's output is the failure
//! message.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// What the suite imports, pinned so the oracle cannot change under the tests.
const REQUIREMENTS: &[&str] = &[
    "qdrant-client==1.20.0",
    "pytest==8.3.4",
    "jsonschema==4.23.0",
    "jsonschema-rs==0.61.2",
    // The deployment kit's checks (deploy/tests): Kubernetes' schemas, YAML, and the
    // browser driver for the dashboard (the browser is Debian's chromium).
    "kubernetes-validate==1.37.0",
    "PyYAML==6.0.3",
    "selenium==4.27.1",
];

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("repository root")
}

fn venv_python(venv: &Path) -> PathBuf {
    venv.join("bin").join("python")
}

/// True when the venv's python imports the pinned packages at the pinned versions.
fn venv_ready(venv: &Path) -> bool {
    let python = venv_python(venv);
    if !python.exists() {
        return false;
    }
    let check = "import importlib.metadata as m, sys\n\
        want = dict(r.split('==') for r in sys.argv[1:])\n\
        sys.exit(0 if all(m.version(k) == v for k, v in want.items()) else 1)";
    Command::new(&python)
        .arg("-c")
        .arg(check)
        .args(REQUIREMENTS)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn run_checked(cmd: &mut Command, what: &str) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn ensure_venv(venv: &Path) {
    if venv_ready(venv) {
        return;
    }
    if !venv_python(venv).exists() {
        run_checked(
            Command::new("python3").arg("-m").arg("venv").arg(venv),
            "python3 -m venv",
        );
    }
    run_checked(
        Command::new(venv_python(venv))
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ])
            .args(REQUIREMENTS),
        "pip install",
    );
    assert!(
        venv_ready(venv),
        "{} still lacks {REQUIREMENTS:?}",
        venv.display()
    );
}

/// The suite's venv (`$VR_E2E_VENV` or `<repo>/data/e2e-venv`), with the pinned packages.
fn ready_venv() -> PathBuf {
    let venv = std::env::var_os("VR_E2E_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("data").join("e2e-venv"));
    ensure_venv(&venv);
    venv
}

/// The router under test; SIGTERMed (and reaped) when dropped, so a failing test leaves no
/// process behind.
struct Router {
    child: Child,
    url: String,
    /// The gRPC port (the second line the router prints).
    grpc_port: u16,
    stopped: bool,
}

impl Router {
    fn start(storage: &Path, snapshots: &Path, log: &Path) -> Router {
        Router::start_with(storage, snapshots, log, &[])
    }

    /// A router with `extra` flags.
    fn start_with(storage: &Path, snapshots: &Path, log: &Path, extra: &[&str]) -> Router {
        let log_file = std::fs::File::create(log).expect("router log file");
        let mut child = Command::new(env!("CARGO_BIN_EXE_router"))
            .env_remove("VR_CLUSTER_NODES")
            .arg("--http-port")
            .arg("0")
            .arg("--storage-path")
            .arg(storage)
            .arg("--snapshots-path")
            .arg(snapshots)
            .args(["--max-request-size-mb", "1"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log_file))
            .spawn()
            .expect("start the router");
        let stdout = child.stdout.take().expect("router stdout");
        let mut stdout = BufReader::new(stdout);
        let (mut line, mut grpc_line) = (String::new(), String::new());
        stdout
            .read_line(&mut line)
            .and_then(|_| stdout.read_line(&mut grpc_line))
            .expect("read the router's stdout");
        let url = line.trim().strip_prefix("listening on ");
        let grpc_port = grpc_line
            .trim()
            .strip_prefix("gRPC listening on ")
            .and_then(|u| u.rsplit(':').next())
            .and_then(|p| p.parse().ok());
        let (Some(url), Some(grpc_port)) = (url, grpc_port) else {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "router did not start (lines {line:?}, {grpc_line:?}); log:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        };
        Router {
            url: url.to_string(),
            grpc_port,
            child,
            stopped: false,
        }
    }

    /// SIGTERM, then the exit status, waiting at most `grace`.
    fn stop(&mut self, grace: Duration) -> Option<i32> {
        self.stopped = true;
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        None
    }
}

impl Drop for Router {
    fn drop(&mut self) {
        if !self.stopped {
            let _ = self.stop(Duration::from_secs(10));
        }
    }
}

/// The suite's files the client also runs over gRPC. Left out: files that use what is not
/// served over gRPC (formulas, multivector recovery through snapshots),
/// and files whose assertions see what the client's gRPC mode itself changes: it raises
/// gRPC errors where the tests expect REST's `UnexpectedResponse` (aliases, batch, updates,
/// vector updates), and reads back a quantile as the `f32` the protobuf field holds (edges).
const GRPC_FILES: &[&str] = &[
    "test_cluster_info.py",
    "test_concurrency.py",
    "test_facet.py",
    "test_groups.py",
    "test_indexed.py",
    "test_matrix.py",
    "test_no_vectors.py",
    "test_order_by.py",
    "test_product_quantization.py",
    "test_rabitq.py",
    "test_recommend.py",
    "test_search.py",
    "test_shard_keys.py",
    "test_snapshot_transfer.py",
    "test_snapshots_restart.py",
    "test_vector_names.py",
];

/// The suite's files a cluster-mode router runs (over two node routers), in REST mode and,
/// those also in `GRPC_FILES`, over gRPC. Left out: files built on what cluster mode does not
/// serve yet: snapshots (`test_snapshot*`), batches of updates (`test_batch`), vector names
/// created and deleted (`test_vector_names`), quantization (`test_product_quantization`,
/// `test_rabitq`, `test_edges`), IDF sparse vectors (`test_sparse`); and `test_bad_input.py`, whose
/// unknown-collection snapshot calls answer 501 in cluster mode before the 404.
const CLUSTER_FILES: &[&str] = &[
    "test_aliases.py",
    "test_cluster_info.py",
    "test_concurrency.py",
    "test_facet.py",
    "test_groups.py",
    "test_hybrid.py",
    "test_indexed.py",
    "test_matrix.py",
    "test_multivector.py",
    "test_no_vectors.py",
    "test_order_by.py",
    "test_patch_vectors.py",
    "test_recommend.py",
    "test_search.py",
    "test_shard_keys.py",
    "test_updates.py",
    "test_vectors_update.py",
];

/// Tests of `CLUSTER_FILES` left out in cluster mode. The first two create vectors on a
/// collection, which cluster mode refuses (501) until it carries that to the nodes. The third
/// (Euclid multivectors over 3 shards) meets a precision limit of the protocol: a node answers
/// a Euclid score, the square root of the distance, as a 32-bit float, and the coordinator
/// recovers the distance by squaring it, so two candidates whose distances differ in the last
/// bits can tie; the MMR re-rank, which breaks ties by candidate order, then picks the other
/// of two candidates of equal value (seen: index 7 of 10, values 2.6919434 for both).
const CLUSTER_DESELECTED: &[&str] = &[
    "test_multivector.py::test_sparse_and_multivector_names_created_and_deleted",
    "test_multivector.py::test_bad_multivector_input",
    "test_multivector.py::test_multivector_queries_match_oracle[3-distances1]",
];

/// Which of the suite's tests run, and against what.
#[derive(Clone, Copy)]
struct Suite<'a> {
    /// The files (all of them when empty).
    files: &'a [&'a str],
    /// Tests left out, by pytest node id.
    deselect: &'a [&'a str],
    /// The nodes behind a cluster router (0: an embedded router).
    cluster_nodes: usize,
}

const WHOLE_SUITE: Suite<'static> = Suite {
    files: &[],
    deselect: &[],
    cluster_nodes: 0,
};

/// Runs pytest on `files` of the suite (all when empty) against the router; its exit status
/// and output.
fn pytest(
    venv: &Path,
    dir: &Path,
    router: &Router,
    snapshots: &Path,
    grpc: bool,
    suite: Suite<'_>,
) -> (std::process::ExitStatus, String) {
    let Suite {
        files,
        deselect,
        cluster_nodes,
    } = suite;
    let suite = repo_root().join("bins/router/tests/e2e");
    // Qdrant's spec (v1.19, from ../shared/qdrant-api/), kept beside the suite so that the
    // checkout alone runs it.
    let openapi = suite.join("openapi.json");
    let mut cmd = Command::new(venv_python(venv));
    cmd.args([
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "-rfE",
        "--tb=short",
    ])
    .arg("--basetemp")
    .arg(dir.join(if grpc { "pytest-grpc" } else { "pytest" }));
    if files.is_empty() {
        cmd.arg(&suite);
    } else {
        cmd.args(files.iter().map(|f| suite.join(f)));
    }
    // Node ids as pytest writes them, relative to the suite's directory.
    for test in deselect {
        cmd.arg("--deselect").arg(test);
    }
    if grpc {
        cmd.env("VR_E2E_GRPC_PORT", router.grpc_port.to_string());
    }
    if cluster_nodes > 0 {
        // Tests of what only a cluster serves (shard keys) run then.
        cmd.env("VR_E2E_CLUSTER_NODES", cluster_nodes.to_string());
    }
    let mut pytest = cmd
        .current_dir(&suite)
        .env("VR_E2E_URL", &router.url)
        .env("VR_E2E_ROUTER_BIN", env!("CARGO_BIN_EXE_router"))
        .env("VR_E2E_SNAPSHOTS_DIR", snapshots)
        .env("VR_E2E_OPENAPI", &openapi)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start pytest");
    let mut stderr = pytest.stderr.take().expect("pytest stderr");
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let mut output = String::new();
    pytest
        .stdout
        .take()
        .expect("pytest stdout")
        .read_to_string(&mut output)
        .expect("read pytest output");
    let status = pytest.wait().expect("pytest exit");
    output.push_str(&err_reader.join().unwrap_or_default());
    (status, output)
}

#[test]
fn python_client_against_router_matches_in_memory_oracle() {
    let venv = ready_venv();

    let dir = tempfile::tempdir().expect("temp dir");
    let (storage, snapshots) = (dir.path().join("storage"), dir.path().join("snapshots"));
    let log = dir.path().join("router.log");
    let mut router = Router::start(&storage, &snapshots, &log);
    let (status, output) = pytest(&venv, dir.path(), &router, &snapshots, false, WHOLE_SUITE);
    // Shown with --nocapture, and kept in the log of a passing run: the OpenAPI report.
    println!("{output}");
    let code = router.stop(Duration::from_secs(60));
    let router_log = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        status.success(),
        "the Python end-to-end suite failed ({status}):\n{output}\nrouter log (tail):\n{}",
        tail(&router_log, 4000)
    );
    assert_eq!(
        code,
        Some(0),
        "router exit status after SIGTERM; log tail:\n{}",
        tail(&router_log, 4000)
    );

    // Over gRPC, on a router of its own: the suite's files create collections, aliases and
    // snapshots under fixed names.
    let grpc_dir = dir.path().join("grpc");
    let (storage, snapshots) = (grpc_dir.join("storage"), grpc_dir.join("snapshots"));
    std::fs::create_dir_all(&grpc_dir).expect("gRPC run directory");
    let log = grpc_dir.join("router.log");
    let mut router = Router::start(&storage, &snapshots, &log);
    let (status, output) = pytest(
        &venv,
        &grpc_dir,
        &router,
        &snapshots,
        true,
        Suite {
            files: GRPC_FILES,
            ..WHOLE_SUITE
        },
    );
    println!("over gRPC:\n{output}");
    let code = router.stop(Duration::from_secs(60));
    let router_log = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        status.success(),
        "the Python end-to-end suite over gRPC failed ({status}):\n{output}\nrouter log (tail):\n{}",
        tail(&router_log, 4000)
    );
    assert_eq!(
        code,
        Some(0),
        "router exit status after SIGTERM (the gRPC run); log tail:\n{}",
        tail(&router_log, 4000)
    );
}

/// The same client and oracle against a router in cluster mode, whose collections' shards are
/// collections on two node routers (reached over gRPC): REST, then gRPC.
#[test]
fn python_client_against_cluster_router_matches_in_memory_oracle() {
    let venv = ready_venv();
    let dir = tempfile::tempdir().expect("temp dir");
    for grpc in [false, true] {
        let run = dir.path().join(if grpc { "grpc" } else { "rest" });
        let nodes: Vec<Router> = (0..2)
            .map(|k| {
                let d = run.join(format!("node{k}"));
                std::fs::create_dir_all(&d).expect("node directory");
                Router::start(
                    &d.join("storage"),
                    &d.join("snapshots"),
                    &d.join("router.log"),
                )
            })
            .collect();
        let list = nodes
            .iter()
            .map(|n| format!("http://127.0.0.1:{}", n.grpc_port))
            .collect::<Vec<_>>()
            .join(",");
        let (storage, snapshots) = (run.join("storage"), run.join("snapshots"));
        let log = run.join("router.log");
        let mut router =
            Router::start_with(&storage, &snapshots, &log, &["--cluster-nodes", &list]);
        let files: Vec<&str> = CLUSTER_FILES
            .iter()
            .copied()
            .filter(|f| !grpc || GRPC_FILES.contains(f))
            .collect();
        let (status, output) = pytest(
            &venv,
            &run,
            &router,
            &snapshots,
            grpc,
            Suite {
                files: &files,
                deselect: CLUSTER_DESELECTED,
                cluster_nodes: nodes.len(),
            },
        );
        println!("cluster mode (gRPC {grpc}):\n{output}");
        let code = router.stop(Duration::from_secs(60));
        let router_log = std::fs::read_to_string(&log).unwrap_or_default();
        assert!(
            status.success(),
            "the Python end-to-end suite against a cluster router (gRPC {grpc}) failed \
             ({status}):\n{output}\nrouter log (tail):\n{}",
            tail(&router_log, 4000)
        );
        assert_eq!(code, Some(0), "cluster router exit status after SIGTERM");
    }
}

/// The deployment kit's checks (`deploy/tests`): Kubernetes objects against their schemas,
/// the compose files against the Compose Specification, promtool on the Prometheus
/// configurations and alert rules, every metric a rule or dashboard panel names read from
/// live routers (and every label they name on the live series), the backup script
/// round-tripping collections (also as its CronJob and systemd service run it, the units
/// checked by `systemd-analyze verify`), and routers started as the manifests and compose
/// file configure them; and the router's `/dashboard` in a headless browser. promtool, the
/// browser and systemd-analyze are required where `VR_REQUIRE_PROMTOOL`,
/// `VR_REQUIRE_BROWSER` and `VR_REQUIRE_SYSTEMD_ANALYZE` are set (CI), skipped with a
/// message elsewhere.
#[test]
fn deployment_kit_checks() {
    run_suite(
        &repo_root().join("deploy/tests"),
        "the deployment kit's checks",
    );
}

/// Replica sets (`tests/replication`): three router processes in replica mode (Raft) under
/// writes from several clients, their leader and followers killed with SIGKILL and
/// restarted; a majority lost; a replica replaced by a new one catching up from a snapshot.
#[test]
fn replica_set_survives_kills_and_membership_changes() {
    run_suite(
        &repo_root().join("bins/router/tests/replication"),
        "the replica set's tests",
    );
}

/// Runs the pytest suite in `suite` against the router built here; fails with its output.
fn run_suite(suite: &Path, what: &str) {
    let venv = ready_venv();
    let dir = tempfile::tempdir().expect("temp dir");
    let out = Command::new(venv_python(&venv))
        .args([
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-rfEs",
            "--tb=short",
        ])
        .arg("--basetemp")
        .arg(dir.path().join("pytest"))
        .arg(suite)
        .current_dir(suite)
        .env("VR_ROUTER_BIN", env!("CARGO_BIN_EXE_router"))
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env_remove("VR_CLUSTER_NODES")
        .output()
        .unwrap_or_else(|e| panic!("run pytest on {}: {e}", suite.display()));
    let output = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{output}");
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{output}",
        out.status
    );
}

fn tail(s: &str, n: usize) -> &str {
    let mut start = s.len().saturating_sub(n);
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}
