//! The processor's event-time semantics, one behaviour per test: a job runs
//! on a small hand-written input and its output is compared with the
//! expected records written out here.

mod common;

use common::{ev, stderr, t, Job};
use serde_json::{json, Value};

const TUMBLING: &str = "  partitions: 1
  keyField: user
  eventTime: {field: ts, maxOutOfOrderness: 2s}
  window: {tumbling: {size: 10s}}
  aggregations: [{op: count, name: n}, {op: sum, field: amount, name: total}]";

fn agg(n: u64, total: f64) -> Value {
    json!({"n": n, "total": total})
}

#[test]
fn out_of_order_within_the_bound_is_counted_in_its_window() {
    let job = Job::new(
        TUMBLING,
        &[
            ev("a", 1.0, 1.0),
            ev("a", 11.0, 2.0),
            ev("a", 9.0, 4.0),
            ev("a", 13.0, 8.0),
        ],
    );
    job.run();
    assert_eq!(
        job.results(),
        vec![
            json!(["a", 0.0, 10.0, agg(2, 5.0), 1, true]),
            json!(["a", 10.0, 20.0, agg(2, 10.0), 1, true]),
        ]
    );
    assert!(job.lines("late.jsonl").is_empty());
}

#[test]
fn late_within_lateness_emits_revision_two_with_the_same_id() {
    let spec = format!("{TUMBLING}\n  allowedLateness: 5s\n  lateData: output");
    let job = Job::new(
        &spec,
        &[
            ev("a", 1.0, 1.0),
            ev("a", 12.0, 1.0), // watermark 10 s: [0, 10) fires, may still change
            ev("a", 9.0, 5.0),  // late, within the 5 s lateness: revision 2
            ev("a", 17.0, 1.0), // watermark 15 s: lateness over, closing revision
            ev("a", 9.5, 1.0),  // beyond the lateness: late output
        ],
    );
    job.run();
    assert_eq!(
        job.results(),
        vec![
            json!(["a", 0.0, 10.0, agg(1, 1.0), 1, false]),
            json!(["a", 0.0, 10.0, agg(2, 6.0), 2, false]),
            json!(["a", 0.0, 10.0, agg(2, 6.0), 3, true]),
            json!(["a", 10.0, 20.0, agg(2, 2.0), 1, true]),
        ]
    );
    let ids: Vec<Value> = job
        .lines("results.jsonl")
        .iter()
        .map(|r| r["id"].clone())
        .collect();
    assert_eq!(ids[0], ids[1]);
    assert_eq!(ids[1], ids[2]);
    assert_ne!(ids[2], ids[3]);
    let late = job.lines("late.jsonl");
    assert_eq!(late.len(), 1);
    assert_eq!(late[0]["event"]["ts"], t(9.5));
}

#[test]
fn too_late_is_dropped_or_sent_to_the_late_output_and_always_counted() {
    let input = [
        ev("a", 1.0, 1.0),
        ev("a", 14.0, 1.0),
        ev("a", 3.0, 7.0),
        ev("b", 2.0, 1.0),
    ];
    let expected = vec![
        json!(["a", 0.0, 10.0, agg(1, 1.0), 1, true]),
        json!(["a", 10.0, 20.0, agg(1, 1.0), 1, true]),
    ];
    let dropped = Job::new(TUMBLING, &input);
    let out = dropped.run();
    assert_eq!(dropped.results(), expected);
    assert!(dropped.lines("late.jsonl").is_empty());
    let err = stderr(&out);
    assert!(err.contains("2 late, 0 invalid"), "{err}");
    assert!(
        err.contains("partition 0: 2 events, 2 late (lateness p50 9s"),
        "{err}"
    );

    let output = Job::new(&format!("{TUMBLING}\n  lateData: output"), &input);
    output.run();
    assert_eq!(output.results(), expected);
    let late = output.lines("late.jsonl");
    let summary: Vec<(Value, Value, Value)> = late
        .iter()
        .map(|l| {
            (
                l["reason"].clone(),
                l["latenessMs"].clone(),
                l["event"]["user"].clone(),
            )
        })
        .collect();
    // Watermark 12 s: a@3 s is 9 s behind it, b@2 s 10 s.
    assert_eq!(
        summary,
        vec![
            (json!("late"), json!(9_000), json!("a")),
            (json!("late"), json!(10_000), json!("b")),
        ]
    );
    assert_eq!(late[0]["watermark"], t(12.0));
}

