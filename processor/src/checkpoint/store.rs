//! Where checkpoints live: one abstraction over S3-compatible object storage
//! and a local directory, addressed by URL (`s3://bucket/prefix`,
//! `file://dir`). Keys are relative to the store's root, with `/`.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{bail, Context};
use aws_sdk_s3::{
    config::{BehaviorVersion, Credentials, Region},
    operation::list_objects_v2::ListObjectsV2Output,
    primitives::ByteStream,
    types::{CompletedMultipartUpload, CompletedPart, Delete, ObjectIdentifier},
    Client,
};
use tokio::io::AsyncReadExt;

/// Files larger than this go up in parts.
const MULTIPART_THRESHOLD: u64 = 16 << 20;
/// Size of each part of a multipart upload.
const PART_SIZE: usize = 8 << 20;
/// Attempts of each request before giving up.
const ATTEMPTS: u32 = 4;

/// How to reach an S3-compatible store.
#[derive(Clone, Debug)]
pub struct S3Settings {
    pub endpoint: Option<String>,
    pub region: String,
    pub path_style: bool,
    pub access_key: String,
    pub secret_key: String,
}

impl S3Settings {
    /// Settings with credentials from `AWS_ACCESS_KEY_ID` and
    /// `AWS_SECRET_ACCESS_KEY` (where the operator puts the referenced
    /// Secret's values).
    pub fn from_env(
        endpoint: Option<String>,
        region: &str,
        path_style: bool,
    ) -> anyhow::Result<Self> {
        let var = |name: &str| {
            std::env::var(name).with_context(|| {
                format!("{name} is not set: S3 checkpoints need credentials in AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
            })
        };
        Ok(Self {
            endpoint,
            region: region.to_string(),
            path_style,
            access_key: var("AWS_ACCESS_KEY_ID")?,
            secret_key: var("AWS_SECRET_ACCESS_KEY")?,
        })
    }
}

#[derive(Clone, Debug)]
pub enum Store {
    File {
        root: PathBuf,
    },
    S3 {
        client: Client,
        bucket: String,
        prefix: String,
    },
}

impl Store {
    /// A store for `url`, rooted at `sub` below it (e.g. the job's name).
    pub fn open(url: &str, sub: &str, s3: Option<S3Settings>) -> anyhow::Result<Self> {
        if let Some(dir) = url.strip_prefix("file://") {
            return Ok(Self::File {
                root: Path::new(dir).join(sub),
            });
        }
        let Some(rest) = url.strip_prefix("s3://") else {
            bail!("{url:?} is not a store URL (s3://bucket/prefix or file://dir)");
        };
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let settings = s3.context("an s3:// store needs S3 settings")?;
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
        let prefix = [prefix.trim_matches('/'), sub.trim_matches('/')]
            .iter()
            .filter(|p| !p.is_empty())
            .copied()
            .collect::<Vec<_>>()
            .join("/");
        Ok(Self::S3 {
            client: Client::from_conf(config.build()),
            bucket: bucket.to_string(),
            prefix,
        })
    }

    /// The same store rooted at `sub` below this one.
    pub fn child(&self, sub: &str) -> Self {
        match self {
            Self::File { root } => Self::File {
                root: root.join(sub),
            },
            Self::S3 {
                client,
                bucket,
                prefix,
            } => Self::S3 {
                client: client.clone(),
                bucket: bucket.clone(),
                prefix: Self::s3_key(prefix, sub),
            },
        }
    }

    fn s3_key(prefix: &str, key: &str) -> String {
        if prefix.is_empty() {
            key.to_string()
        } else {
            format!("{prefix}/{key}")
        }
    }

