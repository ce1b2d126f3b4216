//! JSON forms of results and of late and invalid records.

use std::sync::Arc;

use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::{json, Value};

use crate::{
    engine::{window::Window, WindowResult},
    event::rfc3339,
};

/// Who a result belongs to: the job's namespace (empty for local runs) and
/// name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobId {
    pub namespace: String,
    pub name: String,
}

impl JobId {
    /// `<namespace>/<name>`, with `default` for a job without a namespace:
    /// where its checkpoints live, and what late and invalid record ids hash.
    pub fn path(&self) -> String {
        format!("{}/{}", self.namespace_or_default(), self.name)
    }

    /// The namespace, `default` for a job without one.
    pub fn namespace_or_default(&self) -> &str {
        if self.namespace.is_empty() {
            "default"
        } else {
            &self.namespace
        }
    }
}

/// The deterministic id of a result: the same job, key and window always
/// give the same id, whatever the revision or the partition count, so a sink
/// that keeps the highest-ranked revision per id ([`outranks`]) is
/// idempotent.
pub fn result_id(job: &JobId, key: &str, start_ms: i64, end_ms: i64) -> String {
    let mut id = String::with_capacity(32);
    write_result_id(&mut id, job, key, start_ms, end_ms);
    id
}

/// [`result_id`], appended to `id`.
pub fn write_result_id(id: &mut String, job: &JobId, key: &str, start_ms: i64, end_ms: i64) {
    // Streamed: the same hash as of the concatenated bytes, without them.
    let mut text = xxhash_rust::xxh3::Xxh3::new();
    for part in [
        job.namespace.as_bytes(),
        job.name.as_bytes(),
        key.as_bytes(),
    ] {
        text.update(&(part.len() as u32).to_be_bytes());
        text.update(part);
    }
    text.update(&start_ms.to_be_bytes());
    text.update(&end_ms.to_be_bytes());
    // `{:032x}` of the digest, without the formatting machinery (which
    // took a quarter of the id's instructions).
    let mut hex = [0u8; 32];
    // 16 bytes always fit 32 hex digits.
    let _ = hex::encode_to_slice(text.digest128().to_be_bytes(), &mut hex);
    id.push_str(std::str::from_utf8(&hex).unwrap_or_default());
}

/// Whether a revision `(final, revision)` of a result replaces `stored`,
/// which a sink holds for the same id: a final revision outranks every
/// revision that is not, and otherwise the higher revision wins.
///
/// Revision numbers alone do not order a replay: how often a fired window
/// is revised depends on how the partitions' records interleave, which a
/// replay after a crash does not repeat. A run that crashed may have written
/// revision 3, not final; its replay may close the same window at revision
/// 2. The final revision holds every event the window accepted, so it wins;
/// and nothing replaces it but another final one, of a later replay. That
/// one has the same events unless a record was late in one run and not in
/// the other (the watermark, too, depends on how partitions interleave):
/// then the higher revision wins, as between any two of the same rank.
pub fn outranks(revision: (bool, u32), stored: (bool, u32)) -> bool {
    revision > stored
}

/// Serialises one job's results, each a JSON line (without the newline) as
/// serde_json makes it (fields in a fixed order), from parts rendered
/// once: the job's name, each
/// aggregate's name, and the last window's bounds (results come out window
/// by window, so most share them). Only a result's own values are
/// formatted per result.
pub struct ResultEncoder {
    /// Each aggregate's name as a JSON key with its colon: `"count":`.
    name_keys: Vec<Vec<u8>>,
    /// `,"job":"<name>","partition":`.
    job: Vec<u8>,
    /// The last window, and its bounds as a JSON object.
    bounds: Option<(Window, Vec<u8>)>,
}

/// A window's bounds, as the result records show them.
struct Bounds {
    window: Window,
    start: String,
    end: String,
}

/// `text` as a JSON string, appended to `out`.
fn json_str(out: &mut Vec<u8>, text: &str) {
    // Serializing a str into a Vec cannot fail.
    let _ = serde_json::to_writer(out, text);
}

impl ResultEncoder {
    /// An encoder for `job`'s results, whose aggregates are named `names`.
    pub fn new(job: &JobId, names: &[Arc<str>]) -> Self {
        let name_keys = names
            .iter()
            .map(|name| {
                let mut key = Vec::new();
                json_str(&mut key, name);
                key.push(b':');
                key
            })
            .collect();
        let mut job_part = b",\"job\":".to_vec();
        json_str(&mut job_part, &job.name);
        job_part.extend_from_slice(b",\"partition\":");
        Self {
            name_keys,
            job: job_part,
            bounds: None,
        }
    }

