//! Where events come from.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::values::{ByteSize, HumanDuration};

/// Where the job reads events from. Set exactly one of `generator`, `file`,
/// `kafka` or `http`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "(has(self.generator) ? 1 : 0) + (has(self.file) ? 1 : 0) + (has(self.kafka) ? 1 : 0) + (has(self.http) ? 1 : 0) == 1",
    "message": "set exactly one of generator, file, kafka or http"
}]))]
pub struct SourceSpec {
    /// A built-in generator of synthetic events, deterministic from its seed.
    /// For trying Eddy out, tests and benchmarks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generator: Option<GeneratorSource>,
    /// Files of JSON lines, replayed from the start. For local runs and tests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<FileSource>,
    /// A Kafka topic (the common case in production).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kafka: Option<KafkaSource>,
    /// JSON events POSTed over HTTP by an application in the same pod (the
    /// sidecar case).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpSource>,
}

impl SourceSpec {
    /// The kinds of source that are set, by field name.
    pub fn kinds_set(&self) -> Vec<&'static str> {
        super::names_set([
            ("generator", self.generator.is_some()),
            ("file", self.file.is_some()),
            ("kafka", self.kafka.is_some()),
            ("http", self.http.is_some()),
        ])
    }
}

/// Synthetic events. Each event is a JSON object with the job's key field
/// (`<keyPrefix><n>`), its event-time field (in the configured format) and a numeric
/// field named by `valueField`. The same seed and settings always produce the
/// same events in the same order. An event's ingestion time (for the clock
/// skew checks) is its nominal time before jitter, lateness or future skew.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GeneratorSource {
    /// Seed of the pseudo-random sequence. Same seed, same events.
    #[serde(default = "defaults::seed")]
    #[schemars(range(min = 0))]
    pub seed: u64,
    /// How many events to produce before the source ends. Leave unset for an
    /// endless stream (stop it with Ctrl-C or by deleting the job).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub count: Option<u64>,
    /// Events per second of event time: event timestamps advance by
    /// 1/rate seconds per event (before jitter).
    #[serde(default = "defaults::rate")]
    #[schemars(range(min = 1))]
    pub rate: u64,
    /// When true, events are produced at `rate` per second of wall-clock time
    /// and stamped starting from now. When false (the default) they are
    /// produced as fast as the job can take them, stamped from `startTime`.
    #[serde(default)]
    pub realtime: bool,
    /// Event time of the first event (RFC 3339) when `realtime` is false.
    #[serde(default = "defaults::start_time")]
    pub start_time: String,
    /// Number of distinct keys (`<keyPrefix>0` … `<keyPrefix><keys-1>`).
    #[serde(default = "defaults::keys")]
    #[schemars(range(min = 1))]
    pub keys: u64,
    /// Text before each key's number.
    #[serde(default = "defaults::key_prefix")]
    pub key_prefix: String,
    /// Zipf exponent of the key distribution: 0 gives uniform keys; 1.1 makes
    /// a few keys very hot, as in real traffic.
    #[serde(default)]
    #[schemars(range(min = 0.0))]
    pub key_skew: f64,
    /// Out-of-order jitter: each event's timestamp is moved back by a random
    /// amount up to this duration. Keep it within the job's
    /// `eventTime.maxOutOfOrderness` for on-time events.
    #[serde(default = "defaults::zero")]
    pub jitter: HumanDuration,
    /// Share of events (0 to 1) stamped `lateBy` in the past, so they arrive
    /// after their window has closed.
    #[serde(default)]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub late_fraction: f64,
    /// How far in the past late events are stamped.
    #[serde(default = "defaults::late_by")]
    pub late_by: HumanDuration,
    /// Share of events (0 to 1) stamped `futureBy` ahead of the time they are
    /// ingested, as from a producer whose clock runs fast.
    #[serde(default)]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub future_fraction: f64,
    /// How far ahead of their ingestion time those events are stamped.
    #[serde(default = "defaults::future_by")]
    pub future_by: HumanDuration,
    /// Name of the numeric field each event carries (uniform in [0, 100),
    /// two decimals).
    #[serde(default = "defaults::value_field")]
    pub value_field: String,
}

