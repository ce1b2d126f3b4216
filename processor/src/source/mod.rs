//! Sources of records.

pub mod file;
pub mod generator;
pub mod http;
pub mod json;
pub mod kafka;

use std::time::{Instant, SystemTime};

use serde_json::Value;

use crate::event::Invalid;

/// A record's content as the source read it.
#[derive(Clone, Debug, PartialEq)]
pub enum Payload {
    Json(Value),
    /// A JSON object read only as far as the job needs.
    Sparse(Box<json::Sparse>),
    /// A typed record of the built-in generator.
    Generated(generator::Generated),
    /// A message of a two-phase job's partials topic, still encoded
    /// (`partials::decode`).
    Partial(Vec<u8>),
    /// Something that is not a JSON record: the raw text (cut to a
    /// readable length) and why.
    Unreadable {
        raw: String,
        reason: Invalid,
    },
}

/// A record as a source hands it over.
#[derive(Clone, Debug, PartialEq)]
pub struct SourceRecord {
    pub payload: Payload,
    /// When the record was ingested (epoch ms): what clock-skew checks
    /// compare its event time with, and the clock partition idleness is
    /// measured on.
    pub ingest_ms: i64,
    /// The partition, when the source knows it (one per file, a Kafka
    /// partition); otherwise the key's hash decides.
    pub partition: Option<u32>,
    /// Where the record came from, unique within the job's input. Late and
    /// invalid records are identified by it.
    pub origin: Origin,
}

/// Where a record came from. Plain numbers on the hot path; text (`g<n>`,
/// `f<file>:<line>`, `k<partition>:<offset>`, `h<seq>`) only when a late or
/// invalid record is written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Origin {
    #[default]
    Unknown,
    Generator(u64),
    File {
        file: usize,
        line: u64,
    },
    Kafka {
        partition: i32,
        offset: i64,
    },
    Http(u64),
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unknown => Ok(()),
            Self::Generator(n) => write!(f, "g{n}"),
            Self::File { file, line } => write!(f, "f{file}:{line}"),
            Self::Kafka { partition, offset } => write!(f, "k{partition}:{offset}"),
            Self::Http(seq) => write!(f, "h{seq}"),
        }
    }
}

impl Payload {
    /// The record's top-level fields, if it is a readable record.
    pub fn fields(&self) -> Option<&dyn json::Fields> {
        match self {
            Self::Json(value) => Some(value),
            Self::Sparse(record) => Some(record),
            Self::Generated(_) | Self::Partial(_) | Self::Unreadable { .. } => None,
        }
    }

    /// The whole record as JSON, if it is a readable record.
    pub fn record(&self) -> Option<std::borrow::Cow<'_, Value>> {
        use std::borrow::Cow;
        match self {
            Self::Json(value) => Some(Cow::Borrowed(value)),
            Self::Sparse(record) => Some(Cow::Owned(record.to_value())),
            Self::Generated(g) => Some(Cow::Owned(g.to_value())),
            Self::Partial(_) | Self::Unreadable { .. } => None,
        }
    }
}

impl SourceRecord {
    pub fn json(value: Value, ingest_ms: i64) -> Self {
        Self {
            payload: Payload::Json(value),
            ingest_ms,
            partition: None,
            origin: Origin::Unknown,
        }
    }

    pub fn with_origin(mut self, origin: Origin) -> Self {
        self.origin = origin;
        self
    }
}

/// Records, plus partitions whose input ended with them.
#[derive(Debug, Default, PartialEq)]
pub struct Batch {
    pub records: Vec<SourceRecord>,
    pub finished: Vec<u32>,
}

/// What a source has for the engine right now.
#[derive(Debug, PartialEq)]
pub enum Poll {
    Ready(Batch),
    /// Nothing yet; ask again at this instant.
    Pending(Instant),
    /// The source is finite and has ended.
    End,
}

/// The sources this processor runs.
pub enum Source {
    Generator(Box<generator::Generator>),
    File(file::FileReader),
    Kafka(Box<kafka::KafkaReader>),
    Http(Box<http::HttpIngest>),
}

