//! Service account tokens from the TokenRequest API, bound to the pod and
//! renewed once 80% of their lifetime has passed.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Pod, ServiceAccount, ServiceAccountTokenProjection};
use kube::api::PostParams;
use kube::{Api, Client};

/// Kubernetes' default token lifetime for projected volumes.
const DEFAULT_EXPIRATION_SECONDS: i64 = 3600;

struct Issued {
    token: String,
    at: Instant,
    lifetime: Duration,
}

/// A pod's tokens by volume and path.
#[derive(Default)]
pub struct Tokens {
    issued: HashMap<String, Issued>,
}

impl Tokens {
    pub async fn get(
        &mut self,
        client: &Client,
        pod: &Pod,
        volume: &str,
        source: &ServiceAccountTokenProjection,
    ) -> Result<String, String> {
        let key = format!("{volume}/{}", source.path);
        if let Some(issued) = self.issued.get(&key) {
            if issued.at.elapsed() < issued.lifetime.mul_f64(0.8) {
                return Ok(issued.token.clone());
            }
        }
        let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
        let account = pod
            .spec
            .as_ref()
            .and_then(|s| s.service_account_name.as_deref())
            .unwrap_or("default");
        let expiration = source
            .expiration_seconds
            .unwrap_or(DEFAULT_EXPIRATION_SECONDS);
        let request = TokenRequest {
            spec: Some(TokenRequestSpec {
                audiences: source.audience.clone().map(|audience| vec![audience]),
                expiration_seconds: Some(expiration),
                bound_object_ref: Some(BoundObjectReference {
                    api_version: Some("v1".into()),
                    kind: Some("Pod".into()),
                    name: pod.metadata.name.clone(),
                    uid: pod.metadata.uid.clone(),
                }),
                ..TokenRequestSpec::default()
            }),
            ..TokenRequest::default()
        };
        let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);
        let issued: TokenRequest = accounts
            .create_subresource("token", account, &PostParams::default(), &request)
            .await
            .map_err(|e| {
                format!("cannot get a token for service account {namespace}/{account}: {e}")
            })?;
        let token = issued
            .status
            .and_then(|s| s.token)
            .ok_or_else(|| format!("token request for {namespace}/{account} returned no token"))?;
        self.issued.insert(
            key,
            Issued {
                token: token.clone(),
                at: Instant::now(),
                lifetime: Duration::from_secs(expiration.max(1) as u64),
            },
        );
        Ok(token)
    }
}
