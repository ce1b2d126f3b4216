//! `crds/streamjob.yaml` and the manifests users copy validate against each
//! other: every file in `examples/` and every operator test fixture is a
//! valid StreamJob under the checked-in CRD's schema, read strictly (a
//! field the schema does not know fails here, where the API server would
//! silently prune it). The schema must also reject broken manifests, or
//! this check proves nothing.

use std::path::{Path, PathBuf};

use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The CRD's schema for v1alpha1, made strict: objects that list their
/// properties accept no others unless marked to preserve unknown fields.
fn strict_schema() -> Value {
    let text = std::fs::read_to_string(root().join("crds/streamjob.yaml")).unwrap();
    let crd: Value = serde_yaml_ng::from_str(&text).unwrap();
    let mut schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone();
    assert!(schema.is_object(), "no openAPIV3Schema in the CRD");
    // The API server knows these of every object; the CRD does not list them.
    let properties = schema["properties"].as_object_mut().unwrap();
    properties.insert("apiVersion".into(), serde_json::json!({"type": "string"}));
    properties.insert("kind".into(), serde_json::json!({"type": "string"}));
    properties.insert("metadata".into(), serde_json::json!({"type": "object"}));
    make_strict(&mut schema);
    schema
}

fn make_strict(schema: &mut Value) {
    let Some(object) = schema.as_object_mut() else {
        return;
    };
    let preserves = object
        .get("x-kubernetes-preserve-unknown-fields")
        .is_some_and(|v| v == true);
    if object.contains_key("properties")
        && !object.contains_key("additionalProperties")
        && !preserves
    {
        object.insert("additionalProperties".into(), Value::Bool(false));
    }
    for (_, child) in object.iter_mut() {
        match child {
            Value::Object(_) => make_strict(child),
            Value::Array(items) => items.iter_mut().for_each(make_strict),
            _ => {}
        }
    }
}

fn manifests(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

fn errors(validator: &jsonschema::Validator, doc: &Value) -> Vec<String> {
    validator
        .iter_errors(doc)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect()
}

#[test]
fn every_example_and_fixture_is_valid_under_the_crd() {
    let validator = jsonschema::validator_for(&strict_schema()).unwrap();
    let mut checked = 0;
    for dir in ["examples", "operator/tests/fixtures"] {
        for path in manifests(&root().join(dir)) {
            let text = std::fs::read_to_string(&path).unwrap();
            let doc: Value = serde_yaml_ng::from_str(&text).unwrap();
            assert_eq!(doc["kind"], "StreamJob", "{}", path.display());
            assert_eq!(doc["apiVersion"], "eddy.dev/v1alpha1", "{}", path.display());
            let problems = errors(&validator, &doc);
            assert!(problems.is_empty(), "{}: {problems:#?}", path.display());
            checked += 1;
        }
    }
    assert!(checked >= 8, "only {checked} manifests found");
}

#[test]
fn the_schema_rejects_broken_manifests() {
    let validator = jsonschema::validator_for(&strict_schema()).unwrap();
    let text = std::fs::read_to_string(root().join("examples/quickstart.yaml")).unwrap();
    let good: Value = serde_yaml_ng::from_str(&text).unwrap();
    assert_eq!(errors(&validator, &good), Vec::<String>::new());
    type Break = fn(&mut Value);
    let broken: [(&str, Break); 5] = [
        ("a typo in a field name", |d| {
            d["spec"]["keyFeld"] = "user".into();
        }),
        ("a missing required field", |d| {
            d["spec"].as_object_mut().unwrap().remove("keyField");
        }),
        ("a wrongly typed value", |d| {
            d["spec"]["partitions"] = "eight".into();
        }),
        ("a duration the pattern refuses", |d| {
            d["spec"]["allowedLateness"] = "ten minutes".into();
        }),
        ("parallelism out of range", |d| {
            d["spec"]["parallelism"] = (-1).into();
        }),
    ];
    for (what, breaks) in broken {
        let mut doc = good.clone();
        breaks(&mut doc);
        assert!(!errors(&validator, &doc).is_empty(), "{what} was accepted");
    }
}
