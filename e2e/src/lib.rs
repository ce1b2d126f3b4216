//! End-to-end tests of Eddy, in `tests/`: `chart.rs` checks the Helm chart
//! (lint, strict server and offline schema validation, its RBAC),
//! `monitoring.rs` its optional PodMonitors, alerts (with promtool and the
//! rule unit tests of `monitoring/`) and Grafana dashboard, and
//! `cluster.rs` installs it and runs a Kafka → PostgreSQL job through pod
//! kills, rescales, an upgrade with the operator killed in its middle,
//! suspend and resume, checking the table row by row. They run on the local
//! control plane of `scripts/test-servers`, or on a kind cluster made by
//! `kind/up.sh`.
//!
//! The crate has no library code of its own; it holds the tests.
