//! One invocation from start to finish: read or generate the data, load it, run the queries
//! (once, or once per swept value), score recall, and assemble the [`Report`].

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hyper::body::Bytes;
use hyper::Method;
use serde_json::{Map, Value};

use crate::api;
use crate::config::{Args, DataSource};
use crate::data::{self, Workload};
use crate::error::{Error, Result};
use crate::http::{Connection, Endpoint};
use crate::latency::RequestErrorKind;
use crate::load::{self, LoadOptions};
use crate::params::{self, Sweep};
use crate::query::{self, LoadMode, RunOptions, RunOutcome};
use crate::recall::RecallAccumulator;
use crate::report::{DatasetInfo, Report, RunReport, Settings};

/// Reads or generates the workload the arguments describe (brute-forcing the ground truth
/// when needed: this is the slow part for big sets, and it runs on all cores).
pub fn prepare_workload(args: &Args) -> Result<Workload> {
    match args.data_source()? {
        DataSource::Files { files, name } => {
            data::load_files(&files, name, args.distance, args.limits(), args.limit)
        }
        DataSource::Generated(spec) => data::generated_workload(&spec, args.distance, args.limit),
    }
}

/// Runs the whole load test and returns its report (nothing is printed or written).
pub fn execute(args: &Args) -> Result<Report> {
    args.validate()?;
    let workload = prepare_workload(args)?;
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    runtime.enable_all();
    if let Some(threads) = args.threads {
        runtime.worker_threads(threads);
    }
    let runtime = runtime.build().map_err(|source| Error::Output {
        path: "tokio runtime".into(),
        source,
    })?;
    runtime.block_on(execute_async(args, workload))
}

async fn execute_async(args: &Args, workload: Workload) -> Result<Report> {
    let started_at = crate::report::rfc3339_utc(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    );
    let endpoint = Endpoint::parse(&args.url)?.with_api_key(args.api_key.clone());
    let request_timeout = args.request_timeout()?;
    let collection_path = api::collection_path(&args.collection)?;
    let mut admin = Connection::new(&endpoint);
    // `GET /` is Qdrant's version banner; a server without one is still measured.
    let server = admin
        .call_json(Method::GET, "/", None, request_timeout)
        .await
        .ok()
        .map(|banner| {
            let keep = ["title", "version", "commit"];
            let fields: Map<String, Value> = keep
                .iter()
                .filter_map(|k| banner.get(*k).map(|v| (k.to_string(), v.clone())))
                .collect();
            Value::Object(fields)
        });

    let base = Arc::new(workload.base.clone());
    let load_report = if args.skip_load {
        check_existing(&mut admin, &collection_path, base.rows(), request_timeout).await?;
        None
    } else {
        let options = LoadOptions {
            batch_size: args.batch_size,
            concurrency: args.upload_concurrency,
            recreate: args.recreate,
            ready_timeout: args.ready_timeout()?,
            poll_interval: Duration::from_millis(500),
            request_timeout,
            progress: !args.quiet,
        };
        let config = args.collection_config(base.dim())?;
        Some(
            load::load(
                &endpoint,
                &args.collection,
                &config,
                Arc::clone(&base),
                &options,
            )
            .await?,
        )
    };

    let mode = args.load_mode()?;
    let nq = workload.queries.rows();
    let run_options = RunOptions {
        mode,
        max_queries: args.max_queries.unwrap_or(nq as u64),
        duration: args.run_duration()?,
        warmup: args.warmup,
        request_timeout,
        progress: !args.quiet,
    };
    let base_params = args.base_params()?;
    let sweep = args.sweep()?;
    let query_path = format!("{collection_path}/points/query");
    let mut runs = Vec::new();
    for (label, value, params) in run_plan(&base_params, sweep.as_ref()) {
        let bodies: Arc<Vec<Bytes>> = Arc::new(
            workload
                .queries
                .iter()
                .map(|q| api::query_body(q, args.limit, &params))
                .collect(),
        );
        let outcome = query::run(&endpoint, &query_path, bodies, &run_options).await;
        runs.push(score_run(
            label, value, params, outcome, &workload, args.limit, mode,
        ));
    }

    if args.drop_after {
        admin
            .call_json(Method::DELETE, &collection_path, None, request_timeout)
            .await?;
    }

    Ok(Report {
        tool: "loadtest",
        version: env!("CARGO_PKG_VERSION"),
        started_at,
        target: endpoint.to_string(),
        server,
        collection: args.collection.clone(),
        dataset: DatasetInfo {
            name: workload.name.clone(),
            points: workload.base.rows(),
            queries: nq,
            dim: workload.base.dim(),
            distance: workload.distance,
            ground_truth: workload.truth_source,
        },
        settings: Settings {
            limit: args.limit,
            mode,
            max_queries: run_options.max_queries,
            duration_s: run_options.duration.as_secs_f64(),
            warmup: args.warmup,
            request_timeout_s: request_timeout.as_secs_f64(),
            params: Value::Object(base_params),
            sweep,
        },
        load: load_report,
        runs,
    })
}

