//! The records of a partials topic, as bytes: a version byte, then the
//! job's state epoch and the message in postcard (the state's own
//! encoding, so accumulators travel bit for bit, float sums with their
//! compensation). The epoch tells the merge stage of a job started over
//! (`upgradeMode: stateless`) which partials are its own: the topic still
//! holds those of the job before.

use serde::{Deserialize, Serialize};

use crate::engine::window::Window;

/// The first byte of every message: what layout follows. Layout 1 had no
/// epoch (read as epoch 0).
const VERSION: u8 = 2;
const WITHOUT_EPOCH: u8 = 1;

/// One record of the partials topic.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Message {
    Partial(Partial),
    /// Watermarks of first-stage partitions, sent to every partition of
    /// the topic after the partials they cover.
    Marks(Vec<Mark>),
}

/// One revision of what a first-stage partition (`origin`) holds of a key's
/// window.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Partial {
    pub origin: u32,
    pub key: String,
    pub window: Window,
    /// The origin's own revision: 1 at its window's firing, higher for each
    /// late update.
    pub revision: u32,
    /// The origin closed the window: nothing of it follows.
    pub is_final: bool,
    /// The window's accumulators, in the job's aggregation order, encoded
    /// as the state encodes them.
    pub accs: Vec<u8>,
}

/// A first-stage partition's watermark: every partial of its windows up to
/// `watermark` was sent before this mark.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mark {
    pub origin: u32,
    pub watermark: i64,
    /// The partition had no input for the idle timeout: it holds nothing
    /// back until it has again.
    pub idle: bool,
}

impl Message {
    /// The message's bytes, sent by a job at state epoch `epoch`.
    pub fn encode(&self, epoch: u64) -> Vec<u8> {
        let mut out = vec![VERSION];
        // Encoding into a Vec cannot fail for these types.
        out.extend(postcard::to_allocvec(&(epoch, self)).unwrap_or_default());
        out
    }
}

/// A message and the state epoch of the job that sent it, from its bytes,
/// or why it is not one.
pub fn decode(bytes: &[u8]) -> Result<(u64, Message), String> {
    let text = |e: postcard::Error| e.to_string();
    match bytes.split_first() {
        Some((&VERSION, rest)) => postcard::from_bytes(rest).map_err(text),
        Some((&WITHOUT_EPOCH, rest)) => Ok((0, postcard::from_bytes(rest).map_err(text)?)),
        Some((v, _)) => Err(format!(
            "a partials record of layout {v}; this processor reads layouts \
             {WITHOUT_EPOCH} and {VERSION}"
        )),
        None => Err("an empty partials record".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_survive_the_trip() {
        let partial = Message::Partial(Partial {
            origin: 3,
            key: "merchant-1".into(),
            window: Window {
                start: 60_000,
                end: 120_000,
            },
            revision: 2,
            is_final: false,
            accs: vec![1, 2, 3],
        });
        assert_eq!(decode(&partial.encode(3)), Ok((3, partial.clone())));
        // Layout 1, of processors before epochs: epoch 0.
        let mut old = vec![WITHOUT_EPOCH];
        old.extend(postcard::to_allocvec(&partial).unwrap());
        assert_eq!(decode(&old), Ok((0, partial)));
        let marks = Message::Marks(vec![Mark {
            origin: 0,
            watermark: -5,
            idle: true,
        }]);
        assert_eq!(decode(&marks.encode(0)), Ok((0, marks)));
    }

    #[test]
    fn foreign_bytes_are_refused_with_a_reason() {
        assert!(decode(b"").unwrap_err().contains("empty"));
        assert!(decode(b"{\"key\":1}").unwrap_err().contains("layout 123"));
        assert!(decode(&[VERSION, 9, 9]).is_err());
    }
}
