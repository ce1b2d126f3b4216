//! A store in an S3-compatible bucket, below a key prefix (the `s3`
//! feature: the AWS SDK signs and sends the requests).

use std::{path::Path, time::Duration};

use anyhow::{bail, Context};
use aws_sdk_s3::{
    config::{BehaviorVersion, Credentials, Region},
    operation::list_objects_v2::ListObjectsV2Output,
    primitives::ByteStream,
    types::{CompletedMultipartUpload, CompletedPart, Delete, ObjectIdentifier},
    Client,
};
use tokio::io::AsyncReadExt;

use super::S3Settings;

/// Files larger than this go up in parts.
const MULTIPART_THRESHOLD: u64 = 16 << 20;
/// Size of each part of a multipart upload.
const PART_SIZE: usize = 8 << 20;
/// Attempts of each request before giving up.
const ATTEMPTS: u32 = 4;

#[derive(Clone, Debug)]
pub struct Bucket {
    client: Client,
    bucket: String,
    prefix: String,
}

impl Bucket {
    pub fn open(settings: S3Settings, bucket: &str, prefix: String) -> anyhow::Result<Self> {
        let mut config = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(settings.region))
            .force_path_style(settings.path_style)
            .credentials_provider(Credentials::new(
                settings.access_key,
                settings.secret_key,
                None,
                None,
                "eddy",
            ));
        if let Some(endpoint) = settings.endpoint {
            config = config.endpoint_url(endpoint);
        }
        Ok(Self {
            client: Client::from_conf(config.build()),
            bucket: bucket.to_string(),
            prefix,
        })
    }

    /// The client and the bucket's name (tests create their buckets).
    pub fn client(&self) -> (&Client, &str) {
        (&self.client, &self.bucket)
    }

    pub fn child(&self, sub: &str) -> Self {
        Self {
            client: self.client.clone(),
            bucket: self.bucket.clone(),
            prefix: self.key(sub),
        }
    }

    /// The full key of `key`, below the prefix.
    fn key(&self, key: &str) -> String {
        if self.prefix.is_empty() {
            key.to_string()
        } else {
            format!("{}/{key}", self.prefix)
        }
    }

    pub async fn put_file(&self, key: &str, path: &Path) -> anyhow::Result<()> {
        let (client, bucket) = (&self.client, &self.bucket);
        let size = tokio::fs::metadata(path).await?.len();
        let full = self.key(key);
        if size > MULTIPART_THRESHOLD {
            return multipart(client, bucket, &full, path).await;
        }
        retry(|| async {
            client
                .put_object()
                .bucket(bucket)
                .key(&full)
                .body(ByteStream::from_path(path).await?)
                .send()
                .await?;
            Ok(())
        })
        .await
    }

    pub async fn put_new(&self, key: &str, bytes: Vec<u8>) -> anyhow::Result<()> {
        let (client, bucket) = (&self.client, &self.bucket);
        let full = self.key(key);
        if self.exists(key).await? {
            bail!("{full} exists: checkpoints are never overwritten");
        }
        retry(|| async {
            client
                .put_object()
                .bucket(bucket)
                .key(&full)
                .if_none_match("*")
                .body(ByteStream::from(bytes.clone()))
                .send()
                .await?;
            Ok(())
        })
        .await
    }

    pub async fn exists(&self, key: &str) -> anyhow::Result<bool> {
        let full = self.key(key);
        let head = self.client.head_object().bucket(&self.bucket).key(&full);
        match head.send().await {
            Ok(_) => Ok(true),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn get(&self, key: &str) -> anyhow::Result<Vec<u8>> {
        let (client, bucket) = (&self.client, &self.bucket);
        let full = self.key(key);
        retry(|| async {
            let out = client.get_object().bucket(bucket).key(&full).send().await?;
            Ok(out.body.collect().await?.into_bytes().to_vec())
        })
        .await
    }

    /// Keys (relative to the prefix) and sizes under `prefix`.
    pub async fn list(&self, prefix: &str) -> anyhow::Result<Vec<(String, u64)>> {
        let full = self.key(prefix);
        let strip = if self.prefix.is_empty() {
            0
        } else {
            self.prefix.len() + 1
        };
        let mut out = Vec::new();
        for page in list_pages(&self.client, &self.bucket, &full, None).await? {
            for o in page.contents() {
                if let Some(key) = o.key() {
                    out.push((key[strip..].to_string(), o.size().unwrap_or(0) as u64));
                }
            }
        }
        Ok(out)
    }

    /// The common prefixes right below the prefix.
    pub async fn folders(&self) -> anyhow::Result<Vec<String>> {
        let full = self.key("");
        let mut out = Vec::new();
        for page in list_pages(&self.client, &self.bucket, &full, Some("/")).await? {
            for p in page.common_prefixes() {
                if let Some(name) = p.prefix() {
                    out.push(name[full.len()..].trim_end_matches('/').to_string());
                }
            }
        }
        Ok(out)
    }

    pub async fn delete(&self, keys: &[String]) -> anyhow::Result<()> {
        for chunk in keys.chunks(1000) {
            let objects = chunk
                .iter()
                .map(|k| ObjectIdentifier::builder().key(self.key(k)).build())
                .collect::<Result<Vec<_>, _>>()?;
            self.client
                .delete_objects()
                .bucket(&self.bucket)
                .delete(Delete::builder().set_objects(Some(objects)).build()?)
                .send()
                .await?;
        }
        Ok(())
    }
}

/// Every page of a listing of `prefix` (grouped at `delimiter`, if any).
async fn list_pages(
    client: &Client,
    bucket: &str,
    prefix: &str,
    delimiter: Option<&str>,
) -> anyhow::Result<Vec<ListObjectsV2Output>> {
    let mut pages = Vec::new();
    let mut token = None;
    loop {
        let page = client
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .set_delimiter(delimiter.map(str::to_string))
            .set_continuation_token(token.take())
            .send()
            .await?;
        token = page.next_continuation_token().map(str::to_string);
        pages.push(page);
        if token.is_none() {
            return Ok(pages);
        }
    }
}

/// Runs a request up to ATTEMPTS times with exponential backoff.
async fn retry<T, F, Fut>(mut f: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    let mut delay = Duration::from_millis(100);
    let mut attempt = 1;
    loop {
        match f().await {
            Ok(v) => return Ok(v),
            Err(e) if attempt >= ATTEMPTS => return Err(e),
            Err(e) => {
                tracing::warn!("store request failed (attempt {attempt}): {e:#}; retrying");
                tokio::time::sleep(delay).await;
                delay *= 2;
                attempt += 1;
            }
        }
    }
}

async fn multipart(client: &Client, bucket: &str, key: &str, path: &Path) -> anyhow::Result<()> {
    let upload = client
        .create_multipart_upload()
        .bucket(bucket)
        .key(key)
        .send()
        .await?;
    let id = upload.upload_id().context("no upload id")?.to_string();
    let mut file = tokio::fs::File::open(path).await?;
    let mut parts = Vec::new();
    let mut number = 1;
    loop {
        let mut buf = vec![0; PART_SIZE];
        let mut filled = 0;
        while filled < PART_SIZE {
            let n = file.read(&mut buf[filled..]).await?;
            if n == 0 {
                break;
            }
            filled += n;
        }
        if filled == 0 {
            break;
        }
        buf.truncate(filled);
        let part = retry(|| async {
            Ok(client
                .upload_part()
                .bucket(bucket)
                .key(key)
                .upload_id(&id)
                .part_number(number)
                .body(ByteStream::from(buf.clone()))
                .send()
                .await?)
        })
        .await?;
        parts.push(
            CompletedPart::builder()
                .part_number(number)
                .set_e_tag(part.e_tag().map(str::to_string))
                .build(),
        );
        number += 1;
    }
    client
        .complete_multipart_upload()
        .bucket(bucket)
        .key(key)
        .upload_id(&id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .set_parts(Some(parts))
                .build(),
        )
        .send()
        .await?;
    Ok(())
}
