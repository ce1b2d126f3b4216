//! Where results (and late or invalid events) go.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::spec::SecretKeyRef;

/// One destination. Set exactly one of `stdout`, `stderr`, `file`, `kafka` or
/// `postgres`. Every result carries a deterministic id, a revision and
/// whether it is final, so sinks that keep the highest-ranked revision per id
/// (a final one over any other, else the highest) are exactly-once across
/// restarts.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "(has(self.stdout) ? 1 : 0) + (has(self.stderr) ? 1 : 0) + (has(self.file) ? 1 : 0) + (has(self.kafka) ? 1 : 0) + (has(self.postgres) ? 1 : 0) == 1",
    "message": "set exactly one of stdout, stderr, file, kafka or postgres"
}]))]
pub struct SinkSpec {
    /// JSON lines on the processor's standard output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdout: Option<StdSink>,
    /// JSON lines on the processor's standard error (next to its logs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stderr: Option<StdSink>,
    /// JSON lines appended to a file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<FileSink>,
    /// JSON messages on a Kafka topic, keyed by result id (late and invalid
    /// records: by an id from their source origin).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kafka: Option<KafkaSink>,
    /// Rows in a PostgreSQL table: results upserted by result id keeping the
    /// highest-ranked revision (a final one, else the highest); late and invalid records one row each, keyed by
    /// their source origin, so replays never duplicate them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postgres: Option<PostgresSink>,
}

impl SinkSpec {
    pub fn stdout() -> Self {
        Self {
            stdout: Some(StdSink {}),
            ..Self::default()
        }
    }

    pub fn stderr() -> Self {
        Self {
            stderr: Some(StdSink {}),
            ..Self::default()
        }
    }

    /// The kinds of sink that are set, by field name.
    pub fn kinds_set(&self) -> Vec<&'static str> {
        super::names_set([
            ("stdout", self.stdout.is_some()),
            ("stderr", self.stderr.is_some()),
            ("file", self.file.is_some()),
            ("kafka", self.kafka.is_some()),
            ("postgres", self.postgres.is_some()),
        ])
    }
}

/// A standard stream; takes no settings (write `{}`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct StdSink {}

/// A local file of JSON lines.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FileSink {
    /// Path of the file. On start the processor cuts it back to what the
    /// checkpoint it restores had written (to nothing when it starts from
    /// the beginning) and appends from there, so each record is in the file
    /// exactly once across restarts.
    pub path: String,
}

/// A Kafka topic.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KafkaSink {
    /// Bootstrap servers, comma separated.
    pub brokers: String,
    /// The topic to write.
    pub topic: String,
    /// Commit writes in a Kafka transaction together with each checkpoint,
    /// so consumers reading committed messages (`isolation.level:
    /// read_committed`) see every result once, results appearing once per
    /// checkpoint. Needs a broker with transactions; the transactional
    /// outputs of a job share one producer per processor, so they must name
    /// the same brokers and properties. Otherwise the idempotent producer is
    /// used and consumers keep the highest-ranked revision per result id (a
    /// final one, else the highest: a replay may close a window after fewer
    /// revisions than the run it repeats).
    #[serde(default)]
    pub transactional: bool,
    /// Extra librdkafka producer properties.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub properties: BTreeMap<String, String>,
    /// Name of a Secret whose keys are added as producer properties.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub properties_secret: Option<String>,
}

/// A PostgreSQL table.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PostgresSink {
    /// Connection string (`postgres://user@host:5432/db`). Prefer
    /// `urlSecret` for anything with a password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Secret key holding the connection string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_secret: Option<SecretKeyRef>,
    /// Table to write, optionally schema-qualified (`analytics.revenue`).
    pub table: String,
    /// Create the table if it does not exist.
    #[serde(default)]
    pub create_table: bool,
}
