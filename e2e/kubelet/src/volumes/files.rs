//! The files of ConfigMap, Secret and downward API volumes (pure).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{DownwardAPIVolumeFile, KeyToPath, Pod};

use crate::env::field::{self, PodFacts};

/// Kubernetes' default file mode for these volumes (0644).
pub const DEFAULT_MODE: u32 = 0o644;

/// A file to write, relative to its volume's directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct File {
    pub path: String,
    pub data: Vec<u8>,
    pub mode: u32,
}

/// The files of a ConfigMap or Secret source, given its keys (`None` when
/// the object does not exist). Without `items` every key is a file named
/// after it; with `items` only those keys, at their paths.
pub fn from_keys(
    what: &str,
    keys: Option<BTreeMap<String, Vec<u8>>>,
    items: Option<&[KeyToPath]>,
    default_mode: Option<i32>,
    optional: bool,
) -> Result<Vec<File>, String> {
    let default_mode = mode(default_mode, DEFAULT_MODE);
    let Some(keys) = keys else {
        return if optional {
            Ok(Vec::new())
        } else {
            Err(format!("{what} not found"))
        };
    };
    let Some(items) = items else {
        return Ok(keys
            .into_iter()
            .map(|(key, data)| File {
                path: key,
                data,
                mode: default_mode,
            })
            .collect());
    };
    let mut files = Vec::new();
    for item in items {
        let Some(data) = keys.get(&item.key) else {
            if optional {
                continue;
            }
            return Err(format!("{what} has no key {:?}", item.key));
        };
        files.push(File {
            path: checked_path(&item.path)?,
            data: data.clone(),
            mode: mode(item.mode, default_mode),
        });
    }
    Ok(files)
}

/// The files of a downward API source.
pub fn from_downward_api(
    items: &[DownwardAPIVolumeFile],
    pod: &Pod,
    facts: &PodFacts,
    default_mode: Option<i32>,
) -> Result<Vec<File>, String> {
    let default_mode = mode(default_mode, DEFAULT_MODE);
    items
        .iter()
        .map(|item| {
            let text = if let Some(field_ref) = &item.field_ref {
                field::field(pod, &field_ref.field_path, facts)?
            } else if let Some(resource) = &item.resource_field_ref {
                let container = pod
                    .spec
                    .iter()
                    .flat_map(|spec| &spec.containers)
                    .find(|c| Some(&c.name) == resource.container_name.as_ref())
                    .ok_or_else(|| format!("downwardAPI {:?}: no such container", item.path))?;
                field::resource(
                    container,
                    &resource.resource,
                    resource.divisor.as_ref(),
                    facts,
                )?
            } else {
                return Err(format!(
                    "downwardAPI {:?}: no fieldRef or resourceFieldRef",
                    item.path
                ));
            };
            Ok(File {
                path: checked_path(&item.path)?,
                data: text.into_bytes(),
                mode: mode(item.mode, default_mode),
            })
        })
        .collect()
}

fn mode(given: Option<i32>, default: u32) -> u32 {
    given.map_or(default, |m| (m as u32) & 0o7777)
}

/// A relative path without `..` components, as the API server also checks.
fn checked_path(path: &str) -> Result<String, String> {
    if path.is_empty() || path.starts_with('/') || path.split('/').any(|part| part == "..") {
        return Err(format!(
            "volume file path {path:?} must be relative without '..'"
        ));
    }
    Ok(path.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn keys() -> Option<BTreeMap<String, Vec<u8>>> {
        Some(
            [
                ("a.yaml".to_string(), b"a: 1".to_vec()),
                ("b".to_string(), b"bee".to_vec()),
            ]
            .into(),
        )
    }

    fn item(key: &str, path: &str, mode: Option<i32>) -> KeyToPath {
        KeyToPath {
            key: key.into(),
            path: path.into(),
            mode,
            ..KeyToPath::default()
        }
    }

    #[test]
    fn all_keys_or_selected_items_with_modes() {
        let all = from_keys("configmap \"c\"", keys(), None, Some(0o400), false).expect("ok");
        assert_eq!(all.len(), 2);
        assert!(all.iter().all(|f| f.mode == 0o400));

        let items = [item("b", "sub/dir/bee.txt", Some(0o755))];
        let some = from_keys("configmap \"c\"", keys(), Some(&items), None, false).expect("ok");
        assert_eq!(
            some,
            [File {
                path: "sub/dir/bee.txt".into(),
                data: b"bee".to_vec(),
                mode: 0o755
            }]
        );
    }

    #[test]
    fn missing_objects_and_keys() {
        assert_eq!(
            from_keys("secret \"s\"", None, None, None, false),
            Err("secret \"s\" not found".to_string())
        );
        assert_eq!(
            from_keys("secret \"s\"", None, None, None, true),
            Ok(vec![])
        );
        let items = [item("zzz", "z", None)];
        assert!(from_keys("c", keys(), Some(&items), None, false).is_err());
        assert_eq!(from_keys("c", keys(), Some(&items), None, true), Ok(vec![]));
        let escaping = [item("b", "../etc/passwd", None)];
        assert!(from_keys("c", keys(), Some(&escaping), None, false).is_err());
    }

    #[test]
    fn downward_api_files() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "ns", "labels": {"x": "y"}},
            "spec": {"containers": [{"name": "main", "resources": {"limits": {"memory": "64Mi"}}}]}
        }))
        .expect("pod");
        let items: Vec<DownwardAPIVolumeFile> = serde_json::from_value(json!([
            {"path": "namespace", "fieldRef": {"fieldPath": "metadata.namespace"}},
            {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
            {"path": "mem", "resourceFieldRef": {"containerName": "main",
                "resource": "limits.memory", "divisor": "1Mi"}}
        ]))
        .expect("items");
        let files = from_downward_api(&items, &pod, &PodFacts::default(), None).expect("ok");
        let text: Vec<(String, String)> = files
            .into_iter()
            .map(|f| (f.path, String::from_utf8(f.data).expect("utf8")))
            .collect();
        assert_eq!(
            text,
            [
                ("namespace".to_string(), "ns".to_string()),
                ("labels".to_string(), "x=\"y\"".to_string()),
                ("mem".to_string(), "64".to_string()),
            ]
        );
    }
}
