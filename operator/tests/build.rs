//! The built children of every fixture (and every example) against golden
//! files under `tests/expected/<fixture>/`, plus properties every build
//! must have. `EDDY_BLESS=1 cargo test -p eddy-operator --test build`
//! rewrites the golden files; review the diff before committing it.

mod golden;

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
};

use eddy_api::{
    load,
    spec::{PodAssignment, RenderedAssignment},
    StreamJob,
};
use eddy_operator::build::{
    self, assignment, config, diff::processor_view, names, secrets, Children, Context,
};
use k8s_openapi::api::core::v1::{Container, PodSpec};
use kube::api::ObjectMeta;

/// The uid the API server would have given the examples, which have none.
const EXAMPLE_UID: &str = "6f1a0c3e-00ee-4000-8000-0000000000ee";

fn ctx() -> Context {
    // Not DEFAULT_IMAGE, so the golden files do not change with the version.
    Context {
        default_image: "registry.test/eddy-processor:golden".into(),
        network_policy_from: None,
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

/// Every fixture by name: `tests/fixtures/*.yaml`, then `examples/*.yaml`
/// as `example-<name>` with the namespace and uid the API server would add.
fn fixtures() -> Vec<(String, StreamJob)> {
    let mut all = Vec::new();
    for (dir, prefix) in [
        (root().join("tests/fixtures"), ""),
        (root().join("../examples"), "example-"),
    ] {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
            .collect();
        files.sort();
        for path in files {
            let text = std::fs::read_to_string(&path).unwrap();
            let mut job =
                load::parse_valid(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let meta = &mut job.metadata;
            meta.namespace.get_or_insert_with(|| "default".into());
            meta.uid.get_or_insert_with(|| EXAMPLE_UID.into());
            let stem = path.file_stem().unwrap().to_string_lossy();
            all.push((format!("{prefix}{stem}"), job));
        }
    }
    assert!(all.len() >= 8, "fixtures missing: {}", all.len());
    all
}

fn assignment_for(job: &StreamJob) -> Vec<PodAssignment> {
    let previous = job.status.as_ref().map(|s| s.assignment.clone());
    let s = &job.spec;
    assignment::keep_or_spread(&previous.unwrap_or_default(), s.partitions, s.parallelism)
}

fn build_all() -> Vec<(String, StreamJob, Vec<PodAssignment>, Children)> {
    fixtures()
        .into_iter()
        .map(|(name, job)| {
            // Jobs with local checkpoints (the quickstart) are refused in a
            // cluster; everything else about them builds.
            let problems = build::cluster_problems(&job);
            let local = job.spec.checkpoints.store.starts_with("file://");
            assert!(
                problems
                    .iter()
                    .all(|p| local && p.path == "spec.checkpoints.store"),
                "{name}: {problems:?}"
            );
            let assignment = assignment_for(&job);
            let children =
                build::build(&job, &assignment, &ctx()).unwrap_or_else(|e| panic!("{name}: {e}"));
            (name, job, assignment, children)
        })
        .collect()
}

fn yaml(value: &impl serde::Serialize) -> String {
    serde_yaml_ng::to_string(value).unwrap()
}

#[test]
fn children_match_the_golden_files() {
    let expected = root().join("tests/expected");
    let mut failures = Vec::new();
    let mut seen = BTreeSet::new();
    for (name, _, _, c) in build_all() {
        seen.insert(name.clone());
        for (file, text) in [
            ("configmap", yaml(&c.config_map)),
            ("headless", yaml(&c.headless)),
            ("metrics", yaml(&c.metrics)),
            ("statefulset", yaml(&c.stateful_set)),
            ("pdb", yaml(&c.pdb)),
        ] {
            let path = expected.join(&name).join(format!("{file}.yaml"));
            if let Err(diff) = golden::check(&path, &text) {
                failures.push(diff);
            }
        }
    }
    // A golden directory without a fixture is a leftover.
    for entry in std::fs::read_dir(&expected).into_iter().flatten() {
        let dir = entry.unwrap().file_name().to_string_lossy().into_owned();
        if !seen.contains(&dir) {
            failures.push(format!("tests/expected/{dir} has no fixture; delete it"));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n\n"));
}

#[test]
fn every_child_is_owned_labelled_and_namespaced() {
    for (name, job, _, c) in build_all() {
        let job_name = job.metadata.name.clone().unwrap();
        let metas: [&ObjectMeta; 5] = [
            &c.config_map.metadata,
            &c.headless.metadata,
            &c.metrics.metadata,
            &c.stateful_set.metadata,
            &c.pdb.metadata,
        ];
        for meta in metas {
            let what = format!("{name}: {:?}", meta.name);
            assert_eq!(meta.namespace, job.metadata.namespace, "{what}");
            let owners = meta.owner_references.as_deref().unwrap_or_default();
            assert_eq!(owners.len(), 1, "{what}");
            let owner = &owners[0];
            assert_eq!(owner.controller, Some(true), "{what}");
            assert_eq!(
                (owner.kind.as_str(), owner.api_version.as_str()),
                ("StreamJob", "eddy.dev/v1alpha1"),
                "{what}"
            );
            assert_eq!(Some(&owner.uid), job.metadata.uid.as_ref(), "{what}");
            assert_eq!(owner.name, job_name, "{what}");
            assert_eq!(meta.labels, Some(names::labels(&job_name)), "{what}");
        }
    }
}

#[test]
fn selectors_match_the_pod_labels() {
    for (name, job, _, c) in build_all() {
        let job_name = job.metadata.name.unwrap();
        let sts = &c.stateful_set.spec;
        let selector = sts.selector.match_labels.clone().unwrap();
        let pod_labels = sts
            .template
            .metadata
            .as_ref()
            .unwrap()
            .labels
            .clone()
            .unwrap();
        for (k, v) in &selector {
            assert_eq!(pod_labels.get(k), Some(v), "{name}: {k}");
        }
        let pdb = c.pdb.spec.as_ref().unwrap().selector.as_ref().unwrap();
        assert_eq!(pdb.match_labels.as_ref(), Some(&selector), "{name}");
        for svc in [&c.headless, &c.metrics] {
            assert_eq!(
                svc.spec.as_ref().unwrap().selector.as_ref(),
                Some(&selector),
                "{name}"
            );
        }
        assert_eq!(sts.service_name, c.headless.metadata.name, "{name}");
        assert_eq!(
            names::selector_string(&job_name),
            selector
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(","),
        );
    }
}

#[test]
fn config_holds_the_processor_view_and_the_assignment_given() {
    for (name, job, assignment, c) in build_all() {
        let data = c.config_map.data.as_ref().unwrap();
        assert_eq!(data.len(), 2, "{name}");
        let rendered: StreamJob = load::parse_valid(&data[config::JOB_KEY])
            .unwrap_or_else(|e| panic!("{name}: job.yaml does not load: {e}"));
        assert_eq!(rendered.spec, processor_view(&job.spec), "{name}");
        assert_eq!(rendered.metadata.name, job.metadata.name, "{name}");
        assert_eq!(
            rendered.metadata.namespace, job.metadata.namespace,
            "{name}"
        );
        assert_eq!(
            ObjectMeta {
                name: None,
                namespace: None,
                ..rendered.metadata
            },
            ObjectMeta::default(),
            "{name}: only name and namespace"
        );
        assert!(rendered.status.is_none(), "{name}");
        assert!(!data[config::JOB_KEY].contains("status"), "{name}");
        let given: RenderedAssignment =
            serde_yaml_ng::from_str(&data[config::ASSIGNMENT_KEY]).unwrap();
        assert_eq!(given.pods, assignment, "{name}");
        assert_eq!(given.version, 0, "{name}: never changed");
    }
}

#[test]
fn a_valid_stored_assignment_is_kept() {
    let (_, _, assignment, _) = build_all()
        .into_iter()
        .find(|(name, ..)| name == "pvc-storage")
        .unwrap();
    let partitions: Vec<Vec<u32>> = assignment.iter().map(|a| a.partitions.clone()).collect();
    assert_eq!(partitions, vec![vec![0, 1], vec![2, 3, 4, 5]]);
}

/// Every Secret the pod template refers to, and how: env `secretKeyRef`,
/// `envFrom` or a volume.
fn secret_references(pod: &PodSpec) -> BTreeSet<(String, &'static str)> {
    let mut refs = BTreeSet::new();
    let containers: Vec<&Container> = pod
        .containers
        .iter()
        .chain(pod.init_containers.iter().flatten())
        .collect();
    for c in containers {
        for e in c.env.iter().flatten() {
            if let Some(r) = e
                .value_from
                .as_ref()
                .and_then(|v| v.secret_key_ref.as_ref())
            {
                assert!(
                    e.value.is_none(),
                    "{} has a value and a secretKeyRef",
                    e.name
                );
                refs.insert((r.name.clone(), "env"));
            }
        }
        for e in c.env_from.iter().flatten() {
            if let Some(r) = &e.secret_ref {
                refs.insert((r.name.clone(), "envFrom"));
            }
        }
    }
    for v in pod.volumes.iter().flatten() {
        if let Some(s) = &v.secret {
            refs.insert((s.secret_name.clone().unwrap(), "volume"));
        }
    }
    refs
}

#[test]
fn secrets_reach_the_pod_only_by_reference() {
    let mut checked_some = false;
    for (name, job, _, c) in build_all() {
        let spec = &job.spec;
        let pod = c.stateful_set.spec.template.spec.as_ref().unwrap();
        let mut expected: BTreeSet<(String, &str)> = secrets::mounted_secrets(spec)
            .into_iter()
            .map(|s| (s, "volume"))
            .collect();
        if let Some(creds) = &spec.checkpoints.credentials_secret {
            expected.insert((creds.name.clone(), "env"));
        }
        let postgres: BTreeSet<_> = spec
            .outputs()
            .filter_map(|(_, s)| s.postgres.as_ref()?.url_secret.clone())
            .map(|r| (r.name, r.key))
            .collect();
        if postgres.len() == 1 {
            expected.insert((postgres.first().unwrap().0.clone(), "env"));
        }
        checked_some |= !expected.is_empty();
        assert_eq!(secret_references(pod), expected, "{name}");
        // The processor's literal variables are only the fixed ones (and
        // what a pod template override sets).
        let processor = pod
            .containers
            .iter()
            .find(|c| c.name == "processor")
            .unwrap();
        for e in processor.env.iter().flatten().filter(|e| e.value.is_some()) {
            assert!(
                ["EDDY_SECRETS_DIR", "RUST_LOG", "MALLOC_CONF"].contains(&e.name.as_str()),
                "{name}: literal {}",
                e.name
            );
        }
        for (_, text) in c.config_map.data.iter().flatten() {
            for var in ["AWS_ACCESS_KEY_ID:", "AWS_SECRET_ACCESS_KEY:", "password"] {
                assert!(!text.contains(var), "{name}: {var} in the ConfigMap");
            }
        }
    }
    assert!(checked_some, "no fixture references a secret");
}

#[test]
fn ignored_changes_leave_every_fixture_byte_identical() {
    for (name, job, assignment, c) in build_all() {
        let mut changed = job.clone();
        let s = &mut changed.spec;
        s.autoscaling.mode = eddy_api::spec::AutoscalingMode::Recommend;
        s.checkpoints.interval = "17m".into();
        s.checkpoints.timeout = "3m".into();
        s.checkpoints.lag_threshold = "1h".into();
        s.checkpoints.delete_on_job_deletion = !s.checkpoints.delete_on_job_deletion;
        let again = build::build(&changed, &assignment, &ctx()).unwrap();
        assert_eq!(yaml(&again.config_map), yaml(&c.config_map), "{name}");
        assert_eq!(yaml(&again.stateful_set), yaml(&c.stateful_set), "{name}");
    }
}
