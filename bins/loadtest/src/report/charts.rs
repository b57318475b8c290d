//! The report's charts, drawn with plotters into SVG strings (no fonts or files needed).

use plotters::coord::Shift;
use plotters::prelude::*;

use super::RunReport;
use crate::error::{Error, Result};

const WIDTH: u32 = 860;
const HEIGHT: u32 = 440;
const FONT: &str = "sans-serif";

/// Tableau's ten colours: distinct, and readable on white.
const COLORS: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

fn color(i: usize) -> RGBColor {
    COLORS[i % COLORS.len()]
}

/// Draws on a fresh SVG canvas and returns the SVG text.
fn draw_svg(
    chart: &'static str,
    draw: impl FnOnce(&DrawingArea<SVGBackend<'_>, Shift>) -> std::result::Result<(), String>,
) -> Result<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        let fail = |reason: String| Error::Chart { chart, reason };
        root.fill(&WHITE).map_err(|e| fail(e.to_string()))?;
        draw(&root).map_err(fail)?;
        root.present().map_err(|e| fail(e.to_string()))?;
    }
    Ok(svg)
}

/// A log-axis range around `values` (positive; `None` when there are none).
fn log_range(values: impl Iterator<Item = f64>) -> Option<std::ops::Range<f64>> {
    let (lo, hi) = values
        .filter(|v| v.is_finite() && *v > 0.0)
        .fold((f64::INFINITY, 0.0f64), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    (hi > 0.0).then(|| (lo / 1.3).max(1e-4)..hi * 1.3)
}

/// Tick values for a log axis over `range`: 1-2-5 steps per decade, or 1-2-3-5-7 when the
/// range is too narrow for three of those (plotters' own log ticks are powers of ten only).
fn log_ticks(range: &std::ops::Range<f64>) -> Vec<f64> {
    let ticks = |mantissas: &[f64]| -> Vec<f64> {
        let first = range.start.log10().floor() as i32;
        let last = range.end.log10().ceil() as i32;
        (first..=last)
            .flat_map(|d| mantissas.iter().map(move |m| m * 10f64.powi(d)))
            .filter(|v| range.contains(v))
            .collect()
    };
    let coarse = ticks(&[1.0, 2.0, 5.0]);
    if coarse.len() >= 3 {
        coarse
    } else {
        ticks(&[1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 7.0])
    }
}

/// Milliseconds with as many decimals as their size needs.
fn format_ms(ms: &f64) -> String {
    match *ms {
        v if v >= 10.0 => format!("{v:.0}"),
        v if v >= 1.0 => format!("{v:.1}"),
        v if v >= 0.1 => format!("{v:.2}"),
        v => format!("{v:.3}"),
    }
}

/// Recall (x) against throughput (y), one point per run labelled by its parameter value:
/// the curve to compare servers and settings by. `None` without at least one recall.
pub fn recall_vs_qps(runs: &[RunReport], k: usize) -> Result<Option<String>> {
    let points: Vec<(f64, f64, String)> = runs
        .iter()
        .filter_map(|r| r.recall.map(|rec| (rec.mean, r.qps, r.label.clone())))
        .collect();
    if points.is_empty() {
        return Ok(None);
    }
    let min_recall = points.iter().map(|p| p.0).fold(1.0f64, f64::min);
    let x_lo = ((min_recall - 0.05) * 20.0).floor() / 20.0;
    // A little room right of 1.0 so that the last point's label is not cut off.
    let x_range = x_lo.max(0.0)..1.0 + (1.0 - x_lo.max(0.0)) * 0.08;
    let y_max = points.iter().map(|p| p.1).fold(0.0f64, f64::max) * 1.15 + 1.0;
    draw_svg("recall versus QPS", |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(format!("Recall@{k} versus throughput"), (FONT, 20))
            .margin(16)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(x_range, 0.0..y_max)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc(format!("recall@{k}"))
            .y_desc("queries per second")
            .x_label_formatter(&|x| {
                if *x <= 1.0 {
                    format!("{x:.2}")
                } else {
                    String::new()
                }
            })
            .y_label_formatter(&|y| format!("{y:.0}"))
            .draw()
            .map_err(|e| e.to_string())?;
        let line = points.iter().map(|p| (p.0, p.1));
        chart
            .draw_series(LineSeries::new(line, color(0).stroke_width(2)))
            .map_err(|e| e.to_string())?;
        chart
            .draw_series(points.iter().map(|(x, y, label)| {
                EmptyElement::at((*x, *y))
                    + Circle::new((0, 0), 4, color(0).filled())
                    + Text::new(label.clone(), (6, -14), (FONT, 12).into_font())
            }))
            .map_err(|e| e.to_string())?;
        Ok(())
    })
    .map(Some)
}

