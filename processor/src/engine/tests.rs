//! Engine behaviour on small hand-written inputs, one test per behaviour.

use jiff::tz::TimeZone;
use serde_json::{json, Value};

use super::{aggregate::Aggregate, window::Assigner, *};
use crate::{
    event::{Event, Record},
    state::StateStore,
};

pub(super) struct Harness {
    pub(super) engine: Engine,
    pub(super) out: Vec<WindowResult>,
    _dir: tempfile::TempDir,
}

pub(super) fn config(windows: WindowKind) -> EngineConfig {
    EngineConfig {
        partitions: vec![0],
        windows,
        max_out_of_orderness_ms: 2_000,
        idle_timeout_ms: 60_000,
        allowed_lateness_ms: 0,
        aggregates: vec![
            ("n".into(), Aggregate::Count),
            (
                "total".into(),
                Aggregate::Sum {
                    field: "amount".into(),
                },
            ),
        ],
        state_ttl_ms: 86_400_000,
        top_k: 5,
        hot_key_span_ms: 60_000,
        cache_keys: 1_000,
        flush_every_events: 10_000,
        stage: crate::partials::Stage::Single,
    }
}

pub(super) fn tumbling(size: i64) -> WindowKind {
    WindowKind::Fixed(Assigner::Tumbling { size })
}

impl Harness {
    pub(super) fn new(config: EngineConfig) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open(dir.path(), &config.partitions, 64 << 20).unwrap();
        Self {
            engine: Engine::new(config, store),
            out: Vec::new(),
            _dir: dir,
        }
    }

    /// Sends an event in partition 0, using its time as the ingestion clock,
    /// then advances the watermark.
    fn send(&mut self, key: &str, time_ms: i64, amount: f64) -> Outcome {
        self.send_in(0, key, time_ms, amount, time_ms)
    }

    fn send_in(
        &mut self,
        partition: u32,
        key: &str,
        time_ms: i64,
        amount: f64,
        clock: i64,
    ) -> Outcome {
        let event = Event {
            key: key.into(),
            time_ms,
            record: Record::Json(json!({"amount": amount})),
        };
        let outcome = self.engine.process(partition, &event, clock).unwrap();
        self.engine.advance(clock, &mut self.out).unwrap();
        outcome
    }

    /// Keys RocksDB holds for a partition.
    fn stored_keys(&self, partition: u32) -> Vec<String> {
        let rows = self.engine.store().scan(partition).unwrap();
        rows.into_iter().map(|(k, _)| k).collect()
    }

    fn finish(&mut self) {
        self.engine.finish(&mut self.out).unwrap();
    }

    /// (key, start, end, n, total, revision, final) of each result so far.
    fn results(&mut self) -> Vec<(String, i64, i64, Value, Value, u32, bool)> {
        self.out
            .drain(..)
            .map(|r| {
                (
                    r.key.into_string(),
                    r.window.start,
                    r.window.end,
                    r.aggregates[0].clone(),
                    r.aggregates[1].clone(),
                    r.revision,
                    r.is_final,
                )
            })
            .collect()
    }
}

fn r(
    key: &str,
    start: i64,
    end: i64,
    n: u64,
    total: f64,
    rev: u32,
    fin: bool,
) -> (String, i64, i64, Value, Value, u32, bool) {
    (key.into(), start, end, json!(n), json!(total), rev, fin)
}

#[test]
fn out_of_order_within_the_bound_lands_in_its_window() {
    let mut h = Harness::new(config(tumbling(10_000)));
    h.send("a", 1_000, 1.0);
    h.send("a", 11_000, 2.0); // watermark 9 000: [0, 10 000) still open
    assert_eq!(h.send("a", 9_500, 4.0), Outcome::Accepted);
    h.send("a", 12_500, 8.0); // watermark 10 500: fires [0, 10 000)
    assert_eq!(h.results(), vec![r("a", 0, 10_000, 2, 5.0, 1, true)]);
    h.finish();
    assert_eq!(h.results(), vec![r("a", 10_000, 20_000, 2, 10.0, 1, true)]);
}