    /// Uploads a local file.
    pub async fn put_file(&self, key: &str, path: &Path) -> anyhow::Result<()> {
        match self {
            Self::File { root } => {
                let (target, tmp) = staged(root, key).await?;
                tokio::fs::copy(path, &tmp).await?;
                tokio::fs::rename(&tmp, &target).await?;
                Ok(())
            }
            Self::S3 {
                client,
                bucket,
                prefix,
            } => {
                let size = tokio::fs::metadata(path).await?.len();
                let full = Self::s3_key(prefix, key);
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
        }
    }

    /// Writes a small object that must not exist yet (a manifest).
    pub async fn put_new(&self, key: &str, bytes: Vec<u8>) -> anyhow::Result<()> {
        match self {
            Self::File { root } => {
                let (target, tmp) = staged(root, key).await?;
                if tokio::fs::try_exists(&target).await? {
                    bail!(
                        "{} exists: checkpoints are never overwritten",
                        target.display()
                    );
                }
                tokio::fs::write(&tmp, &bytes).await?;
                let file = tokio::fs::File::open(&tmp).await?;
                file.sync_all().await?;
                tokio::fs::rename(&tmp, &target).await?;
                Ok(())
            }
            Self::S3 {
                client,
                bucket,
                prefix,
            } => {
                let full = Self::s3_key(prefix, key);
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
        }
    }

    pub async fn exists(&self, key: &str) -> anyhow::Result<bool> {
        match self {
            Self::File { root } => Ok(tokio::fs::try_exists(root.join(key)).await?),
            Self::S3 {
                client,
                bucket,
                prefix,
            } => {
                let full = Self::s3_key(prefix, key);
                match client.head_object().bucket(bucket).key(&full).send().await {
                    Ok(_) => Ok(true),
                    Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => Ok(false),
                    Err(e) => Err(e.into()),
                }
            }
        }
    }

    pub async fn get(&self, key: &str) -> anyhow::Result<Vec<u8>> {
        match self {
            Self::File { root } => Ok(tokio::fs::read(root.join(key)).await?),
            Self::S3 {
                client,
                bucket,
                prefix,
            } => {
                let full = Self::s3_key(prefix, key);
                retry(|| async {
                    let out = client.get_object().bucket(bucket).key(&full).send().await?;
                    Ok(out.body.collect().await?.into_bytes().to_vec())
                })
                .await
            }
        }
    }

    /// Downloads an object into a local file.
    pub async fn get_to_file(&self, key: &str, path: &Path) -> anyhow::Result<()> {
        match self {
            Self::File { root } => {
                tokio::fs::copy(root.join(key), path).await?;
                Ok(())
            }
            Self::S3 { .. } => {
                let bytes = self.get(key).await?;
                tokio::fs::write(path, bytes).await?;
                Ok(())
            }
        }
    }

    /// Keys and sizes under `prefix` (relative to the store's root).
    pub async fn list(&self, prefix: &str) -> anyhow::Result<Vec<(String, u64)>> {
        match self {
            Self::File { root } => {
                let mut out = Vec::new();
                let Some(mut entries) = read_dir(&root.join(prefix)).await? else {
                    return Ok(out);
                };
                while let Some(entry) = entries.next_entry().await? {
                    let name = entry.file_name().to_string_lossy().into_owned();
                    if name.ends_with(".partial") {
                        continue;
                    }
                    let meta = entry.metadata().await?;
                    if meta.is_file() {
                        out.push((
                            format!("{}/{name}", prefix.trim_end_matches('/')),
                            meta.len(),
                        ));
                    }
                }
                out.sort();
                Ok(out)
            }
            Self::S3 {
                client,
                bucket,
                prefix: root,
            } => {
                let full = Self::s3_key(root, prefix);
                let strip = if root.is_empty() { 0 } else { root.len() + 1 };
                let mut out = Vec::new();
                for page in list_pages(client, bucket, &full, None).await? {
                    for o in page.contents() {
                        if let Some(key) = o.key() {
                            out.push((key[strip..].to_string(), o.size().unwrap_or(0) as u64));
                        }
                    }
                }
                out.sort();
                Ok(out)
            }
        }
    }

    /// Names of the folders right below the store's root (common prefixes
    /// on S3), sorted.
    pub async fn folders(&self) -> anyhow::Result<Vec<String>> {
        let mut out = Vec::new();
        match self {
            Self::File { root } => {
                let Some(mut entries) = read_dir(root).await? else {
                    return Ok(out);
                };
                while let Some(entry) = entries.next_entry().await? {
                    if entry.metadata().await?.is_dir() {
                        out.push(entry.file_name().to_string_lossy().into_owned());
                    }
                }
            }
            Self::S3 {
                client,
                bucket,
                prefix: root,
            } => {
                let full = Self::s3_key(root, "");
                for page in list_pages(client, bucket, &full, Some("/")).await? {
                    for p in page.common_prefixes() {
                        if let Some(name) = p.prefix() {
                            out.push(name[full.len()..].trim_end_matches('/').to_string());
                        }
                    }
                }
            }
        }
        out.sort();
        Ok(out)
    }

    pub async fn delete(&self, keys: &[String]) -> anyhow::Result<()> {
        match self {
            Self::File { root } => {
                for key in keys {
                    match tokio::fs::remove_file(root.join(key)).await {
                        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
                        _ => {}
                    }
                }
                Ok(())
            }
            Self::S3 {
                client,
                bucket,
                prefix,
            } => {
                for chunk in keys.chunks(1000) {
                    let objects = chunk
                        .iter()
                        .map(|k| {
                            ObjectIdentifier::builder()
                                .key(Self::s3_key(prefix, k))
                                .build()
                        })
                        .collect::<Result<Vec<_>, _>>()?;
                    client
                        .delete_objects()
                        .bucket(bucket)
                        .delete(Delete::builder().set_objects(Some(objects)).build()?)
                        .send()
                        .await?;
                }
                Ok(())
            }
        }
    }
}

/// A directory's entries, or `None` when it does not exist (an empty
/// store).
async fn read_dir(dir: &Path) -> anyhow::Result<Option<tokio::fs::ReadDir>> {
    match tokio::fs::read_dir(dir).await {
        Ok(entries) => Ok(Some(entries)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.into()),
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

/// The final path of `key` under `root` (its directory created) and the
/// temporary path it is written to first, then renamed from, so a crash
/// never leaves a half file under the final name.
async fn staged(root: &Path, key: &str) -> anyhow::Result<(PathBuf, PathBuf)> {
    let target = root.join(key);
    if let Some(dir) = target.parent() {
        tokio::fs::create_dir_all(dir).await?;
    }
    let mut tmp = target.clone().into_os_string();
    tmp.push(".partial");
    Ok((target, PathBuf::from(tmp)))
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
