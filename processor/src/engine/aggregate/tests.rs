use serde_json::json;

use super::*;

fn f(name: &str) -> String {
    name.to_string()
}

/// Runs `agg` over (time, record) pairs and returns the result.
fn run(agg: &Aggregate, events: &[(i64, Value)]) -> Value {
    let mut acc = agg.empty();
    for (t, record) in events {
        let input = agg.input(record, "x").unwrap();
        acc.add(&input, *t);
    }
    agg.result(&acc)
}

fn amounts(values: &[f64]) -> Vec<(i64, Value)> {
    values
        .iter()
        .enumerate()
        .map(|(i, v)| (i as i64, json!({"a": v})))
        .collect()
}

#[test]
fn count_sum_min_max_avg() {
    let events = amounts(&[4.0, -1.5, 10.25, 3.0]);
    assert_eq!(run(&Aggregate::Count, &events), json!(4));
    assert_eq!(
        run(&Aggregate::Sum { field: f("a") }, &events),
        json!(15.75)
    );
    assert_eq!(run(&Aggregate::Min { field: f("a") }, &events), json!(-1.5));
    assert_eq!(
        run(&Aggregate::Max { field: f("a") }, &events),
        json!(10.25)
    );
    assert_eq!(
        run(&Aggregate::Avg { field: f("a") }, &events),
        json!(3.9375)
    );
}

#[test]
fn sum_of_cents_prints_exactly() {
    let events = amounts(&[0.1; 10_000]);
    let naive: f64 = (0..10_000).map(|_| 0.1).sum();
    assert_ne!(naive, 1000.0, "the naive sum drifts");
    assert_eq!(
        run(&Aggregate::Sum { field: f("a") }, &events),
        json!(1000.0)
    );
}

#[test]
fn first_and_last_go_by_event_time_not_arrival() {
    let events = vec![
        (20, json!({"page": "b"})),
        (10, json!({"page": "a"})),
        (30, json!({"page": "c"})),
        (25, json!({"page": "x"})),
    ];
    assert_eq!(
        run(&Aggregate::First { field: f("page") }, &events),
        json!("a")
    );
    assert_eq!(
        run(&Aggregate::Last { field: f("page") }, &events),
        json!("c")
    );
}

#[test]
fn first_and_last_break_ties_by_value_whatever_the_order() {
    let forward = vec![
        (10, json!({"p": "m"})),
        (10, json!({"p": "z"})),
        (10, json!({"p": "a"})),
    ];
    let mut backward = forward.clone();
    backward.reverse();
    for events in [&forward, &backward] {
        assert_eq!(run(&Aggregate::First { field: f("p") }, events), json!("a"));
        assert_eq!(run(&Aggregate::Last { field: f("p") }, events), json!("z"));
    }
}

#[test]
fn first_keeps_structured_values() {
    let events = vec![(5, json!({"p": {"id": 1, "tags": ["x"]}}))];
    assert_eq!(
        run(&Aggregate::First { field: f("p") }, &events),
        json!({"id": 1, "tags": ["x"]})
    );
}

#[test]
fn distinct_count_is_exact_when_small_and_close_when_large() {
    let small: Vec<_> = ["u1", "u2", "u1", "u3", "u2"]
        .iter()
        .map(|u| (0, json!({"user": u})))
        .collect();
    let agg = Aggregate::DistinctCount { field: f("user") };
    assert_eq!(run(&agg, &small), json!(3));
    let large: Vec<_> = (0..100_000)
        .map(|i| (0, json!({"user": i % 20_000})))
        .collect();
    let estimate = run(&agg, &large).as_u64().unwrap();
    assert!((19_000..=21_000).contains(&estimate), "{estimate}");
}

#[test]
fn quantiles_are_within_one_percent() {
    let events: Vec<_> = (1..=10_000).map(|i| (0, json!({"ms": i}))).collect();
    for (q, exact) in [(0.5, 5_000.0), (0.99, 9_900.0)] {
        let agg = Aggregate::Quantile { field: f("ms"), q };
        let got = run(&agg, &events).as_f64().unwrap();
        assert!(
            (got - exact).abs() / exact <= 0.011,
            "p{q}: {got} vs {exact}"
        );
    }
}

/// One aggregate of every kind, over field `a`.
fn every_kind() -> [Aggregate; 9] {
    [
        Aggregate::Count,
        Aggregate::Sum { field: f("a") },
        Aggregate::Min { field: f("a") },
        Aggregate::Max { field: f("a") },
        Aggregate::Avg { field: f("a") },
        Aggregate::First { field: f("a") },
        Aggregate::Last { field: f("a") },
        Aggregate::DistinctCount { field: f("a") },
        Aggregate::Quantile {
            field: f("a"),
            q: 0.9,
        },
    ]
}

#[test]
fn merged_partials_equal_one_pass() {
    let events = amounts(&[5.0, 1.0, 9.0, 1.0, 7.5, 3.25, 8.0]);
    for agg in &every_kind() {
        let mut left = agg.empty();
        let mut right = agg.empty();
        for (i, (t, r)) in events.iter().enumerate() {
            let input = agg.input(r, "x").unwrap();
            if i % 2 == 0 {
                left.add(&input, *t)
            } else {
                right.add(&input, *t)
            }
        }
        left.merge(&right);
        assert_eq!(agg.result(&left), run(agg, &events), "{agg:?}");
    }
}

#[test]
fn accumulators_survive_serialization() {
    let agg = Aggregate::Quantile {
        field: f("a"),
        q: 0.5,
    };
    let mut acc = agg.empty();
    for x in [1.0, 2.0, 3.0] {
        acc.add(&Input::Number(x), 0);
    }
    let bytes = postcard::to_allocvec(&acc).unwrap();
    let back: Acc = postcard::from_bytes(&bytes).unwrap();
    assert_eq!(agg.result(&back), agg.result(&acc));
    let distinct = Aggregate::DistinctCount { field: f("a") };
    let mut acc = distinct.empty();
    for u in ["a", "b", "c"] {
        acc.add(&Input::Json(u.into()), 0);
    }
    let back: Acc = postcard::from_bytes(&postcard::to_allocvec(&acc).unwrap()).unwrap();
    assert_eq!(distinct.result(&back), json!(3));
}

#[test]
fn bad_inputs_get_reasons() {
    let sum = Aggregate::Sum { field: f("a") };
    for record in [
        json!({}),
        json!({"a": "12"}),
        json!({"a": null}),
        json!({"a": "NaN"}),
    ] {
        assert_eq!(
            sum.input(&record, "total").unwrap_err().to_string(),
            "field \"a\" needed by aggregation \"total\" must be a finite number"
        );
    }
    let first = Aggregate::First { field: f("a") };
    assert_eq!(
        first
            .input(&json!({"b": 1}), "first_a")
            .unwrap_err()
            .to_string(),
        "field \"a\" needed by aggregation \"first_a\" is missing"
    );
}

#[test]
fn an_aggregate_holds_its_own_kind_of_accumulator_only() {
    let all = every_kind();
    for (i, aggregate) in all.iter().enumerate() {
        for (j, other) in all.iter().enumerate() {
            assert_eq!(aggregate.holds(&other.empty()), i == j, "{i} {j}");
        }
    }
}
