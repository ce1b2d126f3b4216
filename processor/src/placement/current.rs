//! A pod restarted right after a live move may read an assignment older
//! than the move: its ConfigMap volume is refreshed by the kubelet only
//! every minute or so. The operator raises the assignment's version with
//! every change and tells the pods taking part in a move the new one, which
//! they record in each checkpoint from then on; a pod whose assignment is
//! older than the newest checkpoint of a partition it would run therefore
//! waits for its ConfigMap instead of running that partition beside the pod
//! that runs it now.

use std::{path::Path, time::Duration};

use super::{owned, Placement};
use crate::checkpoint::{self, Store};

/// How often the assignment file is read again while it is behind.
const REREAD: Duration = Duration::from_secs(2);

/// `placed`, or the placement the file at `path` gives `pod_name` once it
/// is at least as new as the newest checkpoints of the partitions it gives.
pub async fn current(
    store: &Store,
    path: &Path,
    pod_name: &str,
    mut placed: Placement,
    mut out: impl FnMut(&str),
) -> anyhow::Result<Placement> {
    let mut told = None;
    loop {
        let newest = checkpoint::newest_assignment(store, &placed.partitions).await?;
        let Some((partition, version)) = newest.filter(|(_, v)| *v > placed.version) else {
            if told.is_some() {
                out(&format!(
                    "assignment version {} reached: running partitions {:?}",
                    placed.version, placed.partitions
                ));
            }
            return Ok(placed);
        };
        if told != Some(version) {
            out(&behind(path, &placed, partition, version));
            told = Some(version);
        }
        tokio::time::sleep(REREAD).await;
        let text = tokio::fs::read_to_string(path).await?;
        placed = owned(&text, pod_name).map_err(anyhow::Error::msg)?;
    }
}

fn behind(path: &Path, placed: &Placement, partition: u32, version: u64) -> String {
    format!(
        "{}: assignment version {} is older than partition {partition}'s newest checkpoint \
         (taken under version {version}): a partition move this pod has not seen yet; waiting \
         for the file to catch up",
        path.display(),
        placed.version
    )
}