/// The percentiles of each run's latency on a log axis, one line per run.
pub fn latency_percentiles(runs: &[RunReport]) -> Result<Option<String>> {
    const NAMES: [&str; 5] = ["p50", "p90", "p99", "p99.9", "max"];
    let series: Vec<(String, [f64; 5])> = runs
        .iter()
        .filter_map(|r| {
            r.latency.map(|l| {
                (
                    r.label.clone(),
                    [l.p50_ms, l.p90_ms, l.p99_ms, l.p999_ms, l.max_ms],
                )
            })
        })
        .collect();
    let Some(y_range) = log_range(series.iter().flat_map(|(_, v)| v.iter().copied())) else {
        return Ok(None);
    };
    draw_svg("latency percentiles", |root| {
        let mut chart = ChartBuilder::on(root)
            .caption("Latency percentiles", (FONT, 20))
            .margin(16)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(
                (0..NAMES.len() - 1).into_segmented(),
                y_range
                    .clone()
                    .log_scale()
                    .with_key_points(log_ticks(&y_range)),
            )
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .y_desc("milliseconds (log)")
            .x_label_formatter(&|x| match x {
                SegmentValue::Exact(i) | SegmentValue::CenterOf(i) => {
                    NAMES.get(*i).copied().unwrap_or("").to_string()
                }
                SegmentValue::Last => String::new(),
            })
            .y_label_formatter(&format_ms)
            .draw()
            .map_err(|e| e.to_string())?;
        for (i, (label, values)) in series.iter().enumerate() {
            let c = color(i);
            let points: Vec<_> = values
                .iter()
                .enumerate()
                .map(|(x, y)| (SegmentValue::CenterOf(x), *y))
                .collect();
            chart
                .draw_series(LineSeries::new(points.clone(), c.stroke_width(2)))
                .map_err(|e| e.to_string())?
                .label(label.clone())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(2))
                });
            chart
                .draw_series(points.into_iter().map(|p| Circle::new(p, 3, c.filled())))
                .map_err(|e| e.to_string())?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font((FONT, 12))
            .draw()
            .map_err(|e| e.to_string())?;
        Ok(())
    })
    .map(Some)
}

/// p50 (solid) and p99 (dashed) latency of each run over time, by request start.
pub fn latency_over_time(runs: &[RunReport]) -> Result<Option<String>> {
    // (window centre in s, p50 ms, p99 ms) of the windows with at least one success.
    type Windows = Vec<(f64, f64, f64)>;
    let windows = |r: &RunReport| -> Windows {
        r.timeline
            .iter()
            .filter(|w| w.ok > 0)
            .map(|w| (w.start_s + w.width_s / 2.0, w.p50_ms, w.p99_ms))
            .collect()
    };
    let all: Vec<(String, Windows)> = runs.iter().map(|r| (r.label.clone(), windows(r))).collect();
    let Some(y_range) = log_range(
        all.iter()
            .flat_map(|(_, w)| w.iter().flat_map(|p| [p.1, p.2])),
    ) else {
        return Ok(None);
    };
    let t_max = all
        .iter()
        .flat_map(|(_, w)| w.iter().map(|p| p.0))
        .fold(0.0f64, f64::max)
        * 1.05
        + 0.1;
    draw_svg("latency over time", |root| {
        let mut chart = ChartBuilder::on(root)
            .caption("Latency over time (p50 solid, p99 dashed)", (FONT, 20))
            .margin(16)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(
                0.0..t_max,
                y_range
                    .clone()
                    .log_scale()
                    .with_key_points(log_ticks(&y_range)),
            )
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc("seconds since the run began")
            .y_desc("milliseconds (log)")
            .y_label_formatter(&format_ms)
            .draw()
            .map_err(|e| e.to_string())?;
        for (i, (label, points)) in all.iter().enumerate() {
            let c = color(i);
            chart
                .draw_series(LineSeries::new(
                    points.iter().map(|p| (p.0, p.1)),
                    c.stroke_width(2),
                ))
                .map_err(|e| e.to_string())?
                .label(label.clone())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(2))
                });
            chart
                .draw_series(DashedLineSeries::new(
                    points.iter().map(|p| (p.0, p.2)),
                    6,
                    4,
                    c.stroke_width(1),
                ))
                .map_err(|e| e.to_string())?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font((FONT, 12))
            .draw()
            .map_err(|e| e.to_string())?;
        Ok(())
    })
    .map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_ticks_fall_inside_the_range() {
        assert_eq!(log_ticks(&(0.3..30.0)), [0.5, 1.0, 2.0, 5.0, 10.0, 20.0]);
        // Too narrow for 1-2-5: finer steps.
        assert_eq!(log_ticks(&(26.0..60.0)), [30.0, 40.0, 50.0]);
    }
}