#[test]
fn too_late_without_lateness_is_late_with_its_lateness() {
    let mut h = Harness::new(config(tumbling(10_000)));
    h.send("a", 1_000, 1.0);
    h.send("a", 13_000, 1.0); // watermark 11 000
    assert_eq!(
        h.send("a", 9_000, 1.0),
        Outcome::Late {
            lateness_ms: 2_000,
            watermark: 11_000
        }
    );
    let stats = &h.engine.stats()[0];
    assert_eq!(stats.late, 1);
    let p50 = stats.lateness_quantile(0.5).unwrap();
    assert!(
        (p50 - 2_000.0).abs() <= 20.0,
        "{p50}: DDSketch is accurate to 1%"
    );
}

#[test]
fn late_within_lateness_emits_revision_two_then_closes() {
    let mut c = config(tumbling(10_000));
    c.allowed_lateness_ms = 5_000;
    let mut h = Harness::new(c);
    h.send("a", 1_000, 1.0);
    h.send("a", 12_000, 1.0); // watermark 10 000: fires rev 1, not final
    assert_eq!(h.results(), vec![r("a", 0, 10_000, 1, 1.0, 1, false)]);
    assert_eq!(h.send("a", 9_000, 5.0), Outcome::Accepted); // late, within 5 s
    assert_eq!(h.results(), vec![r("a", 0, 10_000, 2, 6.0, 2, false)]);
    // Watermark reaches end + lateness: closing revision, final.
    h.send("a", 17_000, 1.0);
    assert_eq!(h.results(), vec![r("a", 0, 10_000, 2, 6.0, 3, true)]);
    // Now beyond the lateness.
    assert!(matches!(h.send("a", 9_999, 1.0), Outcome::Late { .. }));
    assert_eq!(h.engine.stats()[0].late_updates, 1);
}

/// The first stage of a two-phase job sends a window's closing revision
/// too, though it repeats the last one: final, it outranks every partial
/// of the window, so it repairs the merge stage's copy when a replay after
/// a restart numbered the window's revisions differently (see the merge
/// tests).
#[test]
fn the_first_stage_sends_the_closing_revision() {
    let mut c = config(tumbling(10_000));
    c.allowed_lateness_ms = 5_000;
    c.stage = crate::partials::Stage::Partial;
    let mut h = Harness::new(c);
    h.send("a", 1_000, 1.0);
    h.send("a", 12_000, 1.0);
    assert_eq!(h.results(), vec![r("a", 0, 10_000, 1, 1.0, 1, false)]);
    h.send("a", 9_000, 5.0);
    assert_eq!(h.results(), vec![r("a", 0, 10_000, 2, 6.0, 2, false)]);
    h.send("a", 17_000, 1.0);
    let closing = std::mem::take(&mut h.out);
    assert_eq!(closing.len(), 1);
    assert!(closing[0].is_final && closing[0].partial.is_some());
    assert_eq!(closing[0].revision, 3);
}

/// A window created when the watermark has already passed its end (the
/// allowed lateness still takes it) fires with that event: the remembered
/// earliest due time of the timers must take its fire timer in.
#[test]
fn a_window_created_past_the_watermark_fires_at_once() {
    let mut c = config(tumbling(10_000));
    c.allowed_lateness_ms = 5_000;
    let mut h = Harness::new(c);
    h.send("a", 1_000, 1.0);
    h.send("a", 12_000, 1.0); // watermark 10 000: a's first window fires
    assert_eq!(h.results(), vec![r("a", 0, 10_000, 1, 1.0, 1, false)]);
    h.send("a", 12_500, 1.0); // nothing due: the earliest is remembered
    assert_eq!(h.results(), vec![]);
    // b's first event is behind the watermark, within the lateness.
    assert_eq!(h.send("b", 9_000, 2.0), Outcome::Accepted);
    assert_eq!(h.results(), vec![r("b", 0, 10_000, 1, 2.0, 1, false)]);
}

#[test]
fn sliding_windows_each_get_the_event() {
    let mut h = Harness::new(config(WindowKind::Fixed(Assigner::Sliding {
        size: 10_000,
        slide: 5_000,
    })));
    h.send("a", 7_000, 1.0);
    h.send("a", 12_000, 2.0);
    h.finish();
    assert_eq!(
        h.results(),
        vec![
            r("a", 0, 10_000, 1, 1.0, 1, true),
            r("a", 5_000, 15_000, 2, 3.0, 1, true),
            r("a", 10_000, 20_000, 1, 2.0, 1, true),
        ]
    );
}

