//! Turning a JSON record into an event: its key, its event time, and the
//! record itself for the aggregations to read. Anything that cannot be read
//! becomes an [`Invalid`] reason, never a panic.

use std::borrow::Cow;

use compact_str::CompactString;
use eddy_api::spec::TimeFormat;
use serde_json::Value;

use crate::{
    engine::aggregate::{Aggregate, Input},
    source::{
        generator::Generated,
        json::{Fields, Sparse},
    },
};

/// A record that passed extraction.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    /// Inline when short (most keys): no allocation per event.
    pub key: CompactString,
    /// Event time, milliseconds since the Unix epoch (UTC).
    pub time_ms: i64,
    pub record: Record,
}

/// The record an event came from: parsed JSON, or a typed record of the
/// generator, which becomes JSON only when it is written out (late or
/// invalid).
#[derive(Clone, Debug, PartialEq)]
pub enum Record {
    Json(Value),
    Generated(Generated),
    /// Read sparsely: the fields the job reads, and the bytes for the rest.
    Sparse(Box<Sparse>),
}

impl Record {
    /// The record as JSON.
    pub fn to_value(&self) -> Cow<'_, Value> {
        match self {
            Self::Json(value) => Cow::Borrowed(value),
            Self::Generated(g) => Cow::Owned(g.to_value()),
            Self::Sparse(s) => Cow::Owned(s.to_value()),
        }
    }

    /// What `aggregate` takes from the record (see [`Aggregate::input`]).
    pub fn input(&self, aggregate: &Aggregate, name: &str) -> Result<Input, Invalid> {
        match self {
            Self::Json(value) => aggregate.input(value, name),
            Self::Sparse(s) => aggregate.input(s, name),
            Self::Generated(g) => match g.number(aggregate) {
                Some(input) => Ok(input),
                None => aggregate.input(&g.to_value(), name),
            },
        }
    }
}

/// Why a record is not a usable event. The text is what the invalid output
/// shows.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    #[error("record is not a JSON object")]
    NotAnObject,
    #[error("missing key field {0:?}")]
    MissingKey(String),
    #[error("key field {0:?} must be a string or an integer")]
    KeyWrongType(String),
    #[error("missing event-time field {0:?}")]
    MissingTime(String),
    #[error("event-time field {field:?} must be {expected}")]
    TimeWrongType {
        field: String,
        expected: &'static str,
    },
    #[error("event-time field {field:?} is out of range: {value}")]
    TimeOutOfRange { field: String, value: String },
    #[error("event time {time} is {by} ahead of ingestion time, beyond maxFutureSkew {limit}")]
    TooFarInFuture {
        time: String,
        by: String,
        limit: String,
    },
    #[error("event time {time} is {by} behind ingestion time, beyond maxPastSkew {limit}")]
    TooFarInPast {
        time: String,
        by: String,
        limit: String,
    },
    #[error("field {field:?} needed by aggregation {aggregate:?} must be a finite number")]
    NotANumber { field: String, aggregate: String },
    #[error("field {field:?} needed by aggregation {aggregate:?} is missing")]
    MissingField { field: String, aggregate: String },
    #[error("not JSON: {0}")]
    NotJson(String),
    #[error("partition field {field:?} must be an integer from 0 to {}", .partitions - 1)]
    BadPartition { field: String, partitions: u32 },
    #[error("record is {size} bytes, above the {limit}-byte limit")]
    TooLarge { size: usize, limit: usize },
    #[error("not a partial of this job: {0}")]
    BadPartial(String),
}

impl Invalid {
    /// A short fixed name for the kind of problem, for counts and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::NotAnObject => "not_an_object",
            Self::MissingKey(_) => "missing_key",
            Self::KeyWrongType(_) => "key_wrong_type",
            Self::MissingTime(_) => "missing_time",
            Self::TimeWrongType { .. } => "time_wrong_type",
            Self::TimeOutOfRange { .. } => "time_out_of_range",
            Self::TooFarInFuture { .. } => "future_skew",
            Self::TooFarInPast { .. } => "past_skew",
            Self::NotANumber { .. } => "not_a_number",
            Self::MissingField { .. } => "missing_field",
            Self::NotJson(_) => "not_json",
            Self::BadPartition { .. } => "bad_partition",
            Self::TooLarge { .. } => "too_large",
            Self::BadPartial(_) => "bad_partial",
        }
    }
}

/// Where the key and the time are in a record.
#[derive(Clone, Debug)]
pub struct Extractor {
    pub key_field: String,
    pub time_field: String,
    pub format: TimeFormat,
}