    /// The result `r`, whose id is `id`, as a JSON line.
    pub fn line(&mut self, id: &str, r: &WindowResult) -> Vec<u8> {
        // Room for a typical result at once, not grown step by step.
        let mut line = Vec::with_capacity(320);
        self.write_line(&mut line, id, r);
        line
    }

    /// [`ResultEncoder::line`], appended to `line`.
    pub fn write_line(&mut self, line: &mut Vec<u8>, id: &str, r: &WindowResult) {
        let w = r.window;
        if self.bounds.as_ref().is_none_or(|(window, _)| *window != w) {
            let bounds = Bounds {
                window: w,
                start: rfc3339(w.start),
                end: rfc3339(w.end),
            };
            // Serializing plain data into a Vec cannot fail.
            let json = serde_json::to_vec(&bounds).unwrap_or_default();
            self.bounds = Some((w, json));
        }
        let mut number = itoa::Buffer::new();
        line.extend_from_slice(b"{\"id\":");
        json_str(line, id);
        line.extend_from_slice(&self.job);
        line.extend_from_slice(number.format(r.partition).as_bytes());
        line.extend_from_slice(b",\"key\":");
        json_str(line, &r.key);
        line.extend_from_slice(b",\"window\":");
        line.extend_from_slice(&self.bounds.as_ref().expect("set above").1);
        line.extend_from_slice(b",\"aggregates\":{");
        for (i, (key, value)) in self.name_keys.iter().zip(&r.aggregates).enumerate() {
            if i > 0 {
                line.push(b',');
            }
            line.extend_from_slice(key);
            // Serializing a Value into a Vec cannot fail.
            let _ = serde_json::to_writer(&mut *line, value);
        }
        line.extend_from_slice(b"},\"revision\":");
        line.extend_from_slice(number.format(r.revision).as_bytes());
        line.extend_from_slice(if r.is_final {
            b",\"final\":true}"
        } else {
            b",\"final\":false}"
        });
    }
}

/// The window object, its fields in alphabetical order.
impl Serialize for Bounds {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(4))?;
        m.serialize_entry("end", &self.end)?;
        m.serialize_entry("endMs", &self.window.end)?;
        m.serialize_entry("start", &self.start)?;
        m.serialize_entry("startMs", &self.window.start)?;
        m.end()
    }
}

/// A late event for the late output.
pub fn late_line(
    job: &str,
    event: &Value,
    lateness_ms: i64,
    watermark_ms: i64,
    origin: &str,
) -> Vec<u8> {
    let record = json!({
        "job": job,
        "reason": "late",
        "latenessMs": lateness_ms,
        "watermark": rfc3339(watermark_ms),
        "event": event,
        "origin": origin,
    });
    serde_json::to_vec(&record).unwrap_or_default()
}

/// A line that is not a JSON record, for the invalid output.
pub fn unreadable_line(job: &str, raw: &str, reason: &str, origin: &str) -> Vec<u8> {
    let record = json!({"job": job, "reason": reason, "raw": raw, "origin": origin});
    serde_json::to_vec(&record).unwrap_or_default()
}

