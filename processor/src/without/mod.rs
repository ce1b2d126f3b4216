//! What a build without some of the cargo features (`kafka`, `postgres`,
//! `s3`; see `processor/Cargo.toml`) has in their place.
//!
//! A job is checked first: [`unbuilt`] names every part of its spec this
//! build cannot run, and planning refuses the job with that list. Behind
//! that check, each left-out type has a stand-in without values (an empty
//! enum), so the code around it compiles unchanged and cannot reach it:
//! opening one is an error naming the feature, and its methods have no
//! value to run on.

#[cfg(not(feature = "kafka"))]
pub mod kafka;
#[cfg(not(feature = "s3"))]
pub mod s3;

use eddy_api::spec::StreamJobSpec;

/// Whether this build has each optional feature.
const BUILT: [(&str, bool); 3] = [
    ("kafka", cfg!(feature = "kafka")),
    ("postgres", cfg!(feature = "postgres")),
    ("s3", cfg!(feature = "s3")),
];

/// The parts of a job this build cannot run, each with the feature it
/// needs.
pub fn unbuilt(spec: &StreamJobSpec) -> Vec<String> {
    unbuilt_in(spec, |feature| {
        BUILT.iter().any(|(f, on)| *f == feature && *on)
    })
}

/// [`unbuilt`] for a build that has the features `built` says it has.
fn unbuilt_in(spec: &StreamJobSpec, built: impl Fn(&str) -> bool) -> Vec<String> {
    let mut needs = Vec::new();
    if spec.source.kafka.is_some() {
        needs.push(("spec.source.kafka".to_string(), "kafka"));
    }
    for (path, sink) in spec.outputs() {
        if sink.kafka.is_some() {
            needs.push((format!("{path}.kafka"), "kafka"));
        }
        if sink.postgres.is_some() {
            needs.push((format!("{path}.postgres"), "postgres"));
        }
    }
    if spec.checkpoints.store.starts_with("s3://") {
        needs.push(("spec.checkpoints.store".to_string(), "s3"));
    }
    needs
        .into_iter()
        .filter(|(_, feature)| !built(feature))
        .map(|(path, feature)| format!("{path}: {}", without(feature)))
        .collect()
}

/// Why a part needing `feature` cannot run in this build.
fn without(feature: &str) -> String {
    format!(
        "this eddy-processor was built without the `{feature}` feature; \
         build it with `--features {feature}` (the default features have it)"
    )
}

/// The error of opening something this build left out.
#[cfg(not(all(feature = "kafka", feature = "postgres", feature = "s3")))]
pub(crate) fn missing(feature: &str) -> anyhow::Error {
    anyhow::anyhow!("{}", without(feature))
}

#[cfg(test)]
mod tests {
    use eddy_api::StreamJob;

    use super::{unbuilt, unbuilt_in};

    fn job(yaml: &str) -> StreamJob {
        serde_yaml_ng::from_str(yaml).unwrap()
    }

    const USES_ALL: &str = "apiVersion: eddy.dev/v1alpha1
kind: StreamJob
metadata: {name: everything}
spec:
  source: {kafka: {brokers: 'k:9092', topic: orders}}
  keyField: user
  eventTime: {field: ts}
  window: {tumbling: {size: 1m}}
  aggregations: [{op: count, name: n}]
  sinks: [{stdout: {}}, {postgres: {url: 'postgres://db', table: results}}]
  lateOutput: {kafka: {brokers: 'k:9092', topic: late}}
  checkpoints: {store: 's3://bucket/jobs'}
";

    #[test]
    fn a_build_without_the_features_names_every_part_that_needs_one() {
        let spec = &job(USES_ALL).spec;
        let problems = unbuilt_in(spec, |_| false);
        let paths: Vec<&str> = problems
            .iter()
            .map(|p| p.split(':').next().unwrap())
            .collect();
        assert_eq!(
            paths,
            [
                "spec.source.kafka",
                "spec.sinks[1].postgres",
                "spec.lateOutput.kafka",
                "spec.checkpoints.store"
            ]
        );
        assert!(problems[0].contains("`--features kafka`"), "{problems:?}");
        assert!(
            problems[1].contains("`--features postgres`"),
            "{problems:?}"
        );
        assert!(problems[3].contains("`--features s3`"), "{problems:?}");
        assert_eq!(
            unbuilt_in(spec, |feature| feature != "postgres").len(),
            1,
            "only what is left out"
        );
    }

    #[test]
    #[cfg(all(feature = "kafka", feature = "postgres", feature = "s3"))]
    fn the_default_build_runs_every_part() {
        assert_eq!(unbuilt(&job(USES_ALL).spec), Vec::<String>::new());
    }
}
