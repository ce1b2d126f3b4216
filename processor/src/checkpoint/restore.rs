//! The restore walk: every partition a processor owns back to one common
//! checkpoint of its own, or of another job (`spec.checkpoints.restoreFrom`).

use std::{collections::BTreeMap, path::Path};

use super::{Cut, Select, SourcePosition, Store};
use crate::job::{JobPlan, Seed};

/// What restoring a processor's partitions found.
pub(crate) struct RestoredAll {
    /// The common checkpoint all partitions were restored to, if any (with
    /// Kafka offsets and no file sinks, each partition's own newest: then
    /// the newest of them).
    pub(crate) cut: Option<Cut>,
    /// The checkpoint each partition was restored from (none: no
    /// partition was).
    pub(crate) ids: BTreeMap<u32, u64>,
    /// Each partition resumed from a checkpoint of its own.
    pub(crate) each: bool,
    /// Checkpoints rejected as incomplete or corrupt.
    pub(crate) fallbacks: u64,
    /// What to tell the user.
    pub(crate) lines: Vec<String>,
}

impl RestoredAll {
    /// The oldest checkpoint a partition was restored from.
    pub(crate) fn oldest(&self) -> Option<u64> {
        self.ids.values().min().copied()
    }
}

/// Restores every owned partition to one common checkpoint: the newest id
/// every partition has complete and verified (partitions share the source
/// position, so they must resume from the same cut).
#[tracing::instrument(
    name = "restore",
    skip_all,
    fields(partitions = ?partitions, checkpoint = tracing::field::Empty)
)]
pub(crate) async fn restore_all(
    store: &Store,
    partitions: &[u32],
    state_dir: &Path,
    select: Select,
    bounds: &BTreeMap<u32, u64>,
) -> anyhow::Result<RestoredAll> {
    let mut lines = Vec::new();
    let mut found = BTreeMap::new();
    let mut fallbacks = 0;
    for &p in partitions {
        // A partition's own bound (the checkpoint a Kafka transaction last
        // committed its results with) over the common one.
        let select = Select {
            max_id: bounds.get(&p).copied().or(select.max_id),
            ..select
        };
        let restored =
            super::restore(store, p, &crate::state::partition_dir(state_dir, p), select).await?;
        for (id, why) in &restored.rejected {
            lines.push(format!("partition {p}: checkpoint {id} rejected: {why}"));
            fallbacks += 1;
        }
        found.insert(p, restored.manifest);
    }
    let ids: Vec<Option<u64>> = found.values().map(|m| m.as_ref().map(|m| m.id)).collect();
    if ids.iter().all(Option::is_none) {
        return Ok(RestoredAll {
            cut: None,
            ids: BTreeMap::new(),
            each: false,
            fallbacks,
            lines,
        });
    }
    let fresh = |lines: &mut Vec<String>, why: String| -> anyhow::Result<RestoredAll> {
        for &p in partitions {
            let dir = crate::state::partition_dir(state_dir, p);
            if dir.exists() {
                std::fs::remove_dir_all(dir)?;
            }
        }
        lines.push(format!("starting from the beginning: {why}"));
        Ok(RestoredAll {
            cut: None,
            ids: BTreeMap::new(),
            each: false,
            fallbacks,
            lines: std::mem::take(lines),
        })
    };
    if ids.iter().any(Option::is_none) {
        return fresh(
            &mut lines,
            "some partitions have no usable checkpoint".into(),
        );
    }
    // Partitions that keep their own source position (Kafka offsets) and
    // no sink position (a file's length) resume each from its newest
    // checkpoint within its bound: after a live move their newest ids
    // differ, and walking down to a common one would replay what the
    // move's checkpoint covers (into a Kafka transaction: twice), or find
    // nothing that old.
    let independent = found
        .values()
        .flatten()
        .all(|m| matches!(m.source, SourcePosition::Kafka { .. }) && m.sink_lengths.is_empty());
    // Otherwise walk down to the newest id every partition has: restoring a
    // partition "at most id N" may land below N, which lowers the target
    // again.
    let mut common = ids.iter().flatten().copied().min().unwrap_or(0);
    if independent {
        common = ids.iter().flatten().copied().max().unwrap_or(0);
    } else {
        loop {
            let mut lowest = common;
            for (&p, manifest) in found.iter_mut() {
                if manifest.as_ref().is_some_and(|m| m.id != common) {
                    let dir = crate::state::partition_dir(state_dir, p);
                    let at_most = Select {
                        max_id: Some(common),
                        ..select
                    };
                    *manifest = super::restore(store, p, &dir, at_most).await?.manifest;
                }
                match manifest.as_ref().map(|m| m.id) {
                    None => {
                        return fresh(
                            &mut lines,
                            format!("partition {p} has no usable checkpoint at or before {common}"),
                        )
                    }
                    Some(id) => lowest = lowest.min(id),
                }
            }
            if lowest == common {
                break;
            }
            common = lowest;
        }
    }
    let first = found
        .values()
        .flatten()
        .next()
        .expect("all partitions restored");
    if independent && ids.iter().flatten().any(|id| *id != common) {
        let each: Vec<String> = found
            .iter()
            .filter_map(|(p, m)| Some(format!("{p}@{}", m.as_ref()?.id)))
            .collect();
        lines.push(format!(
            "restored each partition from its newest checkpoint ({}), up to {common}",
            each.join(", ")
        ));
    } else {
        lines.push(format!(
            "restored checkpoint {common} of {} partitions (taken {})",
            found.len(),
            first.created_at
        ));
    }

    // Kafka partitions are read independently: each takes its offset from
    // its own partition's manifest.
    let source = match &first.source {
        SourcePosition::Kafka { .. } => SourcePosition::Kafka {
            offsets: found
                .iter()
                .filter_map(|(p, m)| {
                    let SourcePosition::Kafka { offsets } = &m.as_ref()?.source else {
                        return None;
                    };
                    offsets.iter().find(|(kp, _)| *kp == *p as i32).copied()
                })
                .collect(),
        },
        other => other.clone(),
    };
    tracing::Span::current().record("checkpoint", common);
    tracing::info!(checkpoint = common, fallbacks, "restored");
    Ok(RestoredAll {
        ids: found
            .iter()
            .filter_map(|(p, m)| Some((*p, m.as_ref()?.id)))
            .collect(),
        each: independent,
        fallbacks,
        cut: Some(Cut {
            id: common,
            job: first.job.clone(),
            source,
            // A partition that had none holds it at none (`None` is least).
            watermark: found
                .values()
                .flatten()
                .map(|m| m.watermark)
                .min()
                .flatten(),
            floors: found
                .iter()
                .map(|(p, m)| (*p, m.as_ref().and_then(|m| m.watermark)))
                .collect(),
            max_event_times: found
                .iter()
                .map(|(p, m)| (*p, m.as_ref().and_then(|m| m.max_event_time)))
                .collect(),
            origin_marks: found
                .iter()
                .filter_map(|(p, m)| Some((*p, m.as_ref()?.origin_marks.clone())))
                .collect(),
            sink_lengths: first.sink_lengths.clone(),
            epoch: first.epoch,
            assignment: found
                .values()
                .flatten()
                .map(|m| m.assignment)
                .max()
                .unwrap_or(0),
        }),
        lines,
    })
}

