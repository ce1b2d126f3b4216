//! The built-in generator: synthetic events, deterministic from a seed.
//!
//! Event `i` is stamped `start + i/rate` seconds, then moved back by a random
//! jitter (out-of-order events) or, for a `lateFraction` share, by `lateBy`
//! (late events). Keys follow a Zipf distribution over `keys` keys (uniform
//! when the skew is 0). All randomness comes from one ChaCha8 stream seeded
//! with `seed`, drawn in a fixed order, so a seed always yields the same
//! events.

use std::time::{Duration, Instant};

use compact_str::CompactString;
use eddy_api::spec::{GeneratorSource, TimeFormat};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Zipf};
use serde_json::{Map, Value};

mod zipf;

use self::zipf::ZipfTable;
use super::{Batch, Payload, Poll, SourceRecord};
use crate::{
    engine::aggregate::{Aggregate, Input},
    event::rfc3339,
};

/// Most events handed out per poll.
const BATCH: u64 = 1024;

/// Resolved generator settings.
#[derive(Clone, Debug)]
pub struct GeneratorConfig {
    pub seed: u64,
    pub count: Option<u64>,
    pub rate: u64,
    /// Pace events to the wall clock.
    pub realtime: bool,
    pub start_ms: i64,
    pub keys: u64,
    pub key_prefix: String,
    pub key_skew: f64,
    pub jitter_ms: u64,
    pub late_fraction: f64,
    pub late_by_ms: i64,
    pub future_fraction: f64,
    pub future_by_ms: i64,
    pub key_field: String,
    pub time_field: String,
    pub time_format: TimeFormat,
    pub value_field: String,
}

impl GeneratorConfig {
    /// Settings from the spec; `now_ms` is the start time in realtime mode.
    pub fn from_spec(
        g: &GeneratorSource,
        key_field: &str,
        time_field: &str,
        time_format: TimeFormat,
        now_ms: i64,
    ) -> anyhow::Result<Self> {
        let start_ms = if g.realtime {
            now_ms
        } else {
            g.start_time.parse::<jiff::Timestamp>()?.as_millisecond()
        };
        Ok(Self {
            seed: g.seed,
            count: g.count,
            rate: g.rate.max(1),
            realtime: g.realtime,
            start_ms,
            keys: g.keys.max(1),
            key_prefix: g.key_prefix.clone(),
            key_skew: g.key_skew,
            jitter_ms: g.jitter.parse()?.as_millis() as u64,
            late_fraction: g.late_fraction,
            late_by_ms: g.late_by.parse()?.as_millis() as i64,
            future_fraction: g.future_fraction,
            future_by_ms: g.future_by.parse()?.as_millis() as i64,
            key_field: key_field.into(),
            time_field: time_field.into(),
            time_format,
            value_field: g.value_field.clone(),
        })
    }
}

enum Keys {
    Uniform(u64),
    /// Up to [`zipf::MAX_TABLE_KEYS`] keys: by alias table.
    ZipfTable(ZipfTable),
    /// More keys: by rejection sampling.
    Zipf(Zipf<f64>),
}

/// How generated records are laid out as JSON.
#[derive(Debug, PartialEq, Eq)]
pub struct Fields {
    pub key_field: String,
    pub key_prefix: String,
    pub time_field: String,
    pub time_format: TimeFormat,
    pub value_field: String,
}

impl Fields {
    /// Key, time and value have fields of their own (otherwise the JSON
    /// record keeps only the last of those sharing a name).
    pub fn distinct(&self) -> bool {
        self.key_field != self.time_field
            && self.value_field != self.key_field
            && self.value_field != self.time_field
    }
}

/// One generated record, typed: its key number, event time and amount in
/// cents. [`Generated::to_value`] gives the JSON record it stands for.
#[derive(Clone, Debug, PartialEq)]
pub struct Generated {
    fields: &'static Fields,
    pub key: u64,
    pub time_ms: i64,
    pub cents: u32,
}

impl Generated {
    pub fn fields(&self) -> &Fields {
        self.fields
    }