/// With --skip-load the collection must already hold the dataset, or recall means nothing.
async fn check_existing(
    admin: &mut Connection,
    path: &str,
    expected_points: usize,
    timeout: Duration,
) -> Result<()> {
    let body = admin.call_json(Method::GET, path, None, timeout).await?;
    let state = api::parse_collection_state(path, &body)?;
    match state.points_count {
        Some(n) if n != expected_points as u64 => Err(Error::argument(
            "skip-load",
            format!("the collection holds {n} points but the dataset has {expected_points}: load it (drop --skip-load) or match --max-points"),
        )),
        _ => Ok(()),
    }
}

/// `(label, swept value, params)` of each run: one per swept value, or one run without a sweep.
pub fn run_plan(
    base: &Map<String, Value>,
    sweep: Option<&Sweep>,
) -> Vec<(String, Option<Value>, Map<String, Value>)> {
    match sweep {
        None => vec![("default".to_string(), None, base.clone())],
        Some(sweep) => sweep
            .values
            .iter()
            .map(|value| {
                let mut params = base.clone();
                params::set_param(&mut params, &sweep.path, value.clone());
                (
                    format!("{}={}", sweep.name, params::label(value)),
                    Some(value.clone()),
                    params,
                )
            })
            .collect(),
    }
}

/// Parses the kept answers, scores recall and folds everything into a [`RunReport`].
pub fn score_run(
    label: String,
    value: Option<Value>,
    params: Map<String, Value>,
    outcome: RunOutcome,
    workload: &Workload,
    limit: usize,
    mode: LoadMode,
) -> RunReport {
    let RunOutcome {
        mut recorder,
        elapsed_s,
        mut ok,
        answers,
    } = outcome;
    let mut recall = RecallAccumulator::new(limit);
    let mut bad_bodies = 0;
    for (query, body) in &answers {
        match api::parse_query_ids(body) {
            Ok(ids) => {
                recall.add(&ids, workload.ground_truth.row(*query));
            }
            Err(_) => bad_bodies += 1,
        }
    }
    // A 2xx that is not a query result is a failure, found after the clock stopped.
    recorder.add_errors(RequestErrorKind::BadBody, bad_bodies);
    ok -= bad_bodies.min(ok);
    let open = matches!(mode, LoadMode::Open { .. });
    RunReport {
        label,
        param_value: value,
        params: Value::Object(params),
        requests: ok + recorder.error_count(),
        ok,
        errors: recorder.errors_by_name(),
        elapsed_s,
        qps: ok as f64 / elapsed_s.max(1e-9),
        offered_rate: match mode {
            LoadMode::Open { rate, .. } => Some(rate),
            LoadMode::Closed { .. } => None,
        },
        latency: recorder.latency.summary(),
        service_time: if open {
            recorder.service.summary()
        } else {
            None
        },
        send_lag: if open {
            recorder.send_lag.summary()
        } else {
            None
        },
        recall: recall.stats(),
        timeline: recorder.timeline.points(),
    }
}
