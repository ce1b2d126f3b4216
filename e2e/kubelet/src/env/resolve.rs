//! A container's environment from its spec and the objects it refers to.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret};

use super::expand::expand;
use super::field::{self, PodFacts};

/// ConfigMaps and Secrets of the pod's namespace by name; a name that is
/// referred to but absent here does not exist.
#[derive(Debug, Default, Clone)]
pub struct Objects {
    pub config_maps: BTreeMap<String, ConfigMap>,
    pub secrets: BTreeMap<String, Secret>,
}

/// The names of the ConfigMaps and Secrets a container's environment reads.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct References {
    pub config_maps: BTreeSet<String>,
    pub secrets: BTreeSet<String>,
}

pub fn references(container: &Container) -> References {
    let mut refs = References::default();
    for source in container.env_from.iter().flatten() {
        if let Some(cm) = &source.config_map_ref {
            refs.config_maps.insert(cm.name.clone());
        }
        if let Some(secret) = &source.secret_ref {
            refs.secrets.insert(secret.name.clone());
        }
    }
    for var in container.env.iter().flatten() {
        let Some(from) = &var.value_from else {
            continue;
        };
        if let Some(key) = &from.config_map_key_ref {
            refs.config_maps.insert(key.name.clone());
        }
        if let Some(key) = &from.secret_key_ref {
            refs.secrets.insert(key.name.clone());
        }
    }
    refs
}

