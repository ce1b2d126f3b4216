//! Apply: server-side apply of every child on every reconcile (an apply
//! that changes nothing writes nothing, and a hand edit is reverted),
//! never over an object this job does not control; deletion of children
//! the job no longer has, and only of those it controls.

use k8s_openapi::{
    api::{
        apps::v1::StatefulSet,
        core::v1::{ConfigMap, Pod, Service},
        networking::v1::NetworkPolicy,
        policy::v1::PodDisruptionBudget,
    },
    NamespaceResourceScope,
};
use kube::{
    api::{DeleteParams, ListParams, Patch, PatchParams},
    Api, Client, Resource, ResourceExt,
};
use serde::{de::DeserializeOwned, Serialize};

use super::observe::Observed;
use crate::build::{names, Children};

/// Why the children could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// An object with a child's name exists and this job does not control
    /// it: it is left alone.
    #[error(
        "{kind} {name} exists and is not controlled by this StreamJob ({owner}); it is left \
         alone: delete or rename it, or rename the job"
    )]
    NotOwned {
        kind: &'static str,
        name: String,
        owner: String,
    },
    #[error("{kind}: {source}")]
    Refused {
        kind: &'static str,
        #[source]
        source: kube::Error,
    },
}

/// Whether `object` is controlled by the object with `uid`.
pub fn controlled_by<K: Resource>(object: &K, uid: &str) -> bool {
    object
        .owner_references()
        .iter()
        .any(|o| o.controller == Some(true) && o.uid == uid)
}

/// Who controls `object`, for a message.
fn controller_of<K: Resource>(object: &K) -> String {
    object
        .owner_references()
        .iter()
        .find(|o| o.controller == Some(true))
        .map_or("no controller".into(), |o| {
            format!("controlled by {} {}", o.kind, o.name)
        })
}

/// Applies every child (`dry_run`: only asks the API server whether it
/// would accept them); returns the kinds the API server changed.
pub async fn apply_all(
    client: &Client,
    namespace: &str,
    desired: &Children,
    observed: &Observed,
    uid: &str,
    dry_run: bool,
) -> Result<Vec<&'static str>, ApplyError> {
    let target = Target {
        client,
        namespace,
        uid,
        dry_run,
    };
    // Ownership first, so nothing is written when one child is taken.
    target.check(observed.config_map.as_ref(), "ConfigMap")?;
    target.check(observed.headless.as_ref(), "Service")?;
    target.check(observed.metrics.as_ref(), "Service")?;
    target.check(observed.pdb.as_ref(), "PodDisruptionBudget")?;
    target.check(observed.stateful_set.as_ref(), "StatefulSet")?;
    if desired.network_policy.is_some() {
        target.check(observed.network_policy.as_ref(), "NetworkPolicy")?;
    }
    // The config first: pods the StatefulSet starts read it.
    let mut changed = vec![
        target
            .one(
                &desired.config_map,
                observed.config_map.as_ref(),
                "ConfigMap",
            )
            .await?,
        target
            .one(&desired.headless, observed.headless.as_ref(), "Service")
            .await?,
        target
            .one(&desired.metrics, observed.metrics.as_ref(), "Service")
            .await?,
        target
            .one(&desired.pdb, observed.pdb.as_ref(), "PodDisruptionBudget")
            .await?,
    ];
    if let Some(policy) = &desired.network_policy {
        changed.push(
            target
                .one(policy, observed.network_policy.as_ref(), "NetworkPolicy")
                .await?,
        );
    }
    changed.push(
        target
            .one(
                &desired.stateful_set,
                observed.stateful_set.as_ref(),
                "StatefulSet",
            )
            .await?,
    );
    Ok(changed.into_iter().flatten().collect())
}

struct Target<'a> {
    client: &'a Client,
    namespace: &'a str,
    uid: &'a str,
    dry_run: bool,
}

