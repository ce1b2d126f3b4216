//! The operator on the real control plane (kube-apiserver, the StatefulSet
//! controller, the test node running real processors, the S3 store): what
//! must hold for a user to trust it with state.
//!
//! Needs `scripts/test-servers start` (see `eddy_testkit::HOW_TO_START`).

mod harness;

use std::{collections::BTreeSet, process::Command, time::Duration};

use eddy_api::StreamJob;
use harness::*;
use k8s_openapi::api::{
    apps::v1::StatefulSet,
    coordination::v1::Lease,
    core::v1::{ConfigMap, Namespace, Pod},
    networking::v1::NetworkPolicy,
    policy::v1::PodDisruptionBudget,
};
use kube::{
    api::{DeleteParams, Patch, PatchParams, PostParams},
    Api, ResourceExt,
};
use serde_json::json;
use tokio::sync::Semaphore;

/// Tests running at once: each starts processor pods, and the machine has
/// two cores.
static SLOTS: Semaphore = Semaphore::const_new(3);

const MINUTE: Duration = Duration::from_secs(60);

fn uids(pods: &[Pod]) -> BTreeSet<String> {
    pods.iter().filter_map(|p| p.uid()).collect()
}

fn last_checkpoint(job: &StreamJob) -> Option<u64> {
    job.status.as_ref()?.last_checkpoint.as_ref().map(|c| c.id)
}

fn has_checkpoint(job: &StreamJob) -> Result<(), String> {
    last_checkpoint(job)
        .map(drop)
        .ok_or_else(|| "no checkpoint yet".into())
}

fn reconciled(job: &StreamJob) -> bool {
    job.status.as_ref().and_then(|s| s.observed_generation) == job.metadata.generation
}

fn is_condition(
    type_: &'static str,
    status: &'static str,
    reason: &'static str,
) -> impl Fn(&StreamJob) -> Result<(), String> {
    move |job| match condition(job, type_) {
        Some((s, r, _)) if s == status && r == reason => Ok(()),
        other => Err(format!("{type_} is {other:?}")),
    }
}

fn image_of(pod: &Pod) -> String {
    pod.spec.as_ref().unwrap().containers[0]
        .image
        .clone()
        .unwrap_or_default()
}

/// The pid the test node runs a pod's container as (`eddy://<pid>`).
fn pid_of(pod: &Pod) -> String {
    let id = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|c| c.first())
        .and_then(|c| c.container_id.clone())
        .expect("a running container");
    id.trim_start_matches("eddy://").to_string()
}

fn signal(pid: &str, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, pid])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "kill {sig} {pid}");
}