impl Source {
    pub fn poll(&mut self, now: Instant) -> anyhow::Result<Poll> {
        match self {
            Self::Generator(g) => Ok(g.poll(now)),
            Self::File(f) => f.poll(),
            Self::Kafka(k) => k.poll(),
            Self::Http(h) => Ok(h.poll()),
        }
    }

    /// Where the source is, for a checkpoint.
    pub fn position(&self) -> crate::checkpoint::SourcePosition {
        use crate::checkpoint::SourcePosition;
        match self {
            Self::Generator(g) => SourcePosition::Generator {
                produced: g.produced(),
            },
            Self::File(f) => {
                let (offsets, turn) = f.position();
                SourcePosition::File { offsets, turn }
            }
            Self::Kafka(k) => SourcePosition::Kafka {
                offsets: k.position(),
            },
            Self::Http(h) => SourcePosition::Http {
                taken: h.position(),
            },
        }
    }

    /// Resumes at a checkpointed position.
    pub fn resume(&mut self, position: &crate::checkpoint::SourcePosition) -> anyhow::Result<()> {
        use crate::checkpoint::SourcePosition;
        match (self, position) {
            (Self::Generator(g), SourcePosition::Generator { produced }) => {
                g.skip_to(*produced);
                Ok(())
            }
            (Self::File(f), SourcePosition::File { offsets, turn }) => f.seek(offsets, *turn),
            (Self::Kafka(k), SourcePosition::Kafka { offsets }) => k.seek(offsets),
            (Self::Http(h), SourcePosition::Http { taken }) => {
                h.resume(*taken);
                Ok(())
            }
            (_, other) => anyhow::bail!("the checkpoint is of another kind of source: {other:?}"),
        }
    }

    /// Why partitions cannot join or leave this source while it runs, if
    /// they cannot: only a Kafka topic's partitions are read (and
    /// checkpointed) each on its own. A generator, files split by a
    /// partition field, and HTTP ingest have one position for all.
    pub fn fixed_partitions(&self) -> Option<String> {
        let kind = match self {
            Self::Kafka(_) => return None,
            Self::Generator(_) => "generator",
            Self::File(_) => "file",
            Self::Http(_) => "HTTP",
        };
        Some(format!(
            "partitions move only between processors reading Kafka: a {kind} source has \
             one position for all its partitions"
        ))
    }

    /// Stops reading `partition` (see [`Source::fixed_partitions`]).
    pub fn release(&mut self, partition: u32) -> anyhow::Result<()> {
        match self {
            Self::Kafka(k) => k.release(partition as i32),
            _ => anyhow::bail!(self.fixed_partitions().unwrap_or_default()),
        }
    }

    /// Starts reading `partition` where `position` (its checkpoint's) has
    /// it, or where the spec says without one.
    pub fn acquire(
        &mut self,
        partition: u32,
        position: Option<&crate::checkpoint::SourcePosition>,
    ) -> anyhow::Result<()> {
        use crate::checkpoint::SourcePosition;
        match (self, position) {
            (Self::Kafka(k), None) => k.acquire(partition as i32, None),
            (Self::Kafka(k), Some(SourcePosition::Kafka { offsets })) => {
                let Some((_, offset)) = offsets.iter().find(|(p, _)| *p == partition as i32) else {
                    anyhow::bail!("the checkpoint has no offset of Kafka partition {partition}");
                };
                k.acquire(partition as i32, Some(*offset))
            }
            (Self::Kafka(_), Some(other)) => {
                anyhow::bail!("the checkpoint is of another kind of source: {other:?}")
            }
            (other, _) => anyhow::bail!(other.fixed_partitions().unwrap_or_default()),
        }
    }

    /// Records behind the end of `partition` (Kafka only).
    pub fn backlog(&self, partition: u32) -> Option<u64> {
        match self {
            Self::Kafka(k) => k.backlog(i32::try_from(partition).ok()?),
            _ => None,
        }
    }

    /// The source clock (epoch ms): the wall clock for live sources, the
    /// recorded ingestion time for replays.
    pub fn clock(&self) -> i64 {
        match self {
            Self::Generator(g) => g.clock(),
            Self::File(f) => f.clock(),
            Self::Kafka(_) | Self::Http(_) => wall_clock_ms(),
        }
    }
}

pub fn wall_clock_ms() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