#[test]
fn future_timestamps_are_rejected_or_clamped_and_never_drag_the_watermark() {
    let mut future = ev("a", 3600.0, 100.0);
    future["at"] = json!(t(2.0)); // stamped an hour ahead of its ingestion
    let input = [
        ev("a", 1.0, 1.0),
        future,
        ev("a", 5.0, 1.0),
        ev("a", 15.0, 1.0),
    ];
    let spec = |policy: &str| {
        format!(
            "{}\n  lateData: output",
            TUMBLING.replace(
                "maxOutOfOrderness: 2s}",
                &format!("maxOutOfOrderness: 2s, maxFutureSkew: 1m, skewPolicy: {policy}}}")
            )
        )
    };
    let reject = Job::new(&spec("reject"), &input);
    let out = reject.run();
    assert_eq!(
        reject.results(),
        vec![
            json!(["a", 0.0, 10.0, agg(2, 2.0), 1, true]),
            json!(["a", 10.0, 20.0, agg(1, 1.0), 1, true]),
        ],
        "the 5 s event is on time: the future one did not move the watermark"
    );
    let invalid = reject.lines("invalid.jsonl");
    assert_eq!(invalid.len(), 1);
    assert_eq!(
        invalid[0]["reason"],
        format!(
            "event time {} is 59m 58s ahead of ingestion time, beyond maxFutureSkew 1m",
            t(3600.0)
        )
    );
    let err = stderr(&out);
    assert!(err.contains("invalid by reason: future_skew 1"), "{err}");
    assert!(
        err.contains("skew: up to 59m 58s ahead, 1 rejected, 0 clamped"),
        "{err}"
    );

    // Clamped to ingestion + 1 min = 62 s: the watermark may go that far
    // (60 s), never to the hour it claimed, so the 5 s event is late.
    let clamp = Job::new(&spec("clamp"), &input);
    clamp.run();
    assert!(clamp.lines("invalid.jsonl").is_empty());
    assert_eq!(
        clamp.results(),
        vec![
            json!(["a", 0.0, 10.0, agg(1, 1.0), 1, true]),
            json!(["a", 60.0, 70.0, agg(1, 100.0), 1, true]),
        ]
    );
    let late: Vec<Value> = clamp
        .lines("late.jsonl")
        .iter()
        .map(|l| l["event"]["ts"].clone())
        .collect();
    assert_eq!(late, vec![json!(t(5.0)), json!(t(15.0))]);
}

#[test]
fn an_idle_partition_stops_holding_the_watermark_back() {
    let spec = |idle: &str| {
        format!(
            "  partitions: 2
  workers: 1 # one watermark over both partitions
  keyField: user
  eventTime: {{field: ts, maxOutOfOrderness: 0s, idleTimeout: {idle}}}
  window: {{tumbling: {{size: 10s}}}}
  lateData: output
  aggregations: [{{op: count, name: n}}, {{op: sum, field: amount, name: total}}]"
        )
    };
    let p = |partition: u32, user: &str, s: f64| {
        let mut e = ev(user, s, 1.0);
        e["p"] = json!(partition);
        e
    };
    let input = [
        p(1, "b", 1.0),
        p(0, "a", 1.0),
        p(0, "a", 25.0), // partition 1 quiet for 24 s: still holds the watermark at 1 s
        p(0, "a", 35.0), // quiet for 34 s: idle, the watermark jumps to 35 s
        p(0, "a", 5.0),  // so this is late
        p(1, "b", 36.0), // partition 1 rejoins
    ];
    let idle = Job::with_files(&spec("30s"), &[("in.jsonl", &input)], Some("p"));
    idle.run();
    assert_eq!(
        idle.results(),
        vec![
            json!(["a", 0.0, 10.0, agg(1, 1.0), 1, true]),
            json!(["b", 0.0, 10.0, agg(1, 1.0), 1, true]),
            json!(["a", 20.0, 30.0, agg(1, 1.0), 1, true]),
            json!(["a", 30.0, 40.0, agg(1, 1.0), 1, true]),
            json!(["b", 30.0, 40.0, agg(1, 1.0), 1, true]),
        ]
    );
    assert_eq!(idle.lines("late.jsonl").len(), 1);
    // With a long idle timeout partition 1 holds the watermark: a@5 s counts.
    let held = Job::with_files(&spec("1h"), &[("in.jsonl", &input)], Some("p"));
    held.run();
    assert_eq!(
        held.results()[0],
        json!(["a", 0.0, 10.0, agg(2, 2.0), 1, true])
    );
    assert!(held.lines("late.jsonl").is_empty());
}

