//! What a load test reports: the [`Report`] structure, written as JSON, as a terminal summary
//! ([`terminal`]) and as a self-contained HTML page with SVG charts ([`html`]).

pub mod charts;
pub mod html;
pub mod terminal;

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;
use serde_json::Value;

use crate::data::{Distance, TruthSource};
use crate::error::{Error, Result};
use crate::latency::{LatencySummary, TimelinePoint};
use crate::load::LoadReport;
use crate::params::Sweep;
use crate::query::LoadMode;
use crate::recall::RecallStats;

/// The whole report of one invocation.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// `"loadtest"`.
    pub tool: &'static str,
    /// This crate's version.
    pub version: &'static str,
    /// When the run began, RFC 3339 UTC.
    pub started_at: String,
    /// The server measured (`http://host:port`).
    pub target: String,
    /// The `title` and `version` the server's `GET /` announced, when it answered.
    pub server: Option<Value>,
    /// The collection used.
    pub collection: String,
    /// The workload.
    pub dataset: DatasetInfo,
    /// How the queries were run.
    pub settings: Settings,
    /// The load phase, unless it was skipped.
    pub load: Option<LoadReport>,
    /// One entry per value of the swept parameter (one entry without a sweep).
    pub runs: Vec<RunReport>,
}

/// The workload, as reported.
#[derive(Debug, Clone, Serialize)]
pub struct DatasetInfo {
    /// Name (directory name or generated spec).
    pub name: String,
    /// Base vectors.
    pub points: usize,
    /// Query vectors.
    pub queries: usize,
    /// Dimension.
    pub dim: usize,
    /// Distance.
    pub distance: Distance,
    /// Where the exact answers came from.
    pub ground_truth: TruthSource,
}

/// The query settings, as reported.
#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    /// Results per query; recall is recall@limit.
    pub limit: usize,
    /// Closed or open loop.
    pub mode: LoadMode,
    /// The most requests per run.
    pub max_queries: u64,
    /// The longest a run may issue requests, in seconds.
    pub duration_s: f64,
    /// Untimed queries before each run.
    pub warmup: u64,
    /// Request timeout, in seconds.
    pub request_timeout_s: f64,
    /// `params` sent with every query (before the swept value is set).
    pub params: Value,
    /// The swept parameter, if any.
    pub sweep: Option<Sweep>,
}

/// One measured run.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    /// `hnsw_ef=64`, or `default` without a sweep.
    pub label: String,
    /// The swept value of this run.
    pub param_value: Option<Value>,
    /// The exact `params` object sent.
    pub params: Value,
    /// Requests issued (successes and failures, unsent ones included).
    pub requests: u64,
    /// Successful answers.
    pub ok: u64,
    /// Failures by kind (`timeout`, `http_503`, `unsent`, ...).
    pub errors: BTreeMap<String, u64>,
    /// Seconds from the start to the last answer.
    pub elapsed_s: f64,
    /// Successful answers per second over `elapsed_s`.
    pub qps: f64,
    /// Open loop: the arrival rate asked for.
    pub offered_rate: Option<f64>,
    /// Latency of successes: from the due time (open loop) or the send (closed loop).
    pub latency: Option<LatencySummary>,
    /// Open loop: from the send to the answer.
    pub service_time: Option<LatencySummary>,
    /// Open loop: how late requests were sent after their due time.
    pub send_lag: Option<LatencySummary>,
    /// Recall@limit against the exact answers.
    pub recall: Option<RecallStats>,
    /// Latency over the run, by request start.
    pub timeline: Vec<TimelinePoint>,
}

impl Report {
    /// Writes the report as pretty JSON.
    pub fn write_json(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self).map_err(|e| Error::Output {
            path: path.to_path_buf(),
            source: std::io::Error::other(e),
        })?;
        write_file(path, text.as_bytes())
    }

    /// Writes the HTML report.
    pub fn write_html(&self, path: &Path) -> Result<()> {
        write_file(path, html::render(self)?.as_bytes())
    }
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|source| Error::Output {
            path: parent.to_path_buf(),
            source,
        })?;
    }
    std::fs::write(path, bytes).map_err(|source| Error::Output {
        path: path.to_path_buf(),
        source,
    })
}

/// Seconds since the Unix epoch as RFC 3339 UTC (`2026-11-28T07:01:02Z`).
pub fn rfc3339_utc(unix_seconds: u64) -> String {
    let days = (unix_seconds / 86_400) as i64;
    let rem = unix_seconds % 86_400;
    // Howard Hinnant's days-to-civil algorithm (proleptic Gregorian calendar).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::rfc3339_utc;

    #[test]
    fn formats_utc_dates() {
        assert_eq!(rfc3339_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339_utc(1_700_000_000), "2023-11-14T22:13:20Z");
    }
}
