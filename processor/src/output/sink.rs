//! Sinks that write JSON lines: stdout, stderr and files.

use std::{
    fs::OpenOptions,
    io::{self, BufWriter, Write},
};

use eddy_api::spec::SinkSpec;

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
    /// Opens the sink a spec names, a file sink cut to `file_length` bytes
    /// (what a restored checkpoint had written; 0 for a fresh start). Only
    /// line sinks (stdout, stderr, files): Kafka and PostgreSQL sinks are
    /// `output::kafka` and `output::postgres`.
    pub fn open_at(spec: &SinkSpec, file_length: u64) -> io::Result<Self> {
        if let Some(f) = &spec.file {
            let file = OpenOptions::new()
                .create(true)
                .write(true)
                .truncate(false)
                .open(&f.path)
                .map_err(|e| io::Error::new(e.kind(), format!("cannot open {}: {e}", f.path)))?;
            file.set_len(file_length)?;
            let sync = file.try_clone().ok();
            let mut file = BufWriter::new(file);
            use std::io::Seek;
            file.seek(io::SeekFrom::Start(file_length))?;
            return Ok(Self {
                name: format!("file {}", f.path),
                out: Box::new(file),
                file: Some((f.path.clone(), file_length)),
                sync,
            });
        }
        Self::open_stream(spec)
    }

    /// A standard stream sink.
    fn open_stream(spec: &SinkSpec) -> io::Result<Self> {
        let (name, out): (String, Box<dyn Write + Send>) = if spec.stdout.is_some() {
            ("stdout".into(), Box::new(BufWriter::new(io::stdout())))
        } else if spec.stderr.is_some() {
            ("stderr".into(), Box::new(io::stderr()))
        } else {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!("sink kind {:?} is not supported here", spec.kinds_set()),
            ));
        };
        Ok(Self {
            name,
            out,
            file: None,
            sync: None,
        })
    }

    /// An in-memory sink, for tests.
    pub fn to_writer(name: &str, out: Box<dyn Write + Send>) -> Self {
        Self {
            name: name.into(),
            out,
            file: None,
            sync: None,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn write_line(&mut self, line: &[u8]) -> io::Result<()> {
        self.out.write_all(line)?;
        self.out.write_all(b"\n")?;
        if let Some((_, length)) = &mut self.file {
            *length += line.len() as u64 + 1;
        }
        Ok(())
    }

    /// For a file sink: its path and byte length.
    pub fn file_length(&self) -> Option<(&str, u64)> {
        self.file.as_ref().map(|(p, l)| (p.as_str(), *l))
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    /// Flushes and, for a file, syncs its data to disk (before a checkpoint
    /// records its length).
    pub fn sync(&mut self) -> io::Result<()> {
        self.out.flush()?;
        match &self.sync {
            Some(file) => file.sync_data(),
            None => Ok(()),
        }
    }
}
