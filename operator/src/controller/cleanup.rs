//! A deleted job's checkpoints, when `deleteOnJobDeletion` asks for it:
//! observe, then take the step [`build::cleanup::next`] decides. Runs
//! before the finalizer is released, once per reconcile, until done.

use std::time::Duration;

use eddy_api::StreamJob;
use k8s_openapi::api::{apps::v1::StatefulSet, batch::v1::Job, core::v1::ConfigMap};
use kube::{
    api::{DeleteParams, PostParams},
    runtime::{controller::Action, events::EventType},
    Api, ResourceExt,
};

use super::{publish, Context, Error};
use crate::build::{
    self,
    cleanup::{Step, Wanted},
    names,
};

/// How often a clean-up in progress is looked at.
const POLL: Duration = Duration::from_secs(5);
/// Wait before replacing a failed clean-up Job.
const RETRY: Duration = Duration::from_secs(60);

/// `Some(action)` while the clean-up goes on (keep the finalizer),
/// `None` once there is nothing more to do.
pub(super) async fn progress(job: &StreamJob, ctx: &Context) -> Result<Option<Action>, Error> {
    if build::cleanup::wanted(job) != Wanted::Delete {
        return Ok(None);
    }
    let namespace = job.namespace().ok_or(Error::NoNamespace)?;
    let name = job.name_any();
    let client = ctx.client.clone();
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), &namespace);
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), &namespace);
    let jobs: Api<Job> = Api::namespaced(client, &namespace);
    let sts = sets.get_opt(&names::stateful_set(&name)).await?;
    let (config, clear) = if sts.is_some() {
        (true, None)
    } else {
        (
            maps.get_opt(&names::config_map(&name)).await?.is_some(),
            jobs.get_opt(&names::cleanup_job(&name)).await?,
        )
    };
    let place = super::checkpoint_place(job);
    match build::cleanup::next(sts.as_ref(), config, clear.as_ref()) {
        Step::StopPods => {
            ignore_missing(
                sets.delete(&names::stateful_set(&name), &DeleteParams::foreground())
                    .await
                    .map(drop),
            )?;
            let note = format!("deleting the checkpoints under {place}: stopping the pods first");
            publish(
                ctx,
                job,
                EventType::Normal,
                "CheckpointCleanupStarted",
                "Delete",
                note,
            )
            .await;
            Ok(Some(Action::requeue(POLL)))
        }
        Step::WaitForPods | Step::WaitForJob => Ok(Some(Action::requeue(POLL))),
        Step::StartJob => {
            let built = build::cleanup::clear_job(job, &ctx.build)?;
            match jobs.create(&PostParams::default(), &built).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 409 => {}
                // The namespace is being deleted: nothing new can start in
                // it, and waiting would hold the namespace deletion forever.
                Err(kube::Error::Api(e)) if e.code == 403 && e.message.contains("terminat") => {
                    give_up(
                        ctx,
                        job,
                        "the namespace is being deleted, so no clean-up Job can run",
                    )
                    .await;
                    return Ok(None);
                }
                Err(e) => return Err(e.into()),
            }
            let note = format!(
                "Job {} deletes the checkpoints under {place}",
                names::cleanup_job(&name)
            );
            publish(
                ctx,
                job,
                EventType::Normal,
                "CheckpointCleanupRunning",
                "Delete",
                note,
            )
            .await;
            Ok(Some(Action::requeue(POLL)))
        }
        Step::Retry(why) => {
            let note = format!(
                "Job {} could not delete the checkpoints under {place}: {why}; retrying in {}s \
                 (set spec.checkpoints.deleteOnJobDeletion to false to keep them and finish \
                 the deletion)",
                names::cleanup_job(&name),
                RETRY.as_secs()
            );
            publish(
                ctx,
                job,
                EventType::Warning,
                "CheckpointCleanupFailed",
                "Delete",
                note,
            )
            .await;
            ignore_missing(
                jobs.delete(&names::cleanup_job(&name), &DeleteParams::background())
                    .await
                    .map(drop),
            )?;
            Ok(Some(Action::requeue(RETRY)))
        }
        Step::NoConfig => {
            give_up(
                ctx,
                job,
                "the job has no rendered config to run the clean-up with",
            )
            .await;
            Ok(None)
        }
        Step::Done => {
            let note = format!("deleted the checkpoints under {place}");
            publish(
                ctx,
                job,
                EventType::Normal,
                "CheckpointsDeleted",
                "Delete",
                note,
            )
            .await;
            Ok(None)
        }
    }
}

/// Releases the job without deleting its checkpoints, saying why and
/// where they are.
async fn give_up(ctx: &Context, job: &StreamJob, why: &str) {
    let place = super::checkpoint_place(job);
    let note = format!("{why}: delete the checkpoints under {place} yourself");
    publish(
        ctx,
        job,
        EventType::Warning,
        "CheckpointsNotDeleted",
        "Delete",
        note,
    )
    .await;
}

/// A delete of something already gone succeeded.
fn ignore_missing(result: Result<(), kube::Error>) -> Result<(), Error> {
    match result {
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        other => other.map_err(Error::from),
    }
}
