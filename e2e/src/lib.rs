//! End-to-end tests of Eddy on a kind cluster: install the chart, deploy
//! MinIO and a Kafka broker, apply a StreamJob, produce data, kill pods,
//! rescale, and check the sink holds exactly the expected results.
//!
//! The suite arrives with the operator and the chart; this crate holds its
//! place in the workspace so the layout is stable.
