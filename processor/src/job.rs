//! From a validated StreamJob to what this processor runs. Features the spec
//! allows but this version does not run yet are refused here, all at once,
//! with the field that asks for them: never silently ignored.

use std::path::PathBuf;

use eddy_api::{
    spec::{AggregateOp, AggregationSpec, LateDataPolicy, SinkSpec},
    HumanDuration, StreamJob,
};

pub use crate::partials::Stage;
use crate::{
    engine::{aggregate::Aggregate, skew::SkewGuard, window::Assigner, EngineConfig, WindowKind},
    event::Extractor,
    output::{
        record::JobId,
        transaction::{txn_plan, TxnPlan},
    },
    source::{
        file::FileConfig, generator::GeneratorConfig, http::HttpConfig, json::Wanted,
        kafka::KafkaConfig,
    },
};

pub use crate::without::unbuilt;

/// Longest record a file source accepts.
pub const MAX_RECORD_BYTES: usize = 1 << 20;

/// Which source to run, resolved.
#[derive(Clone, Debug)]
pub enum SourcePlan {
    Generator(GeneratorConfig),
    File(FileConfig),
    Kafka(KafkaConfig),
    Http(HttpConfig),
}

/// Where and how often checkpoints are taken.
#[derive(Clone, Debug)]
pub struct CheckpointPlan {
    pub url: String,
    /// The job's directory under the store URL: `<namespace>/<name>`.
    pub job_path: String,
    pub endpoint: Option<String>,
    pub region: String,
    pub path_style: bool,
    /// Time between periodic checkpoints; `None` when only the admin API
    /// (the operator) triggers them.
    pub interval: Option<std::time::Duration>,
    pub retain: usize,
    /// The state epoch checkpoints are taken in and restored from (see
    /// `checkpoint::Manifest::epoch`); 0 until a stateless upgrade.
    pub epoch: u64,
    /// The version of the partition assignment this processor runs under,
    /// recorded in its checkpoints; raised by live moves (0 outside a
    /// cluster).
    pub assignment: u64,
    /// Another job's checkpoint to start from while this one has none of
    /// its own (`spec.checkpoints.restoreFrom`).
    pub restore_from: Option<Seed>,
}

/// Another job's checkpoint, in the same store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seed {
    /// `<namespace>/<name>` of that job.
    pub job_path: String,
    /// Its checkpoint; the newest complete one when `None`.
    pub id: Option<u64>,
}

impl CheckpointPlan {
    /// Opens the store (S3 credentials from the environment).
    pub fn store(&self) -> anyhow::Result<crate::checkpoint::Store> {
        let s3 = if self.url.starts_with("s3://") {
            Some(crate::checkpoint::store::S3Settings::from_env(
                self.endpoint.clone(),
                &self.region,
                self.path_style,
            )?)
        } else {
            None
        };
        crate::checkpoint::Store::open(&self.url, &self.job_path, s3)
    }

    /// The store of the job `restoreFrom` names, if any.
    pub fn seed_store(&self) -> anyhow::Result<Option<(crate::checkpoint::Store, &Seed)>> {
        let Some(seed) = &self.restore_from else {
            return Ok(None);
        };
        let other = Self {
            job_path: seed.job_path.clone(),
            ..self.clone()
        };
        Ok(Some((other.store()?, seed)))
    }
}

/// Everything the run loop needs, resolved.
#[derive(Clone, Debug)]
pub struct JobPlan {
    pub id: JobId,
    pub engine: EngineConfig,
    /// Partitions of the whole job (the hash modulus).
    pub partition_count: u32,
    pub memory_budget: u64,
    /// Worker threads, each running some of the owned partitions (at least
    /// one, at most one per partition).
    pub workers: usize,
    pub extractor: Extractor,
    pub skew: SkewGuard,
    pub source: SourcePlan,
    pub sinks: Vec<SinkSpec>,
    pub late_policy: LateDataPolicy,
    pub late_output: SinkSpec,
    pub invalid_output: SinkSpec,
    pub checkpoints: CheckpointPlan,
    /// How transactional Kafka outputs commit, if there are any.
    pub transaction: Option<TxnPlan>,
    /// At the end of a finite input, keep serving (checkpoints included)
    /// and report `finished` on the admin API instead of exiting and
    /// clearing the checkpoints: in a cluster a pod that exits is started
    /// again, and the job must not run twice.
    pub hold_when_finished: bool,
    /// The whole job, or one stage of a two-phase job.
    pub stage: Stage,
    /// Where a two-phase job's partials travel (its stages only).
    pub partials: Option<eddy_api::spec::ResolvedPartials>,
    /// In the first stage: the salt buckets each key spreads over.
    pub salt_buckets: Option<u32>,
}

