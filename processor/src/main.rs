//! `eddy-processor`: runs a StreamJob.

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
    time::SystemTime,
};

use clap::{Parser, Subcommand};
use eddy_api::load::{self, LoadError};
use eddy_processor::{
    job::{self, PlanError},
    placement::{self, Placement},
    progress,
    run::{self, Ending},
    secrets,
};
use tokio::sync::watch;

#[derive(Parser)]
#[command(name = "eddy-processor", version, about = "The Eddy stream processor")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a StreamJob manifest (the YAML you would `kubectl apply`) locally.
    /// Stops by itself when a finite source ends, and on Ctrl-C.
    Run {
        /// Path of the StreamJob YAML file.
        file: PathBuf,
        /// Directory for RocksDB state. Emptied at start (state is restored
        /// from checkpoints, not reused). Defaults to a temporary directory
        /// removed at exit.
        #[arg(long, env = "EDDY_STATE_DIR")]
        state_dir: Option<PathBuf>,
        /// Partitions this processor owns, comma separated (default: all).
        #[arg(
            long,
            env = "EDDY_PARTITIONS",
            value_delimiter = ',',
            conflicts_with = "assignment"
        )]
        partitions: Option<Vec<u32>>,
        /// A partition assignment (YAML list of `{ordinal, partitions}`, as
        /// the operator renders it); this processor owns the entry of the
        /// ordinal its `--pod-name` ends in.
        #[arg(long, env = "EDDY_ASSIGNMENT", requires = "pod_name")]
        assignment: Option<PathBuf>,
        /// This pod's name (`<job>-<ordinal>`): its entry of `--assignment`,
        /// and its Kafka transactional id, which a restart takes over (so it
        /// fences its former self wherever partitions moved meanwhile).
        #[arg(long, env = "POD_NAME")]
        pod_name: Option<String>,
        /// Take no periodic checkpoints: something outside (the operator,
        /// through the admin API) triggers them, so every pod checkpoints
        /// together under one id. A last checkpoint is still taken on stop.
        #[arg(long, env = "EDDY_EXTERNAL_CHECKPOINTS", requires = "admin_addr")]
        external_checkpoints: bool,
        /// Serve the admin HTTP API (checkpoints, health) on this address,
        /// e.g. 0.0.0.0:9090; port 0 picks a free one.
        #[arg(long, env = "EDDY_ADMIN_ADDR")]
        admin_addr: Option<std::net::SocketAddr>,
        /// Serve Prometheus metrics (`GET /metrics`, OpenMetrics text) on
        /// this address, e.g. 0.0.0.0:9091; port 0 picks a free one.
        #[arg(long, env = "EDDY_METRICS_ADDR")]
        metrics_addr: Option<std::net::SocketAddr>,
        /// When a finite input ends: take a checkpoint, report `finished`
        /// on the admin API and wait to be stopped, instead of exiting and
        /// deleting the checkpoints (in a cluster, a pod that exits is
        /// started again, and the job must not run twice).
        #[arg(long, env = "EDDY_HOLD_WHEN_FINISHED", requires = "admin_addr")]
        hold_when_finished: bool,
        /// The state epoch: checkpoints are taken in it, and only its own
        /// are restored. The operator raises it to start a job over with
        /// empty state (`upgradeMode: stateless`).
        #[arg(long, env = "EDDY_STATE_EPOCH", default_value_t = 0)]
        state_epoch: u64,
        /// Which stage of a two-phase job (`spec.hotKeys.twoPhase`) to run:
        /// `partial` reads the source and sends partial aggregates to the
        /// partials topic, `merge` merges them into the job's results.
        #[arg(long, env = "EDDY_STAGE", value_parser = ["partial", "merge"])]
        stage: Option<String>,
    },
    /// Delete every checkpoint of the job, in all partitions (the operator
    /// runs this when a StreamJob with `checkpoints.deleteOnJobDeletion` is
    /// deleted). Needs only the checkpoint store and its credentials.
    ClearCheckpoints {
        /// Path of the StreamJob YAML file.
        file: PathBuf,
    },
    /// Check a StreamJob manifest and list every problem with it.
    Validate {
        /// Path of the StreamJob YAML file.
        file: PathBuf,
    },
}

/// Exit code for a manifest that cannot be run as written.
const EXIT_BAD_JOB: u8 = 2;

/// mimalloc rather than the system's: records, keys and results are many
/// small short-lived allocations, which glibc's allocator spent about a
/// sixth of the processor's time on (consolidating freed chunks most of
/// all). RocksDB's own allocations are not affected.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` in mimalloc.h (v2 and v3; the Rust binding has
/// no constant for it).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Freed pages go back to the system after a second, not mimalloc's 10 ms:
/// results and staged lines are freed and allocated again every few
/// milliseconds, and each page given back was faulted in (and zeroed by the
/// kernel) again at once, about 4% of W1's time. Peak RSS is unchanged.
fn keep_freed_pages() {
    // SAFETY: sets a process-wide allocator option, read at each purge.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 1000) };
}