#[test]
fn sessions_merge_across_the_gap_and_split_at_max_length() {
    let mut h = Harness::new(config(WindowKind::Session {
        gap: 1_000,
        max_length: 5_000,
    }));
    // Two sessions 1.5 s apart, then an out-of-order event bridging them.
    h.send("u", 1_000, 1.0);
    h.send("u", 2_500, 1.0);
    h.send("u", 1_800, 1.0);
    // A bot: an event every 500 ms from 10 s to 22 s.
    for t in (10_000..22_000).step_by(500) {
        h.send("bot", t, 1.0);
    }
    h.finish();
    let results = h.results();
    assert_eq!(results[0], r("u", 1_000, 3_500, 3, 3.0, 1, true));
    let bot: Vec<_> = results
        .iter()
        .filter(|x| x.0 == "bot")
        .map(|x| (x.1, x.2, x.3.clone()))
        .collect();
    assert_eq!(
        bot,
        vec![
            (10_000, 15_000, json!(10)),
            (15_000, 20_000, json!(10)),
            (20_000, 22_500, json!(4)),
        ]
    );
}

#[test]
fn calendar_days_in_berlin_have_their_true_length() {
    let berlin = TimeZone::get("Europe/Berlin").unwrap();
    let mut h = Harness::new(config(WindowKind::Fixed(Assigner::Calendar {
        unit: eddy_api::spec::CalendarUnit::Day,
        tz: berlin,
    })));
    let t = |s: &str| s.parse::<jiff::Timestamp>().unwrap().as_millisecond();
    h.send("a", t("2026-03-29T00:30:00+01:00"), 1.0);
    h.send("a", t("2026-03-29T23:30:00+02:00"), 1.0);
    h.send("a", t("2026-10-25T12:00:00+01:00"), 1.0);
    h.finish();
    let lengths: Vec<i64> = h
        .results()
        .iter()
        .map(|x| (x.2 - x.1) / 3_600_000)
        .collect();
    assert_eq!(lengths, vec![23, 25]);
}

#[test]
fn idle_partition_stops_holding_the_watermark() {
    let mut c = config(tumbling(10_000));
    c.partitions = vec![0, 1];
    c.idle_timeout_ms = 30_000;
    c.max_out_of_orderness_ms = 0;
    let mut h = Harness::new(c);
    h.send_in(1, "b", 1_000, 1.0, 1_000);
    h.send_in(0, "a", 1_000, 1.0, 1_000);
    // Partition 1 goes quiet; partition 0 moves to 25 s (clock too).
    h.send_in(0, "a", 25_000, 1.0, 25_000);
    assert_eq!(h.engine.watermark(), 1_000, "partition 1 still holds it");
    h.send_in(0, "a", 35_000, 1.0, 35_000);
    assert_eq!(h.engine.watermark(), 35_000, "partition 1 idle after 30 s");
    let fired: Vec<_> = h.results().iter().map(|x| (x.0.clone(), x.1)).collect();
    assert_eq!(
        fired,
        vec![("a".into(), 0), ("b".into(), 0), ("a".into(), 20_000)]
    );
}

#[test]
fn state_of_closed_windows_is_deleted_from_rocksdb() {
    let mut h = Harness::new(config(tumbling(10_000)));
    for i in 0..50 {
        h.send(&format!("k{i}"), 1_000, 1.0);
    }
    h.engine.flush().unwrap();
    assert_eq!(h.engine.store().scan(0).unwrap().len(), 50);
    // The watermark passes the end of [0, 10 000) for every key but one.
    h.send("late-key", 15_000, 1.0);
    h.engine.flush().unwrap();
    let keys = h.stored_keys(0);
    assert_eq!(keys, vec!["late-key"], "only the open window's key is left");
    h.finish();
    assert!(h.engine.store().scan(0).unwrap().is_empty());
}