/// Why a job cannot run here.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("this eddy-processor cannot run the job:\n{}", .0.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
    Unsupported(Vec<String>),
    #[error("{0}")]
    Value(#[from] anyhow::Error),
}

/// A Secret reference still in the spec: `secrets::resolve` must run first.
fn unresolved(problems: &mut Vec<String>, path: &str) {
    problems.push(format!(
        "{path}: the Secret's values were not read (secrets::resolve runs before planning)"
    ));
}

/// Worker threads for `owned` partitions: as the spec says, else one;
/// never more than the partitions, never none.
///
/// One, not one per CPU, by default for now: records are still read and
/// parsed on the run loop's thread, so JSON input gains little from a
/// second worker (README, the `jsonx2` row), and with several workers
/// lateness is judged per worker and their results interleave by timing.
fn workers(spec: Option<u32>, owned: usize) -> usize {
    (spec.unwrap_or(1) as usize).min(owned).max(1)
}

fn ms(d: &HumanDuration) -> Result<i64, PlanError> {
    let d = d.parse().map_err(anyhow::Error::from)?;
    Ok(d.as_millis().min(i64::MAX as u128 / 4) as i64)
}

/// Plans a job whose spec has passed `eddy_api::validate`. `now_ms` is the
/// wall-clock start (the generator's first timestamp in realtime mode);
/// `owned` the partitions this processor runs (all when `None`).
/// Where a two-phase job's partials travel, as its stages resolve it
/// (`None`: one phase, or no brokers).
pub fn partials_of(job: &StreamJob) -> Option<eddy_api::spec::ResolvedPartials> {
    let id = job_id(job);
    job.spec.partials(&id.namespace, &id.name)
}

fn job_id(job: &StreamJob) -> JobId {
    JobId {
        namespace: job.metadata.namespace.clone().unwrap_or_default(),
        name: job.metadata.name.clone().unwrap_or_else(|| "job".into()),
    }
}

/// Where the checkpoints of a job's `stage` live: the job's directory, and
/// beside it `<name>@partial` and `<name>@merge` for the stages of a
/// two-phase job (each stage has partitions of the same numbers).
pub fn stage_path(job: &StreamJob, stage: Stage) -> String {
    let path = job_id(job).path();
    match stage {
        Stage::Single => path,
        other => format!("{path}@{}", other.name()),
    }
}

/// Where the job's checkpoints live and how often they are taken: all a
/// command that only touches the checkpoints needs, with no Secrets.
pub fn checkpoint_plan(job: &StreamJob) -> anyhow::Result<CheckpointPlan> {
    checkpoint_plan_of(job, Stage::Single)
}

/// [`checkpoint_plan`] of one stage.
pub fn checkpoint_plan_of(job: &StreamJob, stage: Stage) -> anyhow::Result<CheckpointPlan> {
    let c = &job.spec.checkpoints;
    Ok(CheckpointPlan {
        url: c.store.clone(),
        job_path: stage_path(job, stage),
        endpoint: c.endpoint.clone(),
        region: c.region.clone(),
        path_style: c.path_style,
        interval: Some(c.interval.parse().map_err(anyhow::Error::from)?),
        retain: c.retain as usize,
        epoch: 0,
        assignment: 0,
        restore_from: c.restore_from.as_ref().map(|r| Seed {
            job_path: r.job.clone(),
            id: r.checkpoint_id,
        }),
    })
}

/// Plans a one-stage job (see [`plans`] for any job).
pub fn plan(job: &StreamJob, now_ms: i64, owned: Option<Vec<u32>>) -> Result<JobPlan, PlanError> {
    if job.spec.hot_keys.two_phase {
        return Err(PlanError::Unsupported(vec![
            "spec.hotKeys.twoPhase: a two-phase job has a plan per stage".into(),
        ]));
    }
    plan_stage(job, now_ms, owned, Stage::Single)
}

/// The plans of what a processor runs of a job: the job, or for a
/// two-phase job both stages (`stage`, what `--stage` asked for, `None`)
/// or the one `stage` names (`partial` or `merge`).
pub fn plans(
    job: &StreamJob,
    now_ms: i64,
    owned: Option<Vec<u32>>,
    stage: Option<&str>,
) -> Result<Vec<JobPlan>, PlanError> {
    let merge = Stage::Merge {
        origins: job.spec.partitions,
    };
    let stages = match (stage, job.spec.hot_keys.two_phase) {
        (None, false) => vec![Stage::Single],
        (None, true) => vec![Stage::Partial, merge],
        (Some(_), false) => {
            return Err(PlanError::Unsupported(vec![
                "--stage: the job runs in one stage (spec.hotKeys.twoPhase is false)".into(),
            ]))
        }
        (Some("partial"), true) => vec![Stage::Partial],
        (Some("merge"), true) => vec![merge],
        (Some(other), true) => {
            return Err(PlanError::Unsupported(vec![format!(
                "--stage {other}: give partial or merge"
            )]))
        }
    };
    stages
        .into_iter()
        .map(|stage| plan_stage(job, now_ms, owned.clone(), stage))
        .collect()
}

