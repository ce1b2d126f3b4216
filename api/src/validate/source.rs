use crate::spec::{GeneratorSource, StreamJobSpec};

use super::Problems;

pub(super) fn check(spec: &StreamJobSpec, p: &mut Problems) {
    let src = &spec.source;
    p.exactly_one(
        "spec.source",
        &src.kinds_set(),
        "generator, file, kafka or http",
    );
    if let Some(g) = &src.generator {
        generator(g, p);
    }
    if let Some(f) = &src.file {
        if f.paths.is_empty() {
            p.add(
                "spec.source.file.paths",
                "list at least one file, e.g. [events.jsonl]",
            );
        }
        for (i, path) in f.paths.iter().enumerate() {
            p.non_empty(
                &format!("spec.source.file.paths[{i}]"),
                path,
                "events.jsonl",
            );
        }
        if let Some(field) = &f.partition_field {
            p.non_empty("spec.source.file.partitionField", field, "partition");
        } else if f.paths.len() > spec.partitions as usize {
            p.add(
                "spec.source.file.paths",
                format!(
                    "{} files are {} partitions (one per file) but spec.partitions is {}; \
                     raise partitions or set partitionField",
                    f.paths.len(),
                    f.paths.len(),
                    spec.partitions
                ),
            );
        }
        if let Some(field) = &f.ingestion_time_field {
            p.non_empty("spec.source.file.ingestionTimeField", field, "ingested_at");
        }
    }
    if let Some(k) = &src.kafka {
        p.non_empty("spec.source.kafka.brokers", &k.brokers, "kafka:9092");
        p.non_empty("spec.source.kafka.topic", &k.topic, "events");
    }
    if let Some(h) = &src.http {
        if h.port == 0 {
            p.add("spec.source.http.port", "must be a port from 1 to 65535");
        }
        if h.bind.parse::<std::net::IpAddr>().is_err() {
            p.add(
                "spec.source.http.bind",
                format!(
                    "{:?} is not an IP address; use 127.0.0.1 or 0.0.0.0",
                    h.bind
                ),
            );
        }
        if let Err(e) = h.max_body.parse() {
            p.add("spec.source.http.maxBody", e.to_string());
        }
        if h.buffer_events == 0 {
            p.add("spec.source.http.bufferEvents", "must be at least 1");
        }
    }
    p.non_empty("spec.keyField", &spec.key_field, "user_id");
}

fn generator(g: &GeneratorSource, p: &mut Problems) {
    const PATH: &str = "spec.source.generator";
    if g.rate == 0 {
        p.add(
            format!("{PATH}.rate"),
            "must be at least 1 event per second",
        );
    }
    if g.keys == 0 {
        p.add(format!("{PATH}.keys"), "must be at least 1");
    }
    if !(g.key_skew >= 0.0 && g.key_skew.is_finite()) {
        p.add(
            format!("{PATH}.keySkew"),
            format!(
                "{} is not a Zipf exponent; use 0 (uniform) or more, e.g. 1.1",
                g.key_skew
            ),
        );
    }
    p.share(&format!("{PATH}.lateFraction"), g.late_fraction);
    p.duration(&format!("{PATH}.jitter"), &g.jitter);
    p.duration(&format!("{PATH}.lateBy"), &g.late_by);
    p.share(&format!("{PATH}.futureFraction"), g.future_fraction);
    p.duration(&format!("{PATH}.futureBy"), &g.future_by);
    if !g.realtime && g.start_time.parse::<jiff::Timestamp>().is_err() {
        p.add(
            format!("{PATH}.startTime"),
            format!(
                "{:?} is not an RFC 3339 time; write e.g. 2026-01-01T00:00:00Z",
                g.start_time
            ),
        );
    }
    p.non_empty(&format!("{PATH}.valueField"), &g.value_field, "value");
}
