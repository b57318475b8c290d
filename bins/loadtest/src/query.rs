//! The query phase: closed-loop and open-loop runs over keep-alive connections.
//!
//! Every request of a run is a *ticket* `t = 0, 1, 2, ..` taken from a shared counter; ticket
//! `t` sends query `t mod nq`. Bodies are serialised before the clock starts, so the timed
//! path does no JSON work. Connections are opened (and warm-up queries sent) before the
//! clock starts too.
//!
//! - **Closed loop** (`clients` workers): each worker sends, waits for the answer, and takes
//!   the next ticket. Throughput is what the server sustains at that concurrency; latency is
//!   from send to answer.
//! - **Open loop** (`rate` per second over `connections` workers): ticket `t` is *due* at
//!   `start + t / rate`, whatever happened before. A free worker takes the next ticket,
//!   sleeps until it is due if it is early, and sends. Latency is measured from the due
//!   time, not from the send, so when the server (or the connection count) falls behind,
//!   the time requests spent waiting to be sent is counted: no coordinated omission. The
//!   send lag (send − due) and the service time (answer − send) are reported beside it.
//!
//! A run ends after `max_queries` tickets or when `duration` has passed, whichever comes
//! first. In an open loop only tickets due before the end are issued; those still unsent
//! when `duration + request timeout` has passed are counted as `unsent` errors, so an
//! overloaded run stops on time and says so.
//!
//! For recall, the body of the first answer to each query (tickets `0..nq`) is kept and
//! parsed after the clock stops; later answers to the same query are only timed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hyper::body::Bytes;
use hyper::Method;
use serde::Serialize;
use tokio::sync::{watch, Barrier};

use crate::http::{Connection, Endpoint, RequestFailure};
use crate::latency::{Recorder, RequestErrorKind};
use crate::load::progress_bar;

/// How requests are issued.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum LoadMode {
    /// `clients` workers, each sending its next query as soon as the last one is answered.
    Closed {
        /// Concurrent clients (= connections).
        clients: usize,
    },
    /// A fixed arrival rate, spread over `connections` workers.
    Open {
        /// Requests per second.
        rate: f64,
        /// Connections (the most requests in flight at once).
        connections: usize,
    },
}

impl LoadMode {
    /// Workers (= connections) the mode uses.
    pub fn workers(&self) -> usize {
        match *self {
            LoadMode::Closed { clients } => clients,
            LoadMode::Open { connections, .. } => connections,
        }
    }
}

/// Bounds and timing of one run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// How requests are issued.
    pub mode: LoadMode,
    /// The most requests in the run.
    pub max_queries: u64,
    /// The longest the run may issue requests.
    pub duration: Duration,
    /// Untimed queries sent first (spread over the workers).
    pub warmup: u64,
    /// Timeout of each request.
    pub request_timeout: Duration,
    /// Draw a progress bar (on a terminal only).
    pub progress: bool,
}

/// What one run measured, before scoring.
#[derive(Debug)]
pub struct RunOutcome {
    /// Latencies, timeline and errors.
    pub recorder: Recorder,
    /// Seconds from the start to the last answer.
    pub elapsed_s: f64,
    /// Successful answers.
    pub ok: u64,
    /// The first answer body of each query that got one: `(query, body)`.
    pub answers: Vec<(usize, Bytes)>,
}

/// State shared by the workers of a run.
struct Shared {
    endpoint: Endpoint,
    path: String,
    bodies: Arc<Vec<Bytes>>,
    next_ticket: AtomicU64,
    tickets: u64,
    options: RunOptions,
    recorder: Mutex<Recorder>,
}

