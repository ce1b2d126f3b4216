//! Leader election through a `coordination.k8s.io/v1` Lease, as
//! client-go's leaderelection does it: one operator replica holds the
//! Lease and renews it; the others wait until it is not renewed for a
//! whole lease duration, then take it over. Writes carry the Lease's
//! resourceVersion, so two replicas never both win.
//!
//! [`decide`] is pure; [`Elector`] does the API calls.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::{
    api::coordination::v1::{Lease, LeaseSpec},
    apimachinery::pkg::apis::meta::v1::MicroTime,
};
use kube::{
    api::{ObjectMeta, PostParams},
    Api, Client,
};

/// What a replica does with the Lease as it finds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// No Lease yet: create it, held by us.
    Create,
    /// We hold it: renew it.
    Renew,
    /// Its holder stopped renewing it (or released it): take it over.
    TakeOver,
    /// Someone else holds it: wait.
    Follow,
}

/// The decision for `me`, given the Lease (if any) at `now`.
pub fn decide(lease: Option<&LeaseSpec>, me: &str, now: Timestamp) -> Decision {
    let Some(spec) = lease else {
        return Decision::Create;
    };
    let holder = spec.holder_identity.as_deref().unwrap_or_default();
    if holder == me {
        return Decision::Renew;
    }
    if holder.is_empty() {
        return Decision::TakeOver;
    }
    let duration = i64::from(spec.lease_duration_seconds.unwrap_or(15));
    let renewed = spec
        .renew_time
        .as_ref()
        .or(spec.acquire_time.as_ref())
        .map(|t| t.0);
    match renewed {
        Some(at) if now.as_second() < at.as_second() + duration => Decision::Follow,
        _ => Decision::TakeOver,
    }
}

/// Holds or waits for one Lease.
pub struct Elector {
    api: Api<Lease>,
    name: String,
    me: String,
    duration: Duration,
}

impl Elector {
    pub fn new(client: Client, namespace: &str, name: &str, me: &str, duration: Duration) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            name: name.into(),
            me: me.into(),
            duration,
        }
    }

    /// One try: `true` when we hold the Lease afterwards.
    pub async fn try_hold(&self) -> Result<bool, kube::Error> {
        let now = Timestamp::now();
        let current = self.api.get_opt(&self.name).await?;
        let decision = decide(
            current.as_ref().and_then(|l| l.spec.as_ref()),
            &self.me,
            now,
        );
        let stamp = Some(MicroTime(now));
        let outcome = match (decision, current) {
            (Decision::Follow, _) => return Ok(false),
            (Decision::Create, _) | (_, None) => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.name.clone()),
                        ..ObjectMeta::default()
                    },
                    spec: Some(LeaseSpec {
                        holder_identity: Some(self.me.clone()),
                        lease_duration_seconds: Some(self.duration.as_secs() as i32),
                        acquire_time: stamp.clone(),
                        renew_time: stamp,
                        lease_transitions: Some(0),
                        ..LeaseSpec::default()
                    }),
                };
                self.api
                    .create(&PostParams::default(), &lease)
                    .await
                    .map(drop)
            }
            (decision, Some(mut lease)) => {
                let spec = lease.spec.get_or_insert_default();
                if decision == Decision::TakeOver {
                    spec.holder_identity = Some(self.me.clone());
                    spec.acquire_time = stamp.clone();
                    spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
                }
                spec.lease_duration_seconds = Some(self.duration.as_secs() as i32);
                spec.renew_time = stamp;
                // resourceVersion is kept: a concurrent writer makes this 409.
                self.api
                    .replace(&self.name, &PostParams::default(), &lease)
                    .await
                    .map(drop)
            }
        };
        match outcome {
            Ok(()) => Ok(true),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Waits until we hold the Lease.
    pub async fn acquire(&self) {
        let retry = self.retry();
        loop {
            match self.try_hold().await {
                Ok(true) => {
                    tracing::info!(lease = %self.name, "leading as {}", self.me);
                    return;
                }
                Ok(false) => tracing::debug!(lease = %self.name, "another replica leads"),
                Err(e) => tracing::warn!(lease = %self.name, "leader election: {e}"),
            }
            tokio::time::sleep(retry).await;
        }
    }

    /// Renews the Lease until that fails for longer than the lease lasts
    /// (another replica may lead by then); returns when leadership is lost.
    pub async fn keep(&self) {
        let retry = self.retry();
        let mut last_renewed = std::time::Instant::now();
        loop {
            tokio::time::sleep(retry).await;
            match self.try_hold().await {
                Ok(true) => last_renewed = std::time::Instant::now(),
                Ok(false) => {
                    tracing::error!(lease = %self.name, "another replica took the lease");
                    return;
                }
                Err(e) => tracing::warn!(lease = %self.name, "renewing the lease: {e}"),
            }
            // Stop before the lease expires for the others.
            if last_renewed.elapsed() + retry >= self.duration {
                tracing::error!(lease = %self.name, "could not renew the lease in time");
                return;
            }
        }
    }

    fn retry(&self) -> Duration {
        self.duration / 5
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(holder: &str, renewed: &str) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.into()),
            lease_duration_seconds: Some(15),
            renew_time: Some(MicroTime(renewed.parse().unwrap())),
            ..LeaseSpec::default()
        }
    }

    #[test]
    fn a_lease_is_followed_until_it_expires_then_taken_over() {
        let now: Timestamp = "2026-11-30T10:00:20Z".parse().unwrap();
        assert_eq!(decide(None, "b", now), Decision::Create);
        let held = lease("a", "2026-11-30T10:00:10Z");
        assert_eq!(decide(Some(&held), "b", now), Decision::Follow);
        assert_eq!(decide(Some(&held), "a", now), Decision::Renew);
        let stale = lease("a", "2026-11-30T10:00:04Z");
        assert_eq!(decide(Some(&stale), "b", now), Decision::TakeOver);
        let released = lease("", "2026-11-30T10:00:19Z");
        assert_eq!(decide(Some(&released), "b", now), Decision::TakeOver);
    }
}
