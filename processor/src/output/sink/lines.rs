//! Sinks that write JSON lines: stdout, stderr and files. A file takes part
//! in checkpoints through its length: synced before the cut, recorded in
//! the checkpoint, and cut back to it on restore, so every line is in the
//! file exactly once.

use std::{
    fs::OpenOptions,
    io::{self, BufWriter, Seek, Write},
};

use eddy_api::spec::SinkSpec;

use super::{done, Flushing, Item, Sink};

/// A destination for JSON lines.
pub struct LineSink {
    name: String,
    out: Box<dyn Write + Send>,
    /// For a file sink: its path and byte length (written so far).
    file: Option<(String, u64)>,
    /// For a file sink: a handle to sync it to disk.
    sync: Option<std::fs::File>,
}

impl LineSink {
    /// The file at `path`, cut to `length` bytes (what a restored
    /// checkpoint had written; 0 for a fresh start).
    pub fn file(path: &str, length: u64) -> io::Result<Self> {
        let file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(false)
            .open(path)
            .map_err(|e| io::Error::new(e.kind(), format!("cannot open {path}: {e}")))?;
        file.set_len(length)?;
        let sync = file.try_clone().ok();
        let mut file = BufWriter::new(file);
        file.seek(io::SeekFrom::Start(length))?;
        Ok(Self {
            name: format!("file {path}"),
            out: Box::new(file),
            file: Some((path.to_string(), length)),
            sync,
        })
    }

    /// The standard stream a spec names.
    pub fn stream(spec: &SinkSpec) -> io::Result<Self> {
        if spec.stdout.is_some() {
            return Ok(Self::to_writer(
                "stdout",
                Box::new(BufWriter::new(io::stdout())),
            ));
        }
        if spec.stderr.is_some() {
            return Ok(Self::to_writer("stderr", Box::new(io::stderr())));
        }
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("sink kind {:?} is not supported here", spec.kinds_set()),
        ))
    }

    /// A sink writing to `out` (for tests and benchmarks: `io::sink()`).
    pub fn to_writer(name: &str, out: Box<dyn Write + Send>) -> Self {
        Self {
            name: name.into(),
            out,
            file: None,
            sync: None,
        }
    }

    pub fn write_line(&mut self, line: &[u8]) -> io::Result<()> {
        self.out.write_all(line)?;
        self.out.write_all(b"\n")?;
        if let Some((_, length)) = &mut self.file {
            *length += line.len() as u64 + 1;
        }
        Ok(())
    }

    /// Flushes and, for a file, syncs its data to disk.
    fn sync_data(&mut self) -> io::Result<()> {
        self.out.flush()?;
        match &self.sync {
            Some(file) => file.sync_data(),
            None => Ok(()),
        }
    }

    fn failed(&self, doing: &str, e: io::Error) -> anyhow::Error {
        anyhow::anyhow!("{doing} {}: {e}", self.name)
    }
}

impl Sink for LineSink {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn write(&mut self, item: &Item<'_>) -> anyhow::Result<()> {
        self.write_line(item.line)
            .map_err(|e| self.failed("writing to", e))
    }

    fn flush(&mut self) -> Flushing<'_> {
        let flushed = self.out.flush().map_err(|e| self.failed("flushing", e));
        done(flushed)
    }

    /// Synced to disk (before a checkpoint records its length).
    fn sync(&mut self) -> Flushing<'_> {
        let synced = self.sync_data().map_err(|e| self.failed("syncing", e));
        done(synced)
    }

    fn snapshot(&self) -> Option<(String, u64)> {
        self.file.clone()
    }
}
