use std::io::Write;

use serde_json::json;

use super::*;

fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::File::create(&path)
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    path
}

fn config(paths: Vec<PathBuf>) -> FileConfig {
    FileConfig {
        paths,
        partition_field: None,
        ingestion_time_field: None,
        time_format: TimeFormat::EpochMillis,
        fields: Wanted::new(["k".to_string()]),
        partitions: 4,
        max_record_bytes: 100,
    }
}

/// A readable record as a whole.
fn whole(payload: &Payload) -> Value {
    payload.record().expect("a readable record").into_owned()
}

fn drain(reader: &mut FileReader) -> (Vec<SourceRecord>, Vec<u32>) {
    let (mut records, mut finished) = (Vec::new(), Vec::new());
    while let Poll::Ready(batch) = reader.poll().unwrap() {
        records.extend(batch.records);
        finished.extend(batch.finished);
    }
    (records, finished)
}

#[test]
fn one_partition_per_file_and_each_file_finishes() {
    let dir = tempfile::tempdir().unwrap();
    let a = write(&dir, "a.jsonl", "{\"k\":1}\n{\"k\":2}\n");
    let b = write(&dir, "b.jsonl", "{\"k\":3}");
    let mut r = FileReader::open(config(vec![a, b])).unwrap();
    let (records, finished) = drain(&mut r);
    let seen: Vec<(Option<u32>, Value)> = records
        .iter()
        .map(|r| (r.partition, whole(&r.payload)))
        .collect();
    assert_eq!(
        seen,
        vec![
            (Some(0), json!({"k": 1})),
            (Some(0), json!({"k": 2})),
            (Some(1), json!({"k": 3})),
        ]
    );
    assert_eq!(finished, vec![0, 1]);
}

#[test]
fn bad_lines_become_unreadable_records() {
    let dir = tempfile::tempdir().unwrap();
    let long = format!("{{\"pad\":\"{}\"}}", "x".repeat(200));
    let text = format!("not json\n\n{long}\n{{\"ok\":true}}\r\n{{\"cut\": \n");
    let mut r = FileReader::open(config(vec![write(&dir, "a.jsonl", &text)])).unwrap();
    let (records, _) = drain(&mut r);
    let reasons: Vec<String> = records
        .iter()
        .map(|r| match &r.payload {
            Payload::Unreadable { reason, .. } => reason.to_string(),
            Payload::Generated(g) => panic!("a file gave a generated record: {g:?}"),
            readable => format!("json {}", whole(readable)),
        })
        .collect();
    assert_eq!(reasons.len(), 4, "{reasons:?}");
    assert!(
        reasons[0].starts_with("not JSON: expected ident"),
        "{}",
        reasons[0]
    );
    assert_eq!(reasons[1], "record is 210 bytes, above the 100-byte limit");
    assert_eq!(reasons[2], "json {\"ok\":true}");
    assert!(
        reasons[3].starts_with("not JSON: EOF while parsing"),
        "{}",
        reasons[3]
    );
    match &records[0].payload {
        Payload::Unreadable { raw, .. } => assert_eq!(raw, "not json"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn partition_field_and_recorded_ingestion_time() {
    let dir = tempfile::tempdir().unwrap();
    let text = "{\"p\":2,\"at\":5000}\n{\"p\":9,\"at\":6000}\n{\"p\":1,\"at\":7000}\n";
    let mut c = config(vec![write(&dir, "a.jsonl", text)]);
    c.partition_field = Some("p".into());
    c.ingestion_time_field = Some("at".into());
    let mut r = FileReader::open(c).unwrap();
    let (records, finished) = drain(&mut r);
    assert_eq!(records[0].partition, Some(2));
    assert_eq!(records[0].ingest_ms, 5_000);
    assert!(matches!(
        &records[1].payload,
        Payload::Unreadable {
            reason: Invalid::BadPartition { .. },
            ..
        }
    ));
    assert_eq!(records[2].partition, Some(1));
    assert_eq!(r.clock(), 7_000);
    assert_eq!(finished, vec![0, 1, 2, 3]);
}
