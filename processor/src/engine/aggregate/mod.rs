//! Aggregates computed per key and window. Every accumulator can absorb an
//! input and merge another accumulator of its kind, so in-memory
//! pre-aggregates fold into stored state, and every result is
//! deterministic: no random seeds, ties broken by value.

use cardinality_estimator::CardinalityEstimator;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sketches_ddsketch::{Config, DDSketch};

use crate::{event::Invalid, source::json::Fields};

/// An aggregate function bound to its input field.
#[derive(Clone, Debug, PartialEq)]
pub enum Aggregate {
    Count,
    Sum { field: String },
    Min { field: String },
    Max { field: String },
    Avg { field: String },
    First { field: String },
    Last { field: String },
    DistinctCount { field: String },
    Quantile { field: String, q: f64 },
}

/// What an aggregate takes from one record.
#[derive(Clone, Debug, PartialEq)]
pub enum Input {
    None,
    Number(f64),
    /// A JSON value in canonical text form (object keys sorted).
    Json(String),
}

/// Relative accuracy of quantile sketches: 1%.
const QUANTILE_ACCURACY: f64 = 0.01;

/// The running value of one aggregate.
#[derive(Clone, Serialize, Deserialize)]
pub enum Acc {
    Count(u64),
    Sum(Sum),
    Min(Option<f64>),
    Max(Option<f64>),
    Avg(Sum, u64),
    /// Event time and value of the earliest event.
    First(Option<(i64, String)>),
    /// Event time and value of the latest event.
    Last(Option<(i64, String)>),
    DistinctCount(Box<CardinalityEstimator<str>>),
    Quantile(Box<DDSketch>),
}

impl std::fmt::Debug for Acc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Acc::Count(n) => write!(f, "Count({n})"),
            Acc::Sum(s) => write!(f, "Sum({})", s.value()),
            Acc::Min(v) => write!(f, "Min({v:?})"),
            Acc::Max(v) => write!(f, "Max({v:?})"),
            Acc::Avg(s, n) => write!(f, "Avg({}, {n})", s.value()),
            Acc::First(v) => write!(f, "First({v:?})"),
            Acc::Last(v) => write!(f, "Last({v:?})"),
            Acc::DistinctCount(e) => write!(f, "DistinctCount(~{})", e.estimate()),
            Acc::Quantile(s) => write!(f, "Quantile({} values)", s.count()),
        }
    }
}

/// Neumaier-compensated sum: the running sum and the low-order bits it lost,
/// so long sums of decimal amounts stay exact to the last printed digit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Sum {
    sum: f64,
    lost: f64,
}

impl Sum {
    fn add(&mut self, x: f64) {
        let t = self.sum + x;
        self.lost += if self.sum.abs() >= x.abs() {
            (self.sum - t) + x
        } else {
            (x - t) + self.sum
        };
        self.sum = t;
    }

    fn merge(&mut self, other: &Sum) {
        self.add(other.sum);
        self.lost += other.lost;
    }

    fn value(&self) -> f64 {
        self.sum + self.lost
    }
}

impl Aggregate {
    pub fn field(&self) -> Option<&str> {
        match self {
            Self::Count => None,
            Self::Sum { field }
            | Self::Min { field }
            | Self::Max { field }
            | Self::Avg { field }
            | Self::First { field }
            | Self::Last { field }
            | Self::DistinctCount { field }
            | Self::Quantile { field, .. } => Some(field),
        }
    }

    pub fn empty(&self) -> Acc {
        match self {
            Self::Count => Acc::Count(0),
            Self::Sum { .. } => Acc::Sum(Sum::default()),
            Self::Min { .. } => Acc::Min(None),
            Self::Max { .. } => Acc::Max(None),
            Self::Avg { .. } => Acc::Avg(Sum::default(), 0),
            Self::First { .. } => Acc::First(None),
            Self::Last { .. } => Acc::Last(None),
            Self::DistinctCount { .. } => Acc::DistinctCount(Box::default()),
            Self::Quantile { .. } => Acc::Quantile(Box::new(DDSketch::new(Config::new(
                QUANTILE_ACCURACY,
                2048,
                1.0e-9,
            )))),
        }
    }

    /// Whether `acc` is of this aggregate's kind (as [`Aggregate::empty`]
    /// makes it), without making one.
    pub fn holds(&self, acc: &Acc) -> bool {
        matches!(
            (self, acc),
            (Self::Count, Acc::Count(_))
                | (Self::Sum { .. }, Acc::Sum(_))
                | (Self::Min { .. }, Acc::Min(_))
                | (Self::Max { .. }, Acc::Max(_))
                | (Self::Avg { .. }, Acc::Avg(..))
                | (Self::First { .. }, Acc::First(_))
                | (Self::Last { .. }, Acc::Last(_))
                | (Self::DistinctCount { .. }, Acc::DistinctCount(_))
                | (Self::Quantile { .. }, Acc::Quantile(_))
        )
    }