/// Restores every owned partition from another job's checkpoint
/// (`spec.checkpoints.restoreFrom`). Unlike a job's own checkpoints,
/// nothing falls back: a seed that is missing, incomplete or partitioned
/// differently is an error, since starting empty instead would silently
/// drop the state the user asked for.
pub(crate) async fn restore_seed(
    store: &Store,
    seed: &Seed,
    plan: &JobPlan,
    state_dir: &Path,
) -> anyhow::Result<RestoredAll> {
    let what = format!("spec.checkpoints.restoreFrom: job {}", seed.job_path);
    let mut stored = super::stored_partitions(store).await?;
    stored.sort_unstable();
    let expected: Vec<u32> = (0..plan.partition_count).collect();
    if stored.is_empty() {
        anyhow::bail!("{what} has no checkpoints in {}", plan.checkpoints.url);
    }
    if stored != expected {
        anyhow::bail!(
            "{what} has checkpoints of partitions {stored:?}, this job has {} partitions: \
             a checkpoint restores only into a job with the same partitions",
            plan.partition_count
        );
    }
    let mut restored = restore_all(
        store,
        &plan.engine.partitions,
        state_dir,
        Select::at_most(seed.id),
        &BTreeMap::new(),
    )
    .await?;
    let wanted = seed.id.map_or("a complete checkpoint".into(), |id| {
        format!("checkpoint {id}")
    });
    match (&restored.cut, seed.id) {
        (None, _) => anyhow::bail!(
            "{what} has no {wanted} of partitions {:?}: {}",
            plan.engine.partitions,
            restored.lines.join("; ")
        ),
        (Some(cut), Some(id)) if cut.id != id || restored.oldest() != Some(id) => anyhow::bail!(
            "{what}: {wanted} is not complete in every partition of {:?} (the newest that is \
             is {}); name that one or leave checkpointId out",
            plan.engine.partitions,
            restored.oldest().unwrap_or(cut.id)
        ),
        (Some(cut), _) => restored.lines.push(format!(
            "started from checkpoint {} of job {} (spec.checkpoints.restoreFrom)",
            cut.id, seed.job_path
        )),
    }
    Ok(restored)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::{restore_all, Select};
    use crate::{
        checkpoint::{self, Cut, SourcePosition, Store},
        state::StateStore,
    };

    /// A job's store in `dir/store`.
    fn file_store(dir: &std::path::Path) -> Store {
        let url = format!("file://{}", dir.join("store").display());
        Store::open(&url, "ns/job", None).unwrap()
    }

    /// Each partition comes back with the watermark that decided for it;
    /// the processor's is the lowest, and none if one partition had none
    /// (its worker had no event yet): never one partition's for another.
    #[tokio::test]
    async fn partitions_come_back_with_their_own_watermarks() {
        let dir = tempfile::tempdir().unwrap();
        let store = file_store(dir.path());
        let state = StateStore::open(&dir.path().join("state"), &[0, 1, 2], 64 << 20).unwrap();
        let floors = BTreeMap::from([(0, Some(9_000)), (1, Some(5_000)), (2, None)]);
        let cut = Cut {
            id: 1,
            job: "ns/job".into(),
            source: SourcePosition::Generator { produced: 10 },
            max_event_times: BTreeMap::new(),
            watermark: None,
            floors: floors.clone(),
            origin_marks: BTreeMap::new(),
            sink_lengths: BTreeMap::new(),
            epoch: 0,
            assignment: 0,
        };
        let pending = checkpoint::snapshot(&state, cut, &dir.path().join("local")).unwrap();
        checkpoint::upload(pending, &store, 3, &Default::default())
            .await
            .unwrap();
        drop(state);
        let restored = |partitions: &'static [u32]| {
            let (store, target) = (store.clone(), dir.path().join("restored"));
            async move {
                restore_all(
                    &store,
                    partitions,
                    &target,
                    Select::default(),
                    &BTreeMap::new(),
                )
                .await
                .unwrap()
                .cut
                .unwrap()
            }
        };
        let all = restored(&[0, 1, 2]).await;
        assert_eq!(all.floors, floors);
        assert_eq!(all.watermark, None, "partition 2 had none");
        let two = restored(&[0, 1]).await;
        assert_eq!(two.watermark, Some(5_000), "the lowest");
    }

    /// After a live move the partitions' newest checkpoints differ: with
    /// Kafka offsets (a position per partition) each resumes from its own
    /// newest; with one position for all (here a generator) they walk
    /// down to the newest id all have.
    #[tokio::test]
    async fn kafka_partitions_resume_from_their_own_newest_checkpoint() {
        for kafka in [true, false] {
            let dir = tempfile::tempdir().unwrap();
            let store = file_store(dir.path());
            let source = |n: i64| match kafka {
                true => SourcePosition::Kafka {
                    offsets: vec![(0, n), (1, n)],
                },
                false => SourcePosition::Generator { produced: n as u64 },
            };
            // Checkpoint 1 of both partitions; then partition 0 alone is
            // released at checkpoint 7 (its new owner has both now).
            for (id, partitions, state) in [(1, &[0u32, 1][..], "a"), (7, &[0][..], "b")] {
                let state =
                    StateStore::open(&dir.path().join(state), partitions, 64 << 20).unwrap();
                let cut = Cut {
                    id,
                    job: "ns/job".into(),
                    source: source(id as i64 * 10),
                    max_event_times: BTreeMap::new(),
                    watermark: None,
                    floors: partitions.iter().map(|p| (*p, None)).collect(),
                    origin_marks: BTreeMap::new(),
                    sink_lengths: BTreeMap::new(),
                    epoch: 0,
                    assignment: 0,
                };
                let local = dir.path().join(format!("local-{id}"));
                let pending = checkpoint::snapshot(&state, cut, &local).unwrap();
                checkpoint::upload(pending, &store, 3, &Default::default())
                    .await
                    .unwrap();
            }
            let restored = restore_all(
                &store,
                &[0, 1],
                &dir.path().join("r"),
                Select::default(),
                &BTreeMap::new(),
            )
            .await
            .unwrap();
            let cut = restored.cut.unwrap();
            if kafka {
                assert_eq!(cut.id, 7, "the newest of them");
                assert_eq!(
                    cut.source,
                    SourcePosition::Kafka {
                        offsets: vec![(0, 70), (1, 10)]
                    },
                    "each partition at its own checkpoint's offset"
                );
            } else {
                assert_eq!(cut.id, 1, "the newest both have");
                assert_eq!(cut.source, SourcePosition::Generator { produced: 10 });
            }
        }
    }
}
