//! Values from Kubernetes Secrets.
//!
//! The operator mounts every Secret a job references (Kafka
//! `propertiesSecret`s, PostgreSQL `urlSecret`s) as a volume at
//! `$EDDY_SECRETS_DIR/<secret name>/`, one file per key, so secret values
//! never appear in the rendered job config or the pod spec. For a local run,
//! make the same layout yourself and point `EDDY_SECRETS_DIR` at it.
//!
//! [`resolve`] folds those values into a copy of the spec before it is
//! planned: a Kafka `propertiesSecret`'s keys become client properties
//! (overriding the same keys in `properties`), a PostgreSQL `urlSecret`
//! becomes the `url`. A `urlSecret` with no mounted file is left for the
//! `EDDY_POSTGRES_URL` variable (see `output::sink::postgres::url_of`).

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use eddy_api::spec::{SinkSpec, StreamJobSpec};

/// Environment variable naming the directory Secrets are mounted under.
pub const DIR_VAR: &str = "EDDY_SECRETS_DIR";
/// Where the operator mounts them.
pub const DEFAULT_DIR: &str = "/etc/eddy/secrets";

/// The Secrets directory: `$EDDY_SECRETS_DIR`, else the operator's default.
pub fn dir_from_env() -> PathBuf {
    std::env::var_os(DIR_VAR).map_or_else(|| PathBuf::from(DEFAULT_DIR), PathBuf::from)
}

/// Every key of Secret `name` under `dir`. Kubernetes' own bookkeeping
/// entries in a Secret volume (`..data`, `..2026_11_21...`) start with a
/// dot and are skipped; values lose one trailing newline, which `kubectl
/// create secret --from-file` often leaves.
pub fn read_all(dir: &Path, name: &str) -> Result<BTreeMap<String, String>, String> {
    let root = dir.join(name);
    let entries = std::fs::read_dir(&root).map_err(|e| {
        format!(
            "Secret {name:?} is not mounted at {} ({e}); the operator mounts it there, \
             for a local run create one file per key there or set {DIR_VAR}",
            root.display()
        )
    })?;
    let mut values = BTreeMap::new();
    for entry in entries {
        let entry = entry.map_err(|e| format!("reading {}: {e}", root.display()))?;
        let key = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        // `is_file` follows the symlinks Secret volumes are made of.
        if key.starts_with('.') || !path.is_file() {
            continue;
        }
        values.insert(key, read_value(&path)?);
    }
    Ok(values)
}

/// One key of Secret `name`, or `None` when no file holds it.
pub fn read_key(dir: &Path, name: &str, key: &str) -> Result<Option<String>, String> {
    let path = dir.join(name).join(key);
    if !path.is_file() {
        return Ok(None);
    }
    read_value(&path).map(Some)
}

fn read_value(path: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("reading {}: {e} (values must be UTF-8)", path.display()))?;
    let text = text.strip_suffix('\n').unwrap_or(&text);
    Ok(text.strip_suffix('\r').unwrap_or(text).to_string())
}

