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
}

impl LineSink {
    /// Opens the sink a spec names. Kafka and PostgreSQL are not written by
    /// this version (the job plan rejects them before we get here).
    pub fn open(spec: &SinkSpec) -> io::Result<Self> {
        let (name, out): (String, Box<dyn Write + Send>) = if spec.stdout.is_some() {
            ("stdout".into(), Box::new(BufWriter::new(io::stdout())))
        } else if spec.stderr.is_some() {
            ("stderr".into(), Box::new(io::stderr()))
        } else if let Some(f) = &spec.file {
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&f.path)
                .map_err(|e| io::Error::new(e.kind(), format!("cannot open {}: {e}", f.path)))?;
            (format!("file {}", f.path), Box::new(BufWriter::new(file)))
        } else {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!("sink kind {:?} is not supported here", spec.kinds_set()),
            ));
        };
        Ok(Self { name, out })
    }

    /// An in-memory sink, for tests.
    pub fn to_writer(name: &str, out: Box<dyn Write + Send>) -> Self {
        Self {
            name: name.into(),
            out,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn write_line(&mut self, line: &[u8]) -> io::Result<()> {
        self.out.write_all(line)?;
        self.out.write_all(b"\n")
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}
