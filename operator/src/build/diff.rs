//! The diff ladder: what a spec change means for the running pods, from
//! nothing to a full upgrade (as in the Flink Kubernetes operator).
//!
//! The pods run the [processor view](processor_view) of the spec, which
//! leaves out what only the operator uses. Changing only those fields
//! never touches the ConfigMap or the StatefulSet, so never rolls a pod.

use eddy_api::{
    spec::{AutoscalingSpec, CheckpointSpec, StorageKind},
    StreamJobSpec,
};

/// The spec as the processor sees it: the fields only the operator uses
/// reset to their defaults.
///
/// Reset: `autoscaling` (all of it), `checkpoints.interval` (the operator
/// schedules checkpoints; pods run with `--external-checkpoints`),
/// `checkpoints.timeout` (the operator abandons slow checkpoints; the
/// processor does not read it), `checkpoints.lagThreshold`,
/// `checkpoints.deleteOnJobDeletion` and `suspend`. Everything else,
/// including `parallelism`, `image`, `resources` and `podTemplate`, is kept.
pub fn processor_view(spec: &StreamJobSpec) -> StreamJobSpec {
    let defaults = CheckpointSpec::default();
    let mut view = spec.clone();
    view.autoscaling = AutoscalingSpec::default();
    view.checkpoints.interval = defaults.interval;
    view.checkpoints.timeout = defaults.timeout;
    view.checkpoints.lag_threshold = defaults.lag_threshold;
    view.checkpoints.delete_on_job_deletion = defaults.delete_on_job_deletion;
    view.suspend = false;
    view.upgrade_mode = Default::default();
    view
}

/// No pods run: `suspend` is true or `parallelism` is 0 (what
/// `kubectl scale --replicas 0` sets).
pub fn suspended(spec: &StreamJobSpec) -> bool {
    spec.suspend || spec.parallelism == 0
}

/// What a change from one spec to the next asks of the controller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// The specs are identical: nothing to do.
    None,
    /// Only operator-side fields changed (autoscaling, checkpoint interval,
    /// timeout or lag threshold, checkpoint deletion): record the new spec
    /// (`status.lastReconciledSpec`) and use it; the children are
    /// byte-identical, no pod restarts.
    Ignore,
    /// Only `parallelism` changed (possibly with operator-side fields):
    /// take a final checkpoint on every pod, compute the new assignment
    /// (`assignment::keep_or_spread`), apply the children; the pods restart
    /// with their new partitions and restore them from that checkpoint.
    Scale,
    /// Anything the pods run changed (image, resources, pod template,
    /// source, window, aggregations, sinks, state, partitions, ...): take a
    /// final checkpoint on every pod, apply the children, the pods roll and
    /// restore from that checkpoint. When [`needs_recreate`] holds, the
    /// StatefulSet must be deleted and created again (its volume claim
    /// templates are immutable).
    Upgrade,
    /// `suspend` turned true: take a final checkpoint on every pod, then
    /// apply (the StatefulSet goes to zero replicas). Other changes made at
    /// the same time take effect on resume.
    Suspend,
    /// `suspend` turned false: apply; the pods start and restore from the
    /// last checkpoint. No final checkpoint: there are no pods.
    Resume,
}

impl Change {
    /// The name status and Events use.
    pub fn name(self) -> &'static str {
        match self {
            Self::None => "None",
            Self::Ignore => "Ignore",
            Self::Scale => "Rescale",
            Self::Upgrade => "Upgrade",
            Self::Suspend => "Suspend",
            Self::Resume => "Resume",
        }
    }

    /// A change that replaces or stops running pods, so needs their state
    /// first.
    pub fn moves_state(self) -> bool {
        matches!(self, Self::Scale | Self::Upgrade | Self::Suspend)
    }
}

/// Classifies the change from `old` (what the pods were last built from)
/// to `new`. While the job stays suspended there are no pods: a Scale or
/// Upgrade then needs no final checkpoint, only an apply.
pub fn ladder(old: &StreamJobSpec, new: &StreamJobSpec) -> Change {
    if old == new {
        return Change::None;
    }
    match (suspended(old), suspended(new)) {
        (false, true) => return Change::Suspend,
        (true, false) => return Change::Resume,
        _ => {}
    }
    let (old, new) = (processor_view(old), processor_view(new));
    if old == new {
        return Change::Ignore;
    }
    let same_but_parallelism = StreamJobSpec {
        parallelism: new.parallelism,
        ..old
    };
    if same_but_parallelism == new {
        Change::Scale
    } else {
        Change::Upgrade
    }
}