#[test]
fn sliding_windows_each_hold_the_event() {
    let spec = TUMBLING.replace("tumbling: {size: 10s}", "sliding: {size: 10s, slide: 5s}");
    let job = Job::new(&spec, &[ev("a", 7.0, 1.0), ev("a", 12.0, 2.0)]);
    job.run();
    assert_eq!(
        job.results(),
        vec![
            json!(["a", 0.0, 10.0, agg(1, 1.0), 1, true]),
            json!(["a", 5.0, 15.0, agg(2, 3.0), 1, true]),
            json!(["a", 10.0, 20.0, agg(1, 2.0), 1, true]),
        ]
    );
}

#[test]
fn sessions_merge_within_the_gap_and_split_at_the_maximum_length() {
    let spec = TUMBLING.replace("tumbling: {size: 10s}", "session: {gap: 1s, maxLength: 5s}");
    let mut input = vec![ev("u", 1.0, 1.0), ev("u", 2.5, 1.0), ev("u", 1.8, 1.0)];
    // A bot active every 500 ms for 12 s.
    input.extend((0..24).map(|i| ev("bot", 10.0 + i as f64 * 0.5, 1.0)));
    let job = Job::new(&spec, &input);
    job.run();
    assert_eq!(
        job.results(),
        vec![
            json!(["u", 1.0, 3.5, agg(3, 3.0), 1, true]),
            json!(["bot", 10.0, 15.0, agg(10, 10.0), 1, true]),
            json!(["bot", 15.0, 20.0, agg(10, 10.0), 1, true]),
            json!(["bot", 20.0, 22.5, agg(4, 4.0), 1, true]),
        ]
    );
}

#[test]
fn calendar_days_in_berlin_are_23_and_25_hours_and_utc_days_24() {
    let at = |s: &str| json!({"user": "a", "ts": s, "at": s, "amount": 1.0});
    let input = [
        at("2026-03-29T00:30:00+01:00"),
        at("2026-03-29T23:30:00+02:00"),
        at("2026-10-25T12:00:00+01:00"),
    ];
    let window = |zone: &str| {
        TUMBLING.replace(
            "tumbling: {size: 10s}",
            &format!("calendar: {{unit: day, timeZone: {zone}}}"),
        )
    };
    let berlin = Job::new(&window("Europe/Berlin"), &input);
    berlin.run();
    let bounds = |job: &Job| -> Vec<(Value, Value, Value)> {
        job.lines("results.jsonl")
            .iter()
            .map(|r| {
                (
                    r["window"]["start"].clone(),
                    r["window"]["end"].clone(),
                    r["aggregates"]["n"].clone(),
                )
            })
            .collect()
    };
    assert_eq!(
        bounds(&berlin),
        vec![
            (
                json!("2026-03-28T23:00:00Z"),
                json!("2026-03-29T22:00:00Z"),
                json!(2)
            ),
            (
                json!("2026-10-24T22:00:00Z"),
                json!("2026-10-25T23:00:00Z"),
                json!(1)
            ),
        ]
    );
    let utc = Job::new(&window("UTC"), &input);
    utc.run();
    assert_eq!(
        bounds(&utc),
        vec![
            (
                json!("2026-03-28T00:00:00Z"),
                json!("2026-03-29T00:00:00Z"),
                json!(1)
            ),
            (
                json!("2026-03-29T00:00:00Z"),
                json!("2026-03-30T00:00:00Z"),
                json!(1)
            ),
            (
                json!("2026-10-25T00:00:00Z"),
                json!("2026-10-26T00:00:00Z"),
                json!(1)
            ),
        ]
    );
}

