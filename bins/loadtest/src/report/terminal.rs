//! The human summary printed at the end of a run.

use std::fmt::Write;

use super::Report;
use crate::query::LoadMode;

/// The summary as text: workload, load phase, and one table row per run.
pub fn render(report: &Report) -> String {
    let mut out = String::new();
    let d = &report.dataset;
    let server = report
        .server
        .as_ref()
        .and_then(|s| s.get("version"))
        .and_then(|v| v.as_str())
        .map(|v| format!(" (server version {v})"))
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "target     {}{server}, collection `{}`",
        report.target, report.collection
    );
    let _ = writeln!(
        out,
        "dataset    {}: {} points x {} dims, {} queries, {}, ground truth {}",
        d.name,
        d.points,
        d.dim,
        d.queries,
        d.distance.qdrant_name(),
        match d.ground_truth {
            crate::data::TruthSource::File => "from file",
            crate::data::TruthSource::Computed => "computed (brute force)",
        }
    );
    if let Some(load) = &report.load {
        let _ = writeln!(
            out,
            "load       {} points in {:.1} s ({:.0} points/s, {} x {} per batch, {} in flight, {} retried); ready after {:.1} s more ({:.1} s from create)",
            load.points,
            load.upload_s,
            load.upload_points_per_s,
            load.batches,
            load.batch_size,
            load.concurrency,
            load.retried_batches,
            load.index_wait_s,
            load.time_to_ready_s
        );
    }
    let s = &report.settings;
    let mode = match s.mode {
        LoadMode::Closed { clients } => format!("closed loop, {clients} clients"),
        LoadMode::Open { rate, connections } => {
            format!("open loop, {rate} req/s over {connections} connections")
        }
    };
    let _ = writeln!(
        out,
        "queries    {mode}; limit {}; at most {} requests or {:.0} s per run; {} warm-up",
        s.limit, s.max_queries, s.duration_s, s.warmup
    );
    let _ = writeln!(out);
    let header = [
        "run", "ok", "errors", "QPS", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "max ms", "recall",
    ];
    let mut rows = vec![header.map(str::to_string).to_vec()];
    for run in &report.runs {
        let ms = |f: fn(&crate::latency::LatencySummary) -> f64| {
            run.latency
                .as_ref()
                .map_or("-".to_string(), |l| format!("{:.3}", f(l)))
        };
        let errors: u64 = run.errors.values().sum();
        rows.push(vec![
            run.label.clone(),
            run.ok.to_string(),
            errors.to_string(),
            format!("{:.1}", run.qps),
            ms(|l| l.p50_ms),
            ms(|l| l.p90_ms),
            ms(|l| l.p99_ms),
            ms(|l| l.p999_ms),
            ms(|l| l.max_ms),
            run.recall
                .as_ref()
                .map_or("-".to_string(), |r| format!("{:.4}", r.mean)),
        ]);
    }
    let widths: Vec<usize> = (0..header.len())
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    for row in &rows {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(c, (cell, w))| {
                if c == 0 {
                    format!("{cell:<w$}")
                } else {
                    format!("{cell:>w$}")
                }
            })
            .collect();
        let _ = writeln!(out, "{}", cells.join("  ").trim_end());
    }
    for run in &report.runs {
        if !run.errors.is_empty() {
            let list: Vec<String> = run.errors.iter().map(|(k, v)| format!("{k} {v}")).collect();
            let _ = writeln!(out, "errors in {}: {}", run.label, list.join(", "));
        }
        if let (Some(lag), Some(service)) = (&run.send_lag, &run.service_time) {
            let _ = writeln!(
                out,
                "{}: service time p50 {:.3} / p99 {:.3} ms; send lag p99 {:.3} ms, max {:.3} ms{}",
                run.label,
                service.p50_ms,
                service.p99_ms,
                lag.p99_ms,
                lag.max_ms,
                if lag.p99_ms > 10.0 {
                    " (the server or the connection count did not keep up with the rate)"
                } else {
                    ""
                }
            );
        }
    }
    out
}
