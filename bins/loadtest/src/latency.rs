//! Latency recording: an HdrHistogram for the whole run, a coarse timeline, and errors by kind.
//!
//! Latencies are recorded in whole microseconds (values under 1 µs count as 1 µs), with three
//! significant figures: below 2.048 ms every microsecond is its own bucket, above it a
//! reported value is at most 0.1% above the recorded one. Percentiles are nearest-rank:
//! p50 of `n` samples is the smallest recorded value with at least `ceil(0.5 n)` samples at
//! or below it, as HdrHistogram defines it.
//!
//! The timeline groups requests by the time they were *due to start* (the intended send time
//! in an open loop), so a burst of queueing shows up where it began, not where it drained.
//! It holds at most [`MAX_WINDOWS`] windows: when a run outlasts them, neighbouring windows
//! are merged and the window width doubles, so memory stays bounded however long the run.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// The longest latency tracked exactly; longer ones are recorded as this (one hour).
const MAX_TRACKED_MICROS: u64 = 3_600_000_000;

/// The first timeline window width; doubled whenever the run outgrows [`MAX_WINDOWS`].
pub const FIRST_WINDOW: Duration = Duration::from_millis(100);

/// The most windows a timeline keeps.
pub const MAX_WINDOWS: usize = 256;

/// Why one request of a measured run failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RequestErrorKind {
    /// The TCP connection could not be opened.
    Connect,
    /// No complete answer within the request timeout.
    Timeout,
    /// The connection broke or the HTTP framing was bad.
    Transport,
    /// The server answered with this non-2xx status.
    Status(u16),
    /// A 2xx answer whose body was not a query result.
    BadBody,
    /// The request was due before the end of an open-loop run but never sent, because the
    /// connections were still busy when the run's grace period ran out.
    Unsent,
}

impl fmt::Display for RequestErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequestErrorKind::Connect => f.write_str("connect"),
            RequestErrorKind::Timeout => f.write_str("timeout"),
            RequestErrorKind::Transport => f.write_str("transport"),
            RequestErrorKind::Status(code) => write!(f, "http_{code}"),
            RequestErrorKind::BadBody => f.write_str("bad_body"),
            RequestErrorKind::Unsent => f.write_str("unsent"),
        }
    }
}

/// Percentiles of a latency histogram, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LatencySummary {
    /// How many latencies were recorded.
    pub count: u64,
    /// The smallest.
    pub min_ms: f64,
    /// The mean.
    pub mean_ms: f64,
    /// The median.
    pub p50_ms: f64,
    /// The 90th percentile.
    pub p90_ms: f64,
    /// The 99th percentile.
    pub p99_ms: f64,
    /// The 99.9th percentile.
    pub p999_ms: f64,
    /// The largest.
    pub max_ms: f64,
}

/// A latency histogram in microseconds (see the module doc for its precision).
#[derive(Debug, Clone)]
pub struct LatencyHistogram {
    histogram: Histogram<u64>,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        LatencyHistogram::new(3)
    }
}

impl LatencyHistogram {
    fn new(significant_figures: u8) -> LatencyHistogram {
        // The bounds are constants inside hdrhistogram's accepted range (1 ≤ low, high ≥ 2·low,
        // sigfig ≤ 5), so creation cannot fail.
        let histogram = Histogram::new_with_bounds(1, MAX_TRACKED_MICROS, significant_figures)
            .expect("constant histogram bounds are valid");
        LatencyHistogram { histogram }
    }

    /// Records one latency.
    pub fn record(&mut self, latency: Duration) {
        let micros = u64::try_from(latency.as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        self.histogram.saturating_record(micros);
    }

    /// How many latencies were recorded.
    pub fn count(&self) -> u64 {
        self.histogram.len()
    }

    /// Adds every sample of `other`.
    pub fn merge(&mut self, other: &LatencyHistogram) {
        // Both sides have the same bounds, so the addition cannot fail; saturate regardless.
        if self.histogram.add(&other.histogram).is_err() {
            for value in other.histogram.iter_recorded() {
                self.histogram
                    .saturating_record_n(value.value_iterated_to(), value.count_at_value());
            }
        }
    }

    /// The value at `quantile` (0 to 1), in milliseconds; 0 when empty.
    pub fn quantile_ms(&self, quantile: f64) -> f64 {
        if self.histogram.is_empty() {
            return 0.0;
        }
        self.histogram.value_at_quantile(quantile) as f64 / 1000.0
    }

    /// The summary, or `None` when nothing was recorded.
    pub fn summary(&self) -> Option<LatencySummary> {
        let h = &self.histogram;
        (!h.is_empty()).then(|| LatencySummary {
            count: h.len(),
            min_ms: h.min() as f64 / 1000.0,
            mean_ms: h.mean() / 1000.0,
            p50_ms: self.quantile_ms(0.50),
            p90_ms: self.quantile_ms(0.90),
            p99_ms: self.quantile_ms(0.99),
            p999_ms: self.quantile_ms(0.999),
            max_ms: h.max() as f64 / 1000.0,
        })
    }
}

/// One window of the timeline.
#[derive(Debug, Clone)]
struct Window {
    latencies: LatencyHistogram,
    errors: u64,
}

impl Window {
    fn new() -> Window {
        // Two significant figures are plenty for a chart and keep each window small.
        Window {
            latencies: LatencyHistogram::new(2),
            errors: 0,
        }
    }
}

/// Requests grouped by start time into windows of equal width (see the module doc).
#[derive(Debug, Clone)]
pub struct Timeline {
    width: Duration,
    windows: Vec<Window>,
}

impl Default for Timeline {
    fn default() -> Self {
        Timeline {
            width: FIRST_WINDOW,
            windows: Vec::new(),
        }
    }
}

/// One window of a timeline, as reported.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct TimelinePoint {
    /// Start of the window, seconds since the run began.
    pub start_s: f64,
    /// Width of the window in seconds.
    pub width_s: f64,
    /// Successful requests that started in the window.
    pub ok: u64,
    /// Failed requests that started in the window.
    pub errors: u64,
    /// Their median latency (0 when none succeeded).
    pub p50_ms: f64,
    /// Their 99th percentile.
    pub p99_ms: f64,
    /// Their maximum.
    pub max_ms: f64,
}

