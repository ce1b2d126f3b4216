//! A two-phase job's two stages in one processor, the default without
//! `--stage`: as a Kafka Streams instance runs every sub-topology of its
//! application, each with its own tasks, a processor runs the first stage
//! and the merge stage of the partitions it owns, each a run loop with its
//! own state directory and checkpoints, the partials travelling between
//! processors over the partials topic. One StatefulSet then runs both
//! stages and scales them together. The admin API drives both: a
//! checkpoint is taken by both under one id, a partition moves in both,
//! and the status is both's ([`combine`]).

use std::path::Path;

use tokio::sync::{oneshot, watch};

use super::{run, Endpoints, Report};
use crate::{
    admin::{Admin, Command, Handle, Refusal, StageStats, Stats, Status},
    job::JobPlan,
    partials::Stage,
};

/// Runs the stages of `plans` side by side (a single plan: just it) until
/// their sources end or `stop` turns true; each stage's progress lines go
/// to `progress_out` with its name. `/metrics` serves both stages' figures,
/// each sample labelled with its stage.
pub async fn run_stages(
    plans: Vec<JobPlan>,
    state_dir: &Path,
    stop: watch::Receiver<bool>,
    endpoints: Endpoints,
    progress_out: impl Fn(&str) + Copy,
) -> anyhow::Result<Vec<(Stage, Report)>> {
    let mut plans = plans.into_iter();
    let (Some(first), Some(second), None) = (plans.next(), plans.next(), plans.next()) else {
        anyhow::bail!("a job runs in one stage or in two");
    };
    let (first_stage, second_stage) = (first.stage, second.stage);
    let Endpoints { admin, metrics } = endpoints;
    let second_metrics = metrics.as_ref().map(|m| m.another());
    let (admins, forwarding) = match admin {
        Some(outer) => {
            let (a, a_handle) = Admin::channel();
            let (b, b_handle) = Admin::channel();
            let names = [first_stage.name(), second_stage.name()];
            let forwarding = tokio::spawn(forward(outer, [a_handle, b_handle], names));
            ((Some(a), Some(b)), Some(forwarding))
        }
        None => ((None, None), None),
    };
    let dir = |stage: Stage| state_dir.join(stage.name());
    let (a_dir, b_dir) = (dir(first_stage), dir(second_stage));
    std::fs::create_dir_all(&a_dir)?;
    std::fs::create_dir_all(&b_dir)?;
    let line = |stage: Stage| move |l: &str| progress_out(&format!("[{}] {l}", stage.name()));
    // A stage that fails stops the other (dropped: as if the processor
    // crashed, which checkpoints and transactions are built for), and the
    // processor fails: a stage left running alone would stall the job.
    let both = tokio::try_join!(
        run(
            first,
            &a_dir,
            stop.clone(),
            Endpoints {
                admin: admins.0,
                metrics,
            },
            line(first_stage),
        ),
        run(
            second,
            &b_dir,
            stop,
            Endpoints {
                admin: admins.1,
                metrics: second_metrics,
            },
            line(second_stage),
        ),
    );
    if let Some(f) = forwarding {
        f.abort();
    }
    let (a, b) = both?;
    Ok(vec![(first_stage, a), (second_stage, b)])
}

