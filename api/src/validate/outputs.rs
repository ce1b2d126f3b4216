use crate::spec::{SinkSpec, StreamJobSpec};

use super::Problems;

pub(super) fn check(spec: &StreamJobSpec, p: &mut Problems) {
    if spec.sinks.is_empty() {
        p.add("spec.sinks", "list at least one sink, e.g. [{stdout: {}}]");
    }
    let mut seen = std::collections::BTreeMap::new();
    for (path, sink) in spec.outputs() {
        check_sink(&path, sink, p);
        if let Some(f) = &sink.file {
            if let Some(first) = seen.insert(f.path.clone(), path.clone()) {
                p.add(
                    format!("{path}.file.path"),
                    format!(
                        "{:?} is also written by {first}; give each output its own file",
                        f.path
                    ),
                );
            }
        }
    }
}

fn check_sink(path: &str, sink: &SinkSpec, p: &mut Problems) {
    p.exactly_one(
        path,
        &sink.kinds_set(),
        "stdout, stderr, file, kafka or postgres",
    );
    if let Some(f) = &sink.file {
        p.non_empty(&format!("{path}.file.path"), &f.path, "results.jsonl");
    }
    if let Some(k) = &sink.kafka {
        p.non_empty(&format!("{path}.kafka.brokers"), &k.brokers, "kafka:9092");
        p.non_empty(&format!("{path}.kafka.topic"), &k.topic, "results");
    }
    if let Some(pg) = &sink.postgres {
        if pg.url.is_some() == pg.url_secret.is_some() {
            p.add(
                format!("{path}.postgres"),
                "set exactly one of url or urlSecret",
            );
        }
        if !is_table_name(&pg.table) {
            p.add(
                format!("{path}.postgres.table"),
                format!(
                    "{:?} is not a table name; use letters, digits and underscores, \
                     optionally schema-qualified (analytics.revenue)",
                    pg.table
                ),
            );
        }
    }
}

/// `name` or `schema.name`, each part an unquoted SQL identifier.
fn is_table_name(name: &str) -> bool {
    let parts: Vec<&str> = name.split('.').collect();
    parts.len() <= 2
        && parts.iter().all(|part| {
            let mut chars = part.chars();
            matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
                && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
                && part.len() <= 63
        })
}
