//! The load phase: create the collection, upload the base vectors in batches with bounded
//! concurrency, then wait until the server says indexing is done.
//!
//! Each uploader owns one keep-alive connection and takes the next batch from a shared
//! counter, so at most `concurrency` batches are in flight. Batches are sent with
//! `wait=true`, so the upload rate is the rate of *acknowledged* writes. A batch that fails
//! for a transient reason (connection trouble, 429, 5xx) is retried a few times with a
//! growing pause; anything else stops the load with the server's message.
//!
//! "Ready" means `GET /collections/{c}` reported `result.status == "green"` and, when the
//! server sends it, `points_count` equal to the points uploaded, twice in a row one poll
//! apart: Qdrant can report green in the instant between an upsert and its optimizer
//! waking up, and a second look rules that out.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dataset::Matrix;
use hyper::Method;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use crate::api::{self, CollectionConfig};
use crate::error::{Error, Result};
use crate::http::{Connection, Endpoint};

/// Options of the load phase.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Points per upsert request.
    pub batch_size: usize,
    /// Upsert requests in flight at once.
    pub concurrency: usize,
    /// Delete the collection first if it exists.
    pub recreate: bool,
    /// Give up waiting for `green` after this long.
    pub ready_timeout: Duration,
    /// Pause between readiness polls.
    pub poll_interval: Duration,
    /// Timeout of each setup request.
    pub request_timeout: Duration,
    /// Draw a progress bar (on a terminal only).
    pub progress: bool,
}

/// What the load phase measured.
#[derive(Debug, Clone, Serialize)]
pub struct LoadReport {
    /// Points uploaded.
    pub points: usize,
    /// Upsert requests sent (retries not counted).
    pub batches: usize,
    /// Points per request.
    pub batch_size: usize,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// Batches that needed a retry.
    pub retried_batches: usize,
    /// Seconds from the first upsert to the last acknowledgement.
    pub upload_s: f64,
    /// Acknowledged points per second over the upload.
    pub upload_points_per_s: f64,
    /// Seconds from the last acknowledgement to `green` (the indexing the server still had to do).
    pub index_wait_s: f64,
    /// Seconds from the create request to `green`: the time until the collection serves at speed.
    pub time_to_ready_s: f64,
    /// The last `points_count` the server reported.
    pub points_count: Option<u64>,
    /// The last `indexed_vectors_count` the server reported.
    pub indexed_vectors_count: Option<u64>,
}

/// Attempts per batch before the load gives up.
const BATCH_ATTEMPTS: u32 = 4;