impl Target<'_> {
    fn check<K: Resource>(
        &self,
        observed: Option<&K>,
        kind: &'static str,
    ) -> Result<(), ApplyError> {
        match observed {
            Some(o) if !controlled_by(o, self.uid) => Err(ApplyError::NotOwned {
                kind,
                name: o.name_any(),
                owner: controller_of(o),
            }),
            _ => Ok(()),
        }
    }

    /// Applies one child; `Some(kind)` if the API server changed it.
    async fn one<K>(
        &self,
        desired: &K,
        observed: Option<&K>,
        kind: &'static str,
    ) -> Result<Option<&'static str>, ApplyError>
    where
        K: Resource<Scope = NamespaceResourceScope>
            + Clone
            + Serialize
            + DeserializeOwned
            + std::fmt::Debug,
        K::DynamicType: Default,
    {
        let api: Api<K> = Api::namespaced(self.client.clone(), self.namespace);
        let mut params = PatchParams::apply(names::MANAGER).force();
        params.dry_run = self.dry_run;
        let applied = api
            .patch(&desired.name_any(), &params, &Patch::Apply(desired))
            .await
            .map_err(|source| ApplyError::Refused { kind, source })?;
        // Objects with a generation changed only when it moved (their
        // status changes their resourceVersion all the time).
        let changed = match (observed, applied.meta().generation) {
            (None, _) => true,
            (Some(o), Some(after)) => o.meta().generation != Some(after),
            (Some(o), None) => o.resource_version() != applied.resource_version(),
        };
        Ok((!self.dry_run && changed).then_some(kind))
    }
}

/// Deletes the StatefulSet, for changes it cannot take in place (its
/// volume claim templates); the next reconcile creates it again.
pub async fn delete_stateful_set(
    client: &Client,
    namespace: &str,
    job: &str,
) -> Result<(), kube::Error> {
    let api: Api<StatefulSet> = Api::namespaced(client.clone(), namespace);
    api.delete(&names::stateful_set(job), &DeleteParams::background())
        .await
        .map(drop)
}

/// Deletes the named pods at once (their StatefulSet makes them again
/// from its newest revision, in parallel). A pod already gone is fine.
pub async fn delete_pods(
    client: &Client,
    namespace: &str,
    pods: &[String],
) -> Result<(), kube::Error> {
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let params = DeleteParams::default();
    let calls = pods.iter().map(|p| api.delete(p, &params));
    for result in futures::future::join_all(calls).await {
        match result {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Deletes every child labelled as job `job`'s, controlled by the job with
/// `uid`, whose name is not built any more (children of an older operator
/// version, renamed objects, a NetworkPolicy no longer wanted).
pub async fn delete_orphans(
    client: &Client,
    namespace: &str,
    job: &str,
    uid: &str,
    desired: &Children,
) -> Result<Vec<String>, kube::Error> {
    let mut deleted = Vec::new();
    let keep_cm = [names::config_map(job)];
    let keep_svc = [names::headless_service(job), names::metrics_service(job)];
    let keep_sts = [names::stateful_set(job)];
    let keep_pdb = [names::pdb(job)];
    let keep_np: Vec<String> = desired
        .network_policy
        .iter()
        .map(ResourceExt::name_any)
        .collect();
    let at = (client, namespace, job, uid);
    deleted.extend(orphans::<ConfigMap>(at, &keep_cm).await?);
    deleted.extend(orphans::<Service>(at, &keep_svc).await?);
    deleted.extend(orphans::<StatefulSet>(at, &keep_sts).await?);
    deleted.extend(orphans::<PodDisruptionBudget>(at, &keep_pdb).await?);
    deleted.extend(orphans::<NetworkPolicy>(at, &keep_np).await?);
    Ok(deleted)
}

async fn orphans<K>(
    (client, namespace, job, uid): (&Client, &str, &str, &str),
    keep: &[String],
) -> Result<Vec<String>, kube::Error>
where
    K: Resource<Scope = NamespaceResourceScope> + Clone + DeserializeOwned + std::fmt::Debug,
    K::DynamicType: Default,
{
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    let selector = format!("{}={job}", names::JOB_LABEL);
    let mut deleted = Vec::new();
    for object in api.list(&ListParams::default().labels(&selector)).await? {
        let name = object.name_any();
        if !keep.contains(&name) && controlled_by(&object, uid) {
            api.delete(&name, &DeleteParams::background()).await?;
            deleted.push(format!("{}/{name}", K::kind(&K::DynamicType::default())));
        }
    }
    Ok(deleted)
}
