//! The file source: newline-delimited JSON, replayed from the start.
//!
//! Without a partition field each file is one partition (the first listed
//! is partition 0), read in turns of a batch each, so the interleaving is
//! the same on every run. With a partition field, each record names its
//! partition. Lines that are not JSON, or longer than the record limit,
//! become unreadable records with a reason (never dropped silently).

use std::{
    fs::File,
    io::{BufRead, BufReader},
    path::PathBuf,
};

use anyhow::Context;
use eddy_api::spec::TimeFormat;
use serde_json::Value;

use super::{
    json::{Fields, Parsed, Wanted},
    wall_clock_ms, Batch, Payload, Poll, SourceRecord,
};
use crate::event::{parse_time, Invalid};

/// Lines read from one file per turn.
const BATCH: usize = 1024;
/// Raw text kept of an unreadable line.
const RAW_KEPT: usize = 512;

#[derive(Clone, Debug)]
pub struct FileConfig {
    pub paths: Vec<PathBuf>,
    pub partition_field: Option<String>,
    /// Field with each record's ingestion time, in `time_format`.
    pub ingestion_time_field: Option<String>,
    pub time_format: TimeFormat,
    /// The fields the job reads from a record; the reader adds the
    /// partition and ingestion-time fields. The rest is only checked.
    pub fields: Wanted,
    pub partitions: u32,
    /// Longest line accepted, in bytes.
    pub max_record_bytes: usize,
}

struct OpenFile {
    reader: BufReader<File>,
    /// The file's partition, when one file is one partition.
    partition: Option<u32>,
    /// Bytes consumed so far.
    offset: u64,
    line: u64,
    done: bool,
}

pub struct FileReader {
    config: FileConfig,
    files: Vec<OpenFile>,
    turn: usize,
    clock: i64,
}