/// Runs the load phase for `base` (row `i` becomes point id `i`).
pub async fn load(
    endpoint: &Endpoint,
    collection: &str,
    config: &CollectionConfig,
    base: Arc<Matrix<f32>>,
    options: &LoadOptions,
) -> Result<LoadReport> {
    if options.batch_size == 0 || options.concurrency == 0 {
        return Err(Error::argument(
            "batch-size",
            "batch size and upload concurrency must be at least 1",
        ));
    }
    let path = api::collection_path(collection)?;
    let timeout = options.request_timeout;
    let mut admin = Connection::new(endpoint);
    if options.recreate {
        // Qdrant answers 200 with `false` when there was nothing to delete.
        admin
            .call_json(Method::DELETE, &path, None, timeout)
            .await?;
    }
    let created = Instant::now();
    let create_body = api::create_collection_body(config).to_string();
    match admin
        .call_json(Method::PUT, &path, Some(create_body.into()), timeout)
        .await
    {
        Err(Error::Status { status: 409, .. }) => {
            return Err(Error::argument(
                "collection",
                format!("`{collection}` already exists on the server: pass --recreate to replace it, or --skip-load to query it as it is"),
            ))
        }
        other => other?,
    };

    let rows = base.rows();
    let batches = rows.div_ceil(options.batch_size);
    let bar = progress_bar(options.progress, rows as u64, "upload");
    let next_batch = Arc::new(AtomicUsize::new(0));
    let upload_started = Instant::now();
    let mut uploaders: tokio::task::JoinSet<Result<usize>> = tokio::task::JoinSet::new();
    for _ in 0..options.concurrency.min(batches.max(1)) {
        let (endpoint, base, next_batch, bar) = (
            endpoint.clone(),
            Arc::clone(&base),
            Arc::clone(&next_batch),
            bar.clone(),
        );
        let upsert_path = format!("{path}/points?wait=true");
        let batch_size = options.batch_size;
        uploaders.spawn(async move {
            let mut connection = Connection::new(&endpoint);
            let mut retried = 0usize;
            loop {
                let batch = next_batch.fetch_add(1, Ordering::Relaxed);
                if batch >= batches {
                    return Ok(retried);
                }
                let first = batch * batch_size;
                let last = (first + batch_size).min(base.rows());
                let dim = base.dim();
                let body = api::upsert_batch_body(
                    first as u64,
                    &base.as_slice()[first * dim..last * dim],
                    dim,
                );
                let attempts =
                    upsert_with_retry(&mut connection, &upsert_path, body, timeout).await?;
                if attempts > 1 {
                    retried += 1;
                }
                bar.inc((last - first) as u64);
            }
        });
    }
    let mut retried_batches = 0;
    while let Some(joined) = uploaders.join_next().await {
        match joined {
            Ok(outcome) => retried_batches += outcome?,
            Err(e) => {
                return Err(Error::Transport {
                    method: "PUT",
                    path: format!("{path}/points"),
                    reason: format!("uploader task failed: {e}"),
                })
            }
        }
    }
    let upload_s = upload_started.elapsed().as_secs_f64();
    bar.finish_and_clear();

    let uploaded = Instant::now();
    let state = wait_ready(&mut admin, collection, &path, rows as u64, options).await?;
    Ok(LoadReport {
        points: rows,
        batches,
        batch_size: options.batch_size,
        concurrency: options.concurrency,
        retried_batches,
        upload_s,
        upload_points_per_s: rows as f64 / upload_s.max(1e-9),
        index_wait_s: uploaded.elapsed().as_secs_f64(),
        time_to_ready_s: created.elapsed().as_secs_f64(),
        points_count: state.points_count,
        indexed_vectors_count: state.indexed_vectors_count,
    })
}

/// Sends one batch, retrying transient failures; returns the attempts it took.
async fn upsert_with_retry(
    connection: &mut Connection,
    path: &str,
    body: hyper::body::Bytes,
    timeout: Duration,
) -> Result<u32> {
    let mut attempt = 1;
    loop {
        match connection
            .call_json(Method::PUT, path, Some(body.clone()), timeout)
            .await
        {
            Ok(_) => return Ok(attempt),
            Err(e) if attempt < BATCH_ATTEMPTS && is_transient(&e) => {
                tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

fn is_transient(error: &Error) -> bool {
    match error {
        Error::Connect { .. } | Error::Transport { .. } => true,
        Error::Status { status, .. } => *status == 429 || *status >= 500,
        _ => false,
    }
}

/// Polls until the collection is ready (see the module doc).
pub async fn wait_ready(
    admin: &mut Connection,
    collection: &str,
    path: &str,
    expected_points: u64,
    options: &LoadOptions,
) -> Result<api::CollectionState> {
    let started = Instant::now();
    let mut consecutive_ready = 0;
    loop {
        let body = admin
            .call_json(Method::GET, path, None, options.request_timeout)
            .await?;
        let state = api::parse_collection_state(path, &body)?;
        let counted = state.points_count.is_none_or(|n| n == expected_points);
        if state.status == "green" && counted {
            consecutive_ready += 1;
            if consecutive_ready >= 2 {
                return Ok(state);
            }
        } else {
            consecutive_ready = 0;
        }
        if started.elapsed() >= options.ready_timeout {
            return Err(Error::NotReady {
                collection: collection.to_string(),
                waited_s: started.elapsed().as_secs_f64(),
                last_status: match state.points_count {
                    Some(n) => format!("{}, {n} of {expected_points} points", state.status),
                    None => state.status,
                },
            });
        }
        tokio::time::sleep(options.poll_interval).await;
    }
}

/// A progress bar on stderr, or a hidden one.
pub(crate) fn progress_bar(visible: bool, length: u64, label: &str) -> ProgressBar {
    if !visible {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(length);
    let template = format!(
        "{label:>8} [{{elapsed_precise}}] {{wide_bar}} {{pos}}/{{len}} ({{per_sec}}, eta {{eta}})"
    );
    if let Ok(style) = ProgressStyle::with_template(&template) {
        bar.set_style(style);
    }
    bar
}
