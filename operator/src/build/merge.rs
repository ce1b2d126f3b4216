//! Merging the user's `spec.podTemplate` over the pod template the
//! operator builds.
//!
//! A JSON merge patch with Kubernetes-style named lists: objects merge
//! recursively, a value set in the override wins, `null` deletes the field,
//! and the lists below merge item by item on a key (an override item with
//! the key of a built item is merged into it, any other is appended):
//!
//! | list | key |
//! |---|---|
//! | `spec.containers`, `spec.initContainers` | `name` |
//! | `spec.volumes` | `name` |
//! | `…containers[].env` | `name` |
//! | `…containers[].volumeMounts` | `mountPath` |
//! | `…containers[].ports` | `name` |
//!
//! Every other list (tolerations, args, ...) is replaced as a whole.

use serde_json::{Map, Value};

/// Merges `over` into `base`.
pub fn merge(base: &mut Value, over: &Value) {
    merge_at(base, over, &mut Vec::new());
}

/// The key a list at `path` merges on, if it merges by key. Path segments
/// are field names; `[]` stands for "an item of the list".
fn list_key(path: &[&str]) -> Option<&'static str> {
    match path {
        ["spec", "containers" | "initContainers" | "volumes"] => Some("name"),
        ["spec", "containers" | "initContainers", "[]", field] => match *field {
            "env" | "ports" => Some("name"),
            "volumeMounts" => Some("mountPath"),
            _ => None,
        },
        _ => None,
    }
}

fn merge_at<'a>(base: &mut Value, over: &'a Value, path: &mut Vec<&'a str>) {
    match (base, over) {
        (Value::Object(base), Value::Object(over)) => {
            for (field, value) in over {
                if value.is_null() {
                    base.remove(field);
                    continue;
                }
                path.push(field);
                match base.get_mut(field) {
                    Some(existing) => merge_at(existing, value, path),
                    None => {
                        base.insert(field.clone(), without_nulls(value));
                    }
                }
                path.pop();
            }
        }
        (Value::Array(base), Value::Array(over)) if list_key(path).is_some() => {
            let key = list_key(path).unwrap_or_default();
            path.push("[]");
            for item in over {
                let id = item.get(key).filter(|id| !id.is_null());
                match id.and_then(|id| base.iter_mut().find(|b| b.get(key) == Some(id))) {
                    Some(existing) => merge_at(existing, item, path),
                    None => base.push(without_nulls(item)),
                }
            }
            path.pop();
        }
        (base, over) => *base = without_nulls(over),
    }
}

/// `value` with every `null` object field removed (a `null` deletes, and
/// there is nothing to delete in a new value).
fn without_nulls(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), without_nulls(v)))
                .collect::<Map<_, _>>(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(without_nulls).collect()),
        other => other.clone(),
    }
}

/// Object fields present in `written` but missing from `kept`, as dotted
/// paths: what a typed round trip silently dropped (unknown fields).
pub fn dropped_fields(written: &Value, kept: &Value) -> Vec<String> {
    let mut dropped = Vec::new();
    collect_dropped(written, kept, "", &mut dropped);
    dropped.sort();
    dropped
}

