use super::*;
use crate::spec::*;

fn base() -> StreamJobSpec {
    StreamJobSpec::new(
        SourceSpec {
            generator: Some(GeneratorSource::default()),
            ..SourceSpec::default()
        },
        "user",
        "ts",
        WindowSpec::tumbling("1m"),
    )
}

fn paths(spec: &StreamJobSpec) -> Vec<String> {
    validate(spec).into_iter().map(|p| p.path).collect()
}

fn message_at(spec: &StreamJobSpec, path: &str) -> String {
    validate(spec)
        .into_iter()
        .find(|p| p.path == path)
        .unwrap_or_else(|| panic!("no problem at {path}: {:?}", validate(spec)))
        .message
}

#[test]
fn defaults_are_valid() {
    assert_eq!(validate(&base()), vec![]);
}

#[test]
fn sliding_slide_larger_than_size() {
    let mut spec = base();
    spec.window = WindowSpec {
        sliding: Some(SlidingWindow {
            size: "5m".into(),
            slide: "10m".into(),
        }),
        ..WindowSpec::default()
    };
    let msg = message_at(&spec, "spec.window.sliding.slide");
    assert!(msg.contains("slide 10m is larger than size 5m"), "{msg}");
}

#[test]
fn negative_lateness() {
    let mut spec = base();
    spec.allowed_lateness = "-30s".into();
    let msg = message_at(&spec, "spec.allowedLateness");
    assert!(msg.contains("negative"), "{msg}");
}

#[test]
fn parallelism_above_partitions() {
    let mut spec = base();
    spec.partitions = 4;
    spec.parallelism = 6;
    let msg = message_at(&spec, "spec.parallelism");
    assert!(msg.contains("at most 4"), "{msg}");
}

#[test]
fn zero_workers() {
    let mut spec = base();
    spec.workers = Some(0);
    let msg = message_at(&spec, "spec.workers");
    assert!(msg.contains("1 to 256"), "{msg}");
    spec.workers = Some(2);
    assert_eq!(validate(&spec), vec![]);
}

#[test]
fn unknown_time_zone() {
    let mut spec = base();
    spec.window = WindowSpec {
        calendar: Some(CalendarWindow {
            unit: CalendarUnit::Day,
            time_zone: "Europe/Atlantis".into(),
        }),
        ..WindowSpec::default()
    };
    let msg = message_at(&spec, "spec.window.calendar.timeZone");
    assert!(
        msg.contains("\"Europe/Atlantis\" is not a known IANA time zone"),
        "{msg}"
    );
}

#[test]
fn known_time_zone_is_accepted() {
    let mut spec = base();
    spec.window = WindowSpec {
        calendar: Some(CalendarWindow {
            unit: CalendarUnit::Month,
            time_zone: "Europe/Berlin".into(),
        }),
        ..WindowSpec::default()
    };
    assert_eq!(validate(&spec), vec![]);
}

#[test]
fn every_problem_is_reported_at_once() {
    let mut spec = base();
    spec.source.kafka = Some(KafkaSource::default());
    spec.key_field = String::new();
    spec.event_time.max_out_of_orderness = "soon".into();
    spec.window.session = Some(SessionWindow {
        gap: "10m".into(),
        max_length: "5m".into(),
    });
    spec.aggregations = vec![
        AggregationSpec::of(AggregateOp::Sum, "amount"),
        AggregationSpec::of(AggregateOp::Sum, "amount"),
        AggregationSpec {
            op: AggregateOp::Quantile,
            field: Some("latency".into()),
            name: None,
            quantile: None,
        },
        AggregationSpec {
            field: None,
            ..AggregationSpec::of(AggregateOp::Max, "x")
        },
    ];
    spec.sinks = vec![];
    spec.checkpoints.store = "ftp://somewhere".into();
    spec.checkpoints.retain = 0;
    spec.state.memory_budget = "lots".into();
    spec.autoscaling.hot_key_share = 1.5;
    assert_eq!(
        paths(&spec),
        vec![
            "spec.source",
            "spec.source.kafka.brokers",
            "spec.source.kafka.topic",
            "spec.keyField",
            "spec.eventTime.maxOutOfOrderness",
            "spec.window",
            "spec.window.session.maxLength",
            "spec.aggregations[1].name",
            "spec.aggregations[2].quantile",
            "spec.aggregations[3].field",
            "spec.sinks",
            "spec.state.memoryBudget",
            "spec.checkpoints.retain",
            "spec.checkpoints.store",
            "spec.autoscaling.hotKeyShare",
        ]
    );
}

