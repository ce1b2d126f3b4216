//! `eddy-processor clear-checkpoints FILE`, as the operator's clean-up Job
//! runs it: with only the job file and the store's credentials (the
//! job's other Secrets are not mounted), against the real S3 store.

mod common;

use std::process::{Command, Output, Stdio};

use common::{create_bucket, interrupt, wait_for, with_s3_credentials, BIN};

/// As the clean-up Job runs it: the store's credentials and no other
/// Secret mounted.
fn as_cleanup(c: &mut Command) -> &mut Command {
    with_s3_credentials(c).env("EDDY_SECRETS_DIR", "/nonexistent")
}

/// Runs the job until it has checkpointed, then stops it (which takes
/// another checkpoint); answers its stderr.
fn run_briefly(job: &std::path::Path) -> String {
    let log = job.with_extension("log");
    let mut child = as_cleanup(Command::new(BIN).arg("run").arg(job))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    wait_for("a checkpoint", || {
        std::fs::read_to_string(&log)
            .unwrap()
            .contains("bytes uploaded")
    });
    interrupt(&mut child);
    std::fs::read_to_string(&log).unwrap()
}

fn clear(job: &std::path::Path) -> Output {
    as_cleanup(Command::new(BIN).arg("clear-checkpoints").arg(job))
        .stdout(Stdio::null())
        .output()
        .unwrap()
}

fn job_file(dir: &std::path::Path, name: &str, bucket: &str, extra: &str) -> std::path::PathBuf {
    let s3 = eddy_testkit::s3();
    let yaml = format!(
        "apiVersion: eddy.dev/v1alpha1
kind: StreamJob
metadata: {{name: {name}, namespace: team}}
spec:
  source: {{generator: {{rate: 2000, realtime: true, keys: 50}}}}
  keyField: user
  eventTime: {{field: ts, idleTimeout: 1s}}
  window: {{tumbling: {{size: 1s}}}}
  partitions: 3
  sinks: [{{file: {{path: {d}/{name}.jsonl}}}}]
  checkpoints: {{store: 's3://{bucket}/ckpt', endpoint: '{endpoint}', interval: 200ms}}
{extra}",
        d = dir.display(),
        endpoint = s3.endpoint,
    );
    let path = dir.join(format!("{name}.yaml"));
    std::fs::write(&path, yaml).unwrap();
    path
}

#[test]
fn clearing_deletes_the_jobs_checkpoints_and_a_rerun_starts_over() {
    let dir = tempfile::tempdir().unwrap();
    let bucket = eddy_testkit::unique_name("clear");
    create_bucket(&bucket);
    let job = job_file(dir.path(), "orders", &bucket, "");
    let neighbour = job_file(dir.path(), "orders-eu", &bucket, "");
    run_briefly(&job);
    run_briefly(&neighbour);
    let again = run_briefly(&job);
    assert!(again.contains("restored checkpoint"), "{again}");

    let out = clear(&job);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("deleted the checkpoints of team/orders")
            && err.contains("3 partitions: [0, 1, 2]"),
        "{err}"
    );
    let fresh = run_briefly(&job);
    assert!(!fresh.contains("restored checkpoint"), "{fresh}");
    // The job whose name starts the same is untouched.
    let neighbour_again = run_briefly(&neighbour);
    assert!(
        neighbour_again.contains("restored checkpoint"),
        "{neighbour_again}"
    );
}

#[test]
fn clearing_needs_no_secret_but_the_stores() {
    let dir = tempfile::tempdir().unwrap();
    let bucket = eddy_testkit::unique_name("clear");
    create_bucket(&bucket);
    // An output whose client properties are in a Secret that is not
    // mounted: `run` refuses the job, clearing its checkpoints does not
    // need it.
    let extra = "  lateOutput: {kafka: {brokers: 'b:9092', topic: late, propertiesSecret: auth}}\n";
    let job = job_file(dir.path(), "secretive", &bucket, extra);
    let refused = as_cleanup(Command::new(BIN).arg("run").arg(&job))
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("propertiesSecret"));
    let out = clear(&job);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("(0 partitions: [])"), "{err}");
}

#[test]
fn clearing_without_credentials_fails_and_says_where() {
    let dir = tempfile::tempdir().unwrap();
    let job = job_file(dir.path(), "orders", "no-such-bucket", "");
    let out = Command::new(BIN)
        .arg("clear-checkpoints")
        .arg(&job)
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("deleting the checkpoints of team/orders in s3://no-such-bucket/ckpt"),
        "{err}"
    );
}

/// A two-phase job's partials topic goes with its checkpoints: a job
/// re-created under the name would read the old partials as its own.
#[test]
fn clearing_a_two_phase_job_deletes_its_partials_topic() {
    let dir = tempfile::tempdir().unwrap();
    let bucket = eddy_testkit::unique_name("clear");
    create_bucket(&bucket);
    let brokers = eddy_testkit::kafka_brokers();
    let name = eddy_testkit::unique_name("hot");
    let extra = format!("  hotKeys: {{twoPhase: true, partials: {{brokers: '{brokers}'}}}}\n");
    let job = job_file(dir.path(), &name, &bucket, &extra);
    run_briefly(&job);
    let topic = format!("eddy-team-{name}-partials");
    assert!(eddy_testkit::produce::topic_exists(&brokers, &topic));

    let out = clear(&job);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains(&format!("deleted the partials topic {topic}")),
        "{err}"
    );
    assert!(
        err.contains(&format!("deleted the checkpoints of team/{name}@merge")),
        "{err}"
    );
    assert!(!eddy_testkit::produce::topic_exists(&brokers, &topic));
}
