//! What leaves the processor: result records, late and invalid records, and
//! the sinks they are written to. Kafka and PostgreSQL sinks need their
//! cargo features; a build without one has a stand-in that refuses to open
//! (see `crate::without`).

#[cfg(feature = "kafka")]
pub mod kafka;
#[cfg(not(feature = "kafka"))]
pub use crate::without::kafka;
pub mod outputs;
#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(not(feature = "postgres"))]
pub use crate::without::postgres;
pub mod record;
pub mod records;
pub mod sink;
pub mod staged;
pub mod transaction;