#[test]
fn ttl_expires_keys_whose_windows_never_close() {
    let mut c = config(tumbling(10_000));
    c.partitions = vec![0, 1];
    c.state_ttl_ms = 5_000;
    c.idle_timeout_ms = i64::MAX / 4; // partition 1 never idle: nothing fires
    let mut h = Harness::new(c);
    h.send_in(1, "held", 0, 1.0, 0);
    h.send_in(0, "stale", 1_000, 1.0, 1_000);
    h.send_in(0, "fresh", 20_000, 1.0, 20_000);
    assert_eq!(
        h.engine.counters().expired_windows,
        2,
        "stale and held expired"
    );
    h.engine.flush().unwrap();
    let keys = h.stored_keys(0);
    assert_eq!(keys, vec!["fresh"]);
    assert!(h.engine.store().scan(1).unwrap().is_empty());
}

/// Keys that arrive after the engine found no TTL check at all (an
/// advance before the first event, as an idle source gives) are still
/// checked: their checks join the remembered earliest due time.
#[test]
fn keys_after_an_advance_without_any_are_checked_against_the_ttl() {
    let mut c = config(tumbling(10_000));
    c.partitions = vec![0, 1];
    c.state_ttl_ms = 5_000;
    c.idle_timeout_ms = i64::MAX / 4; // partition 1 never idle: nothing fires
    let mut h = Harness::new(c);
    h.engine.advance(0, &mut h.out).unwrap();
    h.send_in(1, "held", 0, 1.0, 0);
    h.send_in(0, "fresh", 20_000, 1.0, 20_000);
    assert_eq!(h.engine.counters().expired_windows, 1, "held expired");
}

#[test]
fn hot_keys_and_rates_per_partition() {
    let mut h = Harness::new(config(tumbling(60_000)));
    for i in 0..10_000i64 {
        let key = if i % 3 == 0 {
            "whale".to_string()
        } else {
            format!("k{}", i % 101)
        };
        h.send(&key, i, 1.0);
    }
    let stats = &h.engine.stats()[0];
    let top = stats.hot_keys(2);
    assert_eq!(top[0].key, "whale");
    assert!((0.3..0.4).contains(&top[0].share), "{top:?}");
    // One event per millisecond of source clock.
    assert!(
        (stats.events_per_second - 1_000.0).abs() < 1.0,
        "{}",
        stats.events_per_second
    );
}

#[test]
fn cache_eviction_round_trips_state_through_rocksdb() {
    let mut c = config(tumbling(10_000));
    c.cache_keys = 8; // far fewer than the keys: constant write-back
    let mut h = Harness::new(c);
    for i in 0..2_000i64 {
        h.send(&format!("k{}", i % 40), i, 0.5);
    }
    h.finish();
    let results = h.results();
    assert_eq!(results.len(), 40);
    assert!(results
        .iter()
        .all(|x| x.3 == json!(50) && x.4 == json!(25.0)));
}

#[test]
fn a_key_in_use_stays_cached_when_the_cache_is_full() {
    let mut c = config(tumbling(1_000_000));
    c.cache_keys = 8;
    let mut h = Harness::new(c);
    for i in 0..200i64 {
        h.send("hot", 2 * i, 1.0);
        h.send(&format!("cold{i}"), 2 * i + 1, 1.0);
        if i > 0 {
            assert!(h.engine.cache[0].contains_key("hot"), "after {i} cold keys");
        }
        assert!(h.engine.cached_keys <= 8);
    }
    assert!(
        h.engine.counters().flushes >= 25,
        "the cache was full often"
    );
    h.finish();
    let results = h.results();
    assert_eq!(results.len(), 201);
    assert!(results.contains(&r("hot", 0, 1_000_000, 200, 200.0, 1, true)));
}

