//! The merge stage on hand-made partials and marks: a replayed partial of
//! a closed window is dropped as a replay, a partial of an idle origin
//! that comes after the others closed its window is late; an origin's
//! closing revision repairs what a replay numbered differently.

use smallvec::SmallVec;

use crate::{
    engine::{
        aggregate::{Acc, Aggregate},
        tests::{config, tumbling, Harness},
        window::Window,
        Outcome,
    },
    partials::{Mark, Partial, Stage},
};

const WINDOW: Window = Window {
    start: 0,
    end: 10_000,
};

/// A merge stage of two origins over partition 0, counting.
fn merge() -> Harness {
    let mut config = config(tumbling(10_000));
    config.aggregates = vec![("n".into(), Aggregate::Count)];
    config.stage = Stage::Merge { origins: 2 };
    Harness::new(config)
}

impl Harness {
    /// Origin `origin`'s partial of [`WINDOW`] counting `n` events.
    fn partial(&mut self, origin: u32, n: u64, is_final: bool) -> Outcome {
        self.revision(origin, n, 1, is_final)
    }

    /// [`Harness::partial`] at revision `revision`.
    fn revision(&mut self, origin: u32, n: u64, revision: u32, is_final: bool) -> Outcome {
        let accs: SmallVec<[Acc; 2]> = SmallVec::from_iter([Acc::Count(n)]);
        let partial = Partial {
            origin,
            key: "k".into(),
            window: WINDOW,
            revision,
            is_final,
            accs: postcard::to_allocvec(&accs).unwrap(),
        };
        self.engine.merge_partial(0, &partial, 1).unwrap()
    }

    fn mark(&mut self, origin: u32, watermark: i64, idle: bool) {
        let mark = Mark {
            origin,
            watermark,
            idle,
        };
        self.engine.observe_marks(0, &[mark], 1).unwrap().unwrap();
        self.engine.advance(1, &mut self.out).unwrap();
    }

    fn counted(&self) -> Vec<(String, bool)> {
        self.out
            .iter()
            .map(|r| (format!("{:?}", r.aggregates), r.is_final))
            .collect()
    }
}

#[test]
fn a_partial_its_origin_sends_again_after_the_window_closed_is_a_replay() {
    let mut m = merge();
    assert!(matches!(m.partial(0, 3, true), Outcome::Accepted));
    assert!(matches!(m.partial(1, 2, true), Outcome::Accepted));
    m.mark(0, 10_000, false);
    assert!(m.out.is_empty(), "origin 1 has not passed the window yet");
    m.mark(1, 10_000, false);
    assert_eq!(m.counted().len(), 1);
    assert!(m.out[0].is_final);
    // Origin 0 restarted from a checkpoint and sends its partial again.
    assert!(matches!(m.partial(0, 3, true), Outcome::Replayed));
    let stats = &m.engine.stats()[0];
    assert_eq!((stats.replayed, stats.late), (1, 0));
    assert_eq!(m.counted().len(), 1, "nothing fired again");
}

#[test]
fn a_partial_of_an_idle_origin_after_the_others_closed_the_window_is_late() {
    let mut m = merge();
    assert!(matches!(m.partial(0, 3, true), Outcome::Accepted));
    // Origin 1 idle: origin 0 alone closes the window.
    m.mark(1, 0, true);
    m.mark(0, 20_000, false);
    assert_eq!(m.counted().len(), 1);
    // Origin 1 wakes with events of the closed window.
    assert!(matches!(m.partial(1, 2, true), Outcome::Late { .. }));
    let stats = &m.engine.stats()[0];
    assert_eq!((stats.replayed, stats.late), (0, 1));
}

/// A first stage that restarted replays its input, and the window's
/// revisions need not fall as before (its watermark is the lowest of its
/// worker's partitions, idleness goes by the wall clock): its new
/// revision 2 holds an event the merge stage's revision 2 lacks, and is
/// taken for the one it had. The closing revision, final, outranks both
/// and brings the window's every event.
#[test]
fn the_closing_revision_repairs_a_replay_numbered_differently() {
    let mut m = merge();
    assert!(matches!(m.revision(0, 3, 1, false), Outcome::Accepted));
    assert!(matches!(m.revision(0, 4, 2, false), Outcome::Accepted));
    // Restarted: the replay fired later (revision 1 holds 4), and a new
    // event makes revision 2 hold 5.
    assert!(matches!(m.revision(0, 4, 1, false), Outcome::Accepted));
    assert!(matches!(m.revision(0, 5, 2, false), Outcome::Accepted));
    assert!(matches!(m.partial(1, 2, true), Outcome::Accepted));
    m.mark(1, 10_000, false);
    // Origin 0 closes the window: its closing revision, then its mark.
    assert!(matches!(m.revision(0, 5, 3, true), Outcome::Accepted));
    m.mark(0, 10_000, false);
    assert_eq!(m.counted(), vec![("[Number(7)]".to_string(), true)]);
}
