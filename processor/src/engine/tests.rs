//! Engine behaviour on small hand-written inputs.

use serde_json::json;

use super::*;

fn engine() -> Engine {
    Engine::new(EngineConfig {
        partitions: 4,
        window_size_ms: 10_000,
        max_out_of_orderness_ms: 2_000,
        aggregates: vec![
            ("n".into(), Aggregate::Count),
            (
                "total".into(),
                Aggregate::Sum {
                    field: "amount".into(),
                },
            ),
        ],
    })
}

fn ev(key: &str, time_ms: i64, amount: f64) -> Event {
    Event {
        key: key.into(),
        time_ms,
        record: json!({"k": key, "amount": amount}),
    }
}

/// (key, start, count, sum) of each result, in output order.
fn summary(results: &[WindowResult]) -> Vec<(String, i64, Value, Value)> {
    results
        .iter()
        .map(|r| {
            (
                r.key.clone(),
                r.window.start,
                r.aggregates[0].1.clone(),
                r.aggregates[1].1.clone(),
            )
        })
        .collect()
}

#[test]
fn out_of_order_within_bound_is_counted_in_its_window() {
    let mut e = engine();
    let mut out = Vec::new();
    for event in [
        ev("a", 1_000, 1.0),
        ev("a", 9_000, 2.0),
        ev("a", 11_000, 4.0),
    ] {
        assert_eq!(e.process(&event), Outcome::Accepted);
    }
    e.fire(&mut out);
    assert!(out.is_empty(), "watermark 9000 must not close [0,10000)");
    // 8 s old, but the watermark (9000) has not passed the window's end.
    assert_eq!(e.process(&ev("a", 5_000, 8.0)), Outcome::Accepted);
    assert_eq!(e.process(&ev("a", 12_500, 1.0)), Outcome::Accepted);
    e.fire(&mut out);
    assert_eq!(summary(&out), vec![("a".into(), 0, json!(3), json!(11.0))]);
}

#[test]
fn event_for_a_fired_window_is_late_with_its_lateness() {
    let mut e = engine();
    let mut out = Vec::new();
    e.process(&ev("a", 1_000, 1.0));
    e.process(&ev("a", 13_000, 1.0)); // watermark 11000 closes [0,10000)
    e.fire(&mut out);
    assert_eq!(out.len(), 1);
    assert_eq!(
        e.process(&ev("a", 9_500, 1.0)),
        Outcome::Late {
            lateness_ms: 1_500,
            watermark: 11_000
        }
    );
}

#[test]
fn windows_fire_in_end_then_key_order() {
    let mut e = engine();
    let mut out = Vec::new();
    for event in [
        ev("b", 1_000, 1.0),
        ev("a", 2_000, 1.0),
        ev("c", 15_000, 1.0),
        ev("a", 30_000, 1.0),
    ] {
        e.process(&event);
    }
    e.fire(&mut out);
    let order: Vec<_> = out
        .iter()
        .map(|r| (r.key.as_str(), r.window.start))
        .collect();
    assert_eq!(order, vec![("a", 0), ("b", 0), ("c", 10_000)]);
    out.clear();
    e.fire_all(&mut out);
    assert_eq!(
        summary(&out),
        vec![("a".into(), 30_000, json!(1), json!(1.0))]
    );
    assert_eq!(e.open_windows(), 0);
}

#[test]
fn bad_aggregate_input_is_invalid_and_leaves_state_untouched() {
    let mut e = engine();
    let bad = Event {
        key: "a".into(),
        time_ms: 1_000,
        record: json!({"amount": "lots"}),
    };
    assert!(matches!(e.process(&bad), Outcome::Invalid(_)));
    assert_eq!(e.open_windows(), 0);
    assert_eq!(
        e.watermark(),
        i64::MIN,
        "an invalid event must not move the watermark"
    );
}

#[test]
fn partitions_are_stable_and_in_range() {
    assert_eq!(partition_of("key-1", 8), partition_of("key-1", 8));
    let hit: std::collections::BTreeSet<u32> = (0..1000)
        .map(|i| partition_of(&format!("key-{i}"), 8))
        .collect();
    assert_eq!(hit, (0..8).collect());
    // Pinned: changing the hash would move every key's state.
    assert_eq!(partition_of("key-1", 1 << 31), 1_795_303_929);
}