/// The StatefulSet's volume claim templates change (storage kind, size or
/// class with a persistent volume on either side): the API server refuses
/// that update, so the controller deletes the StatefulSet and creates it
/// again.
pub fn needs_recreate(old: &StreamJobSpec, new: &StreamJobSpec) -> bool {
    let (old, new) = (&old.state.storage, &new.state.storage);
    let claims = |s: &eddy_api::spec::StateStorage| s.kind == StorageKind::PersistentVolumeClaim;
    (claims(old) || claims(new)) && old != new
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::tests::{built, spec};

    fn changed(f: impl FnOnce(&mut StreamJobSpec)) -> (StreamJobSpec, StreamJobSpec) {
        let old = spec();
        let mut new = old.clone();
        f(&mut new);
        (old, new)
    }

    fn rung(f: impl FnOnce(&mut StreamJobSpec)) -> Change {
        let (old, new) = changed(f);
        ladder(&old, &new)
    }

    fn operator_only(s: &mut StreamJobSpec) {
        s.autoscaling.mode = eddy_api::spec::AutoscalingMode::Apply;
        s.autoscaling.max_replicas = Some(4);
        s.checkpoints.interval = "5m".into();
        s.checkpoints.timeout = "1m".into();
        s.checkpoints.lag_threshold = "20m".into();
        s.checkpoints.delete_on_job_deletion = true;
        s.upgrade_mode = eddy_api::spec::UpgradeMode::LastState;
    }

    #[test]
    fn identical_is_none() {
        assert_eq!(rung(|_| {}), Change::None);
    }

    #[test]
    fn suspend_and_resume_win_over_other_changes() {
        assert_eq!(rung(|s| s.suspend = true), Change::Suspend);
        assert_eq!(
            rung(|s| {
                s.suspend = true;
                s.image = Some("new:2".into());
            }),
            Change::Suspend
        );
        let mut old = spec();
        old.suspend = true;
        let mut new = old.clone();
        new.suspend = false;
        assert_eq!(ladder(&old, &new), Change::Resume);
    }

    #[test]
    fn operator_only_fields_are_ignored() {
        assert_eq!(rung(operator_only), Change::Ignore);
        assert_eq!(
            rung(|s| s.checkpoints.timeout = "30s".into()),
            Change::Ignore
        );
    }

    #[test]
    fn parallelism_alone_is_a_scale() {
        assert_eq!(rung(|s| s.parallelism = 4), Change::Scale);
        assert_eq!(
            rung(|s| {
                s.parallelism = 4;
                operator_only(s);
            }),
            Change::Scale
        );
    }

    type Edit = Box<dyn FnOnce(&mut StreamJobSpec)>;

    #[test]
    fn anything_the_pods_run_is_an_upgrade() {
        let cases: Vec<(&str, Edit)> = vec![
            ("image", Box::new(|s| s.image = Some("new:2".into()))),
            ("partitions", Box::new(|s| s.partitions = 16)),
            ("key", Box::new(|s| s.key_field = "merchant".into())),
            ("state", Box::new(|s| s.state.memory_budget = "1Gi".into())),
            ("store", Box::new(|s| s.checkpoints.retain = 5)),
            ("lateness", Box::new(|s| s.allowed_lateness = "1m".into())),
            ("sinks", Box::new(|s| s.sinks.push(s.sinks[0].clone()))),
            (
                "podTemplate",
                Box::new(|s| s.pod_template = Some(serde_json::json!({"spec": {}}))),
            ),
            (
                "parallelism and image",
                Box::new(|s| {
                    s.parallelism = 2;
                    s.image = Some("new:2".into());
                }),
            ),
        ];
        for (what, f) in cases {
            assert_eq!(rung(f), Change::Upgrade, "{what}");
        }
    }

    #[test]
    fn an_ignored_change_renders_byte_identical_children() {
        let (old, new) = changed(operator_only);
        assert_eq!(ladder(&old, &new), Change::Ignore);
        let (a, b) = (built(old), built(new));
        let yaml = |v: &dyn erased::Yaml| v.yaml();
        assert_eq!(yaml(&a.config_map), yaml(&b.config_map));
        assert_eq!(yaml(&a.stateful_set), yaml(&b.stateful_set));
        // And the check can fail: a real change shows up.
        let (old, new) = changed(|s| s.key_field = "merchant".into());
        assert_ne!(yaml(&built(old).config_map), yaml(&built(new).config_map));
    }

    #[test]
    fn the_view_resets_only_operator_fields() {
        let (old, new) = changed(operator_only);
        assert_ne!(old, new);
        assert_eq!(processor_view(&old), processor_view(&new));
        assert_eq!(processor_view(&old), old);
        let (old, new) = changed(|s| s.hot_keys.top_k = 3);
        assert_ne!(processor_view(&old), processor_view(&new));
    }

    #[test]
    fn recreate_only_when_claims_change() {
        let pvc = |s: &mut StreamJobSpec| s.state.storage.kind = StorageKind::PersistentVolumeClaim;
        let (old, new) = changed(pvc);
        assert!(needs_recreate(&old, &new));
        let (old, new) = changed(|s| s.state.storage.size = "1Gi".into());
        assert!(!needs_recreate(&old, &new), "emptyDir size is in the pod");
        let mut old = spec();
        pvc(&mut old);
        let mut new = old.clone();
        new.state.storage.storage_class_name = Some("fast".into());
        assert!(needs_recreate(&old, &new));
        assert!(!needs_recreate(&old, &old));
    }

    mod erased {
        pub trait Yaml {
            fn yaml(&self) -> String;
        }
        impl<T: serde::Serialize> Yaml for T {
            fn yaml(&self) -> String {
                serde_yaml_ng::to_string(self).unwrap()
            }
        }
    }
}
