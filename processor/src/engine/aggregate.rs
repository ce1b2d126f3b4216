//! Aggregates computed per key and window.

use serde_json::Value;

use crate::event::Invalid;

/// An aggregate function bound to its input field.
#[derive(Clone, Debug)]
pub enum Aggregate {
    Count,
    Sum { field: String },
}

/// The running value of one aggregate.
#[derive(Clone, Debug, PartialEq)]
pub enum Accumulator {
    Count(u64),
    /// Neumaier-compensated sum: the running sum and the low-order bits it
    /// lost, so long sums of decimal amounts stay exact to the last digit.
    Sum {
        sum: f64,
        lost: f64,
    },
}

impl Aggregate {
    pub fn empty(&self) -> Accumulator {
        match self {
            Self::Count => Accumulator::Count(0),
            Self::Sum { .. } => Accumulator::Sum {
                sum: 0.0,
                lost: 0.0,
            },
        }
    }

    /// The input this aggregate takes from a record, checked before any
    /// accumulator changes so a bad record leaves state untouched.
    pub fn input(&self, record: &Value, name: &str) -> Result<f64, Invalid> {
        match self {
            Self::Count => Ok(1.0),
            Self::Sum { field } => record
                .get(field)
                .and_then(Value::as_f64)
                .filter(|v| v.is_finite())
                .ok_or_else(|| Invalid::NotANumber {
                    field: field.clone(),
                    aggregate: name.to_string(),
                }),
        }
    }
}

impl Accumulator {
    pub fn add(&mut self, input: f64) {
        match self {
            Self::Count(n) => *n += 1,
            Self::Sum { sum, lost } => {
                let t = *sum + input;
                *lost += if sum.abs() >= input.abs() {
                    (*sum - t) + input
                } else {
                    (input - t) + *sum
                };
                *sum = t;
            }
        }
    }

    pub fn to_json(&self) -> Value {
        match self {
            Self::Count(n) => Value::from(*n),
            Self::Sum { sum, lost } => Value::from(*sum + *lost),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn count_and_sum() {
        let sum = Aggregate::Sum {
            field: "amount".into(),
        };
        let mut acc = sum.empty();
        for amount in [1.5, 2.25] {
            let input = sum.input(&json!({"amount": amount}), "total").unwrap();
            acc.add(input);
        }
        assert_eq!(acc.to_json(), json!(3.75));
        let mut count = Aggregate::Count.empty();
        count.add(1.0);
        count.add(1.0);
        assert_eq!(count.to_json(), json!(2));
    }

    #[test]
    fn sum_of_cents_prints_exactly() {
        let sum = Aggregate::Sum {
            field: "amount".into(),
        };
        let mut acc = sum.empty();
        let mut naive = 0.0;
        for _ in 0..10_000 {
            acc.add(0.1);
            naive += 0.1;
        }
        assert_ne!(naive, 1000.0, "the naive sum drifts");
        assert_eq!(acc.to_json(), json!(1000.0));
    }

    #[test]
    fn sum_rejects_missing_and_non_numeric_inputs() {
        let sum = Aggregate::Sum {
            field: "amount".into(),
        };
        for record in [json!({}), json!({"amount": "12"}), json!({"amount": null})] {
            let err = sum.input(&record, "total").unwrap_err();
            assert_eq!(
                err.to_string(),
                "field \"amount\" needed by aggregation \"total\" must be a finite number"
            );
        }
    }
}
