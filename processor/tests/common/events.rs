//! The Kafka source topic the pipeline tests read: a few hundred thousand
//! events over several partitions, out of order, some late and some
//! malformed, and the results they must give, computed independently of
//! the processor.

use std::collections::BTreeMap;

use serde_json::json;

use super::create_topics;

pub const PARTITIONS: i32 = 4;
pub const PER_PARTITION: i64 = 50_000;
pub const START: i64 = 1_767_225_600_000;

/// When the kill tests SIGKILL the processor, in milliseconds after each
/// start: short enough that a run over these events (several seconds of
/// work, plus a restore at each start) is still going at every one.
pub const KILL_DELAYS_MS: [u64; 12] = [
    300, 900, 500, 1200, 700, 400, 1000, 600, 800, 350, 1100, 450,
];

/// (partition, payload) of every message, malformed ones included.
pub fn messages() -> Vec<(i32, String)> {
    let mut out = Vec::new();
    for p in 0..PARTITIONS {
        for i in 0..PER_PARTITION {
            let n = i * 4 + i64::from(p);
            let jitter = n * 7919 % 1500;
            let late = if n % 97 == 0 { 6_000 } else { 0 };
            let ts = START + i * 20 - jitter - late;
            let user = format!("u{}", (n * 7) % 300);
            let amount = (n % 100) as f64 / 4.0;
            out.push((
                p,
                json!({"user": user, "ts": ts, "amount": amount}).to_string(),
            ));
            if i % 10_000 == 5 {
                out.push((p, "definitely not json".to_string()));
                out.push((p, json!({"ts": ts, "amount": 1}).to_string()));
            }
        }
    }
    out
}

/// (user, window start) → (count, sum): a plain group-by, independent of
/// the processor (no event is beyond the allowed lateness).
pub fn expected() -> BTreeMap<(String, i64), (u64, f64)> {
    let mut groups = BTreeMap::new();
    for (_, payload) in messages() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&payload) else {
            continue;
        };
        let (Some(user), Some(ts)) = (v["user"].as_str(), v["ts"].as_i64()) else {
            continue;
        };
        let entry = groups
            .entry((user.to_string(), ts - ts.rem_euclid(5_000)))
            .or_insert((0, 0.0));
        entry.0 += 1;
        entry.1 += v["amount"].as_f64().unwrap();
    }
    groups
}

pub fn produce(brokers: &str, topic: &str) {
    create_topics(brokers, &[(topic, PARTITIONS)]);
    eddy_testkit::produce::produce(brokers, topic, &messages());
}
