//! The index against a plain sorted set, under random inserts, removals,
//! pops, hand-overs and landings, with the batch reaching "RocksDB" at a
//! random moment between its hand-over and its landing.

use std::{cell::RefCell, collections::BTreeSet};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::*;
use crate::engine::timers::rows::Fire;

#[derive(Default)]
struct Db(RefCell<BTreeSet<Vec<u8>>>);

impl Rows for Db {
    fn rows(&self, kind: u8, from: Bound<&[u8]>, limit: usize) -> anyhow::Result<Vec<Box<[u8]>>> {
        let rows = self.0.borrow();
        let from = match from {
            Bound::Unbounded => Bound::Included(vec![kind]),
            Bound::Included(r) => Bound::Included(r.to_vec()),
            Bound::Excluded(r) => Bound::Excluded(r.to_vec()),
        };
        Ok(rows
            .range((from, Bound::Unbounded))
            .take_while(|r| r.first() == Some(&kind))
            .take(limit)
            .map(|r| r.clone().into_boxed_slice())
            .collect())
    }

    fn has(&self, row: &[u8]) -> anyhow::Result<bool> {
        Ok(self.0.borrow().contains(row))
    }
}

#[derive(Default)]
struct Written(Vec<(Vec<u8>, bool)>);

impl Db {
    fn apply(&self, batch: Written) {
        let mut rows = self.0.borrow_mut();
        for (r, put) in batch.0 {
            if put {
                rows.insert(r);
            } else {
                rows.remove(&r);
            }
        }
    }
}

impl Batch for Written {
    fn put(&mut self, row: &[u8], _: &[u8]) -> anyhow::Result<()> {
        self.0.push((row.to_vec(), true));
        Ok(())
    }

    fn delete(&mut self, row: &[u8]) -> anyhow::Result<()> {
        self.0.push((row.to_vec(), false));
        Ok(())
    }
}

fn row(rng: &mut ChaCha8Rng) -> Fire {
    let end = rng.random_range(0..40) * 1000;
    Fire {
        end,
        start: end - 1000,
        key: format!("k{}", rng.random_range(0..30)).into(),
    }
}

#[test]
fn an_index_reads_as_the_set_of_its_rows() {
    for seed in 0..300 {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let db = Db::default();
        // Other kinds' rows around ours must never be read as ours.
        db.0.borrow_mut().extend([vec![b'e', 9], vec![b'g']]);
        let mut index: Index<Fire> = Index::default();
        let mut model: BTreeSet<Fire> = BTreeSet::new();
        // The batch handed over, and whether it has reached the database.
        let mut inflight: Option<(Written, bool)> = None;
        for step in 0..400 {
            match rng.random_range(0..100) {
                0..=39 => {
                    let r = row(&mut rng);
                    if model.insert(r.clone()) {
                        index.insert(r);
                    }
                }
                40..=54 => {
                    let r = row(&mut rng);
                    let had = index.remove(&r, &db).unwrap();
                    assert_eq!(
                        had,
                        model.remove(&r),
                        "seed {seed} step {step}: remove {r:?}"
                    );
                }
                55..=84 => {
                    let first = index.first(&db).unwrap().cloned();
                    assert_eq!(first.as_ref(), model.first(), "seed {seed} step {step}");
                    if let Some(first) = first {
                        index.pop(&first);
                        model.remove(&first);
                    }
                }
                85..=91 => match &mut inflight {
                    None => {
                        let mut batch = Written::default();
                        index.hand_over(&mut batch).unwrap();
                        inflight = Some((batch, false));
                    }
                    Some((batch, applied @ false)) => {
                        db.apply(std::mem::take(batch));
                        *applied = true;
                    }
                    Some((_, true)) => {
                        index.landed();
                        inflight = None;
                    }
                },
                _ => {
                    assert_eq!(index.len(), model.len(), "seed {seed} step {step}");
                    let due = model.first().map(|r| r.end);
                    assert_eq!(index.next_due(&db).unwrap(), due, "seed {seed} step {step}");
                }
            }
        }
        // Everything written and landed: the database holds the set.
        if let Some((batch, applied)) = inflight.take() {
            if !applied {
                db.apply(batch);
            }
            index.landed();
        }
        let mut batch = Written::default();
        index.hand_over(&mut batch).unwrap();
        db.apply(batch);
        index.landed();
        let stored: BTreeSet<Fire> =
            db.0.borrow()
                .iter()
                .filter(|r| r[0] == b'f')
                .map(|r| Fire::decode(r).unwrap())
                .collect();
        assert_eq!(stored, model, "seed {seed}");
        assert_eq!(index.changes(), 0);
    }
}
