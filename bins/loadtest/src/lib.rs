//! `loadtest` measures a Qdrant-compatible vector search server the way a user would meet it:
//! over its REST API, with real keep-alive connections, from the outside.
//!
//! A run has two phases:
//!
//! 1. **Load** ([`load`]): create the collection, upload the base vectors in batches with
//!    bounded concurrency (a progress bar on a terminal), wait until the server reports
//!    `green`; report the upload rate and the time to ready.
//! 2. **Query** ([`query`]): send the query vectors in a closed loop (N clients as fast as
//!    they can) or an open loop (a fixed arrival rate, latency measured from each request's
//!    due time so queueing is never hidden), once or once per value of a swept search
//!    parameter ([`params`]). Each run reports QPS, latency percentiles from an HdrHistogram
//!    ([`latency`]), errors by kind and recall@k against exact answers ([`recall`]).
//!
//! The [`report`] goes to the terminal, to `report.json` and to a self-contained
//! `report.html` with SVG charts (recall versus QPS, latency percentiles, latency over time).
//! Only documented Qdrant REST calls are made ([`api`]), so the same command measures a real
//! Qdrant server and ours side by side. The workload is read from TexMex or `.npy` files or
//! generated, with exact ground truth computed on all cores when none is given ([`data`]).
//!
//! The pieces compose without a server too. Scoring one answer and summarising latencies:
//!
//! ```
//! use std::time::Duration;
//! use loadtest::data::{generate, exact_ground_truth, GeneratedSpec, Distance};
//! use loadtest::latency::LatencyHistogram;
//! use loadtest::recall::RecallAccumulator;
//!
//! // 500 clustered vectors of 8 dimensions, 3 queries, and their exact top-10 by cosine.
//! let spec = GeneratedSpec { points: 500, queries: 3, dim: 8, clusters: 4, spread: 0.2, seed: 7 };
//! let (base, queries) = generate(&spec)?;
//! let truth = exact_ground_truth(&base, &queries, Distance::Cosine.metric(), 10);
//!
//! // A server that found 9 of the 10 for every query (it swapped the 10th for a stranger).
//! let mut recall = RecallAccumulator::new(10);
//! for q in 0..queries.rows() {
//!     let mut answer = truth.row(q).to_vec();
//!     answer[9] = 1_000_000;
//!     recall.add(&answer, truth.row(q));
//! }
//! assert_eq!(recall.stats().unwrap().mean, 0.9);
//!
//! // Latencies of 1 ms to 100 ms: nearest-rank percentiles, as HdrHistogram defines them.
//! let mut latency = LatencyHistogram::default();
//! for ms in 1..=100 {
//!     latency.record(Duration::from_millis(ms));
//! }
//! let summary = latency.summary().unwrap();
//! assert!((summary.p50_ms - 50.0).abs() < 0.05 && (summary.p99_ms - 99.0).abs() < 0.1);
//! # Ok::<(), loadtest::Error>(())
//! ```
//!
//! The binary wires these to a command line (`loadtest --help`); `docs/loadtest.md` shows
//! how to run it against our router and against a Qdrant server.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod api;
pub mod config;
pub mod data;
mod error;
pub mod http;
pub mod latency;
pub mod load;
pub mod params;
pub mod query;
pub mod recall;
pub mod report;
pub mod run;

pub use error::{Error, ErrorKind, Result};