/// Folds mounted Secret values into `spec`; every Secret that should be
/// there but is not is reported, with the field that references it.
pub fn resolve(spec: &mut StreamJobSpec, dir: &Path) -> Result<(), Vec<String>> {
    let mut problems = Vec::new();
    if let Some(k) = spec.source.kafka.as_mut() {
        let path = "spec.source.kafka.propertiesSecret";
        fold_properties(
            &mut k.properties_secret,
            &mut k.properties,
            path,
            dir,
            &mut problems,
        );
    }
    for (path, sink) in spec.outputs_mut() {
        resolve_sink(sink, &path, dir, &mut problems);
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

/// A Kafka `propertiesSecret`'s keys into the client `properties`
/// (overriding the spec's), the reference dropped once read.
fn fold_properties(
    secret: &mut Option<String>,
    properties: &mut BTreeMap<String, String>,
    path: &str,
    dir: &Path,
    problems: &mut Vec<String>,
) {
    if let Some(name) = secret.take() {
        match read_all(dir, &name) {
            Ok(values) => properties.extend(values),
            Err(e) => problems.push(format!("{path}: {e}")),
        }
    }
}

fn resolve_sink(sink: &mut SinkSpec, path: &str, dir: &Path, problems: &mut Vec<String>) {
    if let Some(k) = sink.kafka.as_mut() {
        let path = format!("{path}.kafka.propertiesSecret");
        fold_properties(
            &mut k.properties_secret,
            &mut k.properties,
            &path,
            dir,
            problems,
        );
    }
    if let Some(pg) = sink.postgres.as_mut() {
        if let Some(secret) = &pg.url_secret {
            match read_key(dir, &secret.name, &secret.key) {
                Ok(Some(url)) => {
                    pg.url = Some(url);
                    pg.url_secret = None;
                }
                Ok(None) => {}
                Err(e) => problems.push(format!("{path}.postgres.urlSecret: {e}")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> StreamJobSpec {
        eddy_api::load::parse_valid(yaml).unwrap().spec
    }

    const JOB: &str = r#"
apiVersion: eddy.dev/v1alpha1
kind: StreamJob
metadata: {name: j, namespace: n}
spec:
  source:
    kafka: {brokers: "b:9092", topic: t, properties: {client.id: spec, linger.ms: "5"}, propertiesSecret: kafka-auth}
  keyField: k
  eventTime: {field: ts}
  window: {tumbling: {size: 1m}}
  sinks:
    - kafka: {brokers: "b:9092", topic: out, propertiesSecret: kafka-auth}
    - postgres: {table: results, urlSecret: {name: db, key: url}}
"#;

    /// A Secret volume as the kubelet lays it out: a timestamped directory,
    /// a `..data` link to it, and one link per key.
    fn mount(dir: &Path, name: &str, values: &[(&str, &str)]) {
        let root = dir.join(name);
        let stamped = root.join("..2026_11_21_10_00_00.1");
        std::fs::create_dir_all(&stamped).unwrap();
        std::os::unix::fs::symlink("..2026_11_21_10_00_00.1", root.join("..data")).unwrap();
        for (k, v) in values {
            std::fs::write(stamped.join(k), v).unwrap();
            std::os::unix::fs::symlink(format!("..data/{k}"), root.join(k)).unwrap();
        }
    }

    #[test]
    fn secret_values_override_spec_properties_and_fill_urls() {
        let dir = tempfile::tempdir().unwrap();
        mount(
            dir.path(),
            "kafka-auth",
            &[("client.id", "secret\n"), ("sasl.password", "p4ss")],
        );
        mount(dir.path(), "db", &[("url", "postgres://u:p@h/db\r\n")]);
        let mut s = spec(JOB);
        resolve(&mut s, dir.path()).unwrap();
        let source = s.source.kafka.as_ref().unwrap();
        assert_eq!(source.properties_secret, None);
        assert_eq!(source.properties["client.id"], "secret");
        assert_eq!(source.properties["linger.ms"], "5");
        assert_eq!(source.properties["sasl.password"], "p4ss");
        assert_eq!(source.properties.len(), 3, "no bookkeeping entries");
        let sink = s.sinks[0].kafka.as_ref().unwrap();
        assert_eq!(sink.properties["sasl.password"], "p4ss");
        let pg = s.sinks[1].postgres.as_ref().unwrap();
        assert_eq!(pg.url.as_deref(), Some("postgres://u:p@h/db"));
        assert_eq!(pg.url_secret, None);
    }

    #[test]
    fn missing_secrets_are_reported_by_field() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = spec(JOB);
        let problems = resolve(&mut s, dir.path()).unwrap_err();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].starts_with(
            "spec.source.kafka.propertiesSecret: Secret \"kafka-auth\" is not mounted"
        ));
        assert!(problems[1].starts_with("spec.sinks[0].kafka.propertiesSecret:"));
        // No file for the URL: left to EDDY_POSTGRES_URL.
        let pg = s.sinks[1].postgres.as_ref().unwrap();
        assert!(pg.url.is_none() && pg.url_secret.is_some());
    }
}