impl Timeline {
    /// The current window width.
    pub fn width(&self) -> Duration {
        self.width
    }

    fn window_at(&mut self, start: Duration) -> &mut Window {
        let mut index = (start.as_nanos() / self.width.as_nanos()) as usize;
        while index >= MAX_WINDOWS {
            self.coarsen();
            index /= 2;
        }
        if self.windows.len() <= index {
            self.windows.resize_with(index + 1, Window::new);
        }
        &mut self.windows[index]
    }

    /// Merges windows pairwise and doubles the width.
    fn coarsen(&mut self) {
        let old = std::mem::take(&mut self.windows);
        let mut pairs = old.into_iter();
        while let Some(mut first) = pairs.next() {
            if let Some(second) = pairs.next() {
                first.latencies.merge(&second.latencies);
                first.errors += second.errors;
            }
            self.windows.push(first);
        }
        self.width *= 2;
    }

    /// Records a success that started `start` after the run began and took `latency`.
    pub fn record_ok(&mut self, start: Duration, latency: Duration) {
        self.window_at(start).latencies.record(latency);
    }

    /// Records a failure that started `start` after the run began.
    pub fn record_error(&mut self, start: Duration) {
        self.window_at(start).errors += 1;
    }

    /// The windows as reported.
    pub fn points(&self) -> Vec<TimelinePoint> {
        let width_s = self.width.as_secs_f64();
        self.windows
            .iter()
            .enumerate()
            .map(|(i, w)| TimelinePoint {
                start_s: i as f64 * width_s,
                width_s,
                ok: w.latencies.count(),
                errors: w.errors,
                p50_ms: w.latencies.quantile_ms(0.5),
                p99_ms: w.latencies.quantile_ms(0.99),
                max_ms: w.latencies.quantile_ms(1.0),
            })
            .collect()
    }
}

/// Everything measured about the requests of one run.
#[derive(Debug, Clone, Default)]
pub struct Recorder {
    /// Latency of each success, from its intended start (open loop) or its send (closed loop).
    pub latency: LatencyHistogram,
    /// Open loop only: from the actual send to the answer (what the server and network took).
    pub service: LatencyHistogram,
    /// Open loop only: how late each request was sent after its intended time.
    pub send_lag: LatencyHistogram,
    /// Latency over the run.
    pub timeline: Timeline,
    /// Failures by kind.
    pub errors: BTreeMap<RequestErrorKind, u64>,
}

impl Recorder {
    /// Records a success.
    pub fn record_ok(&mut self, start: Duration, latency: Duration) {
        self.latency.record(latency);
        self.timeline.record_ok(start, latency);
    }

    /// Records a failure.
    pub fn record_error(&mut self, start: Duration, kind: RequestErrorKind) {
        *self.errors.entry(kind).or_insert(0) += 1;
        self.timeline.record_error(start);
    }

    /// Adds `count` failures that never reached the timeline (unsent requests).
    pub fn add_errors(&mut self, kind: RequestErrorKind, count: u64) {
        if count > 0 {
            *self.errors.entry(kind).or_insert(0) += count;
        }
    }

    /// Total failures.
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    /// Failures keyed by their report names (`timeout`, `http_503`, ...).
    pub fn errors_by_name(&self) -> BTreeMap<String, u64> {
        self.errors
            .iter()
            .map(|(kind, count)| (kind.to_string(), *count))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sub_microsecond_latencies_count_as_one_microsecond() {
        let mut h = LatencyHistogram::default();
        h.record(Duration::from_nanos(10));
        assert_eq!(h.summary().map(|s| s.max_ms), Some(0.001));
    }

    #[test]
    fn coarsening_keeps_every_sample() {
        let mut t = Timeline::default();
        for second in 0..100u64 {
            t.record_ok(Duration::from_secs(second), Duration::from_millis(1));
        }
        t.record_error(Duration::from_secs(99));
        // 100 s in 100 ms windows would be 1000 windows: two doublings give 250 of 400 ms.
        assert_eq!(t.width(), Duration::from_millis(400));
        let points = t.points();
        assert!(points.len() <= MAX_WINDOWS);
        assert_eq!(points.iter().map(|p| p.ok).sum::<u64>(), 100);
        assert_eq!(points.iter().map(|p| p.errors).sum::<u64>(), 1);
    }
}