#[test]
fn source_must_be_set() {
    let mut spec = base();
    spec.source = SourceSpec::default();
    assert_eq!(
        message_at(&spec, "spec.source"),
        "set one of generator, file, kafka or http"
    );
}

#[test]
fn sink_and_outputs_are_checked() {
    let mut spec = base();
    spec.sinks = vec![SinkSpec {
        postgres: Some(PostgresSink {
            url: None,
            url_secret: None,
            table: "drop table;".into(),
            create_table: true,
        }),
        ..SinkSpec::default()
    }];
    spec.invalid_output = SinkSpec {
        stdout: Some(StdSink {}),
        stderr: Some(StdSink {}),
        ..SinkSpec::default()
    };
    assert_eq!(
        paths(&spec),
        vec![
            "spec.sinks[0].postgres",
            "spec.sinks[0].postgres.table",
            "spec.invalidOutput"
        ]
    );
    assert!(message_at(&spec, "spec.invalidOutput").contains("stdout, stderr are all set"));
}

#[test]
fn generator_settings_are_checked() {
    let mut spec = base();
    let g = spec.source.generator.as_mut().unwrap();
    g.rate = 0;
    g.key_skew = f64::NAN;
    g.late_fraction = 2.0;
    g.start_time = "yesterday".into();
    assert_eq!(
        paths(&spec),
        vec![
            "spec.source.generator.rate",
            "spec.source.generator.keySkew",
            "spec.source.generator.lateFraction",
            "spec.source.generator.startTime",
        ]
    );
}

#[test]
fn autoscaling_bounds_are_checked() {
    let mut spec = base();
    spec.partitions = 4;
    spec.autoscaling.min_replicas = 3;
    spec.autoscaling.max_replicas = Some(2);
    assert_eq!(paths(&spec), vec!["spec.autoscaling.minReplicas"]);
    spec.autoscaling.max_replicas = Some(5);
    spec.autoscaling.min_replicas = 1;
    assert_eq!(paths(&spec), vec!["spec.autoscaling.maxReplicas"]);
    spec.autoscaling.max_replicas = None;
    spec.autoscaling.target_utilization = 0.0;
    spec.autoscaling.catch_up_within = "0".into();
    assert_eq!(
        paths(&spec),
        vec![
            "spec.autoscaling.targetUtilization",
            "spec.autoscaling.catchUpWithin"
        ]
    );
}

#[test]
fn autoscaling_modes_read_as_written() {
    let yaml = "mode: recommend";
    let a: crate::spec::AutoscalingSpec = serde_yaml_ng::from_str(yaml).unwrap();
    assert_eq!(a.mode, crate::spec::AutoscalingMode::Recommend);
    assert_eq!(a.target_utilization, 0.7);
    let off: crate::spec::AutoscalingSpec = serde_yaml_ng::from_str("{}").unwrap();
    assert_eq!(off.mode, crate::spec::AutoscalingMode::Disabled);
}

#[test]
fn pod_template_must_be_a_pod_template() {
    let mut spec = base();
    spec.pod_template = Some(serde_json::json!({"spec": {"containers": "nope"}}));
    assert!(message_at(&spec, "spec.podTemplate").contains("is not a pod template"));
    spec.pod_template = Some(serde_json::json!({
        "metadata": {"labels": {"team": "data"}},
        "spec": {"nodeSelector": {"pool": "stream"}}
    }));
    assert_eq!(validate(&spec), vec![]);
}

