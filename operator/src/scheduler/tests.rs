use super::*;

fn listing(completed: &[(u64, &str)], next_id: u64) -> Listing {
    Listing {
        checkpoints: completed
            .iter()
            .map(|(id, time)| Completed {
                id: *id,
                time: time.to_string(),
                duration_ms: *id * 10,
                bytes_uploaded: 100,
                bytes_total: 1000,
            })
            .collect(),
        next_id,
        ..Listing::default()
    }
}

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

#[test]
fn the_next_id_is_above_everything_any_pod_has_seen() {
    assert_eq!(next_id(&[]), 1);
    assert_eq!(next_id(&[listing(&[], 0)]), 1);
    let a = listing(&[(4, "2026-11-21T10:00:00Z")], 5);
    let b = listing(&[], 9);
    assert_eq!(next_id(&[a.clone(), b]), 9);
    let flying = Listing {
        in_flight: Some(12),
        ..a
    };
    assert_eq!(next_id(&[flying]), 13);
}

#[test]
fn completed_on_all_is_the_newest_id_every_pod_has() {
    let a = listing(
        &[(3, "2026-11-21T10:00:00Z"), (5, "2026-11-21T10:01:00Z")],
        6,
    );
    let b = listing(
        &[(3, "2026-11-21T10:00:02Z"), (4, "2026-11-21T10:00:30Z")],
        5,
    );
    let c = completed_on_all(&[a.clone(), b]).unwrap();
    assert_eq!(c.id, 3);
    assert_eq!(c.time, "2026-11-21T10:00:02Z", "the last pod to finish");
    assert_eq!(
        (c.bytes_uploaded, c.bytes_total, c.duration_ms),
        (200, 2000, 30)
    );
    assert_eq!(completed_on_all(&[a, listing(&[], 1)]), None);
    assert_eq!(completed_on_all(&[]), None);
}

#[test]
fn rounds_are_due_one_interval_after_the_last_start_or_completion() {
    let minute = Duration::from_secs(60);
    let mut state = JobCheckpoints::default();
    assert!(
        due(&state, minute, ts("2026-11-21T10:00:00Z")),
        "never checkpointed"
    );
    state.last_started = Some(ts("2026-11-21T10:00:00Z"));
    assert!(!due(&state, minute, ts("2026-11-21T10:00:59Z")));
    assert!(due(&state, minute, ts("2026-11-21T10:01:00Z")));
    state.last_completed = Some(CheckpointRecord {
        id: 1,
        time: "2026-11-21T10:00:30Z".into(),
        duration_ms: 0,
        bytes_uploaded: 0,
        bytes_total: 0,
    });
    assert!(!due(&state, minute, ts("2026-11-21T10:01:00Z")));
    assert!(due(&state, minute, ts("2026-11-21T10:01:30Z")));
    state.round = Some(Round {
        id: 2,
        started: ts("2026-11-21T10:01:30Z"),
        is_final: false,
    });
    assert!(
        !due(&state, minute, ts("2026-11-21T11:00:00Z")),
        "one round at a time"
    );
}

#[test]
fn lag_counts_from_the_last_checkpoint_or_the_start() {
    let now = ts("2026-11-21T10:10:00Z");
    let start = ts("2026-11-21T10:00:00Z");
    assert_eq!(lag_seconds(None, start, now), 600);
    let last = CheckpointRecord {
        id: 1,
        time: "2026-11-21T10:09:15Z".into(),
        duration_ms: 0,
        bytes_uploaded: 0,
        bytes_total: 0,
    };
    assert_eq!(lag_seconds(Some(&last), start, now), 45);
}

/// A fake processor that completes every checkpoint as soon as it is
/// asked, and records the asks.
async fn instant_processor() -> (String, std::sync::Arc<std::sync::Mutex<Vec<u64>>>) {
    use axum::{routing::get, Json, Router};
    let done: std::sync::Arc<std::sync::Mutex<Vec<u64>>> = Default::default();
    let (list, post) = (done.clone(), done.clone());
    let app = Router::new().route(
        "/checkpoints",
        get(move || {
            let ids = list.lock().unwrap().clone();
            let checkpoints: Vec<serde_json::Value> = ids
                .iter()
                .map(|id| serde_json::json!({"id": id, "time": "2026-11-21T10:00:00Z"}))
                .collect();
            let next = ids.iter().max().map_or(1, |m| m + 1);
            async move { Json(serde_json::json!({"checkpoints": checkpoints, "nextId": next})) }
        })
        .post(move |Json(body): Json<serde_json::Value>| {
            let id = body["id"].as_u64().unwrap();
            post.lock().unwrap().push(id);
            async move {
                (
                    http::StatusCode::ACCEPTED,
                    Json(serde_json::json!({"id": id})),
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), done)
}

#[tokio::test]
async fn a_collected_final_round_is_not_followed_by_another() {
    let (pod, asked) = instant_processor().await;
    let scheduler = Scheduler::default();
    let mut state = JobCheckpoints::default();
    let timing = Timing {
        interval: Duration::from_secs(3600),
        timeout: Duration::from_secs(60),
    };
    let now = ts("2026-11-21T10:00:00Z");
    let pods = [pod];
    let first = scheduler.step(&pods, &mut state, timing, true, now).await;
    assert_eq!(first.started, Some(1));
    let second = scheduler.step(&pods, &mut state, timing, true, now).await;
    assert_eq!(second.completed.map(|c| c.id), Some(1));
    assert_eq!(
        second.started, None,
        "the pods are paused: nothing more to ask"
    );
    assert_eq!(*asked.lock().unwrap(), [1]);
}

#[tokio::test]
async fn a_round_a_restarted_pod_lost_fails_at_once() {
    let (pod, asked) = instant_processor().await;
    let scheduler = Scheduler::default();
    let timing = Timing {
        interval: Duration::from_secs(3600),
        timeout: Duration::from_secs(600),
    };
    let now = ts("2026-11-21T10:00:00Z");
    // A round the operator asked for before the pod restarted: the pod
    // now has it neither in flight nor completed.
    let mut state = JobCheckpoints {
        round: Some(Round {
            id: 7,
            started: now,
            is_final: false,
        }),
        ..JobCheckpoints::default()
    };
    let pods = [pod];
    let step = scheduler.step(&pods, &mut state, timing, true, now).await;
    let why = step.failed.expect("the lost round fails");
    assert!(
        why.contains("checkpoint 7 is neither in flight nor completed"),
        "{why}"
    );
    assert_eq!(state.failures, 1);
    assert_eq!(step.started, Some(1), "a new round starts in the same step");
    assert_eq!(*asked.lock().unwrap(), [1]);
}
