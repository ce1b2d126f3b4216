//! Event time, watermarks and clock skew.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::values::HumanDuration;

/// How each event's time is read and how the watermark follows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventTimeSpec {
    /// Name of the field that holds the event's time.
    pub field: String,
    /// How the time field is written: `rfc3339` (a string with an offset,
    /// e.g. `2026-03-29T01:30:00+01:00`), `epochMillis`, `epochSeconds`
    /// (fractions allowed) or `epochMicros` (numbers since the Unix epoch).
    #[serde(default)]
    pub format: TimeFormat,
    /// Bounded out-of-orderness: the watermark trails the largest event time
    /// seen by this much. Larger values tolerate more disorder but delay
    /// results by as much.
    #[serde(default = "defaults::out_of_orderness")]
    pub max_out_of_orderness: HumanDuration,
    /// A partition with no events for this long stops holding the watermark
    /// back, and rejoins when it gets data again.
    #[serde(default = "defaults::idle_timeout")]
    pub idle_timeout: HumanDuration,
    /// Events stamped further than this ahead of the time they are ingested
    /// are treated per `skewPolicy`. Protects the watermark from producers
    /// with a clock in the future.
    #[serde(default = "defaults::max_future_skew")]
    pub max_future_skew: HumanDuration,
    /// Events stamped further than this behind the time they are ingested are
    /// treated per `skewPolicy`. Unset means no limit (replays of old data
    /// are fine).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_past_skew: Option<HumanDuration>,
    /// What to do with events beyond the allowed skew: `reject` sends them to
    /// the invalid output with the reason; `clamp` moves their time to the
    /// nearest allowed time and processes them.
    #[serde(default)]
    pub skew_policy: SkewPolicy,
}

impl EventTimeSpec {
    /// Event time read from `field`, everything else at its default.
    pub fn on_field(field: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            format: TimeFormat::default(),
            max_out_of_orderness: defaults::out_of_orderness(),
            idle_timeout: defaults::idle_timeout(),
            max_future_skew: defaults::max_future_skew(),
            max_past_skew: None,
            skew_policy: SkewPolicy::default(),
        }
    }
}

/// How an event-time field is written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum TimeFormat {
    /// An RFC 3339 string with an offset, e.g. `2026-03-29T01:30:00+01:00`.
    #[default]
    Rfc3339,
    /// Milliseconds since the Unix epoch, as a number.
    EpochMillis,
    /// Seconds since the Unix epoch, as a number (fractions allowed).
    EpochSeconds,
    /// Microseconds since the Unix epoch, as a number.
    EpochMicros,
}

/// What happens to an event whose timestamp is beyond the allowed skew.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum SkewPolicy {
    /// Send it to the invalid output with the reason and count it.
    #[default]
    Reject,
    /// Replace its time with the nearest allowed time and process it.
    Clamp,
}

/// What happens to an event that arrives after its window's allowed lateness.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum LateDataPolicy {
    /// Count it (and record its lateness) and drop it.
    #[default]
    Drop,
    /// Count it and write it to `lateOutput` with its lateness.
    Output,
}

mod defaults {
    use super::*;

    pub fn out_of_orderness() -> HumanDuration {
        "5s".into()
    }
    pub fn idle_timeout() -> HumanDuration {
        "1m".into()
    }
    pub fn max_future_skew() -> HumanDuration {
        "5m".into()
    }
}
