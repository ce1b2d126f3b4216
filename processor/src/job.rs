//! From a validated StreamJob to what this processor runs. Features the spec
//! allows but this version does not run yet are refused here, all at once,
//! with the field that asks for them: never silently ignored.

use eddy_api::{
    spec::{AggregateOp, LateDataPolicy, SinkSpec},
    StreamJob,
};

use crate::{
    engine::{aggregate::Aggregate, skew::SkewGuard, EngineConfig},
    event::Extractor,
    output::record::JobId,
    source::generator::GeneratorConfig,
};

/// Everything the run loop needs, resolved.
#[derive(Clone, Debug)]
pub struct JobPlan {
    pub id: JobId,
    pub engine: EngineConfig,
    pub extractor: Extractor,
    pub skew: SkewGuard,
    pub generator: GeneratorConfig,
    pub sinks: Vec<SinkSpec>,
    pub late_policy: LateDataPolicy,
    pub late_output: SinkSpec,
    pub invalid_output: SinkSpec,
}

/// Why a job cannot run here.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("this eddy-processor cannot run the job yet:\n{}", .0.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
    Unsupported(Vec<String>),
    #[error("{0}")]
    Value(#[from] anyhow::Error),
}

/// Plans a job whose spec has passed `eddy_api::validate`. `now_ms` is the
/// wall-clock start (the generator's first timestamp in realtime mode).
pub fn plan(job: &StreamJob, now_ms: i64) -> Result<JobPlan, PlanError> {
    let spec = &job.spec;
    let mut unsupported = Vec::new();
    let mut refuse = |path: &str, what: &str| {
        unsupported.push(format!("{path}: {what} is not supported yet"));
    };

    for kind in spec.source.kinds_set() {
        if kind != "generator" {
            refuse(
                &format!("spec.source.{kind}"),
                &format!("the {kind} source"),
            );
        }
    }
    for kind in spec.window.kinds_set() {
        if kind != "tumbling" {
            refuse(
                &format!("spec.window.{kind}"),
                &format!("a {kind} window (use tumbling)"),
            );
        }
    }
    let lateness = spec.allowed_lateness.parse().map_err(anyhow::Error::from)?;
    if !lateness.is_zero() {
        refuse(
            "spec.allowedLateness",
            "allowed lateness above 0 (late results with revisions)",
        );
    }
    let mut aggregates = Vec::new();
    for (i, a) in spec.aggregations.iter().enumerate() {
        let name = a.output_name();
        match (a.op, &a.field) {
            (AggregateOp::Count, _) => aggregates.push((name, Aggregate::Count)),
            (AggregateOp::Sum, Some(field)) => aggregates.push((
                name,
                Aggregate::Sum {
                    field: field.clone(),
                },
            )),
            (op, _) => refuse(
                &format!("spec.aggregations[{i}].op"),
                &format!("{} (use count or sum)", op.as_str()),
            ),
        }
    }
    let outputs = spec
        .sinks
        .iter()
        .enumerate()
        .map(|(i, s)| (format!("spec.sinks[{i}]"), s))
        .chain([
            ("spec.lateOutput".to_string(), &spec.late_output),
            ("spec.invalidOutput".to_string(), &spec.invalid_output),
        ]);
    for (path, sink) in outputs {
        for kind in sink.kinds_set() {
            if kind == "kafka" || kind == "postgres" {
                refuse(&format!("{path}.{kind}"), &format!("the {kind} sink"));
            }
        }
    }
    if spec.hot_keys.two_phase {
        refuse("spec.hotKeys.twoPhase", "two-phase aggregation");
    }
    let Some(generator) = &spec.source.generator else {
        return Err(PlanError::Unsupported(unsupported));
    };
    if !unsupported.is_empty() {
        return Err(PlanError::Unsupported(unsupported));
    }

    let t = &spec.event_time;
    let ms = |d: std::time::Duration| d.as_millis().min(i64::MAX as u128) as i64;
    let window = spec
        .window
        .tumbling
        .as_ref()
        .map(|w| w.size.parse())
        .transpose()
        .map_err(anyhow::Error::from)?
        .unwrap_or_default();
    Ok(JobPlan {
        id: JobId {
            namespace: job.metadata.namespace.clone().unwrap_or_default(),
            name: job.metadata.name.clone().unwrap_or_else(|| "job".into()),
        },
        engine: EngineConfig {
            partitions: spec.partitions,
            window_size_ms: ms(window).max(1),
            max_out_of_orderness_ms: ms(t
                .max_out_of_orderness
                .parse()
                .map_err(anyhow::Error::from)?),
            aggregates,
        },
        extractor: Extractor {
            key_field: spec.key_field.clone(),
            time_field: t.field.clone(),
            format: t.format,
        },
        skew: SkewGuard {
            max_future_ms: ms(t.max_future_skew.parse().map_err(anyhow::Error::from)?),
            max_past_ms: match &t.max_past_skew {
                Some(d) => Some(ms(d.parse().map_err(anyhow::Error::from)?)),
                None => None,
            },
            policy: t.skew_policy,
        },
        generator: GeneratorConfig::from_spec(
            generator,
            &spec.key_field,
            &t.field,
            t.format,
            now_ms,
        )?,
        sinks: spec.sinks.clone(),
        late_policy: spec.late_data,
        late_output: spec.late_output.clone(),
        invalid_output: spec.invalid_output.clone(),
    })
}