    /// The key as the record carries it.
    pub fn key(&self) -> CompactString {
        let prefix = &self.fields.key_prefix;
        let mut digits = itoa::Buffer::new();
        let digits = digits.format(self.key);
        let mut key = CompactString::with_capacity(prefix.len() + digits.len());
        key.push_str(prefix);
        key.push_str(digits);
        key
    }

    /// The amount, as the record's number reads.
    pub fn amount(&self) -> f64 {
        f64::from(self.cents) / 100.0
    }

    /// The record as JSON.
    pub fn to_value(&self) -> Value {
        let f = self.fields;
        let mut record = Map::with_capacity(3);
        record.insert(f.key_field.clone(), Value::from(self.key().as_str()));
        record.insert(
            f.time_field.clone(),
            format_time(self.time_ms, f.time_format),
        );
        record.insert(f.value_field.clone(), Value::from(self.amount()));
        Value::Object(record)
    }

    /// The input of a numeric aggregate of the value field (or a count),
    /// read without JSON; `None` for anything else.
    pub fn number(&self, aggregate: &Aggregate) -> Option<Input> {
        let f = self.fields;
        let distinct = f.distinct();
        match aggregate {
            Aggregate::Count => Some(Input::None),
            Aggregate::Sum { field }
            | Aggregate::Min { field }
            | Aggregate::Max { field }
            | Aggregate::Avg { field }
            | Aggregate::Quantile { field, .. }
                if distinct && *field == f.value_field =>
            {
                Some(Input::Number(self.amount()))
            }
            _ => None,
        }
    }
}

pub struct Generator {
    config: GeneratorConfig,
    fields: &'static Fields,
    rng: ChaCha8Rng,
    keys: Keys,
    next: u64,
    started: Instant,
}

impl Generator {
    pub fn new(config: GeneratorConfig, started: Instant) -> anyhow::Result<Self> {
        let keys = if config.key_skew > 0.0 && config.keys <= zipf::MAX_TABLE_KEYS {
            Keys::ZipfTable(ZipfTable::new(config.keys.max(1), config.key_skew))
        } else if config.key_skew > 0.0 {
            Keys::Zipf(Zipf::new(config.keys as f64, config.key_skew)?)
        } else {
            Keys::Uniform(config.keys)
        };
        // One copy for every record (see `crate::interned`).
        let fields = crate::interned::intern(Fields {
            key_field: config.key_field.clone(),
            key_prefix: config.key_prefix.clone(),
            time_field: config.time_field.clone(),
            time_format: config.time_format,
            value_field: config.value_field.clone(),
        });
        Ok(Self {
            rng: ChaCha8Rng::seed_from_u64(config.seed),
            fields,
            keys,
            next: 0,
            started,
            config,
        })
    }

    /// Events produced so far.
    pub fn produced(&self) -> u64 {
        self.next
    }

    /// Resumes after `produced` events (restoring a checkpoint): the same
    /// random stream is drawn and discarded, so what follows is exactly what
    /// an uninterrupted run would have produced.
    pub fn skip_to(&mut self, produced: u64) {
        while self.next < produced {
            self.event();
        }
        if self.config.realtime {
            // Carry on from now: the stream's clock resumes at the wall clock.
            let behind = Duration::from_millis(produced.saturating_mul(1000) / self.config.rate);
            self.started = Instant::now()
                .checked_sub(behind)
                .unwrap_or_else(Instant::now);
            self.config.start_ms = super::wall_clock_ms() - behind.as_millis() as i64;
        }
    }

    /// The next batch: as many events as are due (all of a batch when not
    /// realtime), or when to ask again, or the end.
    pub fn poll(&mut self, now: Instant) -> Poll {
        let remaining = self.config.count.map_or(u64::MAX, |c| c - self.next);
        if remaining == 0 {
            return Poll::End;
        }
        let mut n = remaining.min(BATCH);
        if self.config.realtime {
            let elapsed = now.saturating_duration_since(self.started);
            let due = (elapsed.as_nanos() * u128::from(self.config.rate) / 1_000_000_000) as u64;
            n = n.min(due.saturating_sub(self.next));
            if n == 0 {
                let next_at = Duration::from_nanos(
                    ((u128::from(self.next) + 1) * 1_000_000_000 / u128::from(self.config.rate))
                        as u64,
                );
                return Poll::Pending(self.started + next_at);
            }
        }
        Poll::Ready(Batch {
            records: (0..n).map(|_| self.event()).collect(),
            finished: Vec::new(),
        })
    }

