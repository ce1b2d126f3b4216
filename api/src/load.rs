//! Reading a StreamJob manifest: the same YAML a user would `kubectl apply`.

use crate::{validate, Problem, StreamJob};

/// Why a manifest could not be used.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("not a StreamJob manifest: {0}")]
    Syntax(#[from] serde_yaml_ng::Error),
    #[error(
        "expected apiVersion eddy.dev/v1alpha1 and kind StreamJob, found {api_version} {kind}"
    )]
    WrongKind { api_version: String, kind: String },
    #[error("the StreamJob spec is invalid:\n{}", render(.0))]
    Invalid(Vec<Problem>),
}

fn render(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|p| format!("  - {p}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Parses a manifest and checks its kind. Does not validate the spec.
pub fn parse(yaml: &str) -> Result<StreamJob, LoadError> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Header {
        #[serde(default)]
        api_version: String,
        #[serde(default)]
        kind: String,
    }
    let header: Header = serde_yaml_ng::from_str(yaml)?;
    let expected = format!("{}/{}", crate::GROUP, crate::VERSION);
    if header.api_version != expected || header.kind != "StreamJob" {
        return Err(LoadError::WrongKind {
            api_version: header.api_version,
            kind: header.kind,
        });
    }
    Ok(serde_yaml_ng::from_str(yaml)?)
}

/// Parses a manifest and validates its spec, reporting every problem.
pub fn parse_valid(yaml: &str) -> Result<StreamJob, LoadError> {
    let job = parse(yaml)?;
    let problems = validate(&job.spec);
    if problems.is_empty() {
        Ok(job)
    } else {
        Err(LoadError::Invalid(problems))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
apiVersion: eddy.dev/v1alpha1
kind: StreamJob
metadata:
  name: clicks
spec:
  source:
    generator: {count: 10}
  keyField: user
  eventTime: {field: ts}
  window:
    tumbling: {size: 1m}
"#;

    #[test]
    fn minimal_manifest_gets_defaults() {
        let job = parse_valid(MINIMAL).unwrap();
        assert_eq!(job.metadata.name.as_deref(), Some("clicks"));
        let spec = &job.spec;
        assert_eq!(spec.partitions, 8);
        assert_eq!(spec.parallelism, 1);
        assert_eq!(spec.event_time.max_out_of_orderness.as_str(), "5s");
        assert_eq!(spec.aggregations[0].output_name(), "count");
        assert_eq!(spec.sinks[0].kinds_set(), vec!["stdout"]);
        assert_eq!(spec.checkpoints.store, "file://eddy-checkpoints");
        let g = spec.source.generator.as_ref().unwrap();
        assert_eq!((g.count, g.rate, g.keys), (Some(10), 1000, 1000));
    }

    #[test]
    fn wrong_kind_is_named() {
        let err = parse("apiVersion: v1\nkind: ConfigMap\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "expected apiVersion eddy.dev/v1alpha1 and kind StreamJob, found v1 ConfigMap"
        );
    }

    #[test]
    fn unknown_enum_value_is_a_syntax_error_with_location() {
        let yaml = MINIMAL.replace(
            "eventTime: {field: ts}",
            "eventTime: {field: ts, format: iso}",
        );
        let err = parse(&yaml).unwrap_err().to_string();
        assert!(err.contains("unknown variant `iso`"), "{err}");
        assert!(err.contains("line"), "{err}");
    }

    #[test]
    fn invalid_spec_lists_every_problem() {
        let yaml = MINIMAL
            .replace("tumbling: {size: 1m}", "tumbling: {size: 0s}")
            .replace("keyField: user", "keyField: ''");
        let err = parse_valid(&yaml).unwrap_err().to_string();
        assert!(err.contains("spec.keyField: must not be empty"), "{err}");
        assert!(
            err.contains("spec.window.tumbling.size: must be greater than zero"),
            "{err}"
        );
    }
}
