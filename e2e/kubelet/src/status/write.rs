//! Writes pod status with a JSON merge patch on `pods/status`, only when it
//! differs from what was written last.

use k8s_openapi::api::core::v1::{Pod, PodStatus};
use kube::api::{Patch, PatchParams};
use kube::Api;
use serde_json::json;

pub struct StatusWriter {
    api: Api<Pod>,
    name: String,
    last: Option<serde_json::Value>,
}

impl StatusWriter {
    pub fn new(api: Api<Pod>, name: &str) -> Self {
        Self {
            api,
            name: name.to_string(),
            last: None,
        }
    }

    /// Writes `status` unless it is what was written last. Lists (conditions,
    /// container statuses) are replaced whole by a merge patch, so each
    /// write carries them complete.
    pub async fn write(&mut self, status: &PodStatus) -> Result<bool, kube::Error> {
        let value = serde_json::to_value(status).map_err(kube::Error::SerdeError)?;
        if self.last.as_ref() == Some(&value) {
            return Ok(false);
        }
        let patch = json!({ "status": value });
        self.api
            .patch_status(&self.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        self.last = Some(value);
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{Request, Response};
    use http_body_util::BodyExt;
    use k8s_openapi::api::core::v1::PodStatus;
    use kube::client::Body;
    use kube::Client;

    #[tokio::test]
    async fn patches_pods_status_once_per_distinct_status() {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let api: Api<Pod> = Api::namespaced(Client::new(service, "ns"), "ns");
        let server = tokio::spawn(async move {
            let (request, respond) = handle.next_request().await.expect("a request");
            assert_eq!(request.method(), http::Method::PATCH);
            assert_eq!(request.uri().path(), "/api/v1/namespaces/ns/pods/p/status");
            assert_eq!(
                request.headers()["content-type"],
                "application/merge-patch+json"
            );
            let body = request
                .into_body()
                .collect()
                .await
                .expect("body")
                .to_bytes();
            let patch: serde_json::Value = serde_json::from_slice(&body).expect("json");
            assert_eq!(patch, json!({"status": {"phase": "Running"}}));
            let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}});
            respond.send_response(
                Response::builder()
                    .body(Body::from(serde_json::to_vec(&pod).expect("json")))
                    .expect("response"),
            );
            // No second request may come: the handle is dropped here, so
            // one would fail the writer.
        });
        let mut writer = StatusWriter::new(api, "p");
        let running = PodStatus {
            phase: Some("Running".into()),
            ..PodStatus::default()
        };
        assert!(writer.write(&running).await.expect("written"));
        server.await.expect("server");
        assert!(!writer.write(&running).await.expect("unchanged"));
    }
}