/// [`plan`] for `stage` of the job.
fn plan_stage(
    job: &StreamJob,
    now_ms: i64,
    owned: Option<Vec<u32>>,
    stage: Stage,
) -> Result<JobPlan, PlanError> {
    let spec = &job.spec;
    let mut unsupported = Vec::new();
    let id = job_id(job);
    let partials = partials_of(job);
    if stage != Stage::Single && partials.is_none() {
        unsupported.push("spec.hotKeys.partials.brokers: no Kafka brokers for the partials".into());
    }
    let refuse = |unsupported: &mut Vec<String>, path: &str, what: &str| {
        unsupported.push(format!("{path}: {what} is not supported yet"));
    };
    for (path, sink) in spec.outputs() {
        if let Some(k) = &sink.kafka {
            if k.properties_secret.is_some() {
                unresolved(&mut unsupported, &format!("{path}.kafka.propertiesSecret"));
            }
        }
    }
    unsupported.extend(crate::without::unbuilt(spec));
    if stage != Stage::Single && cfg!(not(feature = "kafka")) {
        refuse(
            &mut unsupported,
            "spec.hotKeys.twoPhase",
            "two-phase aggregation in a build without Kafka",
        );
    }
    let owned = owned.unwrap_or_else(|| (0..spec.partitions).collect());
    if let Some(p) = owned.iter().find(|p| **p >= spec.partitions) {
        unsupported.push(format!(
            "--partitions: partition {p} does not exist (the job has {})",
            spec.partitions
        ));
    }
    let checkpoints = checkpoint_plan_of(job, stage)?;
    let interval_ms = checkpoints.interval.map_or(0, |i| i.as_millis() as u64);
    // The first stage writes no results: only its late and invalid
    // outputs may be transactional, under transactional ids of its own.
    let (txn_id, txn_spec) = match stage {
        Stage::Partial => {
            let mut spec = spec.clone();
            spec.sinks.clear();
            let id = JobId {
                name: format!("{}.partial", id.name),
                ..id.clone()
            };
            (id, std::borrow::Cow::Owned(spec))
        }
        _ => (id.clone(), std::borrow::Cow::Borrowed(spec)),
    };
    let transaction =
        txn_plan(&txn_id, &txn_spec, &owned, interval_ms).unwrap_or_else(|problems| {
            unsupported.extend(problems);
            None
        });
    if !unsupported.is_empty() {
        return Err(PlanError::Unsupported(unsupported));
    }

    let memory_budget: u64 = spec
        .state
        .memory_budget
        .parse()
        .map_err(anyhow::Error::from)?;
    let t = &spec.event_time;
    // What the job reads of a JSON record; sources skip the rest.
    let fields = Wanted::new([spec.key_field.clone(), t.field.clone()].into_iter().chain(
        spec.aggregations.iter().filter_map(|a| {
            let (_, aggregate) = aggregate(a);
            aggregate.field().map(str::to_owned)
        }),
    ));
    let source = if let (Stage::Merge { .. }, Some(p)) = (stage, &partials) {
        SourcePlan::Kafka(KafkaConfig {
            brokers: p.brokers.clone(),
            topic: p.topic.clone(),
            partitions: owned.iter().map(|p| *p as i32).collect(),
            start_from: eddy_api::spec::StartFrom::Earliest,
            key_into: None,
            timestamp_into: None,
            properties: p.properties.clone(),
            stop_at_end: false,
            prefetch_kbytes: crate::source::kafka::prefetch_kbytes(memory_budget, owned.len()),
            fields,
            partials: true,
        })
    } else if let Some(g) = &spec.source.generator {
        SourcePlan::Generator(GeneratorConfig::from_spec(
            g,
            &spec.key_field,
            &t.field,
            t.format,
            now_ms,
        )?)
    } else if let Some(f) = &spec.source.file {
        SourcePlan::File(FileConfig {
            paths: f.paths.iter().map(PathBuf::from).collect(),
            partition_field: f.partition_field.clone(),
            ingestion_time_field: f.ingestion_time_field.clone(),
            time_format: t.format,
            fields,
            partitions: spec.partitions,
            max_record_bytes: MAX_RECORD_BYTES,
        })
    } else if let Some(h) = &spec.source.http {
        let ip: std::net::IpAddr = h.bind.parse().map_err(anyhow::Error::from)?;
        SourcePlan::Http(HttpConfig {
            addr: std::net::SocketAddr::new(ip, h.port),
            max_body: h.max_body.parse().map_err(anyhow::Error::from)? as usize,
            buffer_events: h.buffer_events as usize,
            fields,
        })
    } else if let Some(k) = &spec.source.kafka {
        if k.properties_secret.is_some() {
            let mut problems = Vec::new();
            unresolved(&mut problems, "spec.source.kafka.propertiesSecret");
            return Err(PlanError::Unsupported(problems));
        }
        SourcePlan::Kafka(KafkaConfig {
            brokers: k.brokers.clone(),
            topic: k.topic.clone(),
            partitions: owned.iter().map(|p| *p as i32).collect(),
            start_from: k.start_from,
            key_into: k.key_from_message_key.then(|| spec.key_field.clone()),
            timestamp_into: k.time_from_message_timestamp.then(|| t.field.clone()),
            properties: k.properties.clone(),
            stop_at_end: k.stop_at_end,
            prefetch_kbytes: crate::source::kafka::prefetch_kbytes(memory_budget, owned.len()),
            fields,
            partials: false,
        })
    } else {
        return Err(PlanError::Unsupported(vec![
            "spec.source: no source set".into()
        ]));
    };
    let owned_count = owned.len();
    Ok(JobPlan {
        id,
        checkpoints,
        transaction,
        hold_when_finished: false,
        stage,
        partials,
        salt_buckets: (stage == Stage::Partial).then_some(spec.hot_keys.salt_buckets),
        engine: EngineConfig {
            partitions: owned,
            windows: windows(job)?,
            max_out_of_orderness_ms: ms(&t.max_out_of_orderness)?,
            idle_timeout_ms: ms(&t.idle_timeout)?,
            allowed_lateness_ms: ms(&spec.allowed_lateness)?,
            aggregates: spec.aggregations.iter().map(aggregate).collect(),
            state_ttl_ms: ms(&spec.state.ttl)?,
            top_k: spec.hot_keys.top_k as usize,
            hot_key_span_ms: 60_000,
            cache_keys: EngineConfig::cache_keys_for_budget(memory_budget),
            // Hot keys are written once per interval, cold keys when the
            // cache is full; checkpoints will flush too.
            flush_every_events: 1_000_000,
            stage,
        },
        partition_count: spec.partitions,
        memory_budget,
        workers: workers(spec.workers, owned_count),
        extractor: Extractor {
            key_field: spec.key_field.clone(),
            time_field: t.field.clone(),
            // Message timestamps are injected as epoch milliseconds.
            format: match &spec.source.kafka {
                Some(k) if k.time_from_message_timestamp => eddy_api::spec::TimeFormat::EpochMillis,
                _ => t.format,
            },
        },
        skew: SkewGuard {
            max_future_ms: ms(&t.max_future_skew)?,
            max_past_ms: t.max_past_skew.as_ref().map(ms).transpose()?,
            policy: t.skew_policy,
        },
        source,
        sinks: spec.sinks.clone(),
        late_policy: spec.late_data,
        late_output: spec.late_output.clone(),
        invalid_output: spec.invalid_output.clone(),
    })
}