#[test]
fn every_aggregation() {
    let spec = "  partitions: 1
  keyField: user
  eventTime: {field: ts, maxOutOfOrderness: 5s}
  window: {tumbling: {size: 1m}}
  aggregations:
    - {op: count}
    - {op: sum, field: amount}
    - {op: min, field: amount}
    - {op: max, field: amount}
    - {op: avg, field: amount}
    - {op: first, field: page}
    - {op: last, field: page}
    - {op: distinctCount, field: visitor}
    - {op: quantile, field: amount, quantile: 0.5, name: p50}
    - {op: quantile, field: amount, quantile: 0.99, name: p99}";
    let rows = [
        (20.0, 5.0, "/cart", "v1"),
        (10.0, 1.0, "/home", "v2"),
        (40.0, 9.0, "/pay", "v1"),
        (30.0, 1.0, "/list", "v3"),
        (35.0, 7.5, "/item", "v2"),
    ];
    let input: Vec<Value> = rows
        .iter()
        .map(|(s, amount, page, visitor)| {
            json!({"user": "a", "ts": t(*s), "at": t(*s), "amount": amount, "page": page, "visitor": visitor})
        })
        .collect();
    let job = Job::new(spec, &input);
    job.run();
    let results = job.lines("results.jsonl");
    assert_eq!(results.len(), 1);
    let a = &results[0]["aggregates"];
    let raw = String::from_utf8(job.bytes("results.jsonl")).unwrap();
    let names = [
        "count",
        "sum_amount",
        "min_amount",
        "max_amount",
        "avg_amount",
        "first_page",
        "last_page",
        "distinctCount_visitor",
        "p50",
        "p99",
    ];
    let positions: Vec<usize> = names
        .iter()
        .map(|n| raw.find(&format!("\"{n}\":")).unwrap())
        .collect();
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "aggregates appear in spec order: {raw}"
    );
    assert_eq!(a["count"], 5);
    assert_eq!(a["sum_amount"], 23.5);
    assert_eq!(a["min_amount"], 1.0);
    assert_eq!(a["max_amount"], 9.0);
    assert_eq!(a["avg_amount"], 4.7);
    assert_eq!(
        a["first_page"], "/home",
        "earliest event time, not first arrival"
    );
    assert_eq!(a["last_page"], "/pay");
    assert_eq!(a["distinctCount_visitor"], 3);
    let approx = |v: &Value, exact: f64| (v.as_f64().unwrap() - exact).abs() <= exact * 0.02;
    assert!(approx(&a["p50"], 5.0), "{}", a["p50"]);
    // DDSketch ranks at q·(n-1): p99 of five values is the 4th smallest.
    assert!(approx(&a["p99"], 7.5), "{}", a["p99"]);
}

#[test]
fn every_bad_record_kind_goes_to_the_invalid_output_with_a_reason() {
    let good = ev("a", 1.0, 1.0).to_string();
    let huge = format!("{{\"user\":\"a\",\"pad\":\"{}\"}}", "x".repeat(1 << 20));
    let lines = [
        good.clone(),
        "this is not json".to_string(),
        "[1, 2, 3]".to_string(),
        json!({"ts": t(1.0), "at": t(1.0), "amount": 1}).to_string(),
        json!({"user": {"id": 1}, "ts": t(1.0), "at": t(1.0), "amount": 1}).to_string(),
        json!({"user": "a", "at": t(1.0), "amount": 1}).to_string(),
        json!({"user": "a", "ts": 12345, "at": t(1.0), "amount": 1}).to_string(),
        json!({"user": "a", "ts": "last tuesday", "at": t(1.0), "amount": 1}).to_string(),
        json!({"user": "a", "ts": t(1.0), "at": t(1.0), "amount": "NaN"}).to_string(),
        json!({"user": "a", "ts": t(1.0), "at": t(1.0)}).to_string(),
        "{\"user\": \"a\", \"ts\": NaN}".to_string(),
        huge,
        json!({"user": "a", "ts": t(1.0), "amount": 1}).to_string(),
        good,
    ];
    let job = Job::with_text(TUMBLING, &[("in.jsonl", &(lines.join("\n") + "\n"))], None);
    let out = job.run();
    let reasons: Vec<String> = job
        .lines("invalid.jsonl")
        .iter()
        .map(|r| r["reason"].as_str().unwrap().to_string())
        .collect();
    let expected = [
        "not JSON: expected ident at line 1 column 2",
        "record is not a JSON object",
        "missing key field \"user\"",
        "key field \"user\" must be a string or an integer",
        "missing event-time field \"ts\"",
        "event-time field \"ts\" must be an RFC 3339 string",
        "event-time field \"ts\" must be an RFC 3339 string with an offset",
        "field \"amount\" needed by aggregation \"total\" must be a finite number",
        "field \"amount\" needed by aggregation \"total\" must be a finite number",
        "not JSON: expected value at line 1 column 21",
        "record is 1048597 bytes, above the 1048576-byte limit",
        "missing event-time field \"at\"",
    ];
    assert_eq!(reasons, expected);
    let invalid = job.lines("invalid.jsonl");
    assert_eq!(
        invalid[0]["raw"], "this is not json",
        "unparseable lines keep their text"
    );
    assert_eq!(
        invalid[2]["event"]["amount"], 1,
        "parsed records keep the event"
    );
    assert!(
        invalid[10]["raw"].as_str().unwrap().len() < 1000,
        "oversized lines are cut"
    );
    assert_eq!(
        job.results(),
        vec![json!(["a", 0.0, 10.0, agg(2, 2.0), 1, true])]
    );
    let err = stderr(&out);
    assert!(err.contains("14 events"), "{err}");
    assert!(err.contains("12 invalid"), "{err}");
    assert!(
        err.contains("invalid by reason: key_wrong_type 1, missing_key 1, missing_time 2, not_a_number 2, not_an_object 1, not_json 2, time_wrong_type 2, too_large 1"),
        "{err}"
    );
}