    /// The input this aggregate takes from a record; checked for every
    /// aggregate before any state changes, so a bad record changes nothing.
    pub fn input(&self, record: &impl Fields, name: &str) -> Result<Input, Invalid> {
        let Some(field) = self.field() else {
            return Ok(Input::None);
        };
        let value = record.field(field);
        match self {
            Self::First { .. } | Self::Last { .. } | Self::DistinctCount { .. } => match value {
                None | Some(Value::Null) => Err(Invalid::MissingField {
                    field: field.to_string(),
                    aggregate: name.to_string(),
                }),
                Some(v) => Ok(Input::Json(v.to_string())),
            },
            _ => value
                .and_then(Value::as_f64)
                .filter(|v| v.is_finite())
                .map(Input::Number)
                .ok_or_else(|| Invalid::NotANumber {
                    field: field.to_string(),
                    aggregate: name.to_string(),
                }),
        }
    }

    /// The result value of an accumulator.
    pub fn result(&self, acc: &Acc) -> Value {
        match (self, acc) {
            (_, Acc::Count(n)) => Value::from(*n),
            (_, Acc::Sum(s)) => Value::from(s.value()),
            (_, Acc::Min(v) | Acc::Max(v)) => v.map_or(Value::Null, Value::from),
            (_, Acc::Avg(s, n)) if *n > 0 => Value::from(s.value() / *n as f64),
            (_, Acc::Avg(..)) => Value::Null,
            (_, Acc::First(v) | Acc::Last(v)) => v
                .as_ref()
                .and_then(|(_, text)| serde_json::from_str(text).ok())
                .unwrap_or(Value::Null),
            (_, Acc::DistinctCount(e)) => Value::from(e.estimate() as u64),
            (Self::Quantile { q, .. }, Acc::Quantile(s)) => s
                .quantile(*q)
                .ok()
                .flatten()
                .map_or(Value::Null, Value::from),
            (_, Acc::Quantile(_)) => Value::Null,
        }
    }
}

impl Acc {
    /// Absorbs one input of an event at `time_ms`.
    pub fn add(&mut self, input: &Input, time_ms: i64) {
        match (self, input) {
            (Acc::Count(n), _) => *n += 1,
            (Acc::Sum(s), Input::Number(x)) => s.add(*x),
            (Acc::Min(m), Input::Number(x)) => *m = Some(m.map_or(*x, |m| m.min(*x))),
            (Acc::Max(m), Input::Number(x)) => *m = Some(m.map_or(*x, |m| m.max(*x))),
            (Acc::Avg(s, n), Input::Number(x)) => {
                s.add(*x);
                *n += 1;
            }
            (Acc::First(f), Input::Json(v)) => keep_first(f, (time_ms, v.clone())),
            (Acc::Last(l), Input::Json(v)) => keep_last(l, (time_ms, v.clone())),
            (Acc::DistinctCount(e), Input::Json(v)) => e.insert(v.as_str()),
            (Acc::Quantile(s), Input::Number(x)) => s.add(*x),
            _ => {}
        }
    }

    /// Folds `other` (of the same aggregate) into this accumulator.
    pub fn merge(&mut self, other: &Acc) {
        match (self, other) {
            (Acc::Count(a), Acc::Count(b)) => *a += b,
            (Acc::Sum(a), Acc::Sum(b)) => a.merge(b),
            (Acc::Min(a), Acc::Min(Some(b))) => *a = Some(a.map_or(*b, |a| a.min(*b))),
            (Acc::Max(a), Acc::Max(Some(b))) => *a = Some(a.map_or(*b, |a| a.max(*b))),
            (Acc::Avg(a, n), Acc::Avg(b, m)) => {
                a.merge(b);
                *n += m;
            }
            (Acc::First(a), Acc::First(Some(b))) => keep_first(a, b.clone()),
            (Acc::Last(a), Acc::Last(Some(b))) => keep_last(a, b.clone()),
            (Acc::DistinctCount(a), Acc::DistinctCount(b)) => a.merge(b),
            (Acc::Quantile(a), Acc::Quantile(b)) => {
                // Same configuration by construction, so this cannot fail.
                let _ = a.merge(b);
            }
            _ => {}
        }
    }
}

/// Earliest event time wins; on a tie the smaller value, so the result
/// does not depend on arrival order.
fn keep_first(slot: &mut Option<(i64, String)>, candidate: (i64, String)) {
    if slot.as_ref().is_none_or(|current| candidate < *current) {
        *slot = Some(candidate);
    }
}

/// Latest event time wins; on a tie the larger value.
fn keep_last(slot: &mut Option<(i64, String)>, candidate: (i64, String)) {
    if slot.as_ref().is_none_or(|current| candidate > *current) {
        *slot = Some(candidate);
    }
}

#[cfg(test)]
mod tests;
