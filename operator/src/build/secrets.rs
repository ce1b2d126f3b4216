//! Secrets the job references, and how they reach the processor: S3
//! credentials as environment variables from `secretKeyRef`, every other
//! Secret as a read-only volume under [`SECRETS_DIR`]. Secret values never
//! appear in anything the operator writes.

use std::collections::BTreeSet;

use eddy_api::{spec::SecretKeyRef, StreamJobSpec};
use k8s_openapi::api::core::v1::{
    EnvVar, EnvVarSource, SecretKeySelector, SecretVolumeSource, Volume, VolumeMount,
};

/// Where Secret volumes are mounted: `<SECRETS_DIR>/<secret name>/<key>`.
/// The processor gets it as `EDDY_SECRETS_DIR`.
pub const SECRETS_DIR: &str = "/etc/eddy/secrets";
/// Environment variable the processor reads the Postgres connection string
/// of a `urlSecret` from.
pub const POSTGRES_URL_ENV: &str = "EDDY_POSTGRES_URL";

/// File mode of secret files: readable by the owner and the pod's fsGroup
/// (the processor's group), nobody else.
const SECRET_FILE_MODE: i32 = 0o440;

/// Names of the Secrets mounted as volumes, sorted: every Kafka
/// `propertiesSecret` (source and sinks) and every Postgres `urlSecret`.
pub fn mounted_secrets(spec: &StreamJobSpec) -> BTreeSet<String> {
    let source = spec
        .source
        .kafka
        .as_ref()
        .and_then(|k| k.properties_secret.clone());
    let outputs = spec.outputs().flat_map(|(_, sink)| {
        let kafka = sink
            .kafka
            .as_ref()
            .and_then(|k| k.properties_secret.clone());
        let postgres = sink
            .postgres
            .as_ref()
            .and_then(|p| p.url_secret.as_ref().map(|s| s.name.clone()));
        [kafka, postgres]
    });
    source.into_iter().chain(outputs.flatten()).collect()
}

/// One volume per mounted Secret, `secret-0`, `secret-1`, ... in name
/// order, with its mount at `<SECRETS_DIR>/<name>`.
pub(crate) fn volumes(spec: &StreamJobSpec) -> Vec<(Volume, VolumeMount)> {
    mounted_secrets(spec)
        .into_iter()
        .enumerate()
        .map(|(i, secret)| {
            let name = format!("secret-{i}");
            let mount = VolumeMount {
                name: name.clone(),
                mount_path: format!("{SECRETS_DIR}/{secret}"),
                read_only: Some(true),
                ..VolumeMount::default()
            };
            let volume = Volume {
                name,
                secret: Some(SecretVolumeSource {
                    secret_name: Some(secret),
                    default_mode: Some(SECRET_FILE_MODE),
                    ..SecretVolumeSource::default()
                }),
                ..Volume::default()
            };
            (volume, mount)
        })
        .collect()
}

/// Environment variables taken from Secrets: the S3 credentials when
/// `checkpoints.credentialsSecret` is set, and [`POSTGRES_URL_ENV`] when
/// every Postgres `urlSecret` names the same key (the processor reads one
/// such variable; with several distinct ones it reads the mounted files).
pub(crate) fn env(spec: &StreamJobSpec) -> Vec<EnvVar> {
    let mut env = store_env(spec);
    let urls: BTreeSet<(&str, &str)> = spec
        .outputs()
        .filter_map(|(_, sink)| sink.postgres.as_ref()?.url_secret.as_ref())
        .map(|SecretKeyRef { name, key }| (name.as_str(), key.as_str()))
        .collect();
    if let [(name, key)] = urls.into_iter().collect::<Vec<_>>()[..] {
        env.push(from_secret(POSTGRES_URL_ENV, name, key));
    }
    env
}

/// The checkpoint store's credentials, from `credentialsSecret`.
pub(crate) fn store_env(spec: &StreamJobSpec) -> Vec<EnvVar> {
    let Some(c) = &spec.checkpoints.credentials_secret else {
        return Vec::new();
    };
    vec![
        from_secret("AWS_ACCESS_KEY_ID", &c.name, &c.access_key_id_key),
        from_secret("AWS_SECRET_ACCESS_KEY", &c.name, &c.secret_access_key_key),
    ]
}

fn from_secret(var: &str, secret: &str, key: &str) -> EnvVar {
    EnvVar {
        name: var.into(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.into(),
                key: key.into(),
                ..SecretKeySelector::default()
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

#[cfg(test)]
mod tests {
    use eddy_api::spec::{KafkaSink, KafkaSource, PostgresSink, SinkSpec};

    use super::*;
    use crate::build::tests::spec;

    fn postgres(secret: &str, key: &str) -> SinkSpec {
        SinkSpec {
            postgres: Some(PostgresSink {
                url_secret: Some(SecretKeyRef {
                    name: secret.into(),
                    key: key.into(),
                }),
                table: "t".into(),
                ..PostgresSink::default()
            }),
            ..SinkSpec::default()
        }
    }

    #[test]
    fn every_referenced_secret_is_mounted_once_in_name_order() {
        let mut s = spec();
        s.source.generator = None;
        s.source.kafka = Some(KafkaSource {
            properties_secret: Some("kafka-in".into()),
            ..KafkaSource::default()
        });
        s.sinks = vec![postgres("db", "url"), postgres("db", "url")];
        s.late_output = SinkSpec {
            kafka: Some(KafkaSink {
                properties_secret: Some("b-kafka-out".into()),
                ..KafkaSink::default()
            }),
            ..SinkSpec::default()
        };
        let names: Vec<String> = mounted_secrets(&s).into_iter().collect();
        assert_eq!(names, vec!["b-kafka-out", "db", "kafka-in"]);
        let mounts: Vec<(String, String)> = volumes(&s)
            .into_iter()
            .map(|(v, m)| {
                assert_eq!(v.name, m.name);
                (v.secret.unwrap().secret_name.unwrap(), m.mount_path)
            })
            .collect();
        assert_eq!(
            mounts,
            vec![
                ("b-kafka-out".into(), "/etc/eddy/secrets/b-kafka-out".into()),
                ("db".into(), "/etc/eddy/secrets/db".into()),
                ("kafka-in".into(), "/etc/eddy/secrets/kafka-in".into()),
            ]
        );
        let env = env(&s);
        assert_eq!(env.len(), 1);
        assert_eq!(env[0].name, POSTGRES_URL_ENV);
        assert_eq!(env[0].value, None);
        let r = env[0].value_from.as_ref().unwrap().secret_key_ref.as_ref();
        assert_eq!(r.map(|r| (&*r.name, &*r.key)), Some(("db", "url")));
    }

    #[test]
    fn no_postgres_url_variable_for_two_different_secrets() {
        let mut s = spec();
        s.sinks = vec![postgres("db", "url"), postgres("db", "other")];
        assert!(env(&s).is_empty());
        assert_eq!(mounted_secrets(&s).len(), 1);
    }

    #[test]
    fn no_secrets_no_volumes() {
        assert!(volumes(&spec()).is_empty());
        assert!(env(&spec()).is_empty());
    }
}