#[test]
fn bad_aggregate_input_is_invalid_and_changes_nothing() {
    let mut h = Harness::new(config(tumbling(10_000)));
    let bad = Event {
        key: "a".into(),
        time_ms: 1_000,
        record: Record::Json(json!({"amount": "lots"})),
    };
    assert!(matches!(
        h.engine.process(0, &bad, 1_000).unwrap(),
        Outcome::Invalid(_)
    ));
    assert_eq!(h.engine.open_windows(), 0);
    assert_eq!(h.engine.stats()[0].invalid, 1);
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

#[test]
fn a_restored_watermark_never_goes_back() {
    let mut h = Harness::new(config(tumbling(10_000)));
    // The checkpoint's watermark was 50 s (say an idle partition had let it
    // run ahead); partition maxima alone would give far less.
    let maxima = std::collections::BTreeMap::from([(0, Some(12_000))]);
    h.engine
        .restore(
            &maxima,
            Some(50_000),
            &Default::default(),
            &Default::default(),
        )
        .unwrap();
    assert_eq!(h.engine.watermark(), 50_000);
    assert!(
        matches!(h.send("a", 20_000, 1.0), Outcome::Late { .. }),
        "late before the crash, late after it"
    );
}

#[test]
fn downtime_does_not_count_against_the_ttl_after_a_restore() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(tumbling(10_000));
    c.state_ttl_ms = 5_000;
    // Before the crash: a key with an open window, last updated at 1 s.
    {
        let store = StateStore::open(dir.path(), &c.partitions, 64 << 20).unwrap();
        let mut engine = Engine::new(c.clone(), store);
        let event = Event {
            key: "k".into(),
            time_ms: 1_000,
            record: Record::Json(json!({"amount": 1.0})),
        };
        engine.process(0, &event, 1_000).unwrap();
        engine.flush().unwrap();
    }
    // Restored an hour later: the first clock is 3,601 s.
    let store = StateStore::open(dir.path(), &c.partitions, 64 << 20).unwrap();
    let mut engine = Engine::new(c, store);
    engine
        .restore(
            &Default::default(),
            None,
            &Default::default(),
            &Default::default(),
        )
        .unwrap();
    let mut out = Vec::new();
    engine.advance(3_601_000, &mut out).unwrap();
    assert_eq!(
        engine.counters().expired_windows,
        0,
        "the hour down is not idleness"
    );
    engine.advance(3_606_000, &mut out).unwrap();
    assert_eq!(
        engine.counters().expired_windows,
        1,
        "5 s after the restore it expires"
    );
}

#[test]
fn state_handed_to_a_checkpoint_is_written_by_it_alone() {
    let mut c = config(tumbling(3_600_000));
    c.cache_keys = 10;
    let mut h = Harness::new(c);
    for i in 0..10 {
        h.send(&format!("k{i}"), 1_000, 1.0);
    }
    let (parts, landing) = h.engine.hand_over().unwrap();
    // The cache is full, but RocksDB is the checkpoint's until it lands:
    // new keys are cached past the limit, nothing is evicted or written.
    for i in 10..30 {
        h.send(&format!("k{i}"), 2_000, 1.0);
    }
    assert!(h.stored_keys(0).is_empty(), "nothing written yet");
    assert_eq!(h.engine.cached_keys, 30);
    for part in parts {
        part.write().unwrap();
    }
    assert_eq!(h.stored_keys(0).len(), 10, "what was handed over, only");
    landing.land(Ok(()));
    // Writable again: the next key finds the cache full and writes back.
    h.send("k30", 3_000, 1.0);
    assert_eq!(h.stored_keys(0).len(), 30);
    h.finish();
    assert_eq!(h.results().len(), 31, "every key's window fires once");
}

#[test]
fn a_checkpoint_that_could_not_write_stops_the_engine() {
    let mut h = Harness::new(config(tumbling(10_000)));
    h.send("a", 1_000, 1.0);
    let (_parts, landing) = h.engine.hand_over().unwrap();
    landing.land(Err("disk full".into()));
    let e = h.engine.flush().unwrap_err();
    assert!(e.to_string().contains("disk full"), "{e}");
}

#[test]
fn firing_a_part_at_a_time_gives_the_same_results_in_the_same_order() {
    let mut c = config(tumbling(10_000));
    c.allowed_lateness_ms = 5_000;
    let (mut whole, mut parts) = (Harness::new(c.clone()), Harness::new(c));
    let event = |key: String, time_ms: i64| Event {
        key: key.into(),
        time_ms,
        record: Record::Json(json!({"amount": 1.0})),
    };
    for i in 0..50 {
        for h in [&mut whole, &mut parts] {
            h.engine
                .process(0, &event(format!("k{i}"), 1_000 + i), 1_000)
                .unwrap();
        }
    }
    // Fires all 50 windows at once, then a late event (within the
    // lateness) revises one, then the closing revisions come.
    for (clock, time) in [(13_000, 9_000), (20_000, 8_000)] {
        // An event at the clock moves the watermark to 2 s behind it.
        for h in [&mut whole, &mut parts] {
            h.engine
                .process(0, &event("tick".into(), clock), clock)
                .unwrap();
        }
        whole.engine.advance(clock, &mut whole.out).unwrap();
        let mut chunks = 0;
        loop {
            let limit = parts.out.len() + 7;
            if !parts
                .engine
                .advance_some(clock, &mut parts.out, limit)
                .unwrap()
            {
                break;
            }
            chunks += 1;
        }
        assert!(chunks >= 7, "{chunks} chunks");
        for h in [&mut whole, &mut parts] {
            h.engine
                .process(0, &event("k3".into(), time), clock)
                .unwrap();
        }
    }
    whole.finish();
    loop {
        let limit = parts.out.len() + 7;
        if !parts.engine.finish_some(&mut parts.out, limit).unwrap() {
            break;
        }
    }
    let all = whole.results();
    assert!(all.len() > 100, "{}", all.len());
    assert_eq!(all, parts.results());
}

