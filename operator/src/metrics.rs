//! The operator's own Prometheus metrics: reconciles, failures by error
//! kind (a fixed set of short names, never error text), and durations.

use std::time::Instant;

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub error: &'static str,
}

/// A job, for per-job figures (names are bounded by the jobs that exist).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct JobLabels {
    pub namespace: String,
    pub job: String,
}

/// A change that moves state, of one job.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TransitionLabels {
    pub namespace: String,
    pub job: String,
    /// `Rescale`, `Upgrade` or `Suspend`.
    pub change: &'static str,
}

/// Counters and histograms, registered in one registry.
pub struct Metrics {
    pub reconciles: Counter,
    pub failures: Family<ErrorLabels, Counter>,
    pub duration: Histogram,
    pub checkpoints_triggered: Family<JobLabels, Counter>,
    pub checkpoints_failed: Family<JobLabels, Counter>,
    /// Changes that moved state, started.
    pub transitions: Family<TransitionLabels, Counter>,
    /// Seconds since each job's last completed checkpoint (kept out of the
    /// job's status, where it would change on every reconcile).
    pub checkpoint_lag: Family<JobLabels, Gauge>,
    /// Status writes, to see that an idle job causes few.
    pub status_writes: Counter,
    pub registry: Registry,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("eddy_operator");
        let reconciles = Counter::default();
        let failures = Family::<ErrorLabels, Counter>::default();
        let duration = Histogram::new([0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]);
        let checkpoints_triggered = Family::<JobLabels, Counter>::default();
        let checkpoints_failed = Family::<JobLabels, Counter>::default();
        let transitions = Family::<TransitionLabels, Counter>::default();
        registry.register(
            "transitions",
            "Changes that moved state (rescale, upgrade, suspend) started, per job",
            transitions.clone(),
        );
        registry.register("reconciles", "Reconciles run", reconciles.clone());
        registry.register(
            "reconcile_failures",
            "Reconciles that failed, by error kind",
            failures.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "How long reconciles take",
            duration.clone(),
        );
        registry.register(
            "checkpoints_triggered",
            "Checkpoint rounds the operator started, per job",
            checkpoints_triggered.clone(),
        );
        registry.register(
            "checkpoints_failed",
            "Checkpoint rounds that failed or timed out, per job",
            checkpoints_failed.clone(),
        );
        let checkpoint_lag = Family::<JobLabels, Gauge>::default();
        registry.register(
            "checkpoint_lag_seconds",
            "Seconds since the job's last checkpoint completed on every pod",
            checkpoint_lag.clone(),
        );
        let status_writes = Counter::default();
        registry.register(
            "status_writes",
            "StreamJob status updates the operator wrote",
            status_writes.clone(),
        );
        Self {
            transitions,
            checkpoint_lag,
            status_writes,
            reconciles,
            failures,
            duration,
            checkpoints_triggered,
            checkpoints_failed,
            registry,
        }
    }
}

impl Metrics {
    /// Counts a reconcile and measures it until the guard drops.
    pub fn measure(&self) -> Measure<'_> {
        self.reconciles.inc();
        Measure {
            metrics: self,
            start: Instant::now(),
        }
    }

    /// Counts a failed reconcile by its error kind.
    pub fn failed(&self, error: &'static str) {
        self.failures.get_or_create(&ErrorLabels { error }).inc();
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// Observes a reconcile's duration when dropped.
pub struct Measure<'a> {
    metrics: &'a Metrics,
    start: Instant,
}

impl Drop for Measure<'_> {
    fn drop(&mut self) {
        self.metrics
            .duration
            .observe(self.start.elapsed().as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn failures_are_labelled_by_kind_and_durations_observed() {
        let m = super::Metrics::default();
        drop(m.measure());
        m.failed("KubeApi");
        m.failed("KubeApi");
        let text = m.render();
        assert!(text.contains("eddy_operator_reconciles_total 1"), "{text}");
        assert!(
            text.contains("eddy_operator_reconcile_failures_total{error=\"KubeApi\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("eddy_operator_reconcile_duration_seconds_count 1"),
            "{text}"
        );
    }

    #[test]
    fn every_documented_family_is_exported_and_nothing_else() {
        let m = super::Metrics::default();
        // Families are exported once they have a series.
        m.failed("KubeApi");
        let job = super::JobLabels {
            namespace: "shop".into(),
            job: "orders".into(),
        };
        m.checkpoints_triggered.get_or_create(&job).inc();
        m.checkpoints_failed.get_or_create(&job).inc();
        m.checkpoint_lag.get_or_create(&job).set(3);
        m.transitions
            .get_or_create(&super::TransitionLabels {
                namespace: "shop".into(),
                job: "orders".into(),
                change: "Upgrade",
            })
            .inc();
        let text = m.render();
        let exported: std::collections::BTreeSet<String> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .map(|l| {
                let (name, kind) = l.split_once(' ').unwrap();
                let total = if kind == "counter" { "_total" } else { "" };
                format!("{name}{total} {kind}")
            })
            .collect();
        let doc = include_str!("../../docs/metrics.md");
        let documented: std::collections::BTreeSet<String> = doc
            .split("## Operator")
            .nth(1)
            .unwrap()
            .lines()
            .filter_map(|l| {
                let cells: Vec<&str> = l.split('|').map(str::trim).collect();
                let name = cells.get(1)?.strip_prefix('`')?.strip_suffix('`')?;
                Some(format!("{name} {}", cells.get(2)?))
            })
            .collect();
        assert_eq!(exported, documented, "{text}");
    }
}
