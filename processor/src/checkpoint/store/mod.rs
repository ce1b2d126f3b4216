//! Where checkpoints live: one abstraction over S3-compatible object storage
//! and a local directory, addressed by URL (`s3://bucket/prefix`,
//! `file://dir`). Keys are relative to the store's root, with `/`.
//!
//! A local directory works in every build; S3 needs the `s3` feature (the
//! AWS SDK), and a build without it refuses `s3://` stores by name.

mod dir;
#[cfg(feature = "s3")]
mod s3;

use std::path::Path;

use anyhow::{bail, Context};

pub use self::dir::Dir;
#[cfg(feature = "s3")]
pub use self::s3::Bucket;
#[cfg(not(feature = "s3"))]
pub use crate::without::s3::Bucket;

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
    File(Dir),
    S3(Bucket),
}

impl Store {
    /// A store for `url`, rooted at `sub` below it (e.g. the job's name).
    pub fn open(url: &str, sub: &str, s3: Option<S3Settings>) -> anyhow::Result<Self> {
        if let Some(dir) = url.strip_prefix("file://") {
            return Ok(Self::File(Dir::new(Path::new(dir).join(sub))));
        }
        let Some(rest) = url.strip_prefix("s3://") else {
            bail!("{url:?} is not a store URL (s3://bucket/prefix or file://dir)");
        };
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let settings = s3.context("an s3:// store needs S3 settings")?;
        let prefix = [prefix.trim_matches('/'), sub.trim_matches('/')]
            .iter()
            .filter(|p| !p.is_empty())
            .copied()
            .collect::<Vec<_>>()
            .join("/");
        Ok(Self::S3(Bucket::open(settings, bucket, prefix)?))
    }

    /// The same store rooted at `sub` below this one.
    pub fn child(&self, sub: &str) -> Self {
        match self {
            Self::File(d) => Self::File(d.child(sub)),
            Self::S3(b) => Self::S3(b.child(sub)),
        }
    }

    /// Uploads a local file.
    pub async fn put_file(&self, key: &str, path: &Path) -> anyhow::Result<()> {
        match self {
            Self::File(d) => d.put_file(key, path).await,
            Self::S3(b) => b.put_file(key, path).await,
        }
    }

    /// Writes a small object that must not exist yet (a manifest).
    pub async fn put_new(&self, key: &str, bytes: Vec<u8>) -> anyhow::Result<()> {
        match self {
            Self::File(d) => d.put_new(key, bytes).await,
            Self::S3(b) => b.put_new(key, bytes).await,
        }
    }

    pub async fn exists(&self, key: &str) -> anyhow::Result<bool> {
        match self {
            Self::File(d) => d.exists(key).await,
            Self::S3(b) => b.exists(key).await,
        }
    }

    pub async fn get(&self, key: &str) -> anyhow::Result<Vec<u8>> {
        match self {
            Self::File(d) => d.get(key).await,
            Self::S3(b) => b.get(key).await,
        }
    }

    /// Downloads an object into a local file.
    pub async fn get_to_file(&self, key: &str, path: &Path) -> anyhow::Result<()> {
        match self {
            Self::File(d) => d.get_to_file(key, path).await,
            Self::S3(b) => {
                let bytes = b.get(key).await?;
                tokio::fs::write(path, bytes).await?;
                Ok(())
            }
        }
    }

    /// Keys and sizes under `prefix` (relative to the store's root), sorted.
    pub async fn list(&self, prefix: &str) -> anyhow::Result<Vec<(String, u64)>> {
        let mut out = match self {
            Self::File(d) => d.list(prefix).await?,
            Self::S3(b) => b.list(prefix).await?,
        };
        out.sort();
        Ok(out)
    }

    /// Names of the folders right below the store's root (common prefixes
    /// on S3), sorted.
    pub async fn folders(&self) -> anyhow::Result<Vec<String>> {
        let mut out = match self {
            Self::File(d) => d.folders().await?,
            Self::S3(b) => b.folders().await?,
        };
        out.sort();
        Ok(out)
    }

    pub async fn delete(&self, keys: &[String]) -> anyhow::Result<()> {
        match self {
            Self::File(d) => d.delete(keys).await,
            Self::S3(b) => b.delete(keys).await,
        }
    }
}
