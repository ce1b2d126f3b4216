//! What leaves the processor: result records, late and invalid records, and
//! the sinks they are written to.

pub mod kafka;
pub mod outputs;
pub mod postgres;
pub mod record;
pub mod records;
pub mod sink;
pub mod transaction;
