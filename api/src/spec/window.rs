//! Windows and aggregations.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::values::HumanDuration;

/// How events are grouped in time. Set exactly one of `tumbling`, `sliding`,
/// `session` or `calendar`. Boundaries are in UTC unless a calendar window
/// names a time zone.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "(has(self.tumbling) ? 1 : 0) + (has(self.sliding) ? 1 : 0) + (has(self.session) ? 1 : 0) + (has(self.calendar) ? 1 : 0) == 1",
    "message": "set exactly one of tumbling, sliding, session or calendar"
}]))]
pub struct WindowSpec {
    /// Fixed-size windows that do not overlap: each event is in exactly one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tumbling: Option<TumblingWindow>,
    /// Fixed-size windows that start every `slide`: each event is in
    /// size/slide windows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sliding: Option<SlidingWindow>,
    /// Per-key sessions that close after `gap` without events, capped at
    /// `maxLength` so an endless session is split instead of growing forever.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<SessionWindow>,
    /// Calendar days, weeks or months in a time zone, with their true local
    /// length (23 or 25 hours on daylight-saving change days).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calendar: Option<CalendarWindow>,
}

impl WindowSpec {
    pub fn tumbling(size: &str) -> Self {
        Self {
            tumbling: Some(TumblingWindow { size: size.into() }),
            ..Self::default()
        }
    }

    /// The kinds of window that are set, by field name.
    pub fn kinds_set(&self) -> Vec<&'static str> {
        super::names_set([
            ("tumbling", self.tumbling.is_some()),
            ("sliding", self.sliding.is_some()),
            ("session", self.session.is_some()),
            ("calendar", self.calendar.is_some()),
        ])
    }
}

/// Fixed, non-overlapping windows aligned to the Unix epoch in UTC.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TumblingWindow {
    /// Length of each window, e.g. `1m` or `5m`.
    pub size: HumanDuration,
}

/// Overlapping (hopping) windows aligned to the Unix epoch in UTC.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SlidingWindow {
    /// Length of each window.
    pub size: HumanDuration,
    /// Time between the starts of consecutive windows; at most `size`.
    pub slide: HumanDuration,
}

/// Sessions of activity per key.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionWindow {
    /// A session ends after this long without events for its key.
    pub gap: HumanDuration,
    /// Longest a session may last; a longer run of activity is split into
    /// consecutive sessions of at most this length.
    #[serde(default = "defaults::session_max")]
    pub max_length: HumanDuration,
}

/// Calendar periods in a time zone.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CalendarWindow {
    /// The calendar period: `day`, `week` (starting Monday, ISO 8601) or
    /// `month`, each starting at local midnight.
    pub unit: CalendarUnit,
    /// IANA time zone name, e.g. `Europe/Berlin` or `America/New_York`.
    #[serde(default = "defaults::utc")]
    pub time_zone: String,
}

/// A calendar period. Weeks start on Monday (ISO 8601).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum CalendarUnit {
    Day,
    Week,
    Month,
}

/// One aggregate computed per key and window.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AggregationSpec {
    /// The aggregate function.
    pub op: AggregateOp,
    /// Input field the function reads. Required for every op but `count`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Name of the aggregate in each result's `aggregates` object. Defaults
    /// to the op name, or `<op>_<field>` when a field is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// For `quantile`: which quantile, between 0 and 1 (0.99 for p99).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub quantile: Option<f64>,
}

impl AggregationSpec {
    pub fn count() -> Self {
        Self {
            op: AggregateOp::Count,
            field: None,
            name: None,
            quantile: None,
        }
    }

    pub fn of(op: AggregateOp, field: &str) -> Self {
        Self {
            op,
            field: Some(field.into()),
            name: None,
            quantile: None,
        }
    }

    /// The name the aggregate has in results.
    pub fn output_name(&self) -> String {
        match (&self.name, &self.field) {
            (Some(name), _) => name.clone(),
            (None, Some(field)) => format!("{}_{}", self.op.as_str(), field),
            (None, None) => self.op.as_str().to_string(),
        }
    }
}

/// Aggregate functions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum AggregateOp {
    /// Number of events.
    Count,
    /// Sum of a numeric field.
    Sum,
    /// Smallest value of a numeric field.
    Min,
    /// Largest value of a numeric field.
    Max,
    /// Mean of a numeric field.
    Avg,
    /// Value of the field in the event with the earliest event time.
    First,
    /// Value of the field in the event with the latest event time.
    Last,
    /// Approximate number of distinct values of the field.
    DistinctCount,
    /// Approximate quantile of a numeric field (set `quantile`).
    Quantile,
}

impl AggregateOp {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Count => "count",
            Self::Sum => "sum",
            Self::Min => "min",
            Self::Max => "max",
            Self::Avg => "avg",
            Self::First => "first",
            Self::Last => "last",
            Self::DistinctCount => "distinctCount",
            Self::Quantile => "quantile",
        }
    }
}

mod defaults {
    use super::*;

    pub fn session_max() -> HumanDuration {
        "4h".into()
    }
    pub fn utc() -> String {
        "UTC".into()
    }
}
