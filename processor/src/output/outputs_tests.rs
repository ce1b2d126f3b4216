//! The checkpoint protocol as sinks see it, on sinks that record what they
//! are asked, and a file sink resumed from its snapshot.

use std::sync::{Arc, Mutex};

use super::Outputs;
use crate::output::{
    sink::{done, lines::LineSink, Flushing, Item, Sink},
    staged::StagedResult,
};

/// A sink that logs every call and buffers `buffered` records.
struct Logging {
    name: &'static str,
    log: Arc<Mutex<Vec<String>>>,
    buffered: usize,
}

impl Logging {
    fn boxed(name: &'static str, log: &Arc<Mutex<Vec<String>>>) -> Box<dyn Sink> {
        Box::new(Self {
            name,
            log: log.clone(),
            buffered: 0,
        })
    }

    fn note(&self, what: String) {
        self.log
            .lock()
            .unwrap()
            .push(format!("{} {what}", self.name));
    }
}

impl Sink for Logging {
    fn name(&self) -> String {
        self.name.into()
    }

    fn write(&mut self, item: &Item<'_>) -> anyhow::Result<()> {
        self.buffered += 1;
        self.note(format!("write {}", item.id));
        Ok(())
    }

    fn backlog(&self) -> usize {
        self.buffered
    }

    fn remote(&self) -> bool {
        true
    }

    fn flush(&mut self) -> Flushing<'_> {
        self.note(format!("flush {}", self.buffered));
        self.buffered = 0;
        done(Ok(()))
    }

    fn snapshot(&self) -> Option<(String, u64)> {
        Some((self.name.into(), self.buffered as u64))
    }

    fn committed(&mut self, id: u64) -> anyhow::Result<()> {
        self.note(format!("committed {id}"));
        Ok(())
    }
}

fn result(id: &str) -> StagedResult {
    StagedResult {
        id: id.into(),
        line: id.as_bytes().to_vec(),
        ..StagedResult::default()
    }
}

#[tokio::test]
async fn every_sink_is_prepared_before_the_cut_and_told_when_committed() {
    let log = Arc::new(Mutex::new(Vec::new()));
    let mut outputs = Outputs::of(
        vec![Logging::boxed("a", &log), Logging::boxed("b", &log)],
        Logging::boxed("late", &log),
        Logging::boxed("invalid", &log),
    );
    outputs.write_result(&result("r1")).unwrap();
    outputs.write_late("l1", b"{}").unwrap();
    let positions = outputs.snapshot();
    assert_eq!(positions.get("a"), Some(&1), "{positions:?}");
    assert_eq!(positions.get("late"), Some(&1));
    outputs.prepare(7).await.unwrap();
    assert_eq!(outputs.snapshot().get("a"), Some(&0), "prepared: flushed");
    assert_eq!(
        outputs.committed(7).unwrap(),
        None,
        "no transaction to commit"
    );
    let log = log.lock().unwrap().clone();
    assert_eq!(
        log,
        [
            "a write r1",
            "b write r1",
            "late write l1",
            "a flush 1",
            "b flush 1",
            "late flush 1",
            "invalid flush 0",
            "a committed 7",
            "b committed 7",
            "late committed 7",
            "invalid committed 7",
        ]
    );
    let figures = outputs.figures();
    let names: Vec<_> = figures.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["sink-0", "sink-1", "late", "invalid"]);
    assert!(figures.iter().all(|f| f.flushes == 1), "{figures:?}");
}

#[tokio::test]
async fn a_sink_that_holds_too_much_is_flushed_and_the_others_are_not() {
    let log = Arc::new(Mutex::new(Vec::new()));
    let mut outputs = Outputs::of(
        vec![Logging::boxed("results", &log)],
        Logging::boxed("late", &log),
        Logging::boxed("invalid", &log),
    );
    for i in 0..super::BACKLOG {
        outputs.write_result(&result(&i.to_string())).unwrap();
    }
    outputs.write_late("l", b"{}").unwrap();
    outputs.relieve().await.unwrap();
    let log = log.lock().unwrap();
    let flushes: Vec<_> = log.iter().filter(|l| l.contains("flush")).collect();
    assert_eq!(flushes, [&format!("results flush {}", super::BACKLOG)]);
}

#[tokio::test]
async fn a_file_resumes_at_the_length_its_snapshot_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.jsonl");
    let path = path.to_str().unwrap();
    let line = |id: &'static str| Item {
        id,
        line: id.as_bytes(),
        result: None,
        names: &[],
    };
    let mut file = LineSink::file(path, 0).unwrap();
    file.write(&line("one")).unwrap();
    file.prepare(1).await.unwrap();
    let (name, length) = file.snapshot().unwrap();
    assert_eq!((name.as_str(), length), (path, 4));
    // Written after the checkpoint, then lost with the crash.
    file.write(&line("two")).unwrap();
    file.sync().await.unwrap();
    drop(file);
    let mut file = LineSink::file(path, length).unwrap();
    file.write(&line("three")).unwrap();
    file.sync().await.unwrap();
    assert_eq!(std::fs::read_to_string(path).unwrap(), "one\nthree\n");
}