fn collect_dropped(written: &Value, kept: &Value, path: &str, out: &mut Vec<String>) {
    match (written, kept) {
        (Value::Object(w), Value::Object(k)) => {
            for (field, value) in w {
                let sub = if path.is_empty() {
                    field.clone()
                } else {
                    format!("{path}.{field}")
                };
                match k.get(field) {
                    Some(kept) => collect_dropped(value, kept, &sub, out),
                    None => out.push(sub),
                }
            }
        }
        (Value::Array(w), Value::Array(k)) => {
            for (i, (w, k)) in w.iter().zip(k).enumerate() {
                collect_dropped(w, k, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn merged(mut base: Value, over: Value) -> Value {
        merge(&mut base, &over);
        base
    }

    #[test]
    fn objects_merge_override_wins_and_null_deletes() {
        let base = json!({"metadata": {"labels": {"a": "1", "b": "2"}},
                          "spec": {"terminationGracePeriodSeconds": 120, "hostNetwork": false}});
        let over = json!({"metadata": {"labels": {"b": "3", "c": "4"}},
                          "spec": {"terminationGracePeriodSeconds": 30, "hostNetwork": null,
                                   "nodeSelector": {"disk": "ssd", "zone": null}}});
        assert_eq!(
            merged(base, over),
            json!({"metadata": {"labels": {"a": "1", "b": "3", "c": "4"}},
                   "spec": {"terminationGracePeriodSeconds": 30, "nodeSelector": {"disk": "ssd"}}})
        );
    }

    #[test]
    fn containers_merge_by_name_and_new_ones_are_appended() {
        let base = json!({"spec": {"containers": [
            {"name": "processor", "image": "a", "args": ["run", "x"],
             "env": [{"name": "RUST_LOG", "value": "info"}, {"name": "POD_NAME", "valueFrom": {}}],
             "ports": [{"name": "admin", "containerPort": 9090}],
             "volumeMounts": [{"name": "config", "mountPath": "/etc/eddy/config"}]}]}});
        let over = json!({"spec": {"containers": [
            {"name": "sidecar", "image": "envoy", "env": [{"name": "X", "value": null}]},
            {"name": "processor", "args": ["other"],
             "env": [{"name": "RUST_LOG", "value": "debug"}, {"name": "EXTRA", "value": "1"}],
             "ports": [{"name": "admin", "containerPort": 9191}, {"name": "http", "containerPort": 8081}],
             "volumeMounts": [{"name": "state2", "mountPath": "/etc/eddy/config", "readOnly": true}]}]}});
        assert_eq!(
            merged(base, over),
            json!({"spec": {"containers": [
                {"name": "processor", "image": "a", "args": ["other"],
                 "env": [{"name": "RUST_LOG", "value": "debug"}, {"name": "POD_NAME", "valueFrom": {}},
                         {"name": "EXTRA", "value": "1"}],
                 "ports": [{"name": "admin", "containerPort": 9191}, {"name": "http", "containerPort": 8081}],
                 "volumeMounts": [{"name": "state2", "mountPath": "/etc/eddy/config", "readOnly": true}]},
                {"name": "sidecar", "image": "envoy", "env": [{"name": "X"}]}]}})
        );
    }

    #[test]
    fn volumes_and_init_containers_merge_by_name() {
        let base = json!({"spec": {"volumes": [{"name": "tmp", "emptyDir": {}}],
                                   "initContainers": [{"name": "init", "image": "a"}]}});
        let over = json!({"spec": {"volumes": [{"name": "tmp", "emptyDir": {"medium": "Memory"}},
                                               {"name": "extra", "configMap": {"name": "x"}}],
                                   "initContainers": [{"name": "init", "image": "b"}]}});
        assert_eq!(
            merged(base, over),
            json!({"spec": {"volumes": [{"name": "tmp", "emptyDir": {"medium": "Memory"}},
                                        {"name": "extra", "configMap": {"name": "x"}}],
                            "initContainers": [{"name": "init", "image": "b"}]}})
        );
    }

    #[test]
    fn other_lists_are_replaced_and_keyed_lists_only_at_their_paths() {
        let base = json!({"spec": {"tolerations": [{"key": "a"}],
                                   "containers": [{"name": "p", "args": ["a", "b"]}],
                                   "affinity": {"containers": [{"name": "p", "x": 1}]}}});
        let over = json!({"spec": {"tolerations": [{"key": "b"}],
                                   "containers": [{"name": "p", "args": ["c"]}],
                                   "affinity": {"containers": [{"name": "p", "y": 2}]}}});
        assert_eq!(
            merged(base, over),
            json!({"spec": {"tolerations": [{"key": "b"}],
                            "containers": [{"name": "p", "args": ["c"]}],
                            "affinity": {"containers": [{"name": "p", "y": 2}]}}})
        );
    }

    #[test]
    fn dropped_fields_names_unknown_fields() {
        let written = json!({"spec": {"nodeSelecter": {"a": "b"}, "containers": [{"name": "p", "imag": "x"}]}});
        let kept = json!({"spec": {"containers": [{"name": "p"}]}});
        assert_eq!(
            dropped_fields(&written, &kept),
            vec!["spec.containers[0].imag", "spec.nodeSelecter"]
        );
        assert!(dropped_fields(&kept, &kept).is_empty());
    }
}