impl Default for GeneratorSource {
    fn default() -> Self {
        Self {
            seed: defaults::seed(),
            count: None,
            rate: defaults::rate(),
            realtime: false,
            start_time: defaults::start_time(),
            keys: defaults::keys(),
            key_prefix: defaults::key_prefix(),
            key_skew: 0.0,
            jitter: defaults::zero(),
            late_fraction: 0.0,
            late_by: defaults::late_by(),
            future_fraction: 0.0,
            future_by: defaults::future_by(),
            value_field: defaults::value_field(),
        }
    }
}

/// Files of newline-delimited JSON objects, one event per line.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FileSource {
    /// Paths of the files to read. Without `partitionField`, each file is one
    /// partition, in the order listed.
    pub paths: Vec<String>,
    /// Name of an integer field that holds each event's partition, for files
    /// that interleave several partitions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition_field: Option<String>,
    /// Name of a field holding each record's ingestion time (in the job's
    /// event-time format), for replaying a recording exactly: clock-skew
    /// checks and partition idleness then follow the recorded clock instead
    /// of the wall clock.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingestion_time_field: Option<String>,
}

/// A Kafka topic. Partitions are assigned by the job (not by a consumer
/// group), so each partition's state and offsets move together.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KafkaSource {
    /// Bootstrap servers, comma separated (`host:port,host:port`).
    pub brokers: String,
    /// The topic to read.
    pub topic: String,
    /// Where to start a partition that has no checkpointed offset:
    /// `earliest` (the oldest retained message) or `latest` (only messages
    /// produced after the job starts).
    #[serde(default)]
    pub start_from: StartFrom,
    /// Take each event's key from the Kafka message key instead of the
    /// job's `keyField`.
    #[serde(default)]
    pub key_from_message_key: bool,
    /// Take each event's time from the Kafka message timestamp instead of the
    /// job's `eventTime.field`.
    #[serde(default)]
    pub time_from_message_timestamp: bool,
    /// Extra librdkafka client properties (for example
    /// `security.protocol: SASL_SSL`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub properties: BTreeMap<String, String>,
    /// Name of a Secret in the job's namespace whose keys are added as client
    /// properties (for credentials such as `sasl.password`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub properties_secret: Option<String>,
    /// Read up to the end offsets found at start, then finish (emitting
    /// every window): for backfills and tests. Off by default: the topic is
    /// read forever.
    #[serde(default)]
    pub stop_at_end: bool,
}

/// Where to start reading a partition that has no checkpoint yet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum StartFrom {
    /// The oldest retained message.
    #[default]
    Earliest,
    /// Only messages produced after the job starts.
    Latest,
}

/// HTTP ingest on the processor: `POST /events` with one JSON object, a JSON
/// array, or newline-delimited JSON.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HttpSource {
    /// Port the processor listens on for events.
    #[serde(default = "defaults::http_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: u16,
    /// Address to bind. The default accepts only connections from inside the
    /// pod; use `0.0.0.0` to accept events from other pods.
    #[serde(default = "defaults::http_bind")]
    pub bind: String,
    /// Largest request body accepted; larger requests get 413.
    #[serde(default = "defaults::http_max_body")]
    pub max_body: ByteSize,
    /// Events buffered before requests are refused with 429 and Retry-After.
    #[serde(default = "defaults::http_buffer")]
    #[schemars(range(min = 1, max = 100000000))]
    pub buffer_events: u32,
}

impl Default for HttpSource {
    fn default() -> Self {
        Self {
            port: defaults::http_port(),
            bind: defaults::http_bind(),
            max_body: defaults::http_max_body(),
            buffer_events: defaults::http_buffer(),
        }
    }
}

mod defaults {
    use super::*;

    pub fn seed() -> u64 {
        1
    }
    pub fn rate() -> u64 {
        1000
    }
    pub fn start_time() -> String {
        "2026-01-01T00:00:00Z".into()
    }
    pub fn keys() -> u64 {
        1000
    }
    pub fn key_prefix() -> String {
        "key-".into()
    }
    pub fn zero() -> HumanDuration {
        "0s".into()
    }
    pub fn late_by() -> HumanDuration {
        "1m".into()
    }
    pub fn future_by() -> HumanDuration {
        "1h".into()
    }
    pub fn value_field() -> String {
        "value".into()
    }
    pub fn http_port() -> u16 {
        8081
    }
    pub fn http_bind() -> String {
        "127.0.0.1".into()
    }
    pub fn http_max_body() -> ByteSize {
        "1Mi".into()
    }
    pub fn http_buffer() -> u32 {
        10_000
    }
}
