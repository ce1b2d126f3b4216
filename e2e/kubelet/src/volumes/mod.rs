//! A pod's volumes as directories on the host.
//!
//! `<root>/pods/<uid>/volumes/<name>` for emptyDir, configMap, secret,
//! downwardAPI and projected volumes; `<root>/volumes/<namespace>/<claim>`
//! for claims (kept when the pod goes, like a PersistentVolume); the path
//! itself for hostPath.

pub mod files;
pub mod token;
pub mod write;

use std::collections::BTreeMap;
use std::path::PathBuf;

use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, Volume};
use kube::{Api, Client};

use crate::env::PodFacts;
use crate::runtime::VolumeDir;
use crate::settings::Settings;
use files::File;
use token::Tokens;

/// Materialises and refreshes one pod's volumes.
#[derive(Default)]
pub struct PodVolumes {
    tokens: Tokens,
}

impl PodVolumes {
    /// Creates or refreshes every volume; the error says which volume is not
    /// ready and why (a missing ConfigMap, an unsupported type, ...).
    pub async fn materialize(
        &mut self,
        client: &Client,
        settings: &Settings,
        pod: &Pod,
        facts: &PodFacts,
    ) -> Result<BTreeMap<String, VolumeDir>, String> {
        let uid = pod.metadata.uid.as_deref().unwrap_or_default();
        let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
        let mut dirs = BTreeMap::new();
        for volume in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
            let dir = self
                .volume(client, settings, pod, facts, uid, namespace, volume)
                .await
                .map_err(|e| format!("volume {:?}: {e}", volume.name))?;
            dirs.insert(volume.name.clone(), dir);
        }
        Ok(dirs)
    }

    #[allow(clippy::too_many_arguments)]
    async fn volume(
        &mut self,
        client: &Client,
        settings: &Settings,
        pod: &Pod,
        facts: &PodFacts,
        uid: &str,
        namespace: &str,
        volume: &Volume,
    ) -> Result<VolumeDir, String> {
        let own_dir = settings.pod_dir(uid).join("volumes").join(&volume.name);
        let writable = |path: PathBuf| VolumeDir {
            path,
            read_only: false,
        };
        let read_only = |path: PathBuf| VolumeDir {
            path,
            read_only: true,
        };
        if volume.empty_dir.is_some() {
            create_dir(&own_dir)?;
            return Ok(writable(own_dir));
        }
        if let Some(claim) = &volume.persistent_volume_claim {
            let dir = settings.claim_dir(namespace, &claim.claim_name);
            create_dir(&dir)?;
            return Ok(VolumeDir {
                path: dir,
                read_only: claim.read_only == Some(true),
            });
        }
        if let Some(host) = &volume.host_path {
            let path = PathBuf::from(&host.path);
            match host.type_.as_deref() {
                Some("DirectoryOrCreate") => create_dir(&path)?,
                Some("FileOrCreate") => {
                    if let Some(parent) = path.parent() {
                        create_dir(parent)?;
                    }
                    std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(&path)
                        .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
                }
                _ if !path.exists() => {
                    return Err(format!("hostPath {} does not exist", path.display()))
                }
                _ => {}
            }
            return Ok(writable(path));
        }
        let files = if let Some(source) = &volume.config_map {
            let keys = config_map_keys(client, namespace, &source.name).await?;
            files::from_keys(
                &format!("configmap {:?}", source.name),
                keys,
                source.items.as_deref(),
                source.default_mode,
                source.optional == Some(true),
            )?
        } else if let Some(source) = &volume.secret {
            let name = source.secret_name.clone().unwrap_or_default();
            let keys = secret_keys(client, namespace, &name).await?;
            files::from_keys(
                &format!("secret {name:?}"),
                keys,
                source.items.as_deref(),
                source.default_mode,
                source.optional == Some(true),
            )?
        } else if let Some(source) = &volume.downward_api {
            files::from_downward_api(
                source.items.as_deref().unwrap_or_default(),
                pod,
                facts,
                source.default_mode,
            )?
        } else if let Some(projected) = &volume.projected {
            self.projected(client, pod, facts, namespace, volume, projected)
                .await?
        } else {
            return Err(
                "this volume type is not supported on this node (see the eddy-kubelet README)"
                    .into(),
            );
        };
        write::sync(&own_dir, &files).map_err(|e| format!("cannot write files: {e}"))?;
        Ok(read_only(own_dir))
    }

    async fn projected(
        &mut self,
        client: &Client,
        pod: &Pod,
        facts: &PodFacts,
        namespace: &str,
        volume: &Volume,
        projected: &k8s_openapi::api::core::v1::ProjectedVolumeSource,
    ) -> Result<Vec<File>, String> {
        let default_mode = projected.default_mode;
        let mut all = Vec::new();
        for source in projected.sources.iter().flatten() {
            if let Some(token) = &source.service_account_token {
                let jwt = self.tokens.get(client, pod, &volume.name, token).await?;
                all.push(File {
                    path: token.path.clone(),
                    data: jwt.into_bytes(),
                    mode: default_mode.map_or(files::DEFAULT_MODE, |m| m as u32 & 0o7777),
                });
            } else if let Some(cm) = &source.config_map {
                let keys = config_map_keys(client, namespace, &cm.name).await?;
                all.extend(files::from_keys(
                    &format!("configmap {:?}", cm.name),
                    keys,
                    cm.items.as_deref(),
                    default_mode,
                    cm.optional == Some(true),
                )?);
            } else if let Some(secret) = &source.secret {
                let keys = secret_keys(client, namespace, &secret.name).await?;
                all.extend(files::from_keys(
                    &format!("secret {:?}", secret.name),
                    keys,
                    secret.items.as_deref(),
                    default_mode,
                    secret.optional == Some(true),
                )?);
            } else if let Some(downward) = &source.downward_api {
                all.extend(files::from_downward_api(
                    downward.items.as_deref().unwrap_or_default(),
                    pod,
                    facts,
                    default_mode,
                )?);
            } else {
                return Err("projected source type not supported on this node".into());
            }
        }
        Ok(all)
    }
}

fn create_dir(path: &std::path::Path) -> Result<(), String> {
    std::fs::create_dir_all(path).map_err(|e| format!("cannot create {}: {e}", path.display()))
}

async fn config_map_keys(
    client: &Client,
    namespace: &str,
    name: &str,
) -> Result<Option<BTreeMap<String, Vec<u8>>>, String> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let cm = api
        .get_opt(name)
        .await
        .map_err(|e| format!("cannot read configmap {name:?}: {e}"))?;
    Ok(cm.map(|cm| {
        let mut keys: BTreeMap<String, Vec<u8>> = cm
            .data
            .into_iter()
            .flatten()
            .map(|(k, v)| (k, v.into_bytes()))
            .collect();
        keys.extend(cm.binary_data.into_iter().flatten().map(|(k, v)| (k, v.0)));
        keys
    }))
}

async fn secret_keys(
    client: &Client,
    namespace: &str,
    name: &str,
) -> Result<Option<BTreeMap<String, Vec<u8>>>, String> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let secret = api
        .get_opt(name)
        .await
        .map_err(|e| format!("cannot read secret {name:?}: {e}"))?;
    Ok(secret.map(|s| {
        s.data
            .into_iter()
            .flatten()
            .map(|(k, v)| (k, v.0))
            .collect()
    }))
}