impl Extractor {
    /// The event in `record`, or why there is none (with the record back,
    /// for the invalid output).
    pub fn extract(&self, record: Value) -> Result<Event, (Invalid, Value)> {
        match self.key_and_time(&record) {
            Ok((key, time_ms)) => Ok(Event {
                key,
                time_ms,
                record: Record::Json(record),
            }),
            Err(reason) => Err((reason, record)),
        }
    }

    /// The event of a sparsely read record: its wanted fields decide, as
    /// the whole record would.
    pub fn extract_sparse(&self, record: Box<Sparse>) -> Result<Event, (Invalid, Value)> {
        match self.key_and_time_in(&record) {
            Ok((key, time_ms)) => Ok(Event {
                key,
                time_ms,
                record: Record::Sparse(record),
            }),
            Err(reason) => Err((reason, record.to_value())),
        }
    }

    /// The event of a generated record: typed all the way when it is laid
    /// out as this extractor reads it (millisecond times, distinct field
    /// names), else through its JSON, with exactly the same outcome.
    pub fn extract_generated(&self, g: Generated) -> Result<Event, (Invalid, Value)> {
        let f = g.fields();
        let typed = self.format == TimeFormat::EpochMillis
            && f.time_format == TimeFormat::EpochMillis
            && f.key_field == self.key_field
            && f.time_field == self.time_field
            && f.distinct()
            && time_in_range(g.time_ms);
        if !typed {
            let value = g.to_value();
            return self.extract(value).map(|event| Event {
                record: Record::Generated(g),
                ..event
            });
        }
        Ok(Event {
            key: g.key(),
            time_ms: g.time_ms,
            record: Record::Generated(g),
        })
    }

    fn key_and_time(&self, record: &Value) -> Result<(CompactString, i64), Invalid> {
        record.as_object().ok_or(Invalid::NotAnObject)?;
        self.key_and_time_in(record)
    }

    /// The key and the time among a record's fields.
    fn key_and_time_in(&self, obj: &impl Fields) -> Result<(CompactString, i64), Invalid> {
        let key = match obj.field(&self.key_field) {
            None | Some(Value::Null) => return Err(Invalid::MissingKey(self.key_field.clone())),
            Some(Value::String(s)) => CompactString::from(s.as_str()),
            Some(Value::Number(n)) if n.is_i64() || n.is_u64() => {
                compact_str::format_compact!("{n}")
            }
            Some(_) => return Err(Invalid::KeyWrongType(self.key_field.clone())),
        };
        let time = match obj.field(&self.time_field) {
            None | Some(Value::Null) => return Err(Invalid::MissingTime(self.time_field.clone())),
            Some(v) => v,
        };
        let time_ms = parse_time(time, &self.time_field, self.format)?;
        Ok((key, time_ms))
    }
}

/// Largest event time we accept: year 9999, where RFC 3339 ends.
const MAX_MS: i64 = 253_402_300_799_999;
/// Smallest: year 0000.
const MIN_MS: i64 = -62_167_219_200_000;

/// Whether an event time in milliseconds is within the range we accept.
pub fn time_in_range(ms: i64) -> bool {
    (MIN_MS..=MAX_MS).contains(&ms)
}

/// Reads a time field in `format` as epoch milliseconds.
pub fn parse_time(value: &Value, field: &str, format: TimeFormat) -> Result<i64, Invalid> {
    let wrong = |expected| Invalid::TimeWrongType {
        field: field.to_string(),
        expected,
    };
    let ms = match format {
        TimeFormat::Rfc3339 => {
            let text = value.as_str().ok_or_else(|| wrong("an RFC 3339 string"))?;
            let ts: jiff::Timestamp = text
                .parse()
                .map_err(|_| wrong("an RFC 3339 string with an offset"))?;
            ts.as_millisecond()
        }
        TimeFormat::EpochMillis => number(value, 1.0).ok_or_else(|| wrong("epoch milliseconds"))?,
        TimeFormat::EpochSeconds => number(value, 1000.0).ok_or_else(|| wrong("epoch seconds"))?,
        TimeFormat::EpochMicros => {
            number(value, 0.001).ok_or_else(|| wrong("epoch microseconds"))?
        }
    };
    if !time_in_range(ms) {
        return Err(Invalid::TimeOutOfRange {
            field: field.to_string(),
            value: value.to_string(),
        });
    }
    Ok(ms)
}