/// Events over 200 keys, in order but for a few seconds of jitter, some
/// late within the lateness: the same list every time.
fn jittered_events() -> Vec<(String, i64)> {
    (0..1_200)
        .map(|i: i64| {
            let key = format!("k{}", (i * 7919) % 200);
            let jitter = (i * 104_729) % 9_000;
            (key, 20 * i + 10_000 - jitter)
        })
        .collect()
}

fn restart_config() -> EngineConfig {
    let mut c = config(tumbling(5_000));
    c.allowed_lateness_ms = 4_000;
    c.cache_keys = 8; // constant write-back: timers go to RocksDB too
    c
}

#[test]
fn timers_come_back_from_the_store_after_a_restart() {
    let events = jittered_events();
    let mut whole = Harness::new(restart_config());
    for (key, t) in &events {
        whole.send(key, *t, 1.0);
    }
    whole.finish();
    let expected = whole.results();
    assert!(expected.iter().any(|r| r.5 > 1), "some windows are revised");

    let dir = tempfile::tempdir().unwrap();
    let c = restart_config();
    let mut before = Vec::new();
    let (maxima, watermark) = {
        let store = StateStore::open(dir.path(), &c.partitions, 64 << 20).unwrap();
        let mut engine = Engine::new(c.clone(), store);
        for (key, t) in &events[..700] {
            let event = Event {
                key: key.as_str().into(),
                time_ms: *t,
                record: Record::Json(json!({"amount": 1.0})),
            };
            engine.process(0, &event, *t).unwrap();
            engine.advance(*t, &mut before).unwrap();
        }
        assert!(engine.open_windows() > 0);
        engine.flush().unwrap();
        assert_eq!(engine.timers.changes(), 0, "no timer is held in memory");
        (engine.max_event_times(), engine.watermark())
    };
    let store = StateStore::open(dir.path(), &c.partitions, 64 << 20).unwrap();
    let mut h = Harness {
        engine: Engine::new(c, store),
        out: before,
        _dir: dir,
    };
    h.engine
        .restore(
            &maxima,
            Some(watermark),
            &Default::default(),
            &Default::default(),
        )
        .unwrap();
    for (key, t) in &events[700..] {
        h.send(key, *t, 1.0);
    }
    h.finish();
    assert_eq!(h.results(), expected);
}

#[test]
fn a_store_of_engine_version_1_gets_its_timers_rebuilt() {
    let c = restart_config();
    let events = jittered_events();
    let mut whole = Harness::new(c.clone());
    for (key, t) in &events[..700] {
        whole.send(key, *t, 1.0);
    }
    let fired_before = whole.results().len();
    let maxima = whole.engine.max_event_times();
    let watermark = whole.engine.watermark();
    let open = whole.engine.open_windows();
    whole.finish();
    let expected = whole.results();

    // The same state as version 1 stored it: key rows only, no timers.
    let dir = tempfile::tempdir().unwrap();
    let mut h = Harness::new(c.clone());
    for (key, t) in &events[..700] {
        h.send(key, *t, 1.0);
    }
    h.engine.flush().unwrap();
    let rows = h.engine.store().scan(0).unwrap();
    let v1 = StateStore::open(dir.path(), &c.partitions, 64 << 20).unwrap();
    let rows: Vec<_> = rows
        .into_iter()
        .map(|(k, mut s)| {
            s.ttl_check = None;
            (k, s)
        })
        .collect();
    v1.write(rows.iter().map(|(k, s)| (0, k.as_str(), Some(s))))
        .unwrap();
    assert!(v1.timer_value(0, b"m/counts").unwrap().is_none());

    let mut restored = Harness {
        engine: Engine::new(c, v1),
        out: Vec::new(),
        _dir: dir,
    };
    restored
        .engine
        .restore(
            &maxima,
            Some(watermark),
            &Default::default(),
            &Default::default(),
        )
        .unwrap();
    assert_eq!(restored.engine.open_windows(), open);
    restored.finish();
    assert_eq!(h.results().len(), fired_before);
    assert_eq!(restored.results(), expected);
}

