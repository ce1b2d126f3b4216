use k8s_openapi::api::core::v1::PodTemplateSpec;

use crate::spec::StreamJobSpec;

use super::Problems;

pub(super) fn check(spec: &StreamJobSpec, p: &mut Problems) {
    state(spec, p);
    checkpoints(spec, p);
    parallelism(spec, p);
    if let Some(image) = &spec.image {
        p.non_empty("spec.image", image, "registry.example/eddy-processor:0.1.0");
    }
    if let Some(template) = &spec.pod_template {
        if let Err(e) = serde_json::from_value::<PodTemplateSpec>(template.clone()) {
            p.add(
                "spec.podTemplate",
                format!(
                    "is not a pod template: {e}; write it as a PodTemplateSpec (metadata, spec)"
                ),
            );
        }
    }
}

fn state(spec: &StreamJobSpec, p: &mut Problems) {
    p.positive_duration("spec.state.ttl", &spec.state.ttl);
    match spec.state.memory_budget.parse() {
        Ok(bytes) if bytes < 32 << 20 => p.add(
            "spec.state.memoryBudget",
            format!(
                "{} is too small for RocksDB; give at least 32Mi",
                spec.state.memory_budget
            ),
        ),
        Ok(_) => {}
        Err(e) => p.add("spec.state.memoryBudget", e.to_string()),
    }
    if let Err(e) = spec.state.storage.size.parse() {
        p.add("spec.state.storage.size", e.to_string());
    }
}

fn checkpoints(spec: &StreamJobSpec, p: &mut Problems) {
    let c = &spec.checkpoints;
    p.positive_duration("spec.checkpoints.interval", &c.interval);
    p.positive_duration("spec.checkpoints.timeout", &c.timeout);
    p.positive_duration("spec.checkpoints.lagThreshold", &c.lag_threshold);
    if c.retain == 0 {
        p.add("spec.checkpoints.retain", "must keep at least 1 checkpoint");
    }
    if let Some(rest) = c.store.strip_prefix("s3://") {
        let bucket = rest.split('/').next().unwrap_or_default();
        if bucket.is_empty() {
            p.add(
                "spec.checkpoints.store",
                "names no bucket; write s3://bucket/prefix",
            );
        }
    } else if let Some(path) = c.store.strip_prefix("file://") {
        if path.is_empty() {
            p.add(
                "spec.checkpoints.store",
                "names no directory; write file://path/to/dir",
            );
        }
    } else {
        p.add(
            "spec.checkpoints.store",
            format!(
                "{:?} is not a store URL; write s3://bucket/prefix or file://dir",
                c.store
            ),
        );
    }
    if let Some(endpoint) = &c.endpoint {
        if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
            p.add(
                "spec.checkpoints.endpoint",
                format!("{endpoint:?} is not an http(s) URL; write e.g. http://minio:9000"),
            );
        }
    }
    if let Some(secret) = &c.credentials_secret {
        p.non_empty(
            "spec.checkpoints.credentialsSecret.name",
            &secret.name,
            "s3-credentials",
        );
    }
    if let Some(from) = &c.restore_from {
        let parts: Vec<&str> = from.job.split('/').collect();
        let named = |s: &str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        };
        if parts.len() != 2 || !parts.iter().all(|s| named(s)) {
            p.add(
                "spec.checkpoints.restoreFrom.job",
                format!(
                    "{:?} does not name a job; write <namespace>/<name>, e.g. default/clicks",
                    from.job
                ),
            );
        }
        if from.checkpoint_id == Some(0) {
            p.add(
                "spec.checkpoints.restoreFrom.checkpointId",
                "checkpoint ids start at 1; leave it out for the newest",
            );
        }
    }
}

