//! Reading a JSON record only as far as the job needs it.
//!
//! Building a whole `serde_json::Value` for every record allocates a map
//! and a string per field, most of which no one reads. [`Wanted::parse`]
//! goes through the record once with serde_json's own parser, keeps the
//! fields the job reads (key, time, aggregated fields, partition and
//! ingestion-time fields) as values, and steps over the rest without
//! allocating. It accepts exactly what `serde_json::from_slice::<Value>`
//! accepts, with the same error messages: every skipped string, number,
//! array and object is still read by the same parser code (strings decoded
//! and checked, numbers range-checked, nesting limited), only not stored.
//! The raw bytes stay with the record, so the late and invalid outputs
//! write the whole record as before.

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use smallvec::SmallVec;

/// A record's top-level fields, by name.
pub trait Fields {
    /// The field `name`, if the record has it.
    fn field(&self, name: &str) -> Option<&Value>;
}

/// A boxed record has the fields of what it holds.
impl<T: Fields + ?Sized> Fields for Box<T> {
    fn field(&self, name: &str) -> Option<&Value> {
        (**self).field(name)
    }
}

/// A record that is not an object has no fields.
impl Fields for Value {
    fn field(&self, name: &str) -> Option<&Value> {
        self.as_object()?.get(name)
    }
}

/// The top-level fields a job reads from its records.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Wanted {
    /// Interned: every record read sparsely refers to them (see
    /// [`crate::interned`]).
    names: &'static [String],
}

/// A record read sparsely: the wanted fields, and the bytes it came from.
#[derive(Clone, Debug, PartialEq)]
pub struct Sparse {
    names: &'static [String],
    /// The value of each wanted field, in the order of `names`.
    values: SmallVec<[Option<Value>; 4]>,
    raw: Box<[u8]>,
    /// Fields set by the source on top of the record (a Kafka message's
    /// key or timestamp), in the order they were set.
    added: Vec<(String, Value)>,
}

/// What [`Wanted::parse`] found.
#[derive(Debug)]
pub enum Parsed {
    /// An object, read sparsely (boxed: records are moved from the source
    /// to a worker several times, and this is by far the largest kind).
    Object(Box<Sparse>),
    /// Anything else, read whole (rare: such records are invalid).
    Other(Value),
}

impl Wanted {
    pub fn new(names: impl IntoIterator<Item = String>) -> Self {
        let mut names: Vec<String> = names.into_iter().collect();
        names.sort();
        names.dedup();
        Self {
            names: crate::interned::intern(names),
        }
    }

    /// These fields and `more`.
    pub fn and(&self, more: impl IntoIterator<Item = String>) -> Self {
        Self::new(self.names.iter().cloned().chain(more))
    }

    /// `line` read as `serde_json::from_slice::<Value>` reads it, keeping
    /// only the wanted fields of an object.
    pub fn parse(&self, line: &[u8]) -> serde_json::Result<Parsed> {
        let mut de = serde_json::Deserializer::from_slice(line);
        let values = de.deserialize_any(TopLevel(self.names))?;
        de.end()?;
        Ok(match values {
            Some(values) => Parsed::Object(Box::new(Sparse {
                names: self.names,
                values,
                raw: line.into(),
                added: Vec::new(),
            })),
            None => Parsed::Other(serde_json::from_slice(line)?),
        })
    }
}

impl Sparse {
    /// Sets `field` as if the record had it (replacing what it had).
    pub fn insert(&mut self, field: String, value: Value) {
        if let Some(i) = self.names.iter().position(|n| *n == field) {
            self.values[i] = Some(value.clone());
        }
        self.added.push((field, value));
    }

    /// The wanted fields the record has, as an object.
    pub fn wanted(&self) -> serde_json::Map<String, Value> {
        self.names
            .iter()
            .zip(&self.values)
            .filter_map(|(n, v)| Some((n.clone(), v.clone()?)))
            .collect()
    }

    /// The whole record, as a full parse gives it.
    pub fn to_value(&self) -> Value {
        // The bytes parsed before, with the same parser: this cannot fail.
        let mut value: Value = serde_json::from_slice(&self.raw).unwrap_or(Value::Null);
        if let Value::Object(map) = &mut value {
            for (field, v) in &self.added {
                map.insert(field.clone(), v.clone());
            }
        }
        value
    }
}

/// The record itself: an object is read sparsely (`Some`), anything else
/// only checked (`None`).
struct TopLevel<'a>(&'a [String]);

impl Fields for Sparse {
    /// A field the job does not read is never there.
    fn field(&self, name: &str) -> Option<&Value> {
        let i = self.names.iter().position(|n| n == name)?;
        self.values[i].as_ref()
    }
}

impl<'de> Visitor<'de> for TopLevel<'_> {
    type Value = Option<SmallVec<[Option<Value>; 4]>>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any valid JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut values: SmallVec<[Option<Value>; 4]> = SmallVec::new();
        values.resize(self.0.len(), None);
        while let Some(wanted) = map.next_key_seed(Key(self.0))? {
            match wanted {
                // A repeated field keeps its last value, as in a Value.
                Some(i) => values[i] = Some(map.next_value()?),
                None => map.next_value_seed(Skip)?,
            }
        }
        Ok(Some(values))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element_seed(Skip)?.is_some() {}
        Ok(None)
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
}

/// An object's key: the index of the wanted field it names, if any.
struct Key<'a>(&'a [String]);

impl<'de> DeserializeSeed<'de> for Key<'_> {
    type Value = Option<usize>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key<'_> {
    type Value = Option<usize>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string key")
    }

    fn visit_str<E>(self, key: &str) -> Result<Self::Value, E> {
        Ok(self.0.iter().position(|w| w == key))
    }
}

/// A value read to its end and dropped: checked as a `Value` would be,
/// stored nowhere. (`IgnoredAny` would not do: it steps over strings and
/// numbers without checking them as a `Value` does.)
#[derive(Clone, Copy)]
struct Skip;

impl<'de> DeserializeSeed<'de> for Skip {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Skip {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any valid JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while map.next_key_seed(Skip)?.is_some() {
            map.next_value_seed(Skip)?;
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(Skip)?.is_some() {}
        Ok(())
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
}

#[cfg(test)]
mod tests;
