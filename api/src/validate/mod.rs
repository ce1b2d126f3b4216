//! Validation of a [`StreamJobSpec`]: a pure function that returns every
//! problem at once, each naming the field path and what to change.

mod outputs;
mod runtime;
mod source;
mod time;

use std::{fmt, time::Duration};

use crate::{spec::StreamJobSpec, values::HumanDuration};

/// One thing wrong with a spec.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// Field path, e.g. `spec.window.sliding.slide`.
    pub path: String,
    /// What is wrong and what to change.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Every problem with `spec`, in field order. Empty means valid.
pub fn validate(spec: &StreamJobSpec) -> Vec<Problem> {
    let mut p = Problems::default();
    source::check(spec, &mut p);
    time::check(spec, &mut p);
    outputs::check(spec, &mut p);
    runtime::check(spec, &mut p);
    p.0
}

/// Accumulates problems; helpers for the checks every section repeats.
#[derive(Default)]
pub(crate) struct Problems(Vec<Problem>);

impl Problems {
    pub(crate) fn add(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(Problem {
            path: path.into(),
            message: message.into(),
        });
    }

    /// Parses a duration, reporting it when malformed.
    pub(crate) fn duration(&mut self, path: &str, value: &HumanDuration) -> Option<Duration> {
        match value.parse() {
            Ok(d) => Some(d),
            Err(e) => {
                self.add(path, e.to_string());
                None
            }
        }
    }

    /// Parses a duration that must be greater than zero.
    pub(crate) fn positive_duration(
        &mut self,
        path: &str,
        value: &HumanDuration,
    ) -> Option<Duration> {
        let d = self.duration(path, value)?;
        if d.is_zero() {
            self.add(path, "must be greater than zero, e.g. 1m");
            return None;
        }
        Some(d)
    }

    /// Parses a window length: a positive whole number of milliseconds.
    pub(crate) fn window_length(&mut self, path: &str, value: &HumanDuration) -> Option<Duration> {
        let d = self.positive_duration(path, value)?;
        if d.subsec_nanos() % 1_000_000 != 0 {
            self.add(
                path,
                format!("{value} is not a whole number of milliseconds; windows have millisecond precision"),
            );
            return None;
        }
        Some(d)
    }

    pub(crate) fn non_empty(&mut self, path: &str, value: &str, example: &str) {
        if value.trim().is_empty() {
            self.add(path, format!("must not be empty; set it, e.g. {example}"));
        }
    }

    /// Exactly one member of a one-of group is set.
    pub(crate) fn exactly_one(&mut self, path: &str, set: &[&str], choices: &str) {
        match set.len() {
            1 => {}
            0 => self.add(path, format!("set one of {choices}")),
            _ => self.add(
                path,
                format!(
                    "{} are all set; keep exactly one of {choices}",
                    set.join(", ")
                ),
            ),
        }
    }

    pub(crate) fn share(&mut self, path: &str, value: f64) {
        if !(0.0..=1.0).contains(&value) || value.is_nan() {
            self.add(
                path,
                format!("{value} is not a share; use a number from 0 to 1"),
            );
        }
    }
}

#[cfg(test)]
mod tests;