/// A partition's cached keys, once evicted, give their table's room back:
/// the cache bounds all partitions together, so tables that kept their
/// largest size would each end up with room for the whole cache.
#[test]
fn an_eviction_shrinks_the_tables_of_evicted_keys() {
    let mut c = config(tumbling(1_000_000));
    c.partitions = vec![0, 1];
    c.cache_keys = 64;
    let mut h = Harness::new(c);
    for i in 0..64 {
        h.send_in(0, &format!("a{i}"), i, 1.0, i);
    }
    let full = h.engine.cache[0].capacity();
    assert!(full >= 64);
    // Partition 1 fills the cache in turn: partition 0's keys, each seen
    // once, are evicted.
    for i in 0..200 {
        h.send_in(1, &format!("b{i}"), 64 + i, 1.0, 64 + i);
    }
    assert!(h.engine.cache[0].is_empty());
    assert!(
        h.engine.cache[0].capacity() < full,
        "partition 0's table kept room for {} keys",
        h.engine.cache[0].capacity()
    );
}

/// A partition moved between engines mid-stream (released right after a
/// checkpoint's hand-over, its files taken to the other engine's store,
/// acquired there) gives the results it gives unmoved, although the engine
/// it joins is far ahead of it in event time, and the partition that stayed
/// is unaffected.
#[test]
fn a_partition_moved_to_another_engine_gives_the_same_results() {
    let mut c = restart_config();
    c.partitions = vec![0, 1];
    let events = jittered_events();
    let event = |key: &str, t: i64| Event {
        key: key.into(),
        time_ms: t,
        record: Record::Json(json!({"amount": 1.0})),
    };
    // Both partitions get the same event times, so the watermark is the
    // same with one partition or both.
    // The clock is the first event time's: one for every partition.
    let feed = |engine: &mut Engine, partition: u32, key: &str, t: i64, out: &mut Vec<_>| {
        let clock = t % 1_000_000;
        engine.process(partition, &event(key, t), clock).unwrap();
        engine.advance(clock, out).unwrap();
    };
    let of = |out: &[WindowResult], partition: u32| {
        let mut mine: Vec<_> = out
            .iter()
            .filter(|r| r.partition == partition)
            .map(|r| {
                (
                    r.key.clone(),
                    r.window.start,
                    r.aggregates.clone(),
                    r.revision,
                    r.is_final,
                )
            })
            .collect();
        mine.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
        mine
    };

    let whole_dir = tempfile::tempdir().unwrap();
    let store = StateStore::open(whole_dir.path(), &c.partitions, 64 << 20).unwrap();
    let mut whole = Engine::new(c.clone(), store);
    let mut expected = Vec::new();
    for (key, t) in &events {
        feed(&mut whole, 0, key, *t, &mut expected);
        feed(&mut whole, 1, &format!("{key}-1"), *t, &mut expected);
    }
    whole.finish(&mut expected).unwrap();

    let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let store = StateStore::open(a_dir.path(), &c.partitions, 64 << 20).unwrap();
    let mut a = Engine::new(c.clone(), store);
    let mut other = c.clone();
    other.partitions = vec![2];
    let store = StateStore::open(b_dir.path(), &[2], 64 << 20).unwrap();
    let mut b = Engine::new(other, store);
    let (mut from_a, mut from_b) = (Vec::new(), Vec::new());
    // b's own partition is ten minutes ahead.
    let ahead = 3_000_000;
    for (key, t) in &events[..700] {
        feed(&mut a, 0, key, *t, &mut from_a);
        feed(&mut a, 1, &format!("{key}-1"), *t, &mut from_a);
        feed(&mut b, 2, &format!("{key}-2"), t + ahead, &mut from_b);
    }
    assert!(b.watermark() > a.watermark() + ahead / 2);
    // The checkpoint's hand-over, written and landed, then the release.
    let (parts, landing) = a.hand_over().unwrap();
    let (maxima, floors) = (a.max_event_times(), a.partition_floors());
    for part in parts {
        part.write().unwrap();
    }
    landing.land(Ok(()));
    a.release(1).unwrap();
    assert_eq!(a.partitions(), [0]);
    assert!(a.release(1).is_err(), "released once");
    // What a restore from the store would put there.
    let (src, dst) = (
        crate::state::partition_dir(a_dir.path(), 1),
        crate::state::partition_dir(b_dir.path(), 1),
    );
    std::fs::create_dir_all(&dst).unwrap();
    for file in std::fs::read_dir(&src).unwrap() {
        let file = file.unwrap();
        std::fs::copy(file.path(), dst.join(file.file_name())).unwrap();
    }
    b.acquire(1, maxima[&1], floors[&1]).unwrap();
    assert!(b.acquire(1, None, None).is_err(), "acquired once");
    for (key, t) in &events[700..] {
        feed(&mut a, 0, key, *t, &mut from_a);
        feed(&mut b, 1, &format!("{key}-1"), *t, &mut from_b);
        feed(&mut b, 2, &format!("{key}-2"), t + ahead, &mut from_b);
    }
    a.finish(&mut from_a).unwrap();
    b.finish(&mut from_b).unwrap();
    assert!(of(&from_a, 1).len() > 10 && !of(&from_b, 1).is_empty());
    let mut moved = from_a.clone();
    moved.extend(from_b);
    let (got, want) = (of(&moved, 1), of(&expected, 1));
    let extra: Vec<_> = got.iter().filter(|r| !want.contains(r)).take(4).collect();
    let missing: Vec<_> = want.iter().filter(|r| !got.contains(r)).take(4).collect();
    let (got, want) = (got.len(), want.len());
    assert!(
        extra.is_empty() && missing.is_empty(),
        "the moved partition: {got} results, {want} expected; extra {extra:?}, missing {missing:?}"
    );
    assert_eq!(of(&from_a, 0), of(&expected, 0), "the one that stayed");
}