/// Serves the admin API's commands to both stages and publishes their
/// combined status, until the API goes away.
async fn forward(mut outer: Admin, mut stages: [Handle; 2], names: [&'static str; 2]) {
    loop {
        let [a, b] = &mut stages;
        tokio::select! {
            command = outer.commands.recv() => match command {
                Some(command) => dispatch(command, &stages).await,
                None => return,
            },
            changed = a.status.changed() => if changed.is_err() { return },
            changed = b.status.changed() => if changed.is_err() { return },
        }
        let [a, b] = &stages;
        let both = combine(&a.status.borrow(), &b.status.borrow(), names);
        outer.status.send_replace(both);
    }
}

/// Sends `make(reply)` to a stage and waits for its answer (`None`: the
/// stage has stopped).
async fn ask<T>(stage: &Handle, make: impl FnOnce(oneshot::Sender<T>) -> Command) -> Option<T> {
    let (reply, answer) = oneshot::channel();
    stage.commands.send(make(reply)).await.ok()?;
    answer.await.ok()
}

/// One command to both stages, the first stage first; the answer is the
/// first refusal, else the first stage's.
async fn dispatch(command: Command, stages: &[Handle; 2]) {
    let stopping = || "the processor is stopping".to_string();
    match command {
        Command::Checkpoint {
            is_final,
            id,
            reply,
        } => {
            // One id for both: the lowest free in both.
            let free = stages
                .iter()
                .map(|s| s.status.borrow().next_id)
                .max()
                .unwrap_or(1);
            let id = Some(id.unwrap_or(free));
            let mut answer = Err(stopping());
            for stage in stages {
                answer = ask(stage, |reply| Command::Checkpoint {
                    is_final,
                    id,
                    reply,
                })
                .await
                .unwrap_or_else(|| Err(stopping()));
                if answer.is_err() {
                    break;
                }
            }
            let _ = reply.send(answer);
        }
        Command::Resume => {
            for stage in stages {
                let _ = stage.commands.send(Command::Resume).await;
            }
        }
        Command::Release {
            partition,
            id,
            assignment,
            reply,
        } => {
            let mut id = id;
            let mut answer = Err(Refusal::Conflict(stopping()));
            for stage in stages {
                answer = ask(stage, |reply| Command::Release {
                    partition,
                    id,
                    assignment,
                    reply,
                })
                .await
                .unwrap_or_else(|| Err(Refusal::Conflict(stopping())));
                match &answer {
                    // The second stage's release checkpoint under the same id.
                    Ok(checkpoint) => id = Some(*checkpoint),
                    Err(_) => break,
                }
            }
            let _ = reply.send(answer);
        }
        Command::Acquire {
            partition,
            at_least,
            assignment,
            reply,
        } => {
            let mut first = None;
            for stage in stages {
                let answer = ask(stage, |reply| Command::Acquire {
                    partition,
                    at_least,
                    assignment,
                    reply,
                })
                .await
                .unwrap_or_else(|| Err(Refusal::Conflict(stopping())));
                let failed = answer.is_err();
                first.get_or_insert(answer);
                if failed {
                    break;
                }
            }
            let _ = reply.send(first.unwrap_or_else(|| Err(Refusal::Conflict(stopping()))));
        }
    }
}

/// The status of a processor running both stages: ready, paused or
/// finished when both are; a checkpoint completed when both completed it
/// (bytes added, the longer duration); the first stage's loads and
/// statistics (its events are the job's input, what the autoscaler sizes
/// and hot keys are measured on), with each stage's own figures beside
/// them under its name in `names`.
pub fn combine(a: &Status, b: &Status, names: [&str; 2]) -> Status {
    let completed = a
        .completed
        .iter()
        .filter_map(|x| {
            let y = b.completed.iter().find(|y| y.id == x.id)?;
            let mut both = x.clone();
            both.duration_ms = x.duration_ms.max(y.duration_ms);
            both.sync_duration_ms = x.sync_duration_ms.max(y.sync_duration_ms);
            both.bytes_uploaded += y.bytes_uploaded;
            both.bytes_total += y.bytes_total;
            both.time = x.time.clone().max(y.time.clone());
            Some(both)
        })
        .collect();
    Status {
        ready: a.ready && b.ready,
        paused: a.paused && b.paused,
        finished: a.finished && b.finished,
        in_flight: a.in_flight.or(b.in_flight),
        failed: a.failed + b.failed,
        restore_fallbacks: a.restore_fallbacks + b.restore_fallbacks,
        next_id: a.next_id.max(b.next_id),
        completed,
        partitions: a.partitions.clone(),
        loads: a.loads.clone(),
        stats: Stats {
            stages: vec![StageStats::of(names[0], a), StageStats::of(names[1], b)],
            ..a.stats.clone()
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::{CheckpointInfo, PartitionLoad};

    fn done(id: u64, ms: u64, bytes: u64) -> CheckpointInfo {
        CheckpointInfo {
            id,
            time: format!("t{id}"),
            duration_ms: ms,
            sync_duration_ms: ms / 2,
            bytes_uploaded: bytes,
            bytes_total: bytes,
        }
    }

    #[test]
    fn a_checkpoint_is_complete_when_both_stages_completed_it() {
        let a = Status {
            ready: true,
            paused: true,
            next_id: 4,
            completed: vec![done(2, 10, 100), done(3, 30, 50)],
            partitions: vec![0, 1],
            loads: [(0, Some(10)), (1, None)]
                .map(|(partition, backlog)| PartitionLoad {
                    partition,
                    accepted: 0,
                    events_per_second: 0.0,
                    busy_ratio: 0.0,
                    backlog,
                    state_bytes: 0,
                    top_key_share: None,
                })
                .to_vec(),
            stats: Stats {
                events_read: 900,
                late: 3,
                watermark_ms: Some(5_000),
                ..Stats::default()
            },
            ..Status::default()
        };
        let b = Status {
            ready: false,
            paused: true,
            next_id: 6,
            completed: vec![done(2, 20, 7)],
            stats: Stats {
                events_read: 40,
                replayed: 6,
                watermark_ms: Some(1_000),
                ..Stats::default()
            },
            ..Status::default()
        };
        let both = combine(&a, &b, ["partial", "merge"]);
        assert!(!both.ready && both.paused && !both.finished);
        assert_eq!(both.next_id, 6);
        assert_eq!(
            both.completed,
            vec![done(2, 20, 107)]
                .into_iter()
                .map(|mut c| {
                    c.time = "t2".into();
                    c.sync_duration_ms = 10;
                    c
                })
                .collect::<Vec<_>>()
        );
        assert_eq!(both.partitions, vec![0, 1]);
        // The first stage's figures, and each stage's under its name.
        assert_eq!(both.stats.events_read, 900);
        assert_eq!(
            both.stats.stages,
            vec![
                StageStats {
                    stage: "partial".into(),
                    ready: true,
                    finished: false,
                    records_read: 900,
                    late: 3,
                    replayed: 0,
                    watermark_ms: Some(5_000),
                    backlog: Some(10),
                    last_checkpoint: Some(3),
                },
                StageStats {
                    stage: "merge".into(),
                    ready: false,
                    finished: false,
                    records_read: 40,
                    late: 0,
                    replayed: 6,
                    watermark_ms: Some(1_000),
                    backlog: None,
                    last_checkpoint: Some(2),
                },
            ]
        );
    }

    #[tokio::test]
    async fn commands_reach_both_stages_under_one_id() {
        let (mut a, a_handle) = Admin::channel();
        let (mut b, b_handle) = Admin::channel();
        a.status.send_modify(|s| s.next_id = 3);
        b.status.send_modify(|s| s.next_id = 5);
        let (outer, api) = Admin::channel();
        tokio::spawn(forward(outer, [a_handle, b_handle], ["partial", "merge"]));
        let answering = |admin: &mut Admin| {
            let command = admin.commands.try_recv();
            match command {
                Ok(Command::Checkpoint { id, reply, .. }) => {
                    let _ = reply.send(Ok(id.unwrap_or(0)));
                    id
                }
                other => panic!("{other:?}"),
            }
        };
        let (reply, answer) = oneshot::channel();
        api.commands
            .send(Command::Checkpoint {
                is_final: false,
                id: None,
                reply,
            })
            .await
            .unwrap();
        // Each stage is asked in turn, both with the id free in both.
        let mut seen = Vec::new();
        while seen.len() < 2 {
            tokio::task::yield_now().await;
            for admin in [&mut a, &mut b] {
                if !admin.commands.is_empty() {
                    seen.push(answering(admin));
                }
            }
        }
        assert_eq!(seen, vec![Some(5), Some(5)]);
        assert_eq!(answer.await.unwrap(), Ok(5));
    }
}
