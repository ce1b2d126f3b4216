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
