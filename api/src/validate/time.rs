use std::collections::BTreeSet;

use crate::spec::{AggregateOp, StreamJobSpec};

use super::Problems;

pub(super) fn check(spec: &StreamJobSpec, p: &mut Problems) {
    let t = &spec.event_time;
    p.non_empty("spec.eventTime.field", &t.field, "timestamp");
    p.duration("spec.eventTime.maxOutOfOrderness", &t.max_out_of_orderness);
    p.positive_duration("spec.eventTime.idleTimeout", &t.idle_timeout);
    p.duration("spec.eventTime.maxFutureSkew", &t.max_future_skew);
    if let Some(past) = &t.max_past_skew {
        p.duration("spec.eventTime.maxPastSkew", past);
    }
    window(spec, p);
    p.duration("spec.allowedLateness", &spec.allowed_lateness);
    aggregations(spec, p);
}

fn window(spec: &StreamJobSpec, p: &mut Problems) {
    let w = &spec.window;
    p.exactly_one(
        "spec.window",
        &w.kinds_set(),
        "tumbling, sliding, session or calendar",
    );
    if let Some(t) = &w.tumbling {
        p.window_length("spec.window.tumbling.size", &t.size);
    }
    if let Some(s) = &w.sliding {
        let size = p.window_length("spec.window.sliding.size", &s.size);
        let slide = p.window_length("spec.window.sliding.slide", &s.slide);
        if let (Some(size), Some(slide)) = (size, slide) {
            if slide > size {
                p.add(
                    "spec.window.sliding.slide",
                    format!(
                        "slide {} is larger than size {}, so some events would fall in no window; \
                         make slide at most the size (or use a tumbling window)",
                        s.slide, s.size
                    ),
                );
            } else if size.as_millis() / slide.as_millis().max(1) > 1000 {
                p.add(
                    "spec.window.sliding.slide",
                    format!(
                        "each event would fall in more than 1000 windows ({} / {}); raise slide",
                        s.size, s.slide
                    ),
                );
            }
        }
    }
    if let Some(s) = &w.session {
        let gap = p.window_length("spec.window.session.gap", &s.gap);
        let max = p.window_length("spec.window.session.maxLength", &s.max_length);
        if let (Some(gap), Some(max)) = (gap, max) {
            if max < gap {
                p.add(
                    "spec.window.session.maxLength",
                    format!(
                        "maxLength {} is shorter than gap {}; make it at least the gap",
                        s.max_length, s.gap
                    ),
                );
            }
        }
    }
    if let Some(c) = &w.calendar {
        if jiff::tz::TimeZone::get(&c.time_zone).is_err() {
            p.add(
                "spec.window.calendar.timeZone",
                format!(
                    "{:?} is not a known IANA time zone; use a name such as UTC, Europe/Berlin \
                     or America/New_York",
                    c.time_zone
                ),
            );
        }
    }
}

fn aggregations(spec: &StreamJobSpec, p: &mut Problems) {
    if spec.aggregations.is_empty() {
        p.add(
            "spec.aggregations",
            "list at least one aggregation, e.g. [{op: count}]",
        );
    }
    let mut names = BTreeSet::new();
    for (i, a) in spec.aggregations.iter().enumerate() {
        let path = format!("spec.aggregations[{i}]");
        match &a.field {
            None if a.op != AggregateOp::Count => p.add(
                format!("{path}.field"),
                format!("{} needs an input field; set field", a.op.as_str()),
            ),
            Some(f) => p.non_empty(&format!("{path}.field"), f, "amount"),
            None => {}
        }
        match (a.op, a.quantile) {
            (AggregateOp::Quantile, None) => p.add(
                format!("{path}.quantile"),
                "quantile needs a quantile from 0 to 1, e.g. 0.99",
            ),
            (AggregateOp::Quantile, Some(q)) => p.share(&format!("{path}.quantile"), q),
            (op, Some(_)) => p.add(
                format!("{path}.quantile"),
                format!(
                    "only the quantile op takes a quantile; remove it from {}",
                    op.as_str()
                ),
            ),
            _ => {}
        }
        let name = a.output_name();
        if name.trim().is_empty() {
            p.add(format!("{path}.name"), "must not be empty");
        } else if !names.insert(name.clone()) {
            p.add(
                format!("{path}.name"),
                format!("{name:?} is used by an earlier aggregation; give each a distinct name"),
            );
        }
    }
}
