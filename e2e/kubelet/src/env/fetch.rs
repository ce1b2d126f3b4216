//! Reads the ConfigMaps and Secrets an environment or a volume refers to.

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::{Api, Client};

use super::resolve::{Objects, References};

/// The referenced objects that exist; a missing one is simply absent.
pub async fn objects(
    client: &Client,
    namespace: &str,
    references: &References,
) -> Result<Objects, kube::Error> {
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let mut objects = Objects::default();
    for name in &references.config_maps {
        if let Some(cm) = config_maps.get_opt(name).await? {
            objects.config_maps.insert(name.clone(), cm);
        }
    }
    for name in &references.secrets {
        if let Some(secret) = secrets.get_opt(name).await? {
            objects.secrets.insert(name.clone(), secret);
        }
    }
    Ok(objects)
}