    /// The source clock: the nominal time of the latest event (which tracks
    /// the wall clock in realtime mode).
    pub fn clock(&self) -> i64 {
        let c = &self.config;
        if c.realtime {
            return super::wall_clock_ms();
        }
        let last = self.next.saturating_sub(1);
        c.start_ms + (i128::from(last) * 1000 / i128::from(c.rate)) as i64
    }

    fn event(&mut self) -> SourceRecord {
        let i = self.next;
        self.next += 1;
        let c = &self.config;
        let key = match &self.keys {
            Keys::Uniform(n) => self.rng.random_range(0..*n),
            Keys::ZipfTable(table) => table.sample(&mut self.rng),
            // Zipf samples 1..=n as a float; rank 1 is the hottest key.
            Keys::Zipf(z) => (z.sample(&mut self.rng) as u64).clamp(1, c.keys) - 1,
        };
        let cents: u32 = self.rng.random_range(0..10_000);
        let late = c.late_fraction > 0.0 && self.rng.random_bool(c.late_fraction);
        let jitter = if c.jitter_ms > 0 {
            self.rng.random_range(0..=c.jitter_ms) as i64
        } else {
            0
        };
        let future = c.future_fraction > 0.0 && self.rng.random_bool(c.future_fraction);
        let base = c.start_ms + (i128::from(i) * 1000 / i128::from(c.rate)) as i64;
        let time_ms = if future {
            base + c.future_by_ms
        } else {
            base - jitter - if late { c.late_by_ms } else { 0 }
        };
        let record = Generated {
            fields: self.fields,
            key,
            time_ms,
            cents,
        };
        SourceRecord {
            payload: Payload::Generated(record),
            ingest_ms: base,
            partition: None,
            origin: super::Origin::Generator(i),
        }
    }
}