async fn running(c: &Cluster, name: &str) -> StreamJob {
    c.wait_ready(name).await;
    c.wait_job(name, "a first checkpoint", MINUTE, has_checkpoint)
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_checkpoints_are_refused_in_a_cluster() {
    let _slot = SLOTS.acquire().await.unwrap();
    let mut c = Cluster::new("op-file").await;
    c.start_operator(IMAGE).await;
    let mut job = c.job("local", json!({}));
    job["spec"]["checkpoints"] = json!({"store": "file://checkpoints"});
    c.apply(&job).await;
    let job = c
        .wait_job("local", "SpecValid=False", MINUTE, |job| {
            match condition(job, "SpecValid") {
                Some((s, _, m)) if s == "False" && m.contains("object store") => Ok(()),
                other => Err(format!("SpecValid is {other:?}")),
            }
        })
        .await;
    let (_, _, message) = condition(&job, "SpecValid").unwrap();
    assert!(message.contains("spec.checkpoints.store"), "{message}");
    assert!(message.contains("s3://"), "{message}");
    assert!(c
        .api::<StatefulSet>()
        .get_opt("local")
        .await
        .unwrap()
        .is_none());
    assert!(c
        .events("local")
        .await
        .iter()
        .any(|(r, _)| r == "SpecInvalid"));
    c.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_job_is_ready_checkpoints_and_stays_quiet() {
    let _slot = SLOTS.acquire().await.unwrap();
    let mut c = Cluster::new("op-quiet").await;
    c.start_operator(IMAGE).await;
    c.apply(&c.job("quiet", json!({}))).await;
    let job = running(&c, "quiet").await;
    assert!(reconciled(&job));
    let status = job.status.clone().unwrap();
    assert_eq!(status.phase, Some(eddy_api::spec::Phase::Running));
    assert_eq!((status.replicas, status.ready_replicas), (2, 2));
    assert_eq!(status.transition, None);
    assert!(
        job.finalizers().is_empty(),
        "a job whose checkpoints are kept needs no finalizer"
    );
    for type_ in [
        "Ready",
        "CheckpointsHealthy",
        "SpecValid",
        "Degraded",
        "ReconciliationPaused",
    ] {
        let c = job
            .status
            .as_ref()
            .unwrap()
            .conditions
            .iter()
            .find(|c| c.type_ == type_)
            .unwrap_or_else(|| panic!("no {type_}"));
        assert_eq!(c.observed_generation, job.metadata.generation, "{type_}");
    }

    // Only the operator reaches the admin port.
    let policy = c.api::<NetworkPolicy>().get("quiet").await.unwrap();
    assert_eq!(policy.owner_references()[0].uid, job.uid().unwrap());
    let rule = &policy.spec.as_ref().unwrap().ingress.as_ref().unwrap()[0];
    let peer = &rule.from.as_ref().unwrap()[0];
    assert_eq!(
        peer.pod_selector
            .as_ref()
            .unwrap()
            .match_labels
            .as_ref()
            .unwrap()["app.kubernetes.io/name"],
        "eddy-operator"
    );

    // An idle job: status written at most once per completed checkpoint.
    let reconciles_before = c.operator_metric("eddy_operator_reconciles_total").await;
    let jobs = c.jobs();
    let mut versions = BTreeSet::new();
    let mut checkpoints = BTreeSet::new();
    let watch = Duration::from_secs(30);
    let start = std::time::Instant::now();
    while start.elapsed() < watch {
        let job = jobs.get("quiet").await.unwrap();
        versions.insert(job.resource_version().unwrap());
        checkpoints.extend(last_checkpoint(&job));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let reconciles = c.operator_metric("eddy_operator_reconciles_total").await - reconciles_before;
    let writes = versions.len() - 1;
    let completed = checkpoints.len() - 1;
    let per_minute = |n: f64| n * 60.0 / watch.as_secs_f64();
    eprintln!(
        "idle job (checkpoints every 4s): {writes} status writes, {reconciles} reconciles and \
         {completed} checkpoints in {watch:?}: {:.1} writes/min, {:.1} reconciles/min",
        per_minute(writes as f64),
        per_minute(reconciles)
    );
    assert!(completed >= 3, "checkpoints every 4 s: {completed}");
    assert!(
        writes <= completed + 1,
        "{writes} writes for {completed} checkpoints"
    );
    let job = jobs.get("quiet").await.unwrap();
    let history = &job.status.as_ref().unwrap().checkpoint_history;
    assert!(history.len() >= 3 && history.len() <= 5, "{history:?}");
    assert!(history.windows(2).all(|w| w[0].id > w[1].id));
    c.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rescale_takes_a_final_checkpoint_then_replaces_every_pod_at_once() {
    let _slot = SLOTS.acquire().await.unwrap();
    let mut c = Cluster::new("op-scale").await;
    c.start_operator(IMAGE).await;
    c.apply(&c.job("scale", json!({}))).await;
    running(&c, "scale").await;
    let before = uids(&c.pods("scale").await);

    c.scale("scale", 3).await;
    c.wait_event("scale", "RescaleStarted", MINUTE).await;
    let replaced = c.wait_event("scale", "PodsReplaced", MINUTE).await;
    c.wait_event("scale", "RescaleFinished", 2 * MINUTE).await;
    let job = c.wait_ready("scale").await;
    assert!(reconciled(&job));
    let status = job.status.clone().unwrap();
    assert_eq!(status.transition, None);
    assert_eq!(status.assignment.len(), 3);
    let pods = c.pods("scale").await;
    assert_eq!(pods.len(), 3);
    assert!(uids(&pods).is_disjoint(&before), "every pod was replaced");
    // All at once: the replaced pods were created together.
    let created: Vec<_> = pods
        .iter()
        .filter_map(|p| p.metadata.creation_timestamp.as_ref().map(|t| t.0))
        .collect();
    let spread =
        created.iter().max().unwrap().as_second() - created.iter().min().unwrap().as_second();
    assert!(spread <= 5, "pods created {spread}s apart: {created:?}");
    // They restore from the final checkpoint, which the history shows.
    let id: u64 = replaced
        .rsplit(' ')
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no checkpoint id in {replaced:?}"));
    assert!(
        status.checkpoint_history.iter().any(|c| c.id == id),
        "final checkpoint {id} in {:?}",
        status.checkpoint_history
    );
    c.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scaling_to_zero_suspends_and_scaling_up_resumes() {
    let _slot = SLOTS.acquire().await.unwrap();
    let mut c = Cluster::new("op-zero").await;
    c.start_operator(IMAGE).await;
    c.apply(&c.job("zero", json!({}))).await;
    running(&c, "zero").await;
    c.scale("zero", 0).await;
    c.wait_event("zero", "Suspended", 2 * MINUTE).await;
    c.wait_job("zero", "phase Suspended", MINUTE, |job| {
        let phase = job.status.as_ref().and_then(|s| s.phase);
        (phase == Some(eddy_api::spec::Phase::Suspended))
            .then_some(())
            .ok_or(format!("phase {phase:?}"))
    })
    .await;
    eventually("no pods", MINUTE, || async {
        let n = c.pods("zero").await.len();
        (n == 0).then_some(()).ok_or(format!("{n} pods"))
    })
    .await;
    let job = c.jobs().get("zero").await.unwrap();
    assert_eq!(
        condition(&job, "Ready").map(|c| c.1),
        Some("Suspended".into())
    );
    c.scale("zero", 2).await;
    c.wait_event("zero", "Resumed", MINUTE).await;
    c.wait_ready("zero").await;
    c.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_the_api_server_refuses_pauses_nothing() {
    let _slot = SLOTS.acquire().await.unwrap();
    let mut c = Cluster::new("op-refused").await;
    c.start_operator(IMAGE).await;
    c.apply(&c.job("refused", json!({}))).await;
    let before = running(&c, "refused").await;
    let pods = c.pods("refused").await;

    // A memory limit below the request: the build takes it, the API server
    // does not.
    let changed = c
        .patch_spec(
            "refused",
            json!({"resources": {"requests": {"memory": "1Gi"}, "limits": {"memory": "64Mi"}}}),
        )
        .await;
    let job = c
        .wait_job(
            "refused",
            "Degraded=True",
            MINUTE,
            is_condition("Degraded", "True", "ApplyRefused"),
        )
        .await;
    let (_, _, message) = condition(&job, "Degraded").unwrap();
    assert!(message.contains("StatefulSet"), "{message}");
    let status = job.status.clone().unwrap();
    assert_eq!(status.transition, None, "no change started");
    assert_eq!(
        status.observed_generation, before.metadata.generation,
        "generation {:?} was not reconciled",
        changed.metadata.generation
    );
    assert_eq!(uids(&c.pods("refused").await), uids(&pods));
    for pod in &c.pods("refused").await {
        let listing = c.admin(pod).await.unwrap();
        assert!(!listing.paused, "{} is not paused", pod.name_any());
    }
    assert!(c
        .events("refused")
        .await
        .iter()
        .all(|(r, _)| r != "UpgradeStarted"));

    // Back to the spec that runs: reconciled, not degraded, nothing
    // restarted.
    c.patch_spec(
        "refused",
        json!({"resources": {"requests": {"memory": "64Mi"}, "limits": null}}),
    )
    .await;
    c.wait_job(
        "refused",
        "Degraded=False",
        2 * MINUTE,
        is_condition("Degraded", "False", "AsExpected"),
    )
    .await;
    let job = c.wait_ready("refused").await;
    assert!(reconciled(&job));
    assert_eq!(uids(&c.pods("refused").await), uids(&pods));
    c.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_final_checkpoint_that_cannot_complete_resumes_the_paused_pods() {
    let _slot = SLOTS.acquire().await.unwrap();
    let mut c = Cluster::new("op-stuck").await;
    c.start_operator(IMAGE).await;
    c.apply(&c.job("stuck", json!({"checkpoints": {"timeout": "6s"}})))
        .await;
    running(&c, "stuck").await;
    let pods = c.pods("stuck").await;
    let frozen = pid_of(&pods[1]);
    signal(&frozen, "-STOP");

    c.patch_spec(
        "stuck",
        json!({"image": "ghcr.io/eddy-dev/eddy-processor:v2"}),
    )
    .await;
    c.wait_event("stuck", "UpgradeStarted", MINUTE).await;
    let why = c.wait_event("stuck", "FinalCheckpointFailed", MINUTE).await;
    assert!(why.contains("upgradeMode: lastState"), "{why}");
    let job = c
        .wait_job(
            "stuck",
            "Degraded=True",
            MINUTE,
            is_condition("Degraded", "True", "FinalCheckpointFailed"),
        )
        .await;
    assert_eq!(job.status.as_ref().unwrap().transition, None);
    // The pod that answered took the final checkpoint and paused; it was
    // resumed when the change was given up.
    let listing = c.admin(&pods[0]).await.unwrap();
    assert!(!listing.paused, "pod 0 resumed: {listing:?}");
    assert_eq!(
        uids(&c.pods("stuck").await),
        uids(&pods),
        "nothing replaced"
    );
    signal(&frozen, "-CONT");

    // upgradeMode lastState goes on without asking the pods.
    c.patch_spec("stuck", json!({"upgradeMode": "lastState"}))
        .await;
    c.wait_event("stuck", "UpgradeFinished", 3 * MINUTE).await;
    c.wait_ready("stuck").await;
    for pod in c.pods("stuck").await {
        assert_eq!(image_of(&pod), "ghcr.io/eddy-dev/eddy-processor:v2");
    }
    c.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_it_does_not_control_are_left_alone_and_hand_edits_reverted() {
    let _slot = SLOTS.acquire().await.unwrap();
    let mut c = Cluster::new("op-owned").await;
    let maps: Api<ConfigMap> = c.api();
    let foreign = |name: &str, labels: serde_json::Value| {
        serde_json::from_value::<ConfigMap>(json!({
            "metadata": {"name": name, "labels": labels},
            "data": {"mine": "yes"}
        }))
        .unwrap()
    };
    maps.create(&PostParams::default(), &foreign("owned-config", json!({})))
        .await
        .unwrap();
    maps.create(
        &PostParams::default(),
        &foreign("owned-extra", json!({"eddy.dev/job": "owned"})),
    )
    .await
    .unwrap();
    c.start_operator(IMAGE).await;
    c.apply(&c.job("owned", json!({}))).await;
    let job = c
        .wait_job(
            "owned",
            "Degraded=True",
            MINUTE,
            is_condition("Degraded", "True", "ChildNotOwned"),
        )
        .await;
    let (_, _, message) = condition(&job, "Degraded").unwrap();
    assert!(message.contains("ConfigMap owned-config"), "{message}");
    assert!(c
        .api::<StatefulSet>()
        .get_opt("owned")
        .await
        .unwrap()
        .is_none());
    let kept = maps.get("owned-config").await.unwrap();
    assert_eq!(kept.data.as_ref().unwrap()["mine"], "yes");
    assert!(kept.owner_references().is_empty());

    maps.delete("owned-config", &DeleteParams::default())
        .await
        .unwrap();
    c.wait_ready("owned").await;
    assert!(
        maps.get_opt("owned-extra").await.unwrap().is_some(),
        "a labelled object the job does not control is never deleted"
    );

    // A hand edit of a child is reverted by the next reconcile.
    let pdbs: Api<PodDisruptionBudget> = c.api();
    pdbs.patch(
        "owned",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"maxUnavailable": 2}})),
    )
    .await
    .unwrap();
    eventually("the PDB edit to be reverted", MINUTE, || async {
        let pdb = pdbs.get("owned").await.map_err(|e| e.to_string())?;
        let max = pdb.spec.and_then(|s| s.max_unavailable);
        (max == Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(1)))
            .then_some(())
            .ok_or(format!("maxUnavailable {max:?}"))
    })
    .await;
    c.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pause_annotation_holds_changes_until_removed() {
    let _slot = SLOTS.acquire().await.unwrap();
    let mut c = Cluster::new("op-pause").await;
    c.start_operator(IMAGE).await;
    c.apply(&c.job("held", json!({}))).await;
    let job = running(&c, "held").await;
    let first = last_checkpoint(&job).unwrap();
    let annotate = |value: serde_json::Value| json!({"metadata": {"annotations": {"eddy.dev/pause-reconciliation": value}}});
    c.jobs()
        .patch(
            "held",
            &PatchParams::default(),
            &Patch::Merge(annotate(json!("true"))),
        )
        .await
        .unwrap();
    c.wait_job(
        "held",
        "ReconciliationPaused=True",
        MINUTE,
        is_condition("ReconciliationPaused", "True", "Annotated"),
    )
    .await;
    c.scale("held", 3).await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    let sts = c.api::<StatefulSet>().get("held").await.unwrap();
    assert_eq!(sts.spec.replicas, Some(2), "nothing applied while paused");
    assert!(c
        .events("held")
        .await
        .iter()
        .all(|(r, _)| r != "RescaleStarted"));
    c.wait_job(
        "held",
        "checkpoints going on",
        MINUTE,
        |job| match last_checkpoint(job) {
            Some(id) if id > first => Ok(()),
            other => Err(format!("last checkpoint {other:?}")),
        },
    )
    .await;

    c.jobs()
        .patch(
            "held",
            &PatchParams::default(),
            &Patch::Merge(annotate(serde_json::Value::Null)),
        )
        .await
        .unwrap();
    c.wait_event("held", "RescaleFinished", 2 * MINUTE).await;
    c.wait_ready("held").await;
    assert_eq!(c.pods("held").await.len(), 3);
    c.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_restarted_in_the_middle_of_an_upgrade_finishes_it() {
    let _slot = SLOTS.acquire().await.unwrap();
    let mut c = Cluster::new("op-restart").await;
    c.start_operator(IMAGE).await;
    c.apply(&c.job("restart", json!({}))).await;
    running(&c, "restart").await;

    c.patch_spec(
        "restart",
        json!({"image": "ghcr.io/eddy-dev/eddy-processor:v2"}),
    )
    .await;
    c.wait_job("restart", "a transition in status", MINUTE, |job| {
        job.status
            .as_ref()
            .and_then(|s| s.transition.as_ref())
            .map(drop)
            .ok_or("none yet".into())
    })
    .await;
    c.stop_operator().await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    c.start_operator(IMAGE).await;
    c.wait_event("restart", "UpgradeFinished", 3 * MINUTE).await;
    let job = c.wait_ready("restart").await;
    assert!(reconciled(&job));
    assert_eq!(job.status.as_ref().unwrap().transition, None);
    for pod in c.pods("restart").await {
        assert_eq!(image_of(&pod), "ghcr.io/eddy-dev/eddy-processor:v2");
    }
    let started = c
        .events("restart")
        .await
        .iter()
        .filter(|(r, _)| r == "UpgradeStarted")
        .count();
    assert_eq!(started, 1, "the restarted operator went on, not over");
    c.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_that_renders_other_pods_upgrades_through_a_final_checkpoint() {
    let _slot = SLOTS.acquire().await.unwrap();
    let mut c = Cluster::new("op-render").await;
    c.start_operator(IMAGE).await;
    c.apply(&c.job("render", json!({}))).await;
    running(&c, "render").await;
    let next = "ghcr.io/eddy-dev/eddy-processor:next";
    c.start_operator(next).await;
    let note = c.wait_event("render", "UpgradeStarted", MINUTE).await;
    assert!(note.contains("final checkpoint"), "{note}");
    c.wait_event("render", "UpgradeFinished", 3 * MINUTE).await;
    c.wait_ready("render").await;
    for pod in c.pods("render").await {
        assert_eq!(image_of(&pod), next);
    }
    c.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_namespace_with_jobs_never_hangs() {
    let _slot = SLOTS.acquire().await.unwrap();
    let mut c = Cluster::new("op-nsdel").await;
    c.start_operator(IMAGE).await;
    c.apply(&c.job("keep", json!({}))).await;
    c.apply(&c.job(
        "clear",
        json!({"checkpoints": {"deleteOnJobDeletion": true}}),
    ))
    .await;
    c.wait_job("clear", "its finalizer", MINUTE, |job| {
        (!job.finalizers().is_empty())
            .then_some(())
            .ok_or("none yet".into())
    })
    .await;
    c.wait_ready("keep").await;
    assert!(c.jobs().get("keep").await.unwrap().finalizers().is_empty());

    let namespaces: Api<Namespace> = Api::all(c.client.clone());
    namespaces
        .delete(&c.ns, &DeleteParams::default())
        .await
        .unwrap();
    eventually("the namespace to be gone", 3 * MINUTE, || async {
        match namespaces.get_opt(&c.ns).await.map_err(|e| e.to_string())? {
            None => Ok(()),
            Some(ns) => Err(format!("still there: {:?}", ns.status)),
        }
    })
    .await;
    c.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_replica_leads_through_a_lease_and_another_takes_over() {
    let c = Cluster::new("op-lease").await;
    let elector = |me: &str| {
        eddy_operator::leader::Elector::new(
            c.client.clone(),
            &c.ns,
            "eddy-operator",
            me,
            Duration::from_secs(3),
        )
    };
    let (a, b) = (elector("a"), elector("b"));
    assert!(a.try_hold().await.unwrap(), "a creates the lease");
    assert!(!b.try_hold().await.unwrap(), "b follows");
    assert!(a.try_hold().await.unwrap(), "a renews");
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(
        b.try_hold().await.unwrap(),
        "a stopped renewing: b takes over"
    );
    assert!(!a.try_hold().await.unwrap(), "a follows now");
    let lease = c.api::<Lease>().get("eddy-operator").await.unwrap();
    let spec = lease.spec.unwrap();
    assert_eq!(spec.holder_identity.as_deref(), Some("b"));
    assert_eq!(spec.lease_transitions, Some(1));

    // The loops the operator runs: b keeps renewing, so a waits ...
    let b = std::sync::Arc::new(b);
    let keeping = tokio::spawn({
        let b = b.clone();
        async move { b.keep().await }
    });
    let waited = tokio::time::timeout(Duration::from_secs(5), a.acquire()).await;
    assert!(waited.is_err(), "a leads while b renews");
    // ... until b stops (its pod killed); then a leads, and b's loop, told
    // another replica holds the lease, returns (the operator exits).
    keeping.abort();
    tokio::time::timeout(Duration::from_secs(10), a.acquire())
        .await
        .expect("a takes over once b's lease expires");
    tokio::time::timeout(Duration::from_secs(10), b.keep())
        .await
        .expect("b learns it lost the lease");
    c.finish().await;
}

fn phase_is(want: eddy_api::spec::Phase) -> impl Fn(&StreamJob) -> Result<(), String> {
    move |job| {
        let phase = job.status.as_ref().and_then(|s| s.phase);
        (phase == Some(want))
            .then_some(())
            .ok_or(format!("phase {phase:?}"))
    }
}

async fn no_pods(c: &Cluster, name: &str) {
    eventually("no pods", MINUTE, || async {
        let n = c.pods(name).await.len();
        (n == 0).then_some(()).ok_or(format!("{n} pods"))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finite_job_finishes_stops_its_pods_and_is_not_run_again() {
    let _slot = SLOTS.acquire().await.unwrap();
    let mut c = Cluster::new("op-finish").await;
    c.start_operator(IMAGE).await;
    let source = json!({"source": {"generator": {
        "seed": 7, "rate": 20, "realtime": true, "keys": 20, "count": 120
    }}});
    c.apply(&c.job("finite", source)).await;
    c.wait_ready("finite").await;
    let note = c.wait_event("finite", "Finished", 2 * MINUTE).await;
    assert!(note.contains("all 2 pods"), "{note}");
    let job = c
        .wait_job(
            "finite",
            "phase Finished",
            MINUTE,
            phase_is(eddy_api::spec::Phase::Finished),
        )
        .await;
    let status = job.status.as_ref().unwrap();
    assert_eq!(status.finished.as_ref().map(|f| f.generation), Some(1));
    assert_eq!(
        condition(&job, "Ready").map(|c| (c.0, c.1)),
        Some(("True".into(), "Finished".into())),
        "done, like a completed Job"
    );
    no_pods(&c, "finite").await;
    let sts = c.api::<StatefulSet>().get("finite").await.unwrap();
    assert_eq!(sts.spec.replicas, Some(0));
    // Not run again: no pod comes back while reconciles go on.
    c.patch_spec("finite", json!({"checkpoints": {"interval": "5s"}}))
        .await;
    let note = c.wait_event("finite", "SpecRecorded", MINUTE).await;
    assert!(note.contains("no pod restarts"), "{note}");
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(
            c.pods("finite").await.is_empty(),
            "a finished job stays stopped"
        );
    }
    let job = c
        .wait_job("finite", "the new generation reconciled", MINUTE, |job| {
            reconciled(job).then_some(()).ok_or("not yet".into())
        })
        .await;
    assert_eq!(
        job.status.as_ref().and_then(|s| s.phase),
        Some(eddy_api::spec::Phase::Finished),
        "an operator-side change does not rerun it"
    );
    let kept = eddy_testkit::s3::keys(BUCKET, &format!("jobs/{}/finite/", c.ns)).await;
    assert!(
        kept.iter().any(|k| k.contains("/checkpoints/")),
        "its checkpoints (the end of its input) are kept: {kept:?}"
    );
    c.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stateless_upgrade_starts_over_and_later_restarts_restore_the_new_state() {
    let _slot = SLOTS.acquire().await.unwrap();
    let mut c = Cluster::new("op-stateless").await;
    c.start_operator(IMAGE).await;
    c.apply(&c.job("fresh", json!({"upgradeMode": "stateless"})))
        .await;
    let before = last_checkpoint(&running(&c, "fresh").await).unwrap();
    let old_pods = uids(&c.pods("fresh").await);

    c.patch_spec("fresh", json!({"state": {"memoryBudget": "200Mi"}}))
        .await;
    let note = c.wait_event("fresh", "UpgradeStarted", MINUTE).await;
    assert!(note.contains("upgradeMode stateless"), "{note}");
    c.wait_event("fresh", "UpgradeFinished", 3 * MINUTE).await;
    let job = c.wait_ready("fresh").await;
    assert_eq!(job.status.as_ref().unwrap().state_epoch, Some(1));
    let pods = c.pods("fresh").await;
    assert!(uids(&pods).is_disjoint(&old_pods), "every pod replaced");
    for pod in &pods {
        let env = pod.spec.as_ref().unwrap().containers[0]
            .env
            .clone()
            .unwrap();
        assert!(
            env.iter()
                .any(|e| e.name == "EDDY_STATE_EPOCH" && e.value.as_deref() == Some("1")),
            "{env:?}"
        );
        let log = pod_log(pod);
        assert!(log.contains("running job"), "{log}");
        assert!(
            !log.contains("restored checkpoint"),
            "a stateless upgrade restores nothing: {log}"
        );
    }
    // The new state is checkpointed, and a lost pod restores it.
    let job = c
        .wait_job(
            "fresh",
            "a checkpoint of the new epoch",
            MINUTE,
            |job| match last_checkpoint(job) {
                Some(id) if id > before + 1 => Ok(()),
                other => Err(format!("last checkpoint {other:?}")),
            },
        )
        .await;
    let newest = last_checkpoint(&job).unwrap();
    let lost = c.pods("fresh").await[0].clone();
    let api: Api<Pod> = c.api();
    api.delete(&lost.name_any(), &DeleteParams::default())
        .await
        .unwrap();
    let replaced = eventually("the lost pod to restore", 2 * MINUTE, || async {
        let pod = c
            .pods("fresh")
            .await
            .into_iter()
            .find(|p| p.name_any() == lost.name_any() && p.uid() != lost.uid())
            .ok_or("not recreated yet")?;
        let log = pod_log(&pod);
        log.lines()
            .find(|l| l.starts_with("restored checkpoint"))
            .map(str::to_string)
            .ok_or(format!("no restore yet: {log}"))
    })
    .await;
    let restored: u64 = replaced
        .split_whitespace()
        .nth(2)
        .and_then(|id| id.parse().ok())
        .unwrap_or_else(|| panic!("{replaced}"));
    assert!(
        restored >= newest && restored > before,
        "restored {restored}, a checkpoint of the new epoch (newest {newest}, before the upgrade {before})"
    );
    c.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_job_starts_from_a_checkpoint_chosen_in_another_jobs_history() {
    let _slot = SLOTS.acquire().await.unwrap();
    let mut c = Cluster::new("op-fork").await;
    c.start_operator(IMAGE).await;
    // Kept long enough for the fork to find the chosen one.
    let retain = json!({"checkpoints": {"retain": 20}});
    c.apply(&c.job("origin", retain)).await;
    running(&c, "origin").await;
    let job = c
        .wait_job("origin", "two checkpoints in the history", MINUTE, |job| {
            let n = job
                .status
                .as_ref()
                .map_or(0, |s| s.checkpoint_history.len());
            (n >= 2).then_some(()).ok_or(format!("{n} checkpoints"))
        })
        .await;
    // Not the newest: the one before it.
    let chosen = job.status.as_ref().unwrap().checkpoint_history[1].id;
    let origin = format!("{}/origin", c.ns);
    let seed = json!({"checkpoints": {"restoreFrom": {"job": origin, "checkpointId": chosen}}});
    c.apply(&c.job("fork", seed)).await;
    c.wait_ready("fork").await;
    for pod in c.pods("fork").await {
        let log = pod_log(&pod);
        assert!(
            log.contains(&format!("started from checkpoint {chosen} of job {origin}")),
            "{}: {log}",
            pod.name_any()
        );
    }
    c.finish().await;
}

fn advice_of(job: &StreamJob) -> Result<&eddy_api::spec::WatermarkAdvice, String> {
    match job
        .status
        .as_ref()
        .and_then(|s| s.watermark_advice.as_ref())
    {
        Some(a) if !a.settings.is_empty() => Ok(a),
        other => Err(format!("advice {other:?}")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_events_give_watermark_advice_and_a_warning_and_hot_keys_show() {
    let _slot = SLOTS.acquire().await.unwrap();
    let mut c = Cluster::new("op-advice").await;
    c.start_operator(IMAGE).await;
    // 2% of events 7 minutes late against 3 minutes of lateness; one key
    // carries most events.
    let late = json!({
        "source": {"generator": {
            "seed": 7, "rate": 200, "realtime": true, "keys": 50, "keySkew": 2.0,
            "lateFraction": 0.02, "lateBy": "7m"
        }},
        "window": {"tumbling": {"size": "1m"}},
        "allowedLateness": "3m",
        "autoscaling": {"hotKeyShare": 0.3},
        "parallelism": 1
    });
    c.apply(&c.job("late", late)).await;
    // A job whose events are all in order.
    c.apply(&c.job("ontime", json!({"parallelism": 1}))).await;
    let note = c.wait_event("late", "LateEventsDropped", 2 * MINUTE).await;
    assert!(note.contains("allowedLateness"), "{note}");
    // About 2% dropped, and at least 7 minutes advised (the share is a
    // sample: it settles as events accumulate).
    let job = c
        .wait_job("late", "the advice to settle", MINUTE, |job| {
            let advice = advice_of(job)?;
            let ooo = humantime::parse_duration(&advice.settings[0].max_out_of_orderness)
                .map_err(|e| e.to_string())?;
            let ok = (0.01..0.03).contains(&advice.dropped_share)
                && ooo >= Duration::from_secs(6 * 60 + 50);
            ok.then_some(()).ok_or(format!("{advice:?}"))
        })
        .await;
    let status = job.status.unwrap();
    assert_eq!(status.watermark_advice.unwrap().settings[0].keep, "99%");
    let hot = &status.hot_keys;
    assert!(!hot.is_empty() && hot[0].share >= 0.3, "{hot:?}");
    assert!(status.hot_key_summary.unwrap().contains(&hot[0].key));

    let ontime = c
        .wait_job("ontime", "watermark advice", MINUTE, |job| {
            advice_of(job).map(drop)
        })
        .await;
    let advice = ontime.status.unwrap().watermark_advice.unwrap();
    assert_eq!(advice.dropped_share, 0.0);
    assert!(
        advice.settings.iter().all(|s| s.allowed_lateness == "0s"),
        "nothing to change: {advice:?}"
    );
    assert!(c
        .events("ontime")
        .await
        .iter()
        .all(|(r, _)| r != "LateEventsDropped"));
    c.finish().await;
}

fn autoscaling_of(job: &StreamJob) -> Result<&eddy_api::spec::AutoscalingStatus, String> {
    job.status
        .as_ref()
        .and_then(|s| s.autoscaling.as_ref())
        .ok_or_else(|| "no status.autoscaling".into())
}

/// Mode recommend: the autoscaler measures every partition, decides, and
/// says so in status, the Scaling condition and an Event, and changes
/// nothing. Mode apply on a source whose partitions cannot move (a
/// generator has one position for all) is refused by the processor:
/// reported as ScalingBlocked, nothing moves. Disabled, it is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_autoscaler_recommends_without_acting_and_reports_moves_it_cannot_make() {
    let _slot = SLOTS.acquire().await.unwrap();
    let mut c = Cluster::new("op-auto").await;
    c.start_operator(IMAGE).await;
    let autoscaling = |mode: &str| {
        json!({"autoscaling": {
            "mode": mode, "minReplicas": 1, "stabilizationWindow": "5s", "cooldown": "5s",
            "scaleInIdleAfter": "10s", "metricsWindow": "10s",
        }})
    };
    c.apply(&c.job("idle", autoscaling("recommend"))).await;
    running(&c, "idle").await;
    let pods = uids(&c.pods("idle").await);
    let job = c
        .wait_job("idle", "a recommendation to scale in", 2 * MINUTE, |job| {
            let a = autoscaling_of(job)?;
            let last = a.last_decision.as_ref().ok_or("no decision yet")?;
            (last.action == "ScaledIn" && a.partitions.len() == 4)
                .then_some(())
                .ok_or(format!("{a:?}"))
        })
        .await;
    let a = autoscaling_of(&job).unwrap();
    assert_eq!(a.recommended_parallelism, Some(1));
    assert_eq!(a.parallelism, None, "recommend sets no pods");
    let last = a.last_decision.as_ref().unwrap();
    assert!(!last.applied && last.from == 2 && last.to == 1, "{last:?}");
    assert!(a.moving.is_none());
    assert!(a
        .partitions
        .iter()
        .all(|p| p.events_per_second > 0.0 && p.load < 0.7));
    let (status, reason, _) = condition(&job, "Scaling").unwrap();
    assert_eq!((status.as_str(), reason.as_str()), ("False", "ScaledIn"));
    let events = c.events("idle").await;
    let scaled_in: Vec<_> = events.iter().filter(|(r, _)| r == "ScaledIn").collect();
    assert_eq!(
        scaled_in.len(),
        1,
        "the same recommendation is sent once: {events:?}"
    );
    assert!(scaled_in[0].1.contains("recommended only"), "{scaled_in:?}");
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(uids(&c.pods("idle").await), pods, "nothing changed");
    let job = c.jobs().get("idle").await.unwrap();
    assert_eq!(job.status.as_ref().unwrap().assignment.len(), 2);

    // Apply: the processor refuses to release a generator's partition.
    let mut applied = c.job("idle", autoscaling("apply"));
    applied["spec"]["autoscaling"]["cooldown"] = json!("1m");
    c.apply(&applied).await;
    eddy_testkit::eventually("ScalingBlocked", 2 * MINUTE, || async {
        let events = c.events("idle").await;
        events
            .iter()
            .find(|(r, m)| r == "ScalingBlocked" && m.contains("partitions cannot move"))
            .map(drop)
            .ok_or(format!("{events:?}"))
    })
    .await;
    let job = c.jobs().get("idle").await.unwrap();
    let a = autoscaling_of(&job).unwrap();
    assert!(a.moving.is_none() && a.parallelism.is_none(), "{a:?}");
    assert_eq!(uids(&c.pods("idle").await), pods, "nothing changed");

    // Disabled: no autoscaling status, no Scaling condition.
    c.apply(&c.job("idle", autoscaling("disabled"))).await;
    c.wait_job("idle", "the autoscaler gone", MINUTE, |job| {
        let gone = job.status.as_ref().is_some_and(|s| s.autoscaling.is_none())
            && condition(job, "Scaling").is_none();
        gone.then_some(()).ok_or("still there".into())
    })
    .await;
    c.finish().await;
}
