//! Latency histogram and timeline arithmetic against hand-computed cases.

use std::time::Duration;

use loadtest::latency::{LatencyHistogram, Recorder, RequestErrorKind, Timeline};

fn micros(values: impl IntoIterator<Item = u64>) -> LatencyHistogram {
    let mut h = LatencyHistogram::default();
    for v in values {
        h.record(Duration::from_micros(v));
    }
    h
}

#[test]
fn nearest_rank_percentiles_of_one_to_a_thousand_microseconds() {
    // Below 2048 µs every microsecond has its own bucket, so the figures are exact.
    // Nearest rank: p50 of 1..=1000 is the 500th value, p90 the 900th, p99 the 990th,
    // p99.9 the 999th.
    let s = micros(1..=1000).summary().unwrap();
    assert_eq!(s.count, 1000);
    assert_eq!(s.min_ms, 0.001);
    assert_eq!(s.p50_ms, 0.5);
    assert_eq!(s.p90_ms, 0.9);
    assert_eq!(s.p99_ms, 0.99);
    assert_eq!(s.p999_ms, 0.999);
    assert_eq!(s.max_ms, 1.0);
    assert!((s.mean_ms - 0.5005).abs() < 1e-9, "mean {}", s.mean_ms);
}

#[test]
fn ranks_round_up() {
    // Three samples: p50 needs ceil(1.5) = 2 samples at or below it, so it is the middle one;
    // p90 needs ceil(2.7) = 3, the largest.
    let h = micros([100, 200, 300]);
    assert_eq!(h.quantile_ms(0.5), 0.2);
    assert_eq!(h.quantile_ms(0.9), 0.3);
    // A single sample is every percentile.
    let s = micros([42]).summary().unwrap();
    assert_eq!(
        (s.p50_ms, s.p999_ms, s.max_ms, s.mean_ms),
        (0.042, 0.042, 0.042, 0.042)
    );
}

#[test]
fn a_slow_tail_shows_in_the_high_percentiles_only() {
    // 990 fast answers of 1 ms and 10 slow ones of 1 s: p99 is still fast (the 990th sample),
    // p99.9 (the 999th) and max are slow.
    let mut h = LatencyHistogram::default();
    for _ in 0..990 {
        h.record(Duration::from_millis(1));
    }
    for _ in 0..10 {
        h.record(Duration::from_secs(1));
    }
    let s = h.summary().unwrap();
    assert_eq!(s.p50_ms, 1.0);
    assert_eq!(s.p99_ms, 1.0);
    // Above 2048 µs values are kept to 3 significant figures: within 0.1% above.
    assert!(
        (1000.0..=1001.0).contains(&s.p999_ms),
        "p99.9 {}",
        s.p999_ms
    );
    assert!((1000.0..=1001.0).contains(&s.max_ms), "max {}", s.max_ms);
    // Mean = (990 × 1 + 10 × 1000) / 1000 = 10.99 ms.
    assert!((s.mean_ms - 10.99).abs() < 0.01, "mean {}", s.mean_ms);
}

#[test]
fn merging_equals_recording_everything_in_one() {
    let mut a = micros(1..=500);
    let b = micros(501..=1000);
    a.merge(&b);
    assert_eq!(a.summary(), micros(1..=1000).summary());
}

#[test]
fn empty_histograms_have_no_summary() {
    assert!(LatencyHistogram::default().summary().is_none());
    assert_eq!(LatencyHistogram::default().quantile_ms(0.99), 0.0);
}

#[test]
fn timeline_windows_group_by_start_time() {
    let mut t = Timeline::default();
    // Window 0 (0-100 ms): 1 ms and 3 ms. Window 2 (200-300 ms): 10 ms and an error.
    t.record_ok(Duration::from_millis(10), Duration::from_millis(1));
    t.record_ok(Duration::from_millis(99), Duration::from_millis(3));
    t.record_ok(Duration::from_millis(250), Duration::from_millis(10));
    t.record_error(Duration::from_millis(260));
    let p = t.points();
    assert_eq!(p.len(), 3);
    // Windows keep two significant figures (1% above at most): 1 ms reads 1.00 to 1.01.
    assert_eq!((p[0].ok, p[0].errors), (2, 0));
    assert!((1.0..=1.01).contains(&p[0].p50_ms), "{}", p[0].p50_ms);
    assert!((3.0..=3.03).contains(&p[0].max_ms), "{}", p[0].max_ms);
    assert_eq!((p[1].ok, p[1].errors), (0, 0));
    assert_eq!((p[2].ok, p[2].errors), (1, 1));
    assert!((p[2].start_s - 0.2).abs() < 1e-12 && (p[2].width_s - 0.1).abs() < 1e-12);
    assert!((10.0..=10.1).contains(&p[2].p99_ms), "{}", p[2].p99_ms);
}

#[test]
fn recorder_counts_errors_by_kind() {
    let mut r = Recorder::default();
    r.record_ok(Duration::ZERO, Duration::from_millis(2));
    r.record_error(Duration::ZERO, RequestErrorKind::Status(503));
    r.record_error(Duration::ZERO, RequestErrorKind::Status(503));
    r.record_error(Duration::ZERO, RequestErrorKind::Timeout);
    r.add_errors(RequestErrorKind::Unsent, 4);
    r.add_errors(RequestErrorKind::BadBody, 0);
    assert_eq!(r.error_count(), 7);
    let names: Vec<(String, u64)> = r.errors_by_name().into_iter().collect();
    assert_eq!(
        names,
        [
            ("http_503".to_string(), 2),
            ("timeout".to_string(), 1),
            ("unsent".to_string(), 4)
        ]
    );
    assert_eq!(r.latency.count(), 1);
}
