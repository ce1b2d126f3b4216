//! The checked-in CRD must be exactly what the types generate.

use std::path::Path;

use eddy_api::StreamJob;
use kube::CustomResourceExt;

fn checked_in() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../crds/streamjob.yaml");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

#[test]
fn checked_in_crd_matches_the_types() {
    let generated = eddy_operator::crd::render().unwrap();
    assert!(
        checked_in() == generated,
        "crds/streamjob.yaml is out of date with the StreamJob types: run scripts/gen-crd"
    );
}

#[test]
fn crd_has_names_subresources_and_columns() {
    let crd = StreamJob::crd();
    assert_eq!(crd.spec.group, "eddy.dev");
    assert_eq!(crd.spec.names.kind, "StreamJob");
    assert_eq!(crd.spec.names.plural, "streamjobs");
    assert_eq!(crd.spec.names.short_names, Some(vec!["sj".to_string()]));
    assert_eq!(crd.spec.scope, "Namespaced");
    let version = &crd.spec.versions[0];
    assert_eq!(version.name, "v1alpha1");
    let sub = version.subresources.as_ref().unwrap();
    assert!(sub.status.is_some());
    let scale = sub.scale.as_ref().unwrap();
    assert_eq!(scale.spec_replicas_path, ".spec.parallelism");
    assert_eq!(scale.status_replicas_path, ".status.replicas");
    assert_eq!(
        scale.label_selector_path.as_deref(),
        Some(".status.selector")
    );
    let columns: Vec<_> = version
        .additional_printer_columns
        .as_ref()
        .unwrap()
        .iter()
        .filter(|c| c.priority.unwrap_or(0) == 0)
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(
        columns,
        vec!["Phase", "Parallelism", "Ready", "Last Checkpoint", "Age"]
    );
}

#[test]
fn every_field_is_documented() {
    // `kubectl explain` shows these descriptions: none may be missing.
    let crd = serde_json::to_value(StreamJob::crd()).unwrap();
    let root = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"];
    let mut undocumented = Vec::new();
    walk(&root["spec"], "spec", &mut undocumented);
    walk(&root["status"], "status", &mut undocumented);
    assert!(
        undocumented.is_empty(),
        "fields without a description: {undocumented:#?}"
    );
}

fn walk(schema: &serde_json::Value, path: &str, undocumented: &mut Vec<String>) {
    let Some(props) = schema.get("properties").and_then(|p| p.as_object()) else {
        if let Some(items) = schema.get("items") {
            walk(items, &format!("{path}[]"), undocumented);
        }
        return;
    };
    // Types from k8s-openapi carry their own docs upstream.
    if path == "spec.resources" || path == "status.conditions[]" {
        return;
    }
    for (name, sub) in props {
        let sub_path = format!("{path}.{name}");
        if sub.get("description").is_none() {
            undocumented.push(sub_path.clone());
        }
        walk(sub, &sub_path, undocumented);
    }
}
