//! Whole runs of the binary against the mock server, whose answers are known exactly.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::{
    answer_ids, args, brute_force_cosine, http, mean_recall, query_json, run_labelled,
    run_loadtest, Files, MockConfig, MockServer,
};

/// Brute forces in `f32` (loadtest) and `f64` (this test) can order two neighbours whose
/// scores agree to the last bit differently; allow two such swaps over the whole run.
fn tie_tolerance(k: usize, queries: usize) -> f64 {
    2.0 / (k * queries) as f64 + 1e-12
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

#[test]
fn recall_over_a_sweep_matches_an_independent_count() {
    let files = Files::new(2000, 100, 16, 11);
    let mock = MockServer::start(MockConfig {
        degrade_below_ef: Some(32),
        ..MockConfig::default()
    });
    let dir = files.path();
    let outcome = run_loadtest(
        &[
            args(&["--url", &mock.url(), "--collection", "sweep"]),
            args(&["--base", &dir.join("base.fvecs").display().to_string()]),
            args(&["--queries", &dir.join("query.fvecs").display().to_string()]),
            args(&[
                "--sweep",
                "hnsw_ef=16,64",
                "--clients",
                "2",
                "--warmup",
                "5",
            ]),
            args(&["--batch-size", "300", "--upload-concurrency", "3"]),
            args(&["--m", "8", "--ef-construct", "40", "--shard-number", "2"]),
            args(&[
                "--collection-config",
                r#"{"quantization_config":{"scalar":{"type":"int8"}}}"#,
            ]),
        ]
        .concat(),
    );
    let report = outcome.report();
    assert_eq!(outcome.code, Some(0), "{}", outcome.stderr);

    // The load phase: every point arrived, in batches of 300, with the flags in the body.
    assert_eq!(mock.point_count("sweep"), Some(2000));
    assert_eq!(report["load"]["points"], 2000);
    assert_eq!(report["load"]["batches"], 7);
    let create = mock.create_body("sweep").expect("created");
    assert_eq!(create["vectors"], json!({"size": 16, "distance": "Cosine"}));
    assert_eq!(create["hnsw_config"], json!({"m": 8, "ef_construct": 40}));
    assert_eq!(create["shard_number"], 2);
    assert_eq!(create["quantization_config"]["scalar"]["type"], "int8");
    assert_eq!(report["dataset"]["ground_truth"], "computed");

    // The test's own recall: its own queries over its own HTTP, against its own brute force.
    let truth = brute_force_cosine(&files.base, &files.queries, 10);
    let addr = mock.addr.to_string();
    for (ef, expected) in [(16, 0.9), (64, 1.0)] {
        let answers: Vec<Vec<u64>> = files
            .queries
            .iter()
            .map(|q| {
                let body = query_json(q, 10, json!({"hnsw_ef": ef}));
                let (status, bytes) = http(
                    &addr,
                    "POST",
                    "/collections/sweep/points/query",
                    Some(&body),
                )
                .unwrap();
                assert_eq!(status, 200);
                answer_ids(&bytes)
            })
            .collect();
        let independent = mean_recall(&answers, &truth, 10);
        // The mock drops exactly one of ten below ef 32.
        assert!(
            (independent - expected).abs() <= tie_tolerance(10, 100),
            "{independent}"
        );
        let run = run_labelled(report, &format!("hnsw_ef={ef}"));
        let reported = f(&run["recall"]["mean"]);
        assert!(
            (reported - independent).abs() <= tie_tolerance(10, 100),
            "ef {ef}: loadtest says {reported}, the test counts {independent}"
        );
        assert_eq!(run["recall"]["queries"], 100);
        assert_eq!(run["ok"], 100);
        assert_eq!(run["errors"], json!({}));
        assert_eq!(run["params"], json!({"hnsw_ef": ef}));
        let latency = &run["latency"];
        assert!(f(&latency["p50_ms"]) <= f(&latency["p99_ms"]));
        assert!(f(&latency["p99_ms"]) <= f(&latency["max_ms"]));
        assert!(f(&run["qps"]) > 0.0);
        assert!(
            run["service_time"].is_null(),
            "closed loops have no service split"
        );
    }

    // Terminal summary and HTML: one row per run, three charts.
    assert!(outcome.stdout.contains("p99.9 ms"), "{}", outcome.stdout);
    assert!(outcome.stdout.contains("hnsw_ef=16") && outcome.stdout.contains("hnsw_ef=64"));
    let html = outcome.html();
    assert_eq!(html.matches("<svg").count(), 3, "three charts");
    assert!(html.contains("Recall@10 versus throughput"));
    assert!(html.contains("hnsw_ef=64"));

    // A second run on the loaded collection: no load phase, the same recall.
    let again = run_loadtest(
        &[
            args(&["--url", &mock.url(), "--collection", "sweep", "--skip-load"]),
            args(&["--base", &dir.join("base.fvecs").display().to_string()]),
            args(&["--queries", &dir.join("query.fvecs").display().to_string()]),
            args(&["--hnsw-ef", "16", "--warmup", "0"]),
        ]
        .concat(),
    );
    let second = again.report();
    assert!(second["load"].is_null());
    assert_eq!(
        run_labelled(second, "default")["recall"]["mean"],
        run_labelled(report, "hnsw_ef=16")["recall"]["mean"]
    );

    // Creating it again without --recreate is refused with a usage error.
    let clash = run_loadtest(
        &[
            args(&[
                "--url",
                &mock.url(),
                "--collection",
                "sweep",
                "--generate",
                "50",
            ]),
            args(&["--dim", "16"]),
        ]
        .concat(),
    );
    assert_eq!(clash.code, Some(64), "{}", clash.stderr);
    assert!(clash.stderr.contains("--recreate"), "{}", clash.stderr);
}

#[test]
fn errors_are_counted_by_kind_and_left_out_of_recall() {
    let mock = MockServer::start(MockConfig {
        fail_every: Some(5),
        ..MockConfig::default()
    });
    let outcome = run_loadtest(&args(&[
        "--url",
        &mock.url(),
        "--generate",
        "300",
        "--dim",
        "8",
        "--generate-queries",
        "100",
        "--clients",
        "3",
        "--warmup",
        "0",
        "--max-queries",
        "100",
    ]));
    let run = run_labelled(outcome.report(), "default");
    // Exactly every fifth of the 100 query requests failed, whichever client sent it.
    assert_eq!(run["errors"], json!({"http_503": 20}));
    assert_eq!(run["ok"], 80);
    assert_eq!(run["requests"], 100);
    // No warm-up: the server saw exactly the measured requests.
    assert_eq!(mock.queries.load(std::sync::atomic::Ordering::SeqCst), 100);
    assert_eq!(run["recall"]["queries"], 80);
    // The mock is exact, so every answered query is perfect.
    assert_eq!(run["recall"]["mean"], 1.0);
    assert!(outcome.stdout.contains("http_503 20"), "{}", outcome.stdout);
}

#[test]
fn open_loop_counts_queueing_from_the_due_time() {
    // One connection to a server that takes 20 ms per answer can serve 50 a second; asked
    // for 100 a second over one second, request i is due at 10·i ms but answered near
    // 20·(i+1) ms. A closed-loop measurement would report 20 ms throughout; measured from
    // the due time the last ones waited about a second.
    let mock = MockServer::start(MockConfig {
        delay: Duration::from_millis(20),
        ..MockConfig::default()
    });
    let outcome = run_loadtest(&args(&[
        "--url",
        &mock.url(),
        "--generate",
        "200",
        "--dim",
        "8",
        "--generate-queries",
        "50",
        "--mode",
        "open",
        "--rate",
        "100",
        "--connections",
        "1",
        "--duration",
        "1",
        "--max-queries",
        "1000",
        "--warmup",
        "0",
        "--timeout-ms",
        "5000",
    ]));
    let run = run_labelled(outcome.report(), "default");
    assert_eq!(run["requests"], 100, "rate × duration tickets");
    assert_eq!(run["ok"], 100);
    assert_eq!(run["offered_rate"], 100.0);
    let latency_max = f(&run["latency"]["max_ms"]);
    let service_p50 = f(&run["service_time"]["p50_ms"]);
    let lag_max = f(&run["send_lag"]["max_ms"]);
    assert!(latency_max > 700.0, "latency max {latency_max} ms");
    assert!(
        (19.0..100.0).contains(&service_p50),
        "service p50 {service_p50} ms"
    );
    assert!(lag_max > 600.0, "send lag max {lag_max} ms");
    assert!(f(&run["qps"]) < 60.0, "one connection cannot exceed ~50/s");
    // The timeline shows latency growing over the run (by due time).
    let timeline = run["timeline"].as_array().unwrap();
    let first = timeline
        .iter()
        .find(|w| w["ok"].as_u64() > Some(0))
        .unwrap();
    let last = timeline
        .iter()
        .rev()
        .find(|w| w["ok"].as_u64() > Some(0))
        .unwrap();
    assert!(
        f(&last["p50_ms"]) > 5.0 * f(&first["p50_ms"]),
        "{timeline:?}"
    );
}

#[test]
fn an_overloaded_open_loop_stops_on_time_and_says_what_it_did_not_send() {
    // 50 ms per answer on one connection (20/s) against 100/s for one second: with a 200 ms
    // request timeout the run stops 1.2 s in, most tickets unsent.
    let mock = MockServer::start(MockConfig {
        delay: Duration::from_millis(50),
        ..MockConfig::default()
    });
    let outcome = run_loadtest(&args(&[
        "--url",
        &mock.url(),
        "--generate",
        "200",
        "--dim",
        "8",
        "--generate-queries",
        "50",
        "--mode",
        "open",
        "--rate",
        "100",
        "--connections",
        "1",
        "--duration",
        "1",
        "--warmup",
        "0",
        "--timeout-ms",
        "200",
        "--max-queries",
        "1000",
    ]));
    let run = run_labelled(outcome.report(), "default");
    let unsent = run["errors"]["unsent"].as_u64().unwrap_or(0);
    let ok = run["ok"].as_u64().unwrap();
    let errors: u64 = run["errors"]
        .as_object()
        .unwrap()
        .values()
        .filter_map(Value::as_u64)
        .sum();
    assert_eq!(ok + errors, 100, "{run:#}");
    assert!(unsent >= 50, "unsent {unsent}");
    assert!(f(&run["elapsed_s"]) < 2.0, "elapsed {}", run["elapsed_s"]);
}

#[test]
fn a_closed_loop_stops_at_its_duration() {
    let mock = MockServer::start(MockConfig {
        delay: Duration::from_millis(5),
        ..MockConfig::default()
    });
    let outcome = run_loadtest(&args(&[
        "--url",
        &mock.url(),
        "--generate",
        "100",
        "--dim",
        "4",
        "--generate-queries",
        "20",
        "--clients",
        "2",
        "--max-queries",
        "100000000",
        "--duration",
        "0.5",
        "--warmup",
        "0",
    ]));
    let run = run_labelled(outcome.report(), "default");
    let elapsed = f(&run["elapsed_s"]);
    assert!((0.45..1.5).contains(&elapsed), "elapsed {elapsed}");
    let ok = run["ok"].as_u64().unwrap();
    assert!((20..=300).contains(&ok), "ok {ok}");
    // Cycling through 20 queries, recall is scored once per query.
    assert_eq!(run["recall"]["queries"], 20);
}

#[test]
fn bad_input_exits_with_a_usage_code_and_an_unreachable_server_with_its_own() {
    let https = run_loadtest(&args(&[
        "--url",
        "https://localhost:6333",
        "--generate",
        "10",
    ]));
    assert_eq!(https.code, Some(64));
    assert!(https.stderr.contains("https"), "{}", https.stderr);

    let open_without_rate = run_loadtest(&args(&[
        "--url",
        "http://127.0.0.1:9",
        "--generate",
        "10",
        "--mode",
        "open",
    ]));
    assert_eq!(open_without_rate.code, Some(64));
    assert!(
        open_without_rate.stderr.contains("--rate"),
        "{}",
        open_without_rate.stderr
    );

    let no_data = run_loadtest(&args(&["--url", "http://127.0.0.1:9"]));
    assert_eq!(no_data.code, Some(64), "{}", no_data.stderr);

    let bad_sweep = run_loadtest(&args(&[
        "--url",
        "http://127.0.0.1:9",
        "--generate",
        "10",
        "--sweep",
        "ef=1,2",
    ]));
    assert_eq!(bad_sweep.code, Some(64), "{}", bad_sweep.stderr);

    // Nothing listens on a port just released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap();
    let refused = run_loadtest(&args(&[
        "--url",
        &format!("http://127.0.0.1:{port}"),
        "--generate",
        "10",
        "--dim",
        "4",
    ]));
    assert_eq!(refused.code, Some(69), "{}", refused.stderr);
    assert!(
        refused.stderr.contains("cannot connect"),
        "{}",
        refused.stderr
    );
    assert!(refused.report.is_none());
}

#[test]
fn npy_datasets_and_ground_truth_files_are_used_when_they_fit() {
    use crate::support::{vectors, write_ivecs, write_npy};
    let dir = tempfile::tempdir().unwrap();
    let mut base = vectors(600, 12, 3);
    let queries = base.split_off(500);
    write_npy(&dir.path().join("base.npy"), &base);
    write_npy(&dir.path().join("query.npy"), &queries);
    let truth = brute_force_cosine(&base, &queries, 10);
    write_ivecs(&dir.path().join("groundtruth.ivecs"), &truth);
    let mock = MockServer::start(MockConfig::default());
    let run = |extra: &[&str]| {
        let mut list = args(&["--url", &mock.url(), "--recreate", "--warmup", "0"]);
        list.extend(args(&["--dataset", &dir.path().display().to_string()]));
        list.extend(args(extra));
        run_loadtest(&list)
    };

    // The file is deep enough for recall@10: it is used, and the exact mock scores 1.
    let whole = run(&[]);
    let report = whole.report();
    assert_eq!(report["dataset"]["ground_truth"], "file");
    assert_eq!(
        (
            report["dataset"]["points"].as_u64(),
            report["dataset"]["dim"].as_u64()
        ),
        (Some(500), Some(12))
    );
    assert_eq!(report["dataset"]["queries"], 100);
    assert_eq!(run_labelled(report, "default")["recall"]["mean"], 1.0);

    // Deeper than the file: recomputed, still exact.
    let deep = run(&["--limit", "20"]);
    assert_eq!(deep.report()["dataset"]["ground_truth"], "computed");
    assert_eq!(
        run_labelled(deep.report(), "default")["recall"]["mean"],
        1.0
    );

    // A cut base makes the file meaningless: recomputed on the 300 rows that are uploaded.
    let cut = run(&["--max-points", "300", "--max-query-rows", "40"]);
    let report = cut.report();
    assert_eq!(report["dataset"]["ground_truth"], "computed");
    assert_eq!(report["load"]["points"], 300);
    assert_eq!(report["dataset"]["queries"], 40);
    assert_eq!(run_labelled(report, "default")["recall"]["mean"], 1.0);

    // A ground truth naming rows the base does not have is refused before anything is sent.
    write_ivecs(
        &dir.path().join("groundtruth.ivecs"),
        &vec![vec![9999; 10]; 100],
    );
    let broken = run(&[]);
    assert_eq!(broken.code, Some(64), "{}", broken.stderr);
    assert!(broken.stderr.contains("9999"), "{}", broken.stderr);
}