/// Releasing a partition with changes not yet handed to a checkpoint is
/// refused: they would be lost.
#[test]
fn a_partition_with_unsaved_changes_is_not_released() {
    let mut c = config(tumbling(60_000));
    c.partitions = vec![0, 1];
    let mut h = Harness::new(c);
    h.send_in(1, "k", 1_000, 1.0, 1_000);
    let refused = h.engine.release(1).unwrap_err().to_string();
    assert!(refused.contains("right after"), "{refused}");
    h.engine.flush().unwrap();
    h.engine.release(1).unwrap();
    assert!(!h.engine.owns(1));
}

/// The periodic write-back is handed to a thread of its own: right after
/// it starts, the engine holds it in flight (and writes nothing else
/// until it lands), and results are those of an engine that never writes
/// back, with the keys in RocksDB at the end.
#[test]
fn periodic_write_backs_run_behind_and_change_no_result() {
    let events = jittered_events();
    let mut never = config(tumbling(1_000));
    never.allowed_lateness_ms = 4_000;
    never.flush_every_events = u64::MAX;
    let mut reference = Harness::new(never.clone());
    for (key, t) in &events {
        reference.send(key, *t, 1.0);
    }
    reference.finish();

    let mut often = never;
    often.flush_every_events = 50;
    let mut h = Harness::new(often);
    let mut behind = 0;
    for (i, (key, t)) in events.iter().enumerate() {
        h.send(key, *t, 1.0);
        behind += usize::from(h.engine.held.is_some());
        // A write-back lands within ten events, however slow the machine,
        // so one starts at least every sixty: more than ten in all.
        if i % 10 == 9 {
            h.engine.writable(true).unwrap();
        }
    }
    assert!(behind > 0, "no write-back was ever in flight");
    h.finish();
    assert!(h.engine.held.is_none(), "the end waits for the last one");
    assert_eq!(h.results(), reference.results());
    assert!(h.engine.counters().flushes > 10);
}