impl FileReader {
    pub fn open(mut config: FileConfig) -> anyhow::Result<Self> {
        config.fields = config.fields.and(
            [&config.partition_field, &config.ingestion_time_field]
                .into_iter()
                .flatten()
                .cloned(),
        );
        let files = config
            .paths
            .iter()
            .enumerate()
            .map(|(i, path)| {
                let file = File::open(path)
                    .with_context(|| format!("cannot open source file {}", path.display()))?;
                Ok(OpenFile {
                    reader: BufReader::with_capacity(1 << 16, file),
                    partition: config.partition_field.is_none().then_some(i as u32),
                    offset: 0,
                    line: 0,
                    done: false,
                })
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Self {
            config,
            files,
            turn: 0,
            clock: i64::MIN,
        })
    }

    /// Byte offset and line reached in each file, and whose turn is next,
    /// for a checkpoint.
    pub fn position(&self) -> (Vec<(u64, u64)>, usize) {
        (
            self.files.iter().map(|f| (f.offset, f.line)).collect(),
            self.turn,
        )
    }

    /// Resumes each file at a checkpointed position.
    pub fn seek(&mut self, offsets: &[(u64, u64)], turn: usize) -> anyhow::Result<()> {
        use std::io::Seek;
        for (file, &(offset, line)) in self.files.iter_mut().zip(offsets) {
            file.reader.seek(std::io::SeekFrom::Start(offset))?;
            file.offset = offset;
            file.line = line;
        }
        self.turn = turn;
        Ok(())
    }

    pub fn clock(&self) -> i64 {
        if self.config.ingestion_time_field.is_some() {
            self.clock
        } else {
            wall_clock_ms()
        }
    }

    pub fn poll(&mut self) -> anyhow::Result<Poll> {
        let Some(index) = (0..self.files.len())
            .map(|i| (self.turn + i) % self.files.len())
            .find(|i| !self.files[*i].done)
        else {
            return Ok(Poll::End);
        };
        self.turn = index + 1;
        let mut batch = Batch {
            records: Vec::with_capacity(BATCH),
            ..Batch::default()
        };
        let mut buf = Vec::new();
        for _ in 0..BATCH {
            let file = &mut self.files[index];
            let read = read_line(&mut file.reader, &mut buf, self.config.max_record_bytes)
                .with_context(|| format!("reading {}", self.config.paths[index].display()))?;
            let Some((length, consumed)) = read else {
                file.done = true;
                // A finished file's partition never holds the watermark back;
                // with a partition field, partitions end with the last file.
                if let Some(p) = file.partition {
                    batch.finished.push(p);
                } else if self.files.iter().all(|f| f.done) {
                    batch.finished.extend(0..self.config.partitions);
                }
                break;
            };
            file.line += 1;
            file.offset += consumed;
            let partition = file.partition;
            if buf.iter().all(u8::is_ascii_whitespace) && length == buf.len() {
                continue;
            }
            let origin = super::Origin::File {
                file: index,
                line: self.files[index].line,
            };
            batch
                .records
                .push(self.record(&buf, length, partition).with_origin(origin));
        }
        Ok(Poll::Ready(batch))
    }

    fn record(&mut self, line: &[u8], length: usize, file_partition: Option<u32>) -> SourceRecord {
        let unreadable = |reason: Invalid| {
            let mut raw = String::from_utf8_lossy(&line[..line.len().min(RAW_KEPT)]).into_owned();
            if line.len() > RAW_KEPT {
                raw.push('…');
            }
            Payload::Unreadable { raw, reason }
        };
        let mut ingest_ms = if self.config.ingestion_time_field.is_some() {
            self.clock
        } else {
            wall_clock_ms()
        };
        let payload = if length > self.config.max_record_bytes {
            unreadable(Invalid::TooLarge {
                size: length,
                limit: self.config.max_record_bytes,
            })
        } else {
            match self.config.fields.parse(line) {
                Err(e) => unreadable(Invalid::NotJson(e.to_string())),
                // Not a record at all: extraction reports that, at the clock.
                Ok(Parsed::Other(value)) => Payload::Json(value),
                Ok(Parsed::Object(record)) => match self.ingestion_time(&record) {
                    Err(reason) => {
                        let raw = record.to_value().to_string();
                        Payload::Unreadable { raw, reason }
                    }
                    Ok(t) => {
                        if let Some(t) = t {
                            self.clock = self.clock.max(t);
                            ingest_ms = t;
                        }
                        Payload::Sparse(record)
                    }
                },
            }
        };
        let mut partition = file_partition;
        if let (Some(field), Some(fields)) = (&self.config.partition_field, payload.fields()) {
            match fields.field(field).and_then(Value::as_u64) {
                Some(p) if p < u64::from(self.config.partitions) => partition = Some(p as u32),
                _ => {
                    let raw = payload.record().map_or_else(String::new, |r| r.to_string());
                    return SourceRecord {
                        payload: Payload::Unreadable {
                            raw,
                            reason: Invalid::BadPartition {
                                field: field.clone(),
                                partitions: self.config.partitions,
                            },
                        },
                        ingest_ms,
                        partition: None,
                        origin: super::Origin::Unknown,
                    };
                }
            }
        }
        SourceRecord {
            payload,
            ingest_ms,
            partition,
            origin: super::Origin::Unknown,
        }
    }

    /// The ingestion time in a record's wanted `fields`.
    fn ingestion_time(&self, fields: &impl Fields) -> Result<Option<i64>, Invalid> {
        let Some(field) = &self.config.ingestion_time_field else {
            return Ok(None);
        };
        match fields.field(field) {
            None | Some(Value::Null) => Err(Invalid::MissingTime(field.clone())),
            Some(v) => parse_time(v, field, self.config.time_format).map(Some),
        }
    }
}

/// Reads one line into `buf` (without the newline), keeping at most
/// `limit + 1` bytes of it. Returns the line's full length and the bytes
/// consumed, or `None` at the end of the file.
fn read_line(
    reader: &mut impl BufRead,
    buf: &mut Vec<u8>,
    limit: usize,
) -> std::io::Result<Option<(usize, u64)>> {
    buf.clear();
    let mut length = 0;
    let mut consumed_total = 0u64;
    let mut any = false;
    loop {
        let available = reader.fill_buf()?;
        if available.is_empty() {
            return Ok(any.then_some((length, consumed_total)));
        }
        any = true;
        let (chunk, newline) = match available.iter().position(|b| *b == b'\n') {
            Some(i) => (&available[..i], true),
            None => (available, false),
        };
        let keep = chunk.len().min((limit + 1).saturating_sub(buf.len()));
        buf.extend_from_slice(&chunk[..keep]);
        length += chunk.len();
        let consumed = chunk.len() + usize::from(newline);
        reader.consume(consumed);
        consumed_total += consumed as u64;
        if newline {
            if buf.last() == Some(&b'\r') {
                buf.pop();
                length -= 1;
            }
            return Ok(Some((length, consumed_total)));
        }
    }
}

#[cfg(test)]
mod tests;
