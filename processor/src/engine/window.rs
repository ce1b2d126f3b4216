//! Window assignment: pure functions from an event time to its windows.
//! Session windows depend on a key's other sessions and live in
//! [`super::session`].

use eddy_api::spec::CalendarUnit;
use jiff::{tz::TimeZone, Timestamp, ToSpan};
use serde::{Deserialize, Serialize};

/// A half-open window `[start, end)` in epoch milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Window {
    pub start: i64,
    pub end: i64,
}

/// Windows that do not depend on other events: each event time maps to a
/// fixed set of windows.
#[derive(Clone, Debug)]
pub enum Assigner {
    /// Fixed-size, non-overlapping windows aligned to the Unix epoch.
    Tumbling { size: i64 },
    /// Fixed-size windows starting every `slide` ms, aligned to the epoch.
    Sliding { size: i64, slide: i64 },
    /// Calendar days, weeks (from Monday) or months in a time zone.
    Calendar { unit: CalendarUnit, tz: TimeZone },
}

impl Assigner {
    /// The windows `time_ms` falls in, in ascending start order.
    pub fn assign(&self, time_ms: i64, out: &mut Vec<Window>) {
        match *self {
            Self::Tumbling { size } => {
                let start = time_ms - time_ms.rem_euclid(size);
                out.push(Window {
                    start,
                    end: start + size,
                });
            }
            Self::Sliding { size, slide } => {
                let last = time_ms - time_ms.rem_euclid(slide);
                // Starts in (time - size, time], stepping back by slide.
                let first = last - ((size - 1) / slide) * slide;
                let mut start = first;
                while start <= last {
                    if start + size > time_ms {
                        out.push(Window {
                            start,
                            end: start + size,
                        });
                    }
                    start += slide;
                }
            }
            Self::Calendar { unit, ref tz } => {
                if let Some(w) = calendar(time_ms, unit, tz) {
                    out.push(w);
                }
            }
        }
    }
}

/// The calendar period around `time_ms` in `tz`: local midnight to local
/// midnight, so a day is 23 or 25 hours long when the clocks change.
fn calendar(time_ms: i64, unit: CalendarUnit, tz: &TimeZone) -> Option<Window> {
    let local = Timestamp::from_millisecond(time_ms)
        .ok()?
        .to_zoned(tz.clone());
    let date = local.date();
    let (first, next) = match unit {
        CalendarUnit::Day => (date, date.checked_add(1.day()).ok()?),
        CalendarUnit::Week => {
            let monday = date
                .checked_sub(i64::from(date.weekday().to_monday_zero_offset()).days())
                .ok()?;
            (monday, monday.checked_add(1.week()).ok()?)
        }
        CalendarUnit::Month => {
            let first = date.first_of_month();
            (first, first.checked_add(1.month()).ok()?)
        }
    };
    let start = first
        .to_zoned(tz.clone())
        .ok()?
        .timestamp()
        .as_millisecond();
    let end = next.to_zoned(tz.clone()).ok()?.timestamp().as_millisecond();
    Some(Window { start, end })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assign(a: &Assigner, t: i64) -> Vec<(i64, i64)> {
        let mut out = Vec::new();
        a.assign(t, &mut out);
        out.into_iter().map(|w| (w.start, w.end)).collect()
    }

    fn ms(rfc3339: &str) -> i64 {
        rfc3339.parse::<Timestamp>().unwrap().as_millisecond()
    }

    #[test]
    fn tumbling_windows_are_half_open_and_floor_negative_times() {
        let w = Assigner::Tumbling { size: 60_000 };
        assert_eq!(assign(&w, 0), vec![(0, 60_000)]);
        assert_eq!(assign(&w, 59_999), vec![(0, 60_000)]);
        assert_eq!(assign(&w, 60_000), vec![(60_000, 120_000)]);
        assert_eq!(assign(&w, -1), vec![(-60_000, 0)]);
    }

    #[test]
    fn sliding_puts_an_event_in_size_over_slide_windows() {
        let w = Assigner::Sliding {
            size: 10_000,
            slide: 5_000,
        };
        assert_eq!(assign(&w, 7_000), vec![(0, 10_000), (5_000, 15_000)]);
        assert_eq!(assign(&w, 5_000), vec![(0, 10_000), (5_000, 15_000)]);
        assert_eq!(assign(&w, 4_999), vec![(-5_000, 5_000), (0, 10_000)]);
        let w = Assigner::Sliding {
            size: 60_000,
            slide: 15_000,
        };
        assert_eq!(
            assign(&w, 61_000),
            vec![
                (15_000, 75_000),
                (30_000, 90_000),
                (45_000, 105_000),
                (60_000, 120_000)
            ]
        );
    }

    #[test]
    fn sliding_with_a_slide_that_does_not_divide_the_size() {
        let w = Assigner::Sliding {
            size: 10_000,
            slide: 3_000,
        };
        // Windows start at multiples of 3 s and last 10 s.
        assert_eq!(
            assign(&w, 9_500),
            vec![
                (0, 10_000),
                (3_000, 13_000),
                (6_000, 16_000),
                (9_000, 19_000)
            ]
        );
        assert_eq!(
            assign(&w, 10_000),
            vec![(3_000, 13_000), (6_000, 16_000), (9_000, 19_000)]
        );
    }

    #[test]
    fn calendar_days_in_berlin_are_23_and_25_hours_on_dst_days() {
        let berlin = Assigner::Calendar {
            unit: CalendarUnit::Day,
            tz: TimeZone::get("Europe/Berlin").unwrap(),
        };
        let spring = assign(&berlin, ms("2026-03-29T12:00:00Z"));
        assert_eq!(
            spring,
            vec![(ms("2026-03-28T23:00:00Z"), ms("2026-03-29T22:00:00Z"))]
        );
        assert_eq!(spring[0].1 - spring[0].0, 23 * 3_600_000);
        let autumn = assign(&berlin, ms("2026-10-25T12:00:00Z"));
        assert_eq!(
            autumn,
            vec![(ms("2026-10-24T22:00:00Z"), ms("2026-10-25T23:00:00Z"))]
        );
        assert_eq!(autumn[0].1 - autumn[0].0, 25 * 3_600_000);
        // 00:30 local on 29 March is still 28 March in UTC.
        assert_eq!(assign(&berlin, ms("2026-03-28T23:30:00Z")), spring);
    }

    #[test]
    fn calendar_weeks_start_monday_and_months_on_the_first() {
        let utc = TimeZone::UTC;
        let week = Assigner::Calendar {
            unit: CalendarUnit::Week,
            tz: utc.clone(),
        };
        // 2026-11-21 is a Saturday.
        assert_eq!(
            assign(&week, ms("2026-11-21T10:00:00Z")),
            vec![(ms("2026-11-16T00:00:00Z"), ms("2026-11-23T00:00:00Z"))]
        );
        let month = Assigner::Calendar {
            unit: CalendarUnit::Month,
            tz: utc,
        };
        assert_eq!(
            assign(&month, ms("2028-02-29T23:59:59Z")),
            vec![(ms("2028-02-01T00:00:00Z"), ms("2028-03-01T00:00:00Z"))]
        );
        let utc_day = Assigner::Calendar {
            unit: CalendarUnit::Day,
            tz: TimeZone::UTC,
        };
        assert_eq!(
            assign(&utc_day, ms("2026-03-29T12:00:00Z")),
            vec![(ms("2026-03-29T00:00:00Z"), ms("2026-03-30T00:00:00Z"))]
        );
    }
}