#[test]
fn same_input_twice_gives_identical_bytes() {
    let spec = "  partitions: 4
  keyField: user
  eventTime: {field: ts, maxOutOfOrderness: 3s}
  window: {sliding: {size: 20s, slide: 5s}}
  allowedLateness: 10s
  lateData: output
  aggregations:
    - {op: count}
    - {op: sum, field: amount}
    - {op: first, field: amount}
    - {op: distinctCount, field: amount}
    - {op: quantile, field: amount, quantile: 0.9}";
    // A scrambled stream: out of order, some late, some very late.
    let input: Vec<Value> = (0..20_000u64)
        .map(|i| {
            let jitter = (i * 7919 % 4000) as f64 / 1000.0;
            let late = if i % 97 == 0 {
                12.0
            } else if i % 89 == 0 {
                40.0
            } else {
                0.0
            };
            let s = i as f64 * 0.01 - jitter - late;
            ev(
                &format!("u{}", i * 31 % 53),
                s.max(0.0),
                (i % 100) as f64 / 4.0,
            )
        })
        .collect();
    let a = Job::new(spec, &input);
    let b = Job::new(spec, &input);
    a.run();
    b.run();
    for file in ["results.jsonl", "late.jsonl"] {
        assert!(!a.bytes(file).is_empty(), "{file} is empty");
        assert_eq!(a.bytes(file), b.bytes(file), "{file} differs");
    }
    let revised = a
        .lines("results.jsonl")
        .iter()
        .filter(|r| r["revision"].as_u64() > Some(1))
        .count();
    assert!(revised > 0, "the input exercises revisions");
}

#[test]
fn no_window_state_is_left_in_rocksdb_after_the_watermark_passes() {
    let spec =
        format!("{TUMBLING}\n  allowedLateness: 5s").replace("partitions: 1", "partitions: 3");
    let input: Vec<Value> = (0..3000)
        .map(|i| ev(&format!("k{}", i % 100), i as f64 * 0.1, 1.0))
        .collect();
    let job = Job::new(&spec, &input);
    let state = job.path("state");
    job.run_with(&["--state-dir", state.to_str().unwrap()]);
    // 100 keys with an event every 10 s for 300 s: 30 windows each, every
    // one closed with a final revision.
    assert_eq!(
        job.results().iter().filter(|r| r[5] == json!(true)).count(),
        3000
    );
    // One RocksDB instance per partition, each left empty: every key's
    // windows were deleted once the watermark passed end + lateness (the
    // last ones at the end of input).
    for name in ["p0", "p1", "p2"] {
        let path = state.join(name);
        let db =
            rocksdb::DB::open_for_read_only(&rocksdb::Options::default(), &path, false).unwrap();
        let left = db.iterator(rocksdb::IteratorMode::Start).count();
        assert_eq!(left, 0, "{name} still holds {left} keys");
    }
}
