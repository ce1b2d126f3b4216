//! Apply: server-side apply of each child that is missing or differs from
//! what was last applied, then deletion of children that should no longer
//! exist. Each applied object carries the hash of its desired form, so an
//! unchanged job patches nothing.

use k8s_openapi::{
    api::{
        apps::v1::StatefulSet,
        core::v1::{ConfigMap, Service},
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

/// Annotation holding the hash of the object as the operator built it.
pub const APPLIED_HASH: &str = "eddy.dev/applied-hash";

/// Stamps `object` with the hash of its desired form; returns the hash.
pub fn stamp<K: Resource + Serialize>(object: &mut K) -> String {
    object
        .meta_mut()
        .annotations
        .get_or_insert_default()
        .remove(APPLIED_HASH);
    let json = serde_json::to_vec(object).unwrap_or_default();
    let hash = format!("{:016x}", xxhash_rust::xxh3::xxh3_64(&json));
    object
        .meta_mut()
        .annotations
        .get_or_insert_default()
        .insert(APPLIED_HASH.into(), hash.clone());
    hash
}

fn applied_hash<K: Resource>(object: Option<&K>) -> Option<&str> {
    object?
        .meta()
        .annotations
        .as_ref()?
        .get(APPLIED_HASH)
        .map(String::as_str)
}

/// Applies the children that differ from what is observed; returns the
/// kinds applied, in order.
pub async fn apply_changed(
    client: &Client,
    namespace: &str,
    mut desired: Children,
    observed: &Observed,
) -> Result<Vec<&'static str>, kube::Error> {
    let (c, n) = (client, namespace);
    // The config first: pods the StatefulSet starts read it.
    let applied = [
        one(
            c,
            n,
            &mut desired.config_map,
            observed.config_map.as_ref(),
            "ConfigMap",
        )
        .await?,
        one(
            c,
            n,
            &mut desired.headless,
            observed.headless.as_ref(),
            "headless Service",
        )
        .await?,
        one(
            c,
            n,
            &mut desired.metrics,
            observed.metrics.as_ref(),
            "metrics Service",
        )
        .await?,
        one(
            c,
            n,
            &mut desired.pdb,
            observed.pdb.as_ref(),
            "PodDisruptionBudget",
        )
        .await?,
        one(
            c,
            n,
            &mut desired.stateful_set,
            observed.stateful_set.as_ref(),
            "StatefulSet",
        )
        .await?,
    ];
    Ok(applied.into_iter().flatten().collect())
}

/// Applies one child if it differs from what is observed; `Some(kind)` if
/// it did.
async fn one<K>(
    client: &Client,
    namespace: &str,
    desired: &mut K,
    observed: Option<&K>,
    kind: &'static str,
) -> Result<Option<&'static str>, kube::Error>
where
    K: Resource<Scope = NamespaceResourceScope>
        + Clone
        + Serialize
        + DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    let hash = stamp(desired);
    if applied_hash(observed) == Some(hash.as_str()) {
        return Ok(None);
    }
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    let params = PatchParams::apply(names::MANAGER).force();
    api.patch(&desired.name_any(), &params, &Patch::Apply(&*desired))
        .await?;
    Ok(Some(kind))
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

/// Deletes every child labelled as job `job`'s whose name is not built any
/// more (children of an older operator version, renamed objects).
pub async fn delete_orphans(
    client: &Client,
    namespace: &str,
    job: &str,
) -> Result<Vec<String>, kube::Error> {
    let mut deleted = Vec::new();
    let keep_cm = [names::config_map(job)];
    let keep_svc = [names::headless_service(job), names::metrics_service(job)];
    let keep_sts = [names::stateful_set(job)];
    let keep_pdb = [names::pdb(job)];
    deleted.extend(orphans::<ConfigMap>(client, namespace, job, &keep_cm).await?);
    deleted.extend(orphans::<Service>(client, namespace, job, &keep_svc).await?);
    deleted.extend(orphans::<StatefulSet>(client, namespace, job, &keep_sts).await?);
    deleted.extend(orphans::<PodDisruptionBudget>(client, namespace, job, &keep_pdb).await?);
    Ok(deleted)
}

async fn orphans<K>(
    client: &Client,
    namespace: &str,
    job: &str,
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
        if !keep.contains(&name) {
            api.delete(&name, &DeleteParams::background()).await?;
            deleted.push(format!("{}/{name}", K::kind(&K::DynamicType::default())));
        }
    }
    Ok(deleted)
}