/// An invalid record for the invalid output.
pub fn invalid_line(job: &str, event: &Value, reason: &str, origin: &str) -> Vec<u8> {
    let record = json!({"job": job, "reason": reason, "event": event, "origin": origin});
    serde_json::to_vec(&record).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::window::Window;

    /// One result as a JSON line, from an encoder made for it alone.
    fn result_line(job: &JobId, names: &[Arc<str>], id: &str, r: &WindowResult) -> Vec<u8> {
        ResultEncoder::new(job, names).line(id, r)
    }

    fn job(namespace: &str, name: &str) -> JobId {
        JobId {
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    #[test]
    fn result_line_has_a_fixed_shape() {
        let r = WindowResult {
            partition: 3,
            key: "key-7".into(),
            window: Window {
                start: 1_767_225_600_000,
                end: 1_767_225_610_000,
            },
            aggregates: [json!(2), json!(3.5)].into_iter().collect(),
            revision: 1,
            is_final: true,
            partial: None,
        };
        let id = result_id(
            &job("", "shop"),
            "key-7",
            1_767_225_600_000,
            1_767_225_610_000,
        );
        let names = ["n".into(), "amount".into()];
        let line = String::from_utf8(result_line(&job("", "shop"), &names, &id, &r)).unwrap();
        assert_eq!(
            line,
            format!(
                r#"{{"id":"{id}","job":"shop","partition":3,"key":"key-7","window":{{"end":"2026-01-01T00:00:10Z","endMs":1767225610000,"start":"2026-01-01T00:00:00Z","startMs":1767225600000}},"aggregates":{{"n":2,"amount":3.5}},"revision":1,"final":true}}"#
            )
        );
    }

    /// An encoder reused across windows writes what a fresh one writes.
    #[test]
    fn reused_encoder_matches_a_fresh_one() {
        let shop = job("", "shop");
        let names: Arc<[Arc<str>]> = vec!["n".into()].into();
        let mut encoder = ResultEncoder::new(&shop, &names);
        for (start, key) in [(0, "a"), (0, "b"), (10_000, "a"), (0, "c")] {
            let r = WindowResult {
                partition: 0,
                key: key.into(),
                window: Window {
                    start,
                    end: start + 10_000,
                },
                aggregates: [json!(1)].into_iter().collect(),
                revision: 1,
                is_final: false,
                partial: None,
            };
            assert_eq!(encoder.line("id", &r), result_line(&shop, &names, "id", &r));
        }
    }

    /// Names, keys and job names that JSON must escape come out as
    /// serde_json writes them.
    #[test]
    fn escaped_parts_are_written_as_serde_json_writes_them() {
        let shop = job("", "sh\"op\n");
        let names: Arc<[Arc<str>]> = vec!["n\"x".into(), "ü".into()].into();
        let r = WindowResult {
            partition: 0,
            key: "k\u{1}é\"\\".into(),
            window: Window {
                start: -60_000,
                end: 0,
            },
            aggregates: [json!(1.5), json!("a\tb")].into_iter().collect(),
            revision: 12,
            is_final: false,
            partial: None,
        };
        let text = |v: &str| serde_json::to_string(v).unwrap();
        let expected = format!(
            r#"{{"id":"i","job":{},"partition":0,"key":{},"window":{{"end":"1970-01-01T00:00:00Z","endMs":0,"start":"1969-12-31T23:59:00Z","startMs":-60000}},"aggregates":{{{}:1.5,{}:"a\tb"}},"revision":12,"final":false}}"#,
            text("sh\"op\n"),
            text("k\u{1}é\"\\"),
            text("n\"x"),
            text("ü"),
        );
        let line = ResultEncoder::new(&shop, &names).line("i", &r);
        assert_eq!(String::from_utf8(line).unwrap(), expected);
    }

    /// Ids never change across versions: the streamed hash is the one of
    /// the length-prefixed parts laid end to end.
    #[test]
    fn result_id_is_the_hash_of_the_length_prefixed_parts() {
        let mut text = Vec::new();
        for part in ["prod", "shop", "key-7"] {
            text.extend_from_slice(&(part.len() as u32).to_be_bytes());
            text.extend_from_slice(part.as_bytes());
        }
        text.extend_from_slice(&1_000i64.to_be_bytes());
        text.extend_from_slice(&2_000i64.to_be_bytes());
        assert_eq!(
            result_id(&job("prod", "shop"), "key-7", 1_000, 2_000),
            format!("{:032x}", xxhash_rust::xxh3::xxh3_128(&text))
        );
    }

    #[test]
    fn result_ids_are_stable_and_distinct() {
        let shop = job("prod", "shop");
        let id = result_id(&shop, "key-7", 0, 10);
        assert_eq!(id.len(), 32);
        assert_eq!(id, result_id(&shop, "key-7", 0, 10));
        assert_ne!(id, result_id(&shop, "key-7", 10, 20));
        assert_ne!(id, result_id(&shop, "key-8", 0, 10));
        assert_ne!(id, result_id(&job("prod", "shops"), "key-7", 0, 10));
        assert_ne!(id, result_id(&job("staging", "shop"), "key-7", 0, 10));
        // Length prefixes keep ("ab","c") and ("a","bc") apart.
        assert_ne!(
            result_id(&job("", "ab"), "c", 0, 1),
            result_id(&job("", "a"), "bc", 0, 1)
        );
    }
}