/// A JSON number scaled to milliseconds; integers stay exact.
fn number(value: &Value, to_ms: f64) -> Option<i64> {
    let n = value.as_number()?;
    if let Some(i) = n.as_i64() {
        return Some(match to_ms {
            1.0 => i,
            1000.0 => i.saturating_mul(1000),
            _ => (i as f64 * to_ms).round() as i64,
        });
    }
    // Round, not floor: 1098998139.518 s is 1098998139517.9999 ms in binary.
    let f = n.as_f64()? * to_ms;
    // NaN cannot come from JSON, but a huge float can: saturate, then the
    // range check rejects it.
    f.is_finite().then_some(f.round() as i64)
}

/// Formats epoch milliseconds as RFC 3339 in UTC (`2026-01-01T00:00:00Z`,
/// with milliseconds only when non-zero).
pub fn rfc3339(ms: i64) -> String {
    match jiff::Timestamp::from_millisecond(ms) {
        Ok(ts) => ts.to_string(),
        Err(_) => ms.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn ex(format: TimeFormat) -> Extractor {
        Extractor {
            key_field: "user".into(),
            time_field: "ts".into(),
            format,
        }
    }

    #[test]
    fn reads_each_time_format() {
        let cases = [
            (
                TimeFormat::Rfc3339,
                json!("2026-03-29T01:30:00+01:00"),
                1_774_744_200_000,
            ),
            (
                TimeFormat::EpochMillis,
                json!(1_774_744_200_123_i64),
                1_774_744_200_123,
            ),
            (
                TimeFormat::EpochSeconds,
                json!(1_774_744_200.5),
                1_774_744_200_500,
            ),
            (
                TimeFormat::EpochSeconds,
                json!(1_774_744_200),
                1_774_744_200_000,
            ),
            (
                TimeFormat::EpochMicros,
                json!(1_774_744_200_123_456_i64),
                1_774_744_200_123,
            ),
        ];
        for (format, ts, ms) in cases {
            let ev = ex(format).extract(json!({"user": "u1", "ts": ts})).unwrap();
            assert_eq!(ev.time_ms, ms, "{format:?}");
        }
    }

    #[test]
    fn integer_keys_become_strings() {
        let ev = ex(TimeFormat::EpochMillis)
            .extract(json!({"user": 42, "ts": 0}))
            .unwrap();
        assert_eq!(ev.key, "42");
    }

    #[test]
    fn bad_records_get_reasons() {
        let e = ex(TimeFormat::Rfc3339);
        let cases = [
            (json!([1, 2]), "record is not a JSON object"),
            (
                json!({"ts": "2026-01-01T00:00:00Z"}),
                "missing key field \"user\"",
            ),
            (
                json!({"user": null, "ts": "2026-01-01T00:00:00Z"}),
                "missing key field \"user\"",
            ),
            (
                json!({"user": 1.5, "ts": "2026-01-01T00:00:00Z"}),
                "key field \"user\" must be a string or an integer",
            ),
            (
                json!({"user": {"id": 1}, "ts": "2026-01-01T00:00:00Z"}),
                "key field \"user\" must be a string or an integer",
            ),
            (json!({"user": "a"}), "missing event-time field \"ts\""),
            (
                json!({"user": "a", "ts": 5}),
                "event-time field \"ts\" must be an RFC 3339 string",
            ),
            (
                json!({"user": "a", "ts": "yesterday"}),
                "event-time field \"ts\" must be an RFC 3339 string with an offset",
            ),
            (
                json!({"user": "a", "ts": "2026-01-01T00:00:00"}),
                "event-time field \"ts\" must be an RFC 3339 string with an offset",
            ),
        ];
        for (record, reason) in cases {
            let (err, back) = e.extract(record.clone()).unwrap_err();
            assert_eq!(err.to_string(), reason, "{record}");
            assert_eq!(
                back, record,
                "the record is handed back for the invalid output"
            );
        }
        let millis = ex(TimeFormat::EpochMillis);
        assert_eq!(
            millis
                .extract(json!({"user": "a", "ts": "1"}))
                .unwrap_err()
                .0
                .to_string(),
            "event-time field \"ts\" must be epoch milliseconds"
        );
        assert_eq!(
            millis
                .extract(json!({"user": "a", "ts": 1e300}))
                .unwrap_err()
                .0
                .to_string(),
            "event-time field \"ts\" is out of range: 1e+300"
        );
    }

    #[test]
    fn formats_rfc3339_in_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_767_225_600_250), "2026-01-01T00:00:00.25Z");
    }
}