fn parallelism(spec: &StreamJobSpec, p: &mut Problems) {
    if spec.partitions == 0 {
        p.add("spec.partitions", "must be at least 1");
    }
    if spec.parallelism > spec.partitions {
        p.add(
            "spec.parallelism",
            format!(
                "{} pods for {} partitions would leave pods idle; lower parallelism to at most \
                 {} or raise partitions",
                spec.parallelism, spec.partitions, spec.partitions
            ),
        );
    }
    if let Some(w) = spec.workers.filter(|w| !(1..=256).contains(w)) {
        p.add(
            "spec.workers",
            format!("{w} worker threads: give 1 to 256, or leave it out for one per CPU"),
        );
    }
    let a = &spec.autoscaling;
    if a.min_replicas == 0 {
        p.add("spec.autoscaling.minReplicas", "must be at least 1");
    }
    let max = a.max_replicas.unwrap_or(spec.partitions);
    if a.max_replicas == Some(0) {
        p.add("spec.autoscaling.maxReplicas", "must be at least 1");
    } else if a.min_replicas > max {
        p.add(
            "spec.autoscaling.minReplicas",
            format!(
                "minReplicas {} is above maxReplicas {max}; lower it",
                a.min_replicas
            ),
        );
    }
    if max > spec.partitions {
        p.add(
            "spec.autoscaling.maxReplicas",
            format!(
                "{max} exceeds the {} partitions; a pod needs at least one partition",
                spec.partitions
            ),
        );
    }
    p.positive_duration(
        "spec.autoscaling.checkpointLagThreshold",
        &a.checkpoint_lag_threshold,
    );
    p.share("spec.autoscaling.hotKeyShare", a.hot_key_share);
    p.share("spec.autoscaling.hotPartitionShare", a.hot_partition_share);
    p.duration(
        "spec.autoscaling.stabilizationWindow",
        &a.stabilization_window,
    );
    p.duration("spec.autoscaling.cooldown", &a.cooldown);
    p.positive_duration("spec.autoscaling.scaleInIdleAfter", &a.scale_in_idle_after);
    if !(a.target_utilization > 0.0 && a.target_utilization <= 1.0) {
        p.add(
            "spec.autoscaling.targetUtilization",
            format!(
                "{} is not a share of a pod's time: give more than 0 and at most 1 (0.7 leaves 30% headroom)",
                a.target_utilization
            ),
        );
    }
    p.positive_duration("spec.autoscaling.catchUpWithin", &a.catch_up_within);
    p.positive_duration("spec.autoscaling.metricsWindow", &a.metrics_window);
    if spec.hot_keys.salt_buckets < 2 {
        p.add("spec.hotKeys.saltBuckets", "must be at least 2");
    }
    if spec.hot_keys.top_k == 0 {
        p.add("spec.hotKeys.topK", "must be at least 1");
    }
    two_phase(spec, p);
}

/// What a two-phase job needs: windows whose partials merge by bounds, and
/// a Kafka cluster for the partials. (Every aggregation merges: counts and
/// sums add, minima and maxima compare, first and last compare times,
/// distinct counts and quantiles merge their sketches.)
fn two_phase(spec: &StreamJobSpec, p: &mut Problems) {
    if !spec.hot_keys.two_phase {
        return;
    }
    if spec.window.session.is_some() {
        p.add(
            "spec.window.session",
            "two-phase aggregation merges windows with fixed bounds, and a key's sessions \
             depend on all its events: use tumbling, sliding or calendar windows, or set \
             spec.hotKeys.twoPhase to false",
        );
    }
    let partials = spec.hot_keys.partials.clone().unwrap_or_default();
    if partials.brokers.is_none() && spec.source.kafka.is_none() {
        p.add(
            "spec.hotKeys.partials.brokers",
            "two-phase aggregation sends partials over Kafka and the source is not Kafka: \
             name the brokers",
        );
    }
    if let Some(topic) = &partials.topic {
        let legal = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
        if topic.is_empty() || topic.len() > 249 || !topic.chars().all(legal) {
            p.add(
                "spec.hotKeys.partials.topic",
                format!(
                    "{topic:?} is not a Kafka topic name: use letters, digits, '.', '_' and '-'"
                ),
            );
        }
    }
}
