//! The S3-compatible store `scripts/test-servers` starts, through the AWS
//! SDK the processor uses.

use aws_sdk_s3::{config::Credentials, Client};

/// A client of the test store (path-style, as s3s-fs and MinIO need).
pub fn client() -> Client {
    let s3 = crate::s3();
    let config = aws_sdk_s3::Config::builder()
        .behavior_version_latest()
        .endpoint_url(s3.endpoint)
        .region(aws_sdk_s3::config::Region::new("us-east-1"))
        .force_path_style(true)
        .credentials_provider(Credentials::new(
            s3.access_key,
            s3.secret_key,
            None,
            None,
            "eddy-testkit",
        ))
        .build();
    Client::from_conf(config)
}

/// Creates `bucket` (an existing one is fine).
pub async fn create_bucket(bucket: &str) {
    match client().create_bucket().bucket(bucket).send().await {
        Ok(_) => {}
        Err(e) => {
            let text = format!("{:?}", e);
            assert!(
                text.contains("BucketAlreadyOwnedByYou") || text.contains("BucketAlreadyExists"),
                "creating bucket {bucket}: {text}"
            );
        }
    }
}

/// Keys under `prefix` in `bucket`.
pub async fn keys(bucket: &str, prefix: &str) -> Vec<String> {
    let mut keys = Vec::new();
    let mut pages = client()
        .list_objects_v2()
        .bucket(bucket)
        .prefix(prefix)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.unwrap_or_else(|e| panic!("listing {bucket}/{prefix}: {e:?}"));
        keys.extend(
            page.contents()
                .iter()
                .filter_map(|o| o.key().map(String::from)),
        );
    }
    keys
}
