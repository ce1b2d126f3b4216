//! Stand-in for S3 checkpoint stores (no `s3` feature).

use std::path::Path;

use crate::checkpoint::store::S3Settings;

/// No value: its field cannot be made (a struct rather than an empty enum,
/// so that code wrapping one it got back does not look unreachable).
#[derive(Clone, Debug)]
pub struct Bucket(Never);

#[derive(Clone, Debug)]
enum Never {}

impl Bucket {
    pub fn open(_: S3Settings, _: &str, _: String) -> anyhow::Result<Self> {
        Err(super::missing("s3"))
    }

    pub fn child(&self, _: &str) -> Self {
        match self.0 {}
    }

    pub async fn put_file(&self, _: &str, _: &Path) -> anyhow::Result<()> {
        match self.0 {}
    }

    pub async fn put_new(&self, _: &str, _: Vec<u8>) -> anyhow::Result<()> {
        match self.0 {}
    }

    pub async fn exists(&self, _: &str) -> anyhow::Result<bool> {
        match self.0 {}
    }

    pub async fn get(&self, _: &str) -> anyhow::Result<Vec<u8>> {
        match self.0 {}
    }

    pub async fn list(&self, _: &str) -> anyhow::Result<Vec<(String, u64)>> {
        match self.0 {}
    }

    pub async fn folders(&self) -> anyhow::Result<Vec<String>> {
        match self.0 {}
    }

    pub async fn delete(&self, _: &[String]) -> anyhow::Result<()> {
        match self.0 {}
    }
}
