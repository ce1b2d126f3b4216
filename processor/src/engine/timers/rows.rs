//! Timer rows: typed, and encoded so that RocksDB's byte order is their
//! order (a kind byte, times big-endian with the sign bit flipped, then the
//! key's bytes).

use std::hash::Hash;

use anyhow::Context;
use compact_str::CompactString;

use crate::engine::window::Window;

/// A kind of timer row.
pub trait Row: Ord + Clone + Hash + Eq {
    /// First byte of every row of this kind.
    const KIND: u8;
    /// When the timer is due: rows are ordered by it first.
    fn due(&self) -> i64;
    /// Encodes the row into `out` (cleared first).
    fn encode_into(&self, out: &mut Vec<u8>);
    fn encode(&self) -> Vec<u8> {
        let mut row = Vec::new();
        self.encode_into(&mut row);
        row
    }
    fn decode(bytes: &[u8]) -> anyhow::Result<Self>;
}

/// A window not fired yet, due at its end.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Fire {
    pub end: i64,
    pub start: i64,
    pub key: CompactString,
}

/// A fired window, purged (and closed) when its lateness is over.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Purge {
    pub at: i64,
    pub start: i64,
    pub end: i64,
    pub key: CompactString,
}

/// A key's check against the state TTL.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ttl {
    pub due: i64,
    pub key: CompactString,
}

impl Fire {
    pub fn new(key: &str, w: Window) -> Self {
        Self {
            end: w.end,
            start: w.start,
            key: key.into(),
        }
    }

    pub fn window(&self) -> Window {
        Window {
            start: self.start,
            end: self.end,
        }
    }
}

impl Purge {
    pub fn new(at: i64, key: &str, w: Window) -> Self {
        Self {
            at,
            start: w.start,
            end: w.end,
            key: key.into(),
        }
    }

    pub fn window(&self) -> Window {
        Window {
            start: self.start,
            end: self.end,
        }
    }
}

impl Row for Fire {
    const KIND: u8 = b'f';

    fn due(&self) -> i64 {
        self.end
    }

    fn encode_into(&self, out: &mut Vec<u8>) {
        encode(Self::KIND, &[self.end, self.start], &self.key, out)
    }

    fn decode(bytes: &[u8]) -> anyhow::Result<Self> {
        let ([end, start], key) = decode(Self::KIND, bytes)?;
        Ok(Self { end, start, key })
    }
}

impl Row for Purge {
    const KIND: u8 = b'p';

    fn due(&self) -> i64 {
        self.at
    }

    fn encode_into(&self, out: &mut Vec<u8>) {
        encode(Self::KIND, &[self.at, self.start, self.end], &self.key, out)
    }

    fn decode(bytes: &[u8]) -> anyhow::Result<Self> {
        let ([at, start, end], key) = decode(Self::KIND, bytes)?;
        Ok(Self {
            at,
            start,
            end,
            key,
        })
    }
}

impl Row for Ttl {
    const KIND: u8 = b't';

    fn due(&self) -> i64 {
        self.due
    }

    fn encode_into(&self, out: &mut Vec<u8>) {
        encode(Self::KIND, &[self.due], &self.key, out)
    }

    fn decode(bytes: &[u8]) -> anyhow::Result<Self> {
        let ([due], key) = decode(Self::KIND, bytes)?;
        Ok(Self { due, key })
    }
}

/// An i64 as 8 bytes whose byte order is the numbers' order.
fn ordered(t: i64) -> [u8; 8] {
    ((t as u64) ^ (1 << 63)).to_be_bytes()
}

fn encode(kind: u8, times: &[i64], key: &str, row: &mut Vec<u8>) {
    row.clear();
    row.push(kind);
    for t in times {
        row.extend_from_slice(&ordered(*t));
    }
    row.extend_from_slice(key.as_bytes());
}

fn decode<const N: usize>(kind: u8, row: &[u8]) -> anyhow::Result<([i64; N], CompactString)> {
    let body = row
        .strip_prefix(&[kind])
        .filter(|b| b.len() >= 8 * N)
        .with_context(|| format!("not a timer row of kind {:?}", kind as char))?;
    let mut times = [0; N];
    for (i, t) in times.iter_mut().enumerate() {
        let bytes: [u8; 8] = body[8 * i..8 * i + 8].try_into().expect("8 bytes");
        *t = (u64::from_be_bytes(bytes) ^ (1 << 63)) as i64;
    }
    let key = std::str::from_utf8(&body[8 * N..]).context("a timer row's key is not UTF-8")?;
    Ok((times, key.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_sort_as_their_bytes_and_read_back() {
        let times = [i64::MIN, -86_400_000, -1, 0, 1, 59_999, i64::MAX];
        let keys = ["", "a", "a\u{0}", "ab", "b", "é", "merchant-7"];
        let mut rows = Vec::new();
        for end in times {
            for start in times {
                for key in keys {
                    rows.push(Fire {
                        end,
                        start,
                        key: key.into(),
                    });
                }
            }
        }
        let mut by_bytes = rows.clone();
        by_bytes.sort_by_key(Row::encode);
        rows.sort();
        assert_eq!(rows, by_bytes);
        for row in &rows {
            assert_eq!(&Fire::decode(&row.encode()).unwrap(), row);
        }
        let ttl = Ttl {
            due: -5,
            key: "k".into(),
        };
        assert_eq!(Ttl::decode(&ttl.encode()).unwrap(), ttl);
        assert!(Purge::decode(&ttl.encode()).is_err());
    }
}
