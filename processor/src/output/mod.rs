//! What leaves the processor: result records, late and invalid records, and
//! the sinks they are written to. Kafka and PostgreSQL sinks need their
//! cargo features; a build without one refuses to open them (see
//! `output::sink::open` and `crate::without`).

pub mod outputs;
pub mod record;
pub mod records;
pub mod sink;
pub mod staged;
pub mod transaction;
