//! Human-readable value types used in the spec: durations (`30s`, `5m`) and
//! byte sizes (`256Mi`). Both keep the text the user wrote, so that
//! validation can report every malformed value at once with its field path,
//! and both are parsed on use.

use std::{borrow::Cow, fmt, time::Duration};

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Serialize};

/// A duration written as a number and a unit (`250ms`, `30s`, `5m`, `2h`,
/// `7d`), or several of them (`1h30m`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct HumanDuration(String);

/// Why a duration or byte size could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    #[error("{0:?} is negative; durations must be zero or more")]
    Negative(String),
    #[error("{0:?} is not a duration; write a number and a unit such as 500ms, 30s, 5m, 2h or 1d")]
    BadDuration(String),
    #[error("{0:?} is longer than 10 years; use a shorter duration")]
    TooLong(String),
    #[error("{0:?} is not a size; write a number and an optional unit such as 512Mi, 2Gi or 100M")]
    BadSize(String),
}

impl HumanDuration {
    /// A duration from its text form; checked when parsed, not here.
    pub fn new(text: impl Into<String>) -> Self {
        Self(text.into())
    }

    /// Formats a duration the way a user would write it (`90s` → `1m 30s`).
    pub fn from_duration(d: Duration) -> Self {
        Self(humantime::format_duration(d).to_string())
    }

    /// The text as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Parses the text. Accepts exactly what the CRD's pattern accepts, so a
    /// file that runs locally also passes `kubectl apply`.
    pub fn parse(&self) -> Result<Duration, ValueError> {
        let text = self.0.as_str();
        if text.trim_start().starts_with('-') {
            return Err(ValueError::Negative(self.0.clone()));
        }
        if text == "0" {
            return Ok(Duration::ZERO);
        }
        if !well_formed(text) {
            return Err(ValueError::BadDuration(self.0.clone()));
        }
        let d =
            humantime::parse_duration(text).map_err(|_| ValueError::BadDuration(self.0.clone()))?;
        if d > MAX_DURATION {
            return Err(ValueError::TooLong(self.0.clone()));
        }
        Ok(d)
    }
}

/// Longest duration accepted: ten years of days.
const MAX_DURATION: Duration = Duration::from_secs(3650 * 86_400);

/// Units the CRD pattern allows.
const UNITS: [&str; 10] = ["ns", "us", "ms", "s", "sec", "m", "min", "h", "d", "w"];

/// `text` is one or more `<digits>[ ]<unit>[ ]` groups (the CRD pattern).
fn well_formed(text: &str) -> bool {
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        if digits == 0 {
            return false;
        }
        rest = rest[digits..].strip_prefix(' ').unwrap_or(&rest[digits..]);
        let letters = rest.len()
            - rest
                .trim_start_matches(|c: char| c.is_ascii_alphabetic())
                .len();
        if !UNITS.contains(&&rest[..letters]) {
            return false;
        }
        rest = rest[letters..]
            .strip_prefix(' ')
            .unwrap_or(&rest[letters..]);
    }
    !text.is_empty()
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for HumanDuration {
    fn from(s: &str) -> Self {
        Self::new(s)
    }
}

impl JsonSchema for HumanDuration {
    fn schema_name() -> Cow<'static, str> {
        "HumanDuration".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": "^(0|([0-9]+ ?(ns|us|ms|s|sec|m|min|h|d|w) ?)+)$",
        })
    }
}

/// An amount of bytes in Kubernetes quantity notation: a number with an
/// optional binary (`Ki`, `Mi`, `Gi`, `Ti`) or decimal (`k`, `M`, `G`, `T`)
/// suffix.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ByteSize(String);

impl ByteSize {
    pub fn new(text: impl Into<String>) -> Self {
        Self(text.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The number of bytes.
    pub fn parse(&self) -> Result<u64, ValueError> {
        let bad = || ValueError::BadSize(self.0.clone());
        let text = self.0.trim();
        let split = text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len());
        let (digits, unit) = text.split_at(split);
        let n: u64 = digits.parse().map_err(|_| bad())?;
        let factor: u64 = match unit {
            "" => 1,
            "k" => 1_000,
            "M" => 1_000_000,
            "G" => 1_000_000_000,
            "T" => 1_000_000_000_000,
            "Ki" => 1 << 10,
            "Mi" => 1 << 20,
            "Gi" => 1 << 30,
            "Ti" => 1 << 40,
            _ => return Err(bad()),
        };
        n.checked_mul(factor).ok_or_else(bad)
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for ByteSize {
    fn from(s: &str) -> Self {
        Self::new(s)
    }
}

impl JsonSchema for ByteSize {
    fn schema_name() -> Cow<'static, str> {
        "ByteSize".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": "^[0-9]+(k|M|G|T|Ki|Mi|Gi|Ti)?$",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_common_forms() {
        let cases = [
            ("0", 0),
            ("0s", 0),
            ("250ms", 250),
            ("30s", 30_000),
            ("5m", 300_000),
            ("1h30m", 5_400_000),
            ("1h 30m", 5_400_000),
            ("2d", 172_800_000),
        ];
        for (text, ms) in cases {
            let d = HumanDuration::new(text).parse().unwrap();
            assert_eq!(d.as_millis(), ms, "{text}");
        }
    }

    #[test]
    fn durations_reject_negative_and_garbage() {
        assert_eq!(
            HumanDuration::new("-5s").parse(),
            Err(ValueError::Negative("-5s".into()))
        );
        assert!(matches!(
            HumanDuration::new("5 parsecs").parse(),
            Err(ValueError::BadDuration(_))
        ));
        assert!(matches!(
            HumanDuration::new("").parse(),
            Err(ValueError::BadDuration(_))
        ));
    }

    #[test]
    fn durations_accept_only_what_the_crd_pattern_accepts() {
        for rejected in [
            "1M", "1hour", "2days", "5", "m", " 5m", "5m  1s", "1.5h", "5mm",
        ] {
            assert!(
                matches!(
                    HumanDuration::new(rejected).parse(),
                    Err(ValueError::BadDuration(_))
                ),
                "{rejected:?} should be rejected"
            );
        }
        assert_eq!(
            HumanDuration::new("20000d").parse(),
            Err(ValueError::TooLong("20000d".into()))
        );
    }

    #[test]
    fn duration_round_trips_through_display_form() {
        for d in [Duration::from_secs(90), Duration::from_millis(3_723_004)] {
            assert_eq!(HumanDuration::from_duration(d).parse().unwrap(), d);
        }
    }

    #[test]
    fn sizes_parse_binary_and_decimal_units() {
        assert_eq!(ByteSize::new("512Mi").parse().unwrap(), 512 << 20);
        assert_eq!(ByteSize::new("2Gi").parse().unwrap(), 2 << 30);
        assert_eq!(ByteSize::new("100M").parse().unwrap(), 100_000_000);
        assert_eq!(ByteSize::new("4096").parse().unwrap(), 4096);
        assert!(ByteSize::new("12 bananas").parse().is_err());
        assert!(ByteSize::new("Mi").parse().is_err());
        assert!(ByteSize::new("99999999999999Ti").parse().is_err());
    }
}