#[test]
fn window_lengths_are_whole_milliseconds() {
    let mut spec = base();
    spec.window = WindowSpec::tumbling("1500us");
    let msg = message_at(&spec, "spec.window.tumbling.size");
    assert!(msg.contains("not a whole number of milliseconds"), "{msg}");
}

#[test]
fn two_outputs_may_not_share_a_file() {
    let mut spec = base();
    let file = |path: &str| SinkSpec {
        file: Some(FileSink { path: path.into() }),
        ..SinkSpec::default()
    };
    spec.late_output = file("out.jsonl");
    spec.invalid_output = file("out.jsonl");
    let msg = message_at(&spec, "spec.invalidOutput.file.path");
    assert!(msg.contains("is also written by spec.lateOutput"), "{msg}");
}

#[test]
fn restore_from_names_a_job_and_a_real_checkpoint() {
    let mut spec = base();
    spec.checkpoints.restore_from = Some(eddy_api_restore("prod/clicks", Some(42)));
    assert!(paths(&spec).is_empty(), "{:?}", paths(&spec));
    spec.checkpoints.restore_from = Some(eddy_api_restore("clicks", Some(0)));
    assert_eq!(
        paths(&spec),
        vec![
            "spec.checkpoints.restoreFrom.job",
            "spec.checkpoints.restoreFrom.checkpointId"
        ]
    );
    assert!(message_at(&spec, "spec.checkpoints.restoreFrom.job").contains("<namespace>/<name>"));
    spec.checkpoints.restore_from = Some(eddy_api_restore("prod/Clicks/x", None));
    assert_eq!(paths(&spec), vec!["spec.checkpoints.restoreFrom.job"]);
}

fn eddy_api_restore(job: &str, checkpoint_id: Option<u64>) -> crate::spec::RestoreFrom {
    crate::spec::RestoreFrom {
        job: job.into(),
        checkpoint_id,
    }
}

#[test]
fn two_phase_needs_fixed_windows_and_kafka_brokers() {
    let mut spec = base();
    spec.hot_keys.two_phase = true;
    spec.window = WindowSpec {
        session: Some(SessionWindow {
            gap: "1m".into(),
            max_length: "1h".into(),
        }),
        ..WindowSpec::default()
    };
    spec.hot_keys.partials = Some(PartialsTopic {
        topic: Some("no spaces".into()),
        ..PartialsTopic::default()
    });
    assert_eq!(
        paths(&spec),
        vec![
            "spec.window.session",
            "spec.hotKeys.partials.brokers",
            "spec.hotKeys.partials.topic"
        ]
    );
    assert!(message_at(&spec, "spec.window.session").contains("tumbling, sliding or calendar"));

    let mut spec = base();
    spec.hot_keys.two_phase = true;
    spec.hot_keys.partials = Some(PartialsTopic {
        brokers: Some("kafka:9092".into()),
        ..PartialsTopic::default()
    });
    assert_eq!(validate(&spec), vec![]);
    let partials = spec.partials("", "clicks").expect("two-phase");
    assert_eq!(partials.topic, "eddy-default-clicks-partials");
    assert_eq!(partials.brokers, "kafka:9092");
    spec.hot_keys.two_phase = false;
    assert_eq!(spec.partials("", "clicks"), None);
}

#[test]
fn a_kafka_source_lends_two_phase_its_brokers() {
    let mut spec = base();
    spec.source = SourceSpec {
        kafka: Some(KafkaSource {
            brokers: "b:9092".into(),
            topic: "events".into(),
            properties: [("client.id".to_string(), "x".to_string())].into(),
            ..KafkaSource::default()
        }),
        ..SourceSpec::default()
    };
    spec.hot_keys.two_phase = true;
    assert_eq!(validate(&spec), vec![]);
    let partials = spec.partials("shop", "orders").expect("two-phase");
    assert_eq!(partials.brokers, "b:9092");
    assert_eq!(partials.topic, "eddy-shop-orders-partials");
    assert_eq!(
        partials.properties.get("client.id").map(String::as_str),
        Some("x")
    );
}
