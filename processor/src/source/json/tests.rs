use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};

use super::*;

fn wanted() -> Wanted {
    Wanted::new(["user", "ts", "amount", "ingest"].map(String::from))
}

/// The sparse parse of `line` agrees with a full parse: the same error
/// text, or the same wanted fields and the same whole record back.
fn agrees(w: &Wanted, line: &[u8]) {
    let full = serde_json::from_slice::<Value>(line);
    let sparse = w.parse(line);
    let shown = String::from_utf8_lossy(line);
    match (full, sparse) {
        (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string(), "{shown}"),
        (Ok(Value::Object(all)), Ok(Parsed::Object(s))) => {
            let kept: serde_json::Map<String, Value> = all
                .iter()
                .filter(|(k, _)| w.names.contains(k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            assert_eq!(s.wanted(), kept, "{shown}");
            for name in w.names.iter() {
                assert_eq!(s.field(name), all.get(name), "{shown}");
            }
            assert_eq!(s.to_value(), Value::Object(all), "{shown}");
        }
        (Ok(full), Ok(Parsed::Other(other))) => {
            assert!(!full.is_object(), "{shown}");
            assert_eq!(full, other, "{shown}");
        }
        (full, sparse) => panic!("{shown}: full {full:?}, sparse {sparse:?}"),
    }
}

#[test]
fn keeps_only_the_wanted_fields() {
    let line = br#"{"user":"u1","ts":17,"page":{"a":[1,2,{"b":null}]},"amount":2.5,"x":"y"}"#;
    let Parsed::Object(s) = wanted().parse(line).unwrap() else {
        panic!("an object");
    };
    assert_eq!(
        Value::Object(s.wanted()),
        json!({"user": "u1", "ts": 17, "amount": 2.5})
    );
    assert_eq!(s.field("page"), None, "not wanted");
    assert_eq!(s.to_value(), serde_json::from_slice::<Value>(line).unwrap());
}

#[test]
fn added_fields_show_in_both_views() {
    let Parsed::Object(mut s) = wanted().parse(br#"{"user":"a","other":1}"#).unwrap() else {
        panic!("an object");
    };
    s.insert("ts".into(), json!(5));
    s.insert("user".into(), json!("b"));
    assert_eq!(Value::Object(s.wanted()), json!({"user": "b", "ts": 5}));
    assert_eq!(s.to_value(), json!({"user": "b", "ts": 5, "other": 1}));
}

#[test]
fn tricky_records_read_as_a_full_parse_reads_them() {
    let w = wanted();
    let lines: &[&[u8]] = &[
        br#"{"user":"a","user":"b"}"#,
        br#"{"user":"a","ts":1e400}"#,
        br#"{"other":1e400,"user":"a"}"#,
        br#"{"other":-1e400}"#,
        br#"{"other":18446744073709551616}"#,
        br#"{"other":"\ud800"}"#,
        br#"{"other":"\ud83d\ude00","user":"\u00e9"}"#,
        br#"{"other":"\x"}"#,
        br#"{"\ud800":1}"#,
        b"{\"other\":\"\xff\"}",
        b"{\"\xc3\":1}",
        br#"{"other":[1,2,}"#,
        br#"{"other":01}"#,
        br#"{"other":1.}"#,
        br#"{"other":tru}"#,
        br#"{"user":"a"} x"#,
        br#"{"user":"a",}"#,
        br#"{"user" "a"}"#,
        br#"{1:2}"#,
        br#"[1,2,3]"#,
        br#""just a string""#,
        br#"42"#,
        br#"null"#,
        br#""#,
        br#"   "#,
        br#"{"other":"line\nbreak","ts":"2026-01-01T00:00:00Z"}"#,
        br#"{"user":{"deep":[[[[]]]]},"amount":[1]}"#,
        b"{\"other\":\"tab\there\"}",
    ];
    for line in lines {
        agrees(&w, line);
    }
    let deep = format!("{{\"other\":{}{}}}", "[".repeat(200), "]".repeat(200));
    agrees(&w, deep.as_bytes());
    let deep = format!("{{\"user\":{}{}}}", "[".repeat(200), "]".repeat(200));
    agrees(&w, deep.as_bytes());
}

/// Random records, and random damage to them: every outcome agrees.
#[test]
fn random_records_and_their_damage_read_as_a_full_parse_reads_them() {
    let w = wanted();
    let mut rng = ChaCha8Rng::seed_from_u64(15);
    let alphabet = b"{}[]\",:\\0123456789.eE+-tnfu aux\x80\xff";
    for _ in 0..20_000 {
        let mut record = serde_json::Map::new();
        for _ in 0..rng.random_range(0..6) {
            let name = ["user", "ts", "amount", "ingest", "page", "x"][rng.random_range(0..6)];
            let value = match rng.random_range(0..7) {
                0 => json!(rng.random_range(-1000i64..1000)),
                1 => json!(rng.random::<f64>() * 1e6),
                2 => json!(format!("s{}", rng.random_range(0..100))),
                3 => json!(null),
                4 => json!([1, "two", {"three": 3}]),
                5 => json!({"nested": {"user": "inner"}}),
                _ => json!("esc\"aped\\ \u{e9}"),
            };
            record.insert(name.into(), value);
        }
        let mut line = serde_json::to_vec(&Value::Object(record)).unwrap();
        agrees(&w, &line);
        for _ in 0..rng.random_range(1..4) {
            let at = rng.random_range(0..=line.len());
            match rng.random_range(0..3) {
                0 if at < line.len() => {
                    line.remove(at);
                }
                1 if at < line.len() => line[at] = alphabet[rng.random_range(0..alphabet.len())],
                _ => line.insert(at, alphabet[rng.random_range(0..alphabet.len())]),
            }
        }
        agrees(&w, &line);
    }
}