/// RocksDB (a C++ library) allocates with the C library's malloc, not
/// mimalloc. glibc raises its thresholds after the first large blocks are
/// freed (up to 32 MiB for mmap, twice that for giving the heap's top
/// back), so with state larger than the cache, blocks read, decompressed
/// and evicted again kept about 50 MiB more resident than the memory
/// budget allows (1M keys on 128 MiB: 264 -> 214 MiB peak, same speed).
/// A fixed 1 MiB trim threshold, set before any thread starts, keeps them
/// where they are.
fn give_back_c_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; called before any
    // other thread exists.
    unsafe {
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 20);
    }
}

fn main() -> ExitCode {
    give_back_c_heap();
    keep_freed_pages();
    // Held until main returns: dropping it flushes the spans not yet sent.
    let _telemetry = match eddy_telemetry::init("warn", "eddy-processor") {
        Ok(telemetry) => telemetry,
        Err(e) => {
            eprintln!("error: telemetry: {e}");
            return ExitCode::from(EXIT_BAD_JOB);
        }
    };
    match Cli::parse().command {
        Command::Validate { file } => match read_job(&file) {
            Ok(_) => {
                eprintln!("{}: valid", file.display());
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
        Command::ClearCheckpoints { file } => clear_checkpoints(&file),
        Command::Run {
            file,
            state_dir,
            partitions,
            assignment,
            pod_name,
            external_checkpoints,
            admin_addr,
            metrics_addr,
            hold_when_finished,
            state_epoch,
            stage,
        } => {
            let (partitions, placed) = match assignment {
                None => (partitions, None),
                Some(path) => match read_assignment(&path, pod_name.as_deref().unwrap_or("")) {
                    Ok(placed) => (Some(placed.partitions.clone()), Some((path, placed))),
                    Err(e) => {
                        eprintln!("error: {}: {e}", path.display());
                        return ExitCode::from(EXIT_BAD_JOB);
                    }
                },
            };
            let checkpoints = if external_checkpoints {
                Scheduling::External
            } else {
                Scheduling::Periodic
            };
            let options = RunOptions {
                scheduling: checkpoints,
                admin_addr,
                metrics_addr,
                hold_when_finished,
                state_epoch,
                pod_name,
                placed,
                stage,
            };
            run_file(&file, state_dir, partitions, options)
        }
    }
}

/// How `run` runs, besides the job file.
struct RunOptions {
    scheduling: Scheduling,
    admin_addr: Option<std::net::SocketAddr>,
    metrics_addr: Option<std::net::SocketAddr>,
    hold_when_finished: bool,
    state_epoch: u64,
    pod_name: Option<String>,
    /// The assignment file and what it gave this pod at start.
    placed: Option<(PathBuf, Placement)>,
    /// The stage of a two-phase job to run.
    stage: Option<String>,
}

/// Who triggers checkpoints.
enum Scheduling {
    /// The processor itself, every `spec.checkpoints.interval`.
    Periodic,
    /// The operator, through the admin API.
    External,
}

fn read_assignment(path: &Path, pod_name: &str) -> Result<Placement, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read: {e}"))?;
    eddy_processor::placement::owned(&text, pod_name)
}

/// The valid job in `file`, its Secrets not read.
fn parse_job(file: &Path) -> Result<eddy_api::StreamJob, ExitCode> {
    let text = std::fs::read_to_string(file).map_err(|e| {
        eprintln!("error: cannot read {}: {e}", file.display());
        ExitCode::from(EXIT_BAD_JOB)
    })?;
    let job = load::parse_valid(&text).map_err(|e: LoadError| {
        eprintln!("error: {}: {e}", file.display());
        ExitCode::from(EXIT_BAD_JOB)
    })?;
    // Before anything else reads the job (Secrets, stores): a build
    // without a feature the job needs says so first.
    let unbuilt = eddy_processor::job::unbuilt(&job.spec);
    if !unbuilt.is_empty() {
        let refused = eddy_processor::job::PlanError::Unsupported(unbuilt);
        eprintln!("error: {}: {refused}", file.display());
        return Err(ExitCode::from(EXIT_BAD_JOB));
    }
    Ok(job)
}

/// The valid job in `file` with the Secrets it references resolved.
fn read_job(file: &Path) -> Result<eddy_api::StreamJob, ExitCode> {
    let mut job = parse_job(file)?;
    let dir = secrets::dir_from_env();
    secrets::resolve(&mut job.spec, &dir).map_err(|problems| {
        eprintln!("error: {}: Secrets the job references:", file.display());
        for p in problems {
            eprintln!("  - {p}");
        }
        ExitCode::from(EXIT_BAD_JOB)
    })?;
    Ok(job)
}

fn clear_checkpoints(file: &Path) -> ExitCode {
    use eddy_processor::job::{checkpoint_plan_of, Stage};
    let job = match parse_job(file) {
        Ok(job) => job,
        Err(code) => return code,
    };
    // A two-phase job's stages keep checkpoints of their own; a job that
    // was one-phase before may have some in the job's directory too.
    let stages: &[Stage] = if job.spec.hot_keys.two_phase {
        &[Stage::Single, Stage::Partial, Stage::Merge { origins: 0 }]
    } else {
        &[Stage::Single]
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    for stage in stages {
        let plan = match checkpoint_plan_of(&job, *stage) {
            Ok(plan) => plan,
            Err(e) => {
                eprintln!("error: {}: {e:#}", file.display());
                return ExitCode::from(EXIT_BAD_JOB);
            }
        };
        let cleared = runtime.block_on(async {
            let store = plan.store()?;
            eddy_processor::checkpoint::clear_job(&store).await
        });
        match cleared {
            Ok(partitions) => eprintln!(
                "deleted the checkpoints of {} in {} ({} partitions: {partitions:?})",
                plan.job_path,
                plan.url,
                partitions.len()
            ),
            Err(e) => {
                eprintln!(
                    "error: deleting the checkpoints of {} in {}: {e:#}",
                    plan.job_path, plan.url
                );
                return ExitCode::FAILURE;
            }
        }
    }
    // A two-phase job's partials topic goes with its checkpoints: a job
    // re-created under the name starts at epoch 0 from no checkpoint, and
    // would read the old job's partials and end marks as its own.
    if let Some(partials) = eddy_processor::job::partials_of(&job) {
        match runtime.block_on(eddy_processor::run::delete_partials_topic(&partials)) {
            Ok(()) => eprintln!("deleted the partials topic {}", partials.topic),
            Err(e) => {
                eprintln!("error: {e:#}");
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}

fn run_file(
    file: &Path,
    state_dir: Option<PathBuf>,
    partitions: Option<Vec<u32>>,
    options: RunOptions,
) -> ExitCode {
    let RunOptions {
        scheduling,
        admin_addr,
        metrics_addr,
        hold_when_finished,
        state_epoch,
        pod_name,
        placed,
        stage,
    } = options;
    let job = match read_job(file) {
        Ok(job) => job,
        Err(code) => return code,
    };
    let now_ms = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let plan_for = |partitions: Option<Vec<u32>>, assignment: u64| {
        let plans = match job::plans(&job, now_ms, partitions, stage.as_deref()) {
            Ok(plans) => plans,
            Err(e @ PlanError::Unsupported(_)) => {
                eprintln!("error: {}: {e}", file.display());
                return Err(ExitCode::from(EXIT_BAD_JOB));
            }
            Err(e) => {
                eprintln!("error: {}: {e:#}", file.display());
                return Err(ExitCode::from(EXIT_BAD_JOB));
            }
        };
        Ok(plans
            .into_iter()
            .map(|mut plan| {
                if let Scheduling::External = scheduling {
                    plan.checkpoints.interval = None;
                }
                plan.checkpoints.epoch = state_epoch;
                plan.checkpoints.assignment = assignment;
                plan.hold_when_finished = hold_when_finished;
                if let (Some(t), Some(pod)) = (plan.transaction.as_mut(), pod_name.as_deref()) {
                    t.named_for(pod);
                }
                plan
            })
            .collect::<Vec<_>>())
    };
    let version = placed.as_ref().map_or(0, |(_, p)| p.version);
    let mut plans = match plan_for(partitions, version) {
        Ok(plans) => plans,
        Err(code) => return code,
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let (state_dir, _temp) = match prepare_state_dir(state_dir) {
        Ok(dirs) => dirs,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let pod = pod_name.clone().unwrap_or_default();
    runtime.block_on(async move {
        let plan = &plans[0];
        let every = match plan.checkpoints.interval {
            Some(every) => format!("every {}", humantime::format_duration(every)),
            None => "when the admin API asks".into(),
        };
        eprintln!(
            "running job {:?} on partitions {:?}: state in {}, checkpoints {every} to {}; Ctrl-C stops",
            plan.id.name,
            plan.engine.partitions,
            state_dir.display(),
            plan.checkpoints.url
        );
        if plans.len() > 1 {
            eprintln!(
                "two-phase: both stages run here, partials over Kafka topic {}",
                plan.partials.as_ref().map_or("", |p| p.topic.as_str())
            );
        }
        let (stop_tx, stop_rx) = watch::channel(false);
        tokio::spawn(async move {
            wait_for_signal().await;
            eprintln!("stopping: signal received (again to exit at once)");
            let _ = stop_tx.send(true);
            wait_for_signal().await;
            eprintln!("exiting at once: second signal");
            std::process::exit(130);
        });
        // Metrics first: once "admin API on" is printed, both are up.
        let metrics = match metrics_addr {
            None => None,
            Some(addr) => match eddy_processor::metrics::serve(addr).await {
                Ok((bound, publisher)) => {
                    eprintln!("metrics on http://{bound}/metrics");
                    Some(publisher)
                }
                Err(e) => {
                    eprintln!("error: cannot serve metrics on {addr}: {e:#}");
                    return ExitCode::FAILURE;
                }
            },
        };
        let admin = match admin_addr {
            None => None,
            Some(addr) => match eddy_processor::admin::serve(addr).await {
                Ok((bound, admin)) => {
                    eprintln!("admin API on http://{bound}");
                    Some(admin)
                }
                Err(e) => {
                    eprintln!("error: cannot serve the admin API on {addr}: {e:#}");
                    return ExitCode::FAILURE;
                }
            },
        };
        // Up (alive, not ready) while an assignment behind a live move
        // catches up.
        if let Some((path, placed)) = placed {
            let current = match plan.checkpoints.store() {
                Ok(store) => {
                    let mut stop = stop_rx.clone();
                    tokio::select! {
                        current = placement::current(&store, &path, &pod, placed.clone(), |l| eprintln!("{l}")) => current,
                        _ = stop.wait_for(|stop| *stop) => return ExitCode::SUCCESS,
                    }
                }
                Err(e) => Err(e),
            };
            match current {
                Ok(now) if now != placed => match plan_for(Some(now.partitions), now.version) {
                    Ok(newer) => plans = newer,
                    Err(code) => return code,
                },
                Ok(_) => {}
                Err(e) => {
                    eprintln!("error: reading the assignment: {e:#}");
                    return ExitCode::FAILURE;
                }
            }
        }
        let endpoints = run::Endpoints { admin, metrics };
        let stages = plans.len() > 1;
        let ran = if stages {
            run::run_stages(plans, &state_dir, stop_rx, endpoints, |line| eprintln!("{line}")).await
        } else {
            let Some(plan) = plans.pop() else {
                return ExitCode::FAILURE;
            };
            let stage = plan.stage;
            run::run(plan, &state_dir, stop_rx, endpoints, |line| eprintln!("{line}"))
                .await
                .map(|report| vec![(stage, report)])
        };
        match ran {
            Ok(reports) => {
                for (stage, report) in reports {
                    let prefix = if stages {
                        format!("[{}] ", stage.name())
                    } else {
                        String::new()
                    };
                    print_report(&prefix, &report);
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        }
    })
}

/// A run's final report on stderr, each line after `prefix`.
fn print_report(prefix: &str, report: &run::Report) {
    let outcome = match report.ending {
        Ending::Finished => "finished",
        Ending::Stopped => "stopped",
    };
    for p in &report.partitions {
        eprintln!("{prefix}{}", p.line());
    }
    if !report.invalid_by_kind.is_empty() {
        let kinds: Vec<String> = report
            .invalid_by_kind
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        eprintln!("{prefix}invalid by reason: {}", kinds.join(", "));
    }
    if report.expired_windows > 0 {
        eprintln!(
            "{prefix}state TTL expired {} windows before they fired",
            report.expired_windows
        );
    }
    eprintln!(
        "{prefix}{}",
        progress::summary(
            outcome,
            report.elapsed,
            &report.counters,
            report.open_windows
        )
    );
}

/// The state directory to use, emptied; and the temporary directory that
/// owns it when none was given (removed when dropped).
fn prepare_state_dir(dir: Option<PathBuf>) -> anyhow::Result<(PathBuf, Option<tempfile::TempDir>)> {
    match dir {
        Some(dir) => {
            if dir.exists() {
                std::fs::remove_dir_all(&dir)?;
            }
            std::fs::create_dir_all(&dir)?;
            Ok((dir, None))
        }
        None => {
            let temp = tempfile::Builder::new().prefix("eddy-state-").tempdir()?;
            Ok((temp.path().to_path_buf(), Some(temp)))
        }
    }
}

/// Ctrl-C, or SIGTERM (what Kubernetes sends a pod).
async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_valid() {
        super::Cli::command().debug_assert();
    }
}