fn format_time(ms: i64, format: TimeFormat) -> Value {
    match format {
        TimeFormat::Rfc3339 => Value::from(rfc3339(ms)),
        TimeFormat::EpochMillis => Value::from(ms),
        TimeFormat::EpochSeconds => Value::from(ms as f64 / 1000.0),
        TimeFormat::EpochMicros => Value::from(ms.saturating_mul(1000)),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn config() -> GeneratorConfig {
        GeneratorConfig {
            seed: 7,
            count: Some(5000),
            rate: 100,
            realtime: false,
            start_ms: 1_767_225_600_000,
            keys: 50,
            key_prefix: "key-".into(),
            key_skew: 0.0,
            jitter_ms: 0,
            late_fraction: 0.0,
            late_by_ms: 60_000,
            future_fraction: 0.0,
            future_by_ms: 3_600_000,
            key_field: "user".into(),
            time_field: "ts".into(),
            time_format: TimeFormat::EpochMillis,
            value_field: "amount".into(),
        }
    }

    fn drain(config: GeneratorConfig) -> Vec<Value> {
        let start = Instant::now();
        let mut g = Generator::new(config, start).unwrap();
        let mut all = Vec::new();
        loop {
            match g.poll(start) {
                Poll::Ready(batch) => {
                    all.extend(batch.records.into_iter().map(|r| match r.payload {
                        Payload::Generated(g) => g.to_value(),
                        other => panic!("{other:?}"),
                    }))
                }
                Poll::End => return all,
                Poll::Pending(_) => panic!("a non-realtime generator never waits"),
            }
        }
    }

    fn key_counts(events: &[Value]) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for e in events {
            *counts
                .entry(e["user"].as_str().unwrap().to_string())
                .or_default() += 1;
        }
        counts
    }

    #[test]
    fn same_seed_same_events_other_seed_other_events() {
        let a = drain(config());
        assert_eq!(a.len(), 5000);
        assert_eq!(a, drain(config()));
        assert_ne!(
            a,
            drain(GeneratorConfig {
                seed: 8,
                ..config()
            })
        );
    }

    #[test]
    fn timestamps_follow_the_rate_without_jitter() {
        let events = drain(config());
        assert_eq!(events[0]["ts"], 1_767_225_600_000_i64);
        assert_eq!(events[1]["ts"], 1_767_225_600_010_i64);
        assert_eq!(events[4999]["ts"], 1_767_225_600_000_i64 + 49_990);
        assert!(events.iter().all(|e| {
            let v = e["amount"].as_f64().unwrap();
            (0.0..100.0).contains(&v)
        }));
    }

    #[test]
    fn jitter_moves_events_back_within_the_bound() {
        let events = drain(GeneratorConfig {
            jitter_ms: 2_000,
            ..config()
        });
        let mut out_of_order = 0;
        for (i, e) in events.iter().enumerate() {
            let base = 1_767_225_600_000_i64 + i as i64 * 10;
            let ts = e["ts"].as_i64().unwrap();
            assert!((base - 2_000..=base).contains(&ts), "event {i}: {ts}");
            if i > 0 && ts < events[i - 1]["ts"].as_i64().unwrap() {
                out_of_order += 1;
            }
        }
        assert!(out_of_order > 1000, "{out_of_order} out-of-order events");
    }

    #[test]
    fn late_fraction_stamps_that_share_late_by() {
        let events = drain(GeneratorConfig {
            late_fraction: 0.1,
            ..config()
        });
        let late = events
            .iter()
            .enumerate()
            .filter(|(i, e)| {
                e["ts"].as_i64().unwrap() < 1_767_225_600_000 + *i as i64 * 10 - 30_000
            })
            .count();
        assert!((400..600).contains(&late), "{late} late events of 5000");
    }

    #[test]
    fn future_fraction_stamps_ahead_of_ingestion() {
        let start = Instant::now();
        let config = GeneratorConfig {
            future_fraction: 0.2,
            ..config()
        };
        let mut g = Generator::new(config, start).unwrap();
        let Poll::Ready(batch) = g.poll(start) else {
            panic!("expected events");
        };
        let times: Vec<(i64, i64)> = batch
            .records
            .iter()
            .map(|r| match &r.payload {
                Payload::Generated(g) => (g.to_value()["ts"].as_i64().unwrap(), r.ingest_ms),
                other => panic!("{other:?}"),
            })
            .collect();
        let ahead = times.iter().filter(|(t, i)| t - i == 3_600_000).count();
        assert!((150..260).contains(&ahead), "{ahead} of {}", times.len());
        assert!(times.iter().all(|(t, i)| *t <= i + 3_600_000));
    }

    #[test]
    fn zipf_skew_makes_the_first_keys_hot() {
        let uniform = key_counts(&drain(config()));
        assert_eq!(uniform.len(), 50);
        assert!(
            uniform.values().all(|&n| (50..=160).contains(&n)),
            "{uniform:?}"
        );
        let skewed = key_counts(&drain(GeneratorConfig {
            key_skew: 1.1,
            ..config()
        }));
        let hottest = skewed["key-0"];
        assert!(hottest > 1000, "key-0 has {hottest} of 5000");
        assert!(skewed.get("key-49").copied().unwrap_or(0) < 100);
    }

    #[test]
    fn realtime_paces_to_the_clock() {
        let start = Instant::now();
        let mut g = Generator::new(
            GeneratorConfig {
                realtime: true,
                ..config()
            },
            start,
        )
        .unwrap();
        // At t=0 nothing is due; the first event is due after 1/rate s.
        assert_eq!(
            g.poll(start),
            Poll::Pending(start + Duration::from_millis(10))
        );
        match g.poll(start + Duration::from_millis(255)) {
            Poll::Ready(batch) => assert_eq!(batch.records.len(), 25),
            other => panic!("{other:?}"),
        }
        assert_eq!(g.produced(), 25);
    }

    #[test]
    fn writes_the_configured_time_format() {
        let mut c = config();
        c.time_format = TimeFormat::Rfc3339;
        c.count = Some(2);
        let events = drain(c);
        assert_eq!(events[1]["ts"], "2026-01-01T00:00:00.01Z");
    }
}