fn windows(job: &StreamJob) -> Result<WindowKind, PlanError> {
    let w = &job.spec.window;
    if let Some(t) = &w.tumbling {
        return Ok(WindowKind::Fixed(Assigner::Tumbling { size: ms(&t.size)? }));
    }
    if let Some(s) = &w.sliding {
        return Ok(WindowKind::Fixed(Assigner::Sliding {
            size: ms(&s.size)?,
            slide: ms(&s.slide)?,
        }));
    }
    if let Some(s) = &w.session {
        return Ok(WindowKind::Session {
            gap: ms(&s.gap)?,
            max_length: ms(&s.max_length)?,
        });
    }
    if let Some(c) = &w.calendar {
        let tz = jiff::tz::TimeZone::get(&c.time_zone).map_err(anyhow::Error::from)?;
        return Ok(WindowKind::Fixed(Assigner::Calendar { unit: c.unit, tz }));
    }
    Err(PlanError::Unsupported(vec![
        "spec.window: no window set".into()
    ]))
}

fn aggregate(a: &AggregationSpec) -> (std::sync::Arc<str>, Aggregate) {
    let field = a.field.clone().unwrap_or_default();
    let agg = match a.op {
        AggregateOp::Count => Aggregate::Count,
        AggregateOp::Sum => Aggregate::Sum { field },
        AggregateOp::Min => Aggregate::Min { field },
        AggregateOp::Max => Aggregate::Max { field },
        AggregateOp::Avg => Aggregate::Avg { field },
        AggregateOp::First => Aggregate::First { field },
        AggregateOp::Last => Aggregate::Last { field },
        AggregateOp::DistinctCount => Aggregate::DistinctCount { field },
        AggregateOp::Quantile => Aggregate::Quantile {
            field,
            q: a.quantile.unwrap_or(0.5),
        },
    };
    (a.output_name().into(), agg)
}
