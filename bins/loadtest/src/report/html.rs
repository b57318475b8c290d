//! The HTML report: one self-contained file (inline CSS and SVG, no scripts, no network), so it
//! can be archived beside the JSON and opened offline.

use std::fmt::Write;

use super::{charts, Report};
use crate::error::Result;
use crate::query::LoadMode;

/// Escapes text for HTML element content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Renders the whole page.
pub fn render(report: &Report) -> Result<String> {
    let mut page = String::new();
    let title = format!("loadtest: {} on {}", report.dataset.name, report.target);
    let _ = write!(
        page,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title>\n<style>{}</style></head><body>\n<h1>{}</h1>\n",
        escape(&title),
        STYLE,
        escape(&title)
    );

    let d = &report.dataset;
    let s = &report.settings;
    let mode = match s.mode {
        LoadMode::Closed { clients } => format!("closed loop, {clients} clients"),
        LoadMode::Open { rate, connections } => {
            format!("open loop, {rate} requests/s over {connections} connections")
        }
    };
    let server = report
        .server
        .as_ref()
        .map_or("(no answer to GET /)".to_string(), |v| v.to_string());
    let mut facts = vec![
        ("started", report.started_at.clone()),
        ("target", report.target.clone()),
        ("server", server),
        ("collection", report.collection.clone()),
        (
            "dataset",
            format!(
                "{}: {} points × {} dims, {} queries, {}",
                d.name,
                d.points,
                d.dim,
                d.queries,
                d.distance.qdrant_name()
            ),
        ),
        (
            "ground truth",
            format!("{:?}", d.ground_truth).to_lowercase(),
        ),
        ("mode", mode),
        (
            "bounds",
            format!(
                "at most {} requests or {} s per run, {} warm-up queries, {} s request timeout",
                s.max_queries, s.duration_s, s.warmup, s.request_timeout_s
            ),
        ),
        ("limit", format!("{} (recall@{})", s.limit, s.limit)),
        ("params", s.params.to_string()),
    ];
    if let Some(sweep) = &s.sweep {
        facts.push((
            "sweep",
            format!("{} over {} values", sweep.name, sweep.values.len()),
        ));
    }
    if let Some(load) = &report.load {
        facts.push((
            "load",
            format!(
                "{} points in {:.1} s ({:.0} points/s; {} batches of {}, {} in flight, {} retried); green {:.1} s later, {:.1} s after create",
                load.points,
                load.upload_s,
                load.upload_points_per_s,
                load.batches,
                load.batch_size,
                load.concurrency,
                load.retried_batches,
                load.index_wait_s,
                load.time_to_ready_s
            ),
        ));
    }
    page.push_str("<table class=\"facts\">\n");
    for (name, value) in facts {
        let _ = writeln!(
            page,
            "<tr><th>{}</th><td>{}</td></tr>",
            escape(name),
            escape(&value)
        );
    }
    page.push_str("</table>\n<h2>Runs</h2>\n<table>\n<tr><th>run</th><th>ok</th><th>errors</th><th>QPS</th><th>p50 ms</th><th>p90 ms</th><th>p99 ms</th><th>p99.9 ms</th><th>max ms</th><th>recall</th><th>min recall</th></tr>\n");
    for run in &report.runs {
        let cell =
            |v: Option<f64>, digits: usize| v.map_or("-".into(), |v| format!("{v:.digits$}"));
        let l = run.latency.as_ref();
        let errors = if run.errors.is_empty() {
            "0".to_string()
        } else {
            run.errors
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let _ = writeln!(
            page,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{:.1}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&run.label),
            run.ok,
            escape(&errors),
            run.qps,
            cell(l.map(|l| l.p50_ms), 3),
            cell(l.map(|l| l.p90_ms), 3),
            cell(l.map(|l| l.p99_ms), 3),
            cell(l.map(|l| l.p999_ms), 3),
            cell(l.map(|l| l.max_ms), 3),
            cell(run.recall.map(|r| r.mean), 4),
            cell(run.recall.map(|r| r.min), 2),
        );
    }
    page.push_str("</table>\n");
    if report.runs.iter().any(|r| r.send_lag.is_some()) {
        page.push_str("<p>Open loop: latency is measured from each request's due time. Service time is from the actual send; send lag is how late requests left.</p>\n<table>\n<tr><th>run</th><th>offered req/s</th><th>service p50 ms</th><th>service p99 ms</th><th>send lag p99 ms</th><th>send lag max ms</th></tr>\n");
        for run in &report.runs {
            if let (Some(service), Some(lag)) = (&run.service_time, &run.send_lag) {
                let _ = writeln!(
                    page,
                    "<tr><td>{}</td><td>{}</td><td>{:.3}</td><td>{:.3}</td><td>{:.3}</td><td>{:.3}</td></tr>",
                    escape(&run.label),
                    run.offered_rate.map_or("-".into(), |r| format!("{r}")),
                    service.p50_ms,
                    service.p99_ms,
                    lag.p99_ms,
                    lag.max_ms
                );
            }
        }
        page.push_str("</table>\n");
    }

    let charts = [
        charts::recall_vs_qps(&report.runs, s.limit)?,
        charts::latency_percentiles(&report.runs)?,
        charts::latency_over_time(&report.runs)?,
    ];
    page.push_str("<h2>Charts</h2>\n");
    for svg in charts.into_iter().flatten() {
        let _ = writeln!(page, "<figure>{svg}</figure>");
    }
    let _ = writeln!(
        page,
        "<p class=\"foot\">Made by loadtest {}. The same figures, and the timelines, are in the JSON report.</p>\n</body></html>",
        escape(report.version)
    );
    Ok(page)
}

const STYLE: &str = "body{font-family:sans-serif;margin:2em;max-width:70em;color:#222}\
table{border-collapse:collapse;margin:1em 0}th,td{border:1px solid #ccc;padding:.3em .6em;text-align:right}\
th{background:#f3f3f3}.facts th,.facts td{text-align:left}td:first-child{text-align:left}\
figure{margin:1em 0}.foot{color:#777;font-size:.9em}";

#[cfg(test)]
mod tests {
    use super::escape;

    #[test]
    fn escapes_markup() {
        assert_eq!(
            escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