/// Runs one measured series of queries against `path` (`/collections/{c}/points/query`).
pub async fn run(
    endpoint: &Endpoint,
    path: &str,
    bodies: Arc<Vec<Bytes>>,
    options: &RunOptions,
) -> RunOutcome {
    let workers = options.mode.workers().max(1);
    let tickets = match options.mode {
        LoadMode::Closed { .. } => options.max_queries,
        // Only tickets due before the end of the run exist.
        LoadMode::Open { rate, .. } => options
            .max_queries
            .min((rate * options.duration.as_secs_f64()).ceil() as u64),
    };
    let shared = Arc::new(Shared {
        endpoint: endpoint.clone(),
        path: path.to_string(),
        bodies,
        next_ticket: AtomicU64::new(0),
        tickets,
        options: options.clone(),
        recorder: Mutex::new(Recorder::default()),
    });
    let bar = progress_bar(options.progress, tickets, "query");
    // Workers connect and warm up, meet at the barrier, then wait for the common start time.
    let barrier = Arc::new(Barrier::new(workers + 1));
    let (start_tx, start_rx) = watch::channel(None::<Instant>);
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..workers {
        let warmup = options.warmup / workers as u64
            + u64::from((worker as u64) < options.warmup % workers as u64);
        let (shared, barrier, mut start_rx, bar) = (
            Arc::clone(&shared),
            Arc::clone(&barrier),
            start_rx.clone(),
            bar.clone(),
        );
        tasks.spawn(async move {
            let mut connection = Connection::new(&shared.endpoint);
            warm_up(&mut connection, &shared, worker, warmup).await;
            barrier.wait().await;
            let start = match start_rx.wait_for(Option::is_some).await {
                Ok(start) => start.unwrap_or_else(Instant::now),
                Err(_) => return (Vec::new(), 0),
            };
            worker_loop(&mut connection, &shared, start, &bar).await
        });
    }
    barrier.wait().await;
    let start = Instant::now();
    // The receivers are alive (the workers hold them), so the send cannot fail.
    let _ = start_tx.send(Some(start));
    let mut answers = Vec::new();
    let mut ok = 0;
    while let Some(joined) = tasks.join_next().await {
        // A worker only ends by returning; a panic would be a bug, and its tickets count as unsent.
        if let Ok((mut kept, worker_ok)) = joined {
            answers.append(&mut kept);
            ok += worker_ok;
        }
    }
    let elapsed_s = start.elapsed().as_secs_f64();
    bar.finish_and_clear();
    let mut recorder = match Arc::try_unwrap(shared) {
        Ok(shared) => shared
            .recorder
            .into_inner()
            .unwrap_or_else(|p| p.into_inner()),
        Err(shared) => shared
            .recorder
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone(),
    };
    let issued = ok + recorder.error_count();
    if let LoadMode::Open { .. } = options.mode {
        recorder.add_errors(RequestErrorKind::Unsent, tickets.saturating_sub(issued));
    }
    answers.sort_unstable_by_key(|(query, _)| *query);
    RunOutcome {
        recorder,
        elapsed_s,
        ok,
        answers,
    }
}

/// Opens the connection and sends this worker's share of untimed warm-up queries.
async fn warm_up(connection: &mut Connection, shared: &Shared, worker: usize, count: u64) {
    // A failed connect here is retried by the first timed request, which then counts it.
    let _ = connection.connect().await;
    let nq = shared.bodies.len();
    for i in 0..count {
        let query = (worker + i as usize * shared.options.mode.workers()) % nq.max(1);
        let _ = connection
            .send(
                Method::POST,
                &shared.path,
                Some(shared.bodies[query].clone()),
                shared.options.request_timeout,
            )
            .await;
    }
}

/// Takes tickets until none are left or time is up; returns kept answers and successes.
async fn worker_loop(
    connection: &mut Connection,
    shared: &Shared,
    start: Instant,
    bar: &indicatif::ProgressBar,
) -> (Vec<(usize, Bytes)>, u64) {
    let options = &shared.options;
    let nq = shared.bodies.len() as u64;
    let deadline = start + options.duration;
    // Open loop: backlog may still be sent during one request timeout after the end.
    let hard_stop = deadline + options.request_timeout;
    let mut kept = Vec::new();
    let mut ok = 0;
    loop {
        let now = Instant::now();
        let stop = match options.mode {
            LoadMode::Closed { .. } => deadline,
            LoadMode::Open { .. } => hard_stop,
        };
        if now >= stop {
            break;
        }
        let ticket = shared.next_ticket.fetch_add(1, Ordering::Relaxed);
        if ticket >= shared.tickets {
            break;
        }
        let query = (ticket % nq.max(1)) as usize;
        let due = match options.mode {
            LoadMode::Closed { .. } => now,
            LoadMode::Open { rate, .. } => {
                let due = start + Duration::from_secs_f64(ticket as f64 / rate);
                if due > now {
                    tokio::time::sleep_until(due.into()).await;
                }
                due
            }
        };
        let sent = Instant::now();
        let result = connection
            .send(
                Method::POST,
                &shared.path,
                Some(shared.bodies[query].clone()),
                options.request_timeout,
            )
            .await;
        let done = Instant::now();
        let offset = due.saturating_duration_since(start);
        let outcome = match result {
            Ok(response) if response.is_success() => Ok(response.body),
            Ok(response) => Err(RequestErrorKind::Status(response.status)),
            Err(RequestFailure::Connect(_)) => Err(RequestErrorKind::Connect),
            Err(RequestFailure::Timeout) => Err(RequestErrorKind::Timeout),
            Err(RequestFailure::Transport(_)) => Err(RequestErrorKind::Transport),
        };
        {
            let mut recorder = shared.recorder.lock().unwrap_or_else(|p| p.into_inner());
            match &outcome {
                Ok(_) => {
                    recorder.record_ok(offset, done - due);
                    if let LoadMode::Open { .. } = options.mode {
                        recorder.service.record(done - sent);
                        recorder
                            .send_lag
                            .record(sent.saturating_duration_since(due));
                    }
                }
                Err(kind) => recorder.record_error(offset, *kind),
            }
        }
        if let Ok(body) = outcome {
            ok += 1;
            if ticket < nq {
                kept.push((query, body));
            }
        }
        bar.inc(1);
    }
    (kept, ok)
}
