//! Stand-ins for the Kafka source and transaction (no `kafka`
//! feature).

use crate::{
    output::transaction::{Committed, TxnPlan},
    source::{kafka::KafkaConfig, Poll},
};

pub enum KafkaReader {}

impl KafkaReader {
    pub fn open(_: KafkaConfig) -> anyhow::Result<Self> {
        Err(super::missing("kafka"))
    }

    pub fn backlog(&self, _: i32) -> Option<u64> {
        match *self {}
    }

    pub fn position(&self) -> Vec<(i32, i64)> {
        match *self {}
    }

    pub fn seek(&mut self, _: &[(i32, i64)]) -> anyhow::Result<()> {
        match *self {}
    }

    pub fn release(&mut self, _: i32) -> anyhow::Result<()> {
        match *self {}
    }

    pub fn acquire(&mut self, _: i32, _: Option<i64>) -> anyhow::Result<()> {
        match *self {}
    }

    pub fn poll(&mut self) -> anyhow::Result<Poll> {
        match *self {}
    }
}

pub enum Transaction {}

impl Transaction {
    pub fn open(_: &TxnPlan) -> anyhow::Result<(Self, Committed)> {
        Err(super::missing("kafka"))
    }

    pub fn push(&mut self, _: &str, _: &str, _: &[u8]) {
        match *self {}
    }

    pub fn commits_results(&self, _: u64) -> bool {
        match *self {}
    }

    pub fn held(&self) -> usize {
        match *self {}
    }

    pub fn flush(&self) -> anyhow::Result<()> {
        match *self {}
    }

    pub fn precommit(&mut self, _: u64) -> anyhow::Result<()> {
        match *self {}
    }

    pub fn commit(&mut self, _: u64) -> anyhow::Result<Option<Vec<u32>>> {
        match *self {}
    }

    pub fn release(&mut self, _: u32) {
        match *self {}
    }

    pub fn acquire(&mut self, _: u32) -> anyhow::Result<Option<u64>> {
        match *self {}
    }
}
