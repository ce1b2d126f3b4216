//! The merge stage on hand-made partials and marks: a replayed partial of
//! a closed window is dropped as a replay, a partial of an idle origin
//! that comes after the others closed its window is late.

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
        let accs: SmallVec<[Acc; 2]> = SmallVec::from_iter([Acc::Count(n)]);
        let partial = Partial {
            origin,
            key: "k".into(),
            window: WINDOW,
            revision: 1,
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
