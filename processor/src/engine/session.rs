//! Session placement: where an event goes among its key's sessions.
//!
//! A session is `[start, end)` with `end = last event + gap`, capped at
//! `start + maxLength`. An event joins the session it falls into or within
//! `gap` of; if it bridges two sessions they merge, unless the merged
//! session would exceed `maxLength`. An event at or past `start + maxLength`
//! opens a new session, so an endless stream of activity is split into
//! sessions of at most `maxLength` instead of one that grows forever.
//! Sessions that have already fired keep their bounds: a late event inside
//! one updates it, one outside opens or joins an unfired session.

use super::window::Window;

/// What placing an event among a key's sessions does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Placement {
    /// Open a new session.
    New(Window),
    /// Add to session `index`, whose bounds become `window`.
    Join { index: usize, window: Window },
    /// Merge session `from` into session `into` (then add the event);
    /// `into`'s bounds become `window`.
    Merge {
        into: usize,
        from: usize,
        window: Window,
    },
}

/// A key's session as placement sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Session {
    pub window: Window,
    pub fired: bool,
}

/// Places an event at `t` among `sessions` (sorted by start).
pub fn place(sessions: &[Session], t: i64, gap: i64, max_len: i64) -> Placement {
    let cap = |start: i64, end: i64| Window {
        start,
        end: end.min(start + max_len),
    };
    // Fired sessions keep their bounds: only an event inside one joins it.
    if let Some(index) = sessions
        .iter()
        .position(|s| s.fired && s.window.start <= t && t < s.window.end)
    {
        return Placement::Join {
            index,
            window: sessions[index].window,
        };
    }
    // Unfired sessions the event touches: it falls in [start - gap, end).
    let touching: Vec<usize> = sessions
        .iter()
        .enumerate()
        .filter(|(_, s)| !s.fired && s.window.start - gap <= t && t < s.window.end)
        .filter(|(_, s)| t < s.window.start + max_len)
        .map(|(i, _)| i)
        .collect();
    let extend = |s: &Session| {
        let start = s.window.start.min(t);
        cap(start, s.window.end.max(t + gap))
    };
    match touching.as_slice() {
        [] => Placement::New(cap(t, t + gap)),
        [index] => {
            let s = &sessions[*index];
            if s.window.end - t.min(s.window.start) > max_len && t < s.window.start {
                // Extending the start back would exceed the cap.
                return Placement::New(cap(t, s.window.start.min(t + gap)));
            }
            Placement::Join {
                index: *index,
                window: extend(s),
            }
        }
        [first, second, ..] => {
            let (a, b) = (&sessions[*first], &sessions[*second]);
            let start = a.window.start.min(t);
            let end = b.window.end.max(t + gap);
            if end - start <= max_len {
                Placement::Merge {
                    into: *first,
                    from: *second,
                    window: Window { start, end },
                }
            } else {
                Placement::Join {
                    index: *first,
                    window: extend(a),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GAP: i64 = 10;
    const MAX: i64 = 100;

    fn open(start: i64, end: i64) -> Session {
        Session {
            window: Window { start, end },
            fired: false,
        }
    }

    fn w(start: i64, end: i64) -> Window {
        Window { start, end }
    }

    #[test]
    fn first_event_opens_a_session_of_one_gap() {
        assert_eq!(place(&[], 50, GAP, MAX), Placement::New(w(50, 60)));
    }

    #[test]
    fn events_within_the_gap_extend_the_session() {
        let s = [open(50, 60)];
        assert_eq!(
            place(&s, 55, GAP, MAX),
            Placement::Join {
                index: 0,
                window: w(50, 65)
            }
        );
        assert_eq!(
            place(&s, 59, GAP, MAX),
            Placement::Join {
                index: 0,
                window: w(50, 69)
            }
        );
        assert_eq!(place(&s, 60, GAP, MAX), Placement::New(w(60, 70)));
        // Out of order, within a gap before the start.
        assert_eq!(
            place(&s, 41, GAP, MAX),
            Placement::Join {
                index: 0,
                window: w(41, 60)
            }
        );
    }

    #[test]
    fn an_event_bridging_two_sessions_merges_them() {
        let s = [open(10, 25), open(30, 40)];
        assert_eq!(
            place(&s, 22, GAP, MAX),
            Placement::Merge {
                into: 0,
                from: 1,
                window: w(10, 40)
            }
        );
    }

    #[test]
    fn max_length_splits_an_endless_session() {
        let s = [open(0, 95)];
        // Still inside the cap: the end is capped at start + max.
        assert_eq!(
            place(&s, 94, GAP, MAX),
            Placement::Join {
                index: 0,
                window: w(0, 100)
            }
        );
        let s = [open(0, 100)];
        // At the cap: a new session starts.
        assert_eq!(place(&s, 100, GAP, MAX), Placement::New(w(100, 110)));
        // An endless stream every 5 ms yields sessions of exactly MAX.
        let mut sessions: Vec<Session> = Vec::new();
        for t in (0..1000).step_by(5) {
            match place(&sessions, t, GAP, MAX) {
                Placement::New(win) => sessions.push(Session {
                    window: win,
                    fired: false,
                }),
                Placement::Join { index, window } => sessions[index].window = window,
                Placement::Merge { .. } => panic!("no merges in a forward stream"),
            }
        }
        let lengths: Vec<i64> = sessions
            .iter()
            .map(|s| s.window.end - s.window.start)
            .collect();
        assert_eq!(lengths, vec![100; 10]);
    }

    #[test]
    fn bridge_that_would_exceed_max_joins_the_first_only() {
        let s = [open(0, 60), open(65, 110)];
        assert_eq!(
            place(&s, 58, GAP, 100),
            Placement::Join {
                index: 0,
                window: w(0, 68)
            }
        );
    }

    #[test]
    fn fired_sessions_keep_their_bounds() {
        let s = [Session {
            window: w(10, 30),
            fired: true,
        }];
        assert_eq!(
            place(&s, 20, GAP, MAX),
            Placement::Join {
                index: 0,
                window: w(10, 30)
            }
        );
        // Just after the end: a new session, not an extension of the fired one.
        assert_eq!(place(&s, 31, GAP, MAX), Placement::New(w(31, 41)));
    }
}
