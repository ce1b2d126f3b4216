//! A store in a local directory: each key a file below the root, written
//! under a temporary name and renamed, so a crash never leaves a half file
//! under the final name.

use std::path::{Path, PathBuf};

use anyhow::bail;

#[derive(Clone, Debug)]
pub struct Dir {
    root: PathBuf,
}

impl Dir {
    pub fn new(root: PathBuf) -> Self {
        Self { root }
    }

    pub fn child(&self, sub: &str) -> Self {
        Self::new(self.root.join(sub))
    }

    pub async fn put_file(&self, key: &str, path: &Path) -> anyhow::Result<()> {
        let (target, tmp) = staged(&self.root, key).await?;
        tokio::fs::copy(path, &tmp).await?;
        tokio::fs::rename(&tmp, &target).await?;
        Ok(())
    }

    pub async fn put_new(&self, key: &str, bytes: Vec<u8>) -> anyhow::Result<()> {
        let (target, tmp) = staged(&self.root, key).await?;
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

    pub async fn exists(&self, key: &str) -> anyhow::Result<bool> {
        Ok(tokio::fs::try_exists(self.root.join(key)).await?)
    }

    pub async fn get(&self, key: &str) -> anyhow::Result<Vec<u8>> {
        Ok(tokio::fs::read(self.root.join(key)).await?)
    }

    pub async fn get_to_file(&self, key: &str, path: &Path) -> anyhow::Result<()> {
        tokio::fs::copy(self.root.join(key), path).await?;
        Ok(())
    }

    /// Files under `prefix` with their sizes (files being written skipped).
    pub async fn list(&self, prefix: &str) -> anyhow::Result<Vec<(String, u64)>> {
        let mut out = Vec::new();
        let Some(mut entries) = read_dir(&self.root.join(prefix)).await? else {
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
        Ok(out)
    }

    pub async fn folders(&self) -> anyhow::Result<Vec<String>> {
        let mut out = Vec::new();
        let Some(mut entries) = read_dir(&self.root).await? else {
            return Ok(out);
        };
        while let Some(entry) = entries.next_entry().await? {
            if entry.metadata().await?.is_dir() {
                out.push(entry.file_name().to_string_lossy().into_owned());
            }
        }
        Ok(out)
    }

    pub async fn delete(&self, keys: &[String]) -> anyhow::Result<()> {
        for key in keys {
            match tokio::fs::remove_file(self.root.join(key)).await {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
                _ => {}
            }
        }
        Ok(())
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

/// The final path of `key` under `root` (its directory created) and the
/// temporary path it is written to first, then renamed from.
async fn staged(root: &Path, key: &str) -> anyhow::Result<(PathBuf, PathBuf)> {
    let target = root.join(key);
    if let Some(dir) = target.parent() {
        tokio::fs::create_dir_all(dir).await?;
    }
    let mut tmp = target.clone().into_os_string();
    tmp.push(".partial");
    Ok((target, PathBuf::from(tmp)))
}
