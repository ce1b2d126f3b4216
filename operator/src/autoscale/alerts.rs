//! Alertmanager webhooks (payload version 4) as signals for the policy.
//!
//! An alert counts for the StreamJob its `namespace` and `job` labels name
//! (the chart's rules keep both), firing or resolved, deduplicated by its
//! fingerprint: Alertmanager sends a firing alert again every repeat
//! interval, and the same alert through several receivers. An alert is a
//! signal, never a command: the policy weighs it with its own measurements
//! (see `policy::decide`). One that stops being repeated is forgotten after
//! a while, so a lost "resolved" cannot keep a job scaling.

use std::collections::BTreeMap;

use serde::Deserialize;

/// Alerts of the chart's rules that say a job lacks capacity.
pub const CAPACITY: [&str; 2] = ["EddyCheckpointLag", "EddyBacklogGrowing"];

#[derive(Deserialize)]
struct Payload {
    version: String,
    #[serde(default)]
    alerts: Vec<Incoming>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Incoming {
    status: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    fingerprint: String,
    #[serde(default)]
    starts_at: Option<String>,
}

/// A firing alert for a job.
#[derive(Clone, Debug, PartialEq)]
pub struct Alert {
    pub name: String,
    pub namespace: String,
    pub job: String,
    /// When it started firing (epoch ms).
    pub since_ms: i64,
    /// When a webhook last said it fires.
    pub seen_ms: i64,
}

/// What a webhook brought.
#[derive(Debug, Default, PartialEq)]
pub struct Received {
    pub firing: usize,
    pub resolved: usize,
    /// Alerts without the `namespace` and `job` labels: not for a job.
    pub ignored: usize,
}

/// The alerts firing now, by fingerprint.
#[derive(Debug, Default)]
pub struct Alerts {
    firing: BTreeMap<String, Alert>,
}

impl Alerts {
    /// Takes a webhook's body, received at `now_ms`.
    pub fn receive(&mut self, body: &[u8], now_ms: i64) -> Result<Received, String> {
        let payload: Payload = serde_json::from_slice(body)
            .map_err(|e| format!("not an Alertmanager webhook payload: {e}"))?;
        if payload.version != "4" {
            return Err(format!(
                "webhook payload version {:?}: only version \"4\" is read",
                payload.version
            ));
        }
        let mut got = Received::default();
        for alert in payload.alerts {
            let label = |name: &str| alert.labels.get(name).cloned();
            let (Some(namespace), Some(job)) = (label("namespace"), label("job")) else {
                got.ignored += 1;
                continue;
            };
            if alert.status == "resolved" {
                self.firing.remove(&alert.fingerprint);
                got.resolved += 1;
                continue;
            }
            let since_ms = alert
                .starts_at
                .as_deref()
                .and_then(|t| t.parse::<jiff::Timestamp>().ok())
                .map_or(now_ms, |t| t.as_millisecond());
            let entry = self.firing.entry(alert.fingerprint).or_insert(Alert {
                name: label("alertname").unwrap_or_default(),
                namespace,
                job,
                since_ms,
                seen_ms: now_ms,
            });
            entry.seen_ms = now_ms;
            got.firing += 1;
        }
        Ok(got)
    }

    /// Forgets alerts no webhook repeated for `stale_ms`.
    pub fn forget_stale(&mut self, now_ms: i64, stale_ms: i64) {
        self.firing.retain(|_, a| now_ms - a.seen_ms < stale_ms);
    }

    /// Names of the alerts firing for a job that say it lacks capacity.
    pub fn capacity(&self, namespace: &str, job: &str) -> Vec<String> {
        let mut names: Vec<String> = self
            .firing
            .values()
            .filter(|a| a.namespace == namespace && a.job == job)
            .filter(|a| CAPACITY.contains(&a.name.as_str()))
            .map(|a| a.name.clone())
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// Every alert firing for a job.
    pub fn of(&self, namespace: &str, job: &str) -> Vec<&Alert> {
        self.firing
            .values()
            .filter(|a| a.namespace == namespace && a.job == job)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Status, alert name, fingerprint and labels of one alert.
    type Sent<'a> = (&'a str, &'a str, &'a str, &'a [(&'a str, &'a str)]);

    fn webhook(alerts: &[Sent<'_>]) -> Vec<u8> {
        let alerts: Vec<serde_json::Value> = alerts
            .iter()
            .map(|(status, name, fingerprint, labels)| {
                let mut l: serde_json::Map<String, serde_json::Value> = labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), serde_json::json!(v)))
                    .collect();
                l.insert("alertname".into(), serde_json::json!(name));
                serde_json::json!({
                    "status": status,
                    "labels": l,
                    "annotations": {},
                    "startsAt": "2026-12-01T10:00:00Z",
                    "endsAt": "0001-01-01T00:00:00Z",
                    "generatorURL": "http://prometheus/graph",
                    "fingerprint": fingerprint
                })
            })
            .collect();
        serde_json::to_vec(&serde_json::json!({
            "version": "4",
            "groupKey": "{}:{alertname=\"EddyCheckpointLag\"}",
            "status": "firing",
            "receiver": "eddy-operator",
            "groupLabels": {},
            "commonLabels": {},
            "commonAnnotations": {},
            "externalURL": "http://alertmanager",
            "truncatedAlerts": 0,
            "alerts": alerts
        }))
        .unwrap()
    }

    const JOB: &[(&str, &str)] = &[("namespace", "shop"), ("job", "orders")];

    #[test]
    fn firing_alerts_count_once_per_fingerprint_until_resolved() {
        let mut alerts = Alerts::default();
        let lag = webhook(&[
            ("firing", "EddyCheckpointLag", "aa", JOB),
            ("firing", "EddyHotKey", "bb", JOB),
            ("firing", "EddyCheckpointLag", "cc", &[("namespace", "x")]),
        ]);
        let got = alerts.receive(&lag, 1_000).unwrap();
        assert_eq!(
            got,
            Received {
                firing: 2,
                resolved: 0,
                ignored: 1
            }
        );
        // Repeated, and through a second receiver: still one.
        alerts.receive(&lag, 61_000).unwrap();
        assert_eq!(alerts.of("shop", "orders").len(), 2);
        assert_eq!(alerts.capacity("shop", "orders"), ["EddyCheckpointLag"]);
        assert_eq!(alerts.of("shop", "orders")[0].since_ms, 1_796_119_200_000);
        assert!(alerts.capacity("shop", "other").is_empty());
        let resolved = webhook(&[("resolved", "EddyCheckpointLag", "aa", JOB)]);
        alerts.receive(&resolved, 62_000).unwrap();
        assert!(alerts.capacity("shop", "orders").is_empty());
    }

    #[test]
    fn an_alert_not_repeated_is_forgotten() {
        let mut alerts = Alerts::default();
        let lag = webhook(&[("firing", "EddyBacklogGrowing", "aa", JOB)]);
        alerts.receive(&lag, 0).unwrap();
        alerts.forget_stale(10 * 60_000, 15 * 60_000);
        assert_eq!(alerts.capacity("shop", "orders"), ["EddyBacklogGrowing"]);
        alerts.forget_stale(20 * 60_000, 15 * 60_000);
        assert!(alerts.capacity("shop", "orders").is_empty());
    }

    #[test]
    fn other_payloads_are_refused_with_a_reason() {
        let mut alerts = Alerts::default();
        let old = br#"{"version": "3", "alerts": []}"#;
        assert!(alerts.receive(old, 0).unwrap_err().contains("version"));
        assert!(alerts.receive(b"nope", 0).unwrap_err().contains("webhook"));
    }
}