/// Environment variables in order, later ones replacing earlier ones of
/// the same name: `base` (what the node sets), then `envFrom`, then `env`
/// with `$(VAR)` expanded against what is defined before it. The error is
/// the message of a `CreateContainerConfigError` waiting state.
pub fn resolve(
    container: &Container,
    pod: &Pod,
    facts: &PodFacts,
    base: &[(String, String)],
    objects: &Objects,
) -> Result<Vec<(String, String)>, String> {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
    let mut env = Env::default();
    for (name, value) in base {
        env.set(name, value.clone());
    }
    for source in container.env_from.iter().flatten() {
        let prefix = source.prefix.as_deref().unwrap_or_default();
        if let Some(reference) = &source.config_map_ref {
            match objects.config_maps.get(&reference.name) {
                Some(cm) => {
                    for (key, value) in cm.data.iter().flatten() {
                        env.set(&format!("{prefix}{key}"), value.clone());
                    }
                }
                None if reference.optional == Some(true) => {}
                None => return Err(format!("configmap {:?} not found", reference.name)),
            }
        }
        if let Some(reference) = &source.secret_ref {
            match objects.secrets.get(&reference.name) {
                Some(secret) => {
                    for (key, value) in secret.data.iter().flatten() {
                        env.set(&format!("{prefix}{key}"), text(&value.0));
                    }
                }
                None if reference.optional == Some(true) => {}
                None => return Err(format!("secret {:?} not found", reference.name)),
            }
        }
    }
    for var in container.env.iter().flatten() {
        let value = match &var.value_from {
            None => expand(var.value.as_deref().unwrap_or_default(), |name| {
                env.get(name)
            }),
            Some(from) => {
                if let Some(key) = &from.config_map_key_ref {
                    let value = objects
                        .config_maps
                        .get(&key.name)
                        .ok_or_else(|| format!("configmap {:?} not found", key.name))
                        .and_then(|cm| {
                            cm.data
                                .as_ref()
                                .and_then(|data| data.get(&key.key))
                                .cloned()
                                .ok_or_else(|| {
                                    format!(
                                        "couldn't find key {} in ConfigMap {namespace}/{}",
                                        key.key, key.name
                                    )
                                })
                        });
                    match value {
                        Ok(value) => value,
                        Err(_) if key.optional == Some(true) => continue,
                        Err(message) => return Err(message),
                    }
                } else if let Some(key) = &from.secret_key_ref {
                    let value = objects
                        .secrets
                        .get(&key.name)
                        .ok_or_else(|| format!("secret {:?} not found", key.name))
                        .and_then(|secret| {
                            secret
                                .data
                                .as_ref()
                                .and_then(|data| data.get(&key.key))
                                .map(|bytes| text(&bytes.0))
                                .ok_or_else(|| {
                                    format!(
                                        "couldn't find key {} in Secret {namespace}/{}",
                                        key.key, key.name
                                    )
                                })
                        });
                    match value {
                        Ok(value) => value,
                        Err(_) if key.optional == Some(true) => continue,
                        Err(message) => return Err(message),
                    }
                } else if let Some(field_ref) = &from.field_ref {
                    field::field(pod, &field_ref.field_path, facts)?
                } else if let Some(resource) = &from.resource_field_ref {
                    field::resource(
                        container,
                        &resource.resource,
                        resource.divisor.as_ref(),
                        facts,
                    )?
                } else {
                    return Err(format!(
                        "env {:?}: unsupported valueFrom source on this node",
                        var.name
                    ));
                }
            }
        };
        env.set(&var.name, value);
    }
    Ok(env.vars)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Ordered variables; setting a name again replaces its value in place.
#[derive(Default)]
struct Env {
    vars: Vec<(String, String)>,
}

impl Env {
    fn set(&mut self, name: &str, value: String) {
        match self.vars.iter_mut().find(|(n, _)| n == name) {
            Some(slot) => slot.1 = value,
            None => self.vars.push((name.to_string(), value)),
        }
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.vars
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;
    use serde_json::json;

    fn pod() -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "job-0", "namespace": "ns", "labels": {"app": "eddy"}},
            "spec": {"containers": []}
        }))
        .expect("pod")
    }

    fn container(spec: serde_json::Value) -> Container {
        serde_json::from_value(spec).expect("container")
    }

    fn objects() -> Objects {
        let cm: ConfigMap = serde_json::from_value(json!({
            "metadata": {"name": "cfg"}, "data": {"LEVEL": "debug", "MODE": "fast"}
        }))
        .expect("configmap");
        let secret = Secret {
            data: Some([("PASSWORD".to_string(), ByteString(b"s3cret".to_vec()))].into()),
            ..Secret::default()
        };
        Objects {
            config_maps: [("cfg".to_string(), cm)].into(),
            secrets: [("creds".to_string(), secret)].into(),
        }
    }

    fn facts() -> PodFacts {
        PodFacts {
            pod_ip: Some("127.0.0.5".into()),
            ..PodFacts::default()
        }
    }

    fn resolved(spec: serde_json::Value) -> Result<Vec<(String, String)>, String> {
        let base = [(
            "KUBERNETES_SERVICE_HOST".to_string(),
            "127.0.0.1".to_string(),
        )];
        resolve(&container(spec), &pod(), &facts(), &base, &objects())
    }

    #[test]
    fn env_from_then_env_with_expansion_and_overrides() {
        let env = resolved(json!({
            "name": "c",
            "envFrom": [{"configMapRef": {"name": "cfg"}, "prefix": "CFG_"},
                        {"secretRef": {"name": "creds"}}],
            "env": [
                {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                {"name": "ADDR", "value": "$(IP):9090/$(POD)/$$(POD)/$(NOPE)"},
                {"name": "CFG_MODE", "value": "slow"},
                {"name": "LEVEL", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "LEVEL"}}},
                {"name": "PW", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "PASSWORD"}}}
            ]
        }))
        .expect("resolves");
        let get = |name: &str| env.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
        assert_eq!(get("KUBERNETES_SERVICE_HOST"), Some("127.0.0.1"));
        assert_eq!(get("CFG_LEVEL"), Some("debug"));
        assert_eq!(get("CFG_MODE"), Some("slow"));
        assert_eq!(get("PASSWORD"), Some("s3cret"));
        assert_eq!(get("ADDR"), Some("127.0.0.5:9090/job-0/$(POD)/$(NOPE)"));
        assert_eq!(get("LEVEL"), Some("debug"));
        assert_eq!(get("PW"), Some("s3cret"));
        // CFG_MODE keeps its first position when replaced.
        let names: Vec<&str> = env.iter().map(|(n, _)| n.as_str()).collect();
        assert!(
            names.iter().position(|n| *n == "CFG_MODE") < names.iter().position(|n| *n == "POD")
        );
    }

    #[test]
    fn missing_references_fail_unless_optional() {
        let missing_key = resolved(json!({"name": "c", "env": [
            {"name": "X", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "NOPE"}}}
        ]}));
        assert_eq!(
            missing_key,
            Err("couldn't find key NOPE in ConfigMap ns/cfg".to_string())
        );
        let missing_secret = resolved(json!({"name": "c", "envFrom": [
            {"secretRef": {"name": "other"}}
        ]}));
        assert_eq!(
            missing_secret,
            Err("secret \"other\" not found".to_string())
        );
        let optional = resolved(json!({"name": "c",
            "envFrom": [{"secretRef": {"name": "other", "optional": true}}],
            "env": [{"name": "X", "valueFrom": {"configMapKeyRef":
                {"name": "gone", "key": "K", "optional": true}}}]
        }))
        .expect("optional references are skipped");
        assert!(optional.iter().all(|(n, _)| n != "X"));
    }

    #[test]
    fn lists_the_referenced_objects() {
        let refs = references(&container(json!({"name": "c",
            "envFrom": [{"configMapRef": {"name": "a"}}],
            "env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
                    {"name": "Y", "valueFrom": {"configMapKeyRef": {"name": "b", "key": "k"}}}]
        })));
        assert_eq!(refs.config_maps, ["a".to_string(), "b".to_string()].into());
        assert_eq!(refs.secrets, ["s".to_string()].into());
    }
}
