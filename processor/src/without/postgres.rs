//! Stand-ins for the PostgreSQL sinks (no `postgres` feature).

use crate::{engine::WindowResult, output::record::JobId};

pub enum PostgresSink {}

impl PostgresSink {
    pub fn open(_: &eddy_api::spec::PostgresSink) -> anyhow::Result<Self> {
        Err(super::missing("postgres"))
    }

    pub fn name(&self) -> &str {
        match *self {}
    }

    pub fn pending(&self) -> usize {
        match *self {}
    }

    pub fn push(&mut self, _: &JobId, _: &str, _: &WindowResult) {
        match *self {}
    }

    pub async fn flush(&mut self) -> anyhow::Result<()> {
        match *self {}
    }
}

pub enum RecordTable {}

impl RecordTable {
    pub fn open(_: &eddy_api::spec::PostgresSink, _: &'static str) -> anyhow::Result<Self> {
        Err(super::missing("postgres"))
    }

    pub fn name(&self) -> &str {
        match *self {}
    }

    pub fn push(&mut self, _: &str, _: &[u8]) {
        match *self {}
    }

    pub async fn flush(&mut self) -> anyhow::Result<()> {
        match *self {}
    }
}
