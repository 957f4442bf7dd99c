//! The exposition's text, by value.

use super::*;

#[test]
fn label_values_are_escaped() {
    let mut w = String::new();
    sample(
        &mut w,
        "m",
        &[("model", "a\"b\\c\nd"), ("deployment", "plain")],
        1.0,
    );
    assert_eq!(w, "m{model=\"a\\\"b\\\\c\\nd\",deployment=\"plain\"} 1\n");
}

#[test]
fn histogram_buckets_are_cumulative_and_upper_inclusive() {
    let h = Histogram::new(&[0.1, 1.0]);
    for v in [0.05, 0.1, 0.5, 1.0, 7.0] {
        h.observe(v);
    }
    let mut w = String::new();
    histogram(&mut w, "h", &[("d", "x")], &h);
    assert_eq!(
        w,
        "h_bucket{d=\"x\",le=\"0.1\"} 2\n\
         h_bucket{d=\"x\",le=\"1\"} 4\n\
         h_bucket{d=\"x\",le=\"+Inf\"} 5\n\
         h_sum{d=\"x\"} 8.65\n\
         h_count{d=\"x\"} 5\n"
    );
}

#[test]
fn an_empty_histogram_writes_nothing() {
    let mut w = String::new();
    histogram(&mut w, "h", &[], &Histogram::new(ATTEMPT_BUCKETS));
    assert_eq!(w, "");
}

#[test]
fn values_are_written_as_prometheus_reads_them() {
    assert_eq!(format_value(0.005), "0.005");
    assert_eq!(format_value(120.0), "120");
    assert_eq!(format_value(f64::INFINITY), "+Inf");
    assert_eq!(format_value(0.0001), "0.0001");
}

#[test]
fn float_counter_adds() {
    let c = FloatCounter::default();
    c.add(0.25);
    c.add(0.5);
    assert_eq!(c.get(), 0.75);
}

#[test]
fn every_value_lands_in_the_bucket_a_search_of_the_bounds_finds() {
    for bounds in [LATENCY_BUCKETS, OVERHEAD_BUCKETS, ATTEMPT_BUCKETS] {
        let mut values = vec![-1.0, 0.0, f64::NAN, f64::INFINITY, 1e9];
        for b in bounds {
            values.extend([*b, b * 0.999, b * 1.001]);
        }
        for v in values {
            let h = Histogram::new(bounds);
            h.observe(v);
            let (counts, _) = h.snapshot();
            let at = counts.iter().position(|c| *c == 1).unwrap();
            assert_eq!(at, bounds.partition_point(|b| *b < v), "{v} in {bounds:?}");
        }
    }
}
