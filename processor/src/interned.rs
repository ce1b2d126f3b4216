//! Values every record refers to, kept once for the life of the process.
//!
//! A record that carries a reference to its job's layout (the generator's
//! fields, the JSON fields a job reads) costs nothing to copy or drop. An
//! `Arc` would cost two atomic operations per record, and worse: the count
//! is raised by the thread that reads a record and lowered by the worker
//! that drops it, so its cache line moves between the cores every time.
//! Such values are few (one or two per job; a test run makes a few dozen),
//! so keeping each for good is bounded.

use std::{any::Any, sync::Mutex};

/// The one copy of `value`: an equal one made before, or `value` itself,
/// kept from now on.
pub fn intern<T: Any + PartialEq + Send + Sync>(value: T) -> &'static T {
    static VALUES: Mutex<Vec<&'static (dyn Any + Send + Sync)>> = Mutex::new(Vec::new());
    let mut values = VALUES.lock().unwrap_or_else(|e| e.into_inner());
    let known = values
        .iter()
        .filter_map(|v| v.downcast_ref::<T>())
        .find(|v| **v == value);
    if let Some(known) = known {
        return known;
    }
    let kept: &'static T = Box::leak(Box::new(value));
    values.push(kept);
    kept
}

#[cfg(test)]
mod tests {
    use super::intern;

    #[test]
    fn equal_values_share_one_copy_and_types_stay_apart() {
        let a = intern(vec!["key".to_string(), "ts".to_string()]);
        let b = intern(vec!["key".to_string(), "ts".to_string()]);
        let c = intern(vec!["key".to_string()]);
        assert!(std::ptr::eq(a, b));
        assert!(!std::ptr::eq(a, c));
        assert_eq!(*c, ["key"]);
        // The same contents as another type are another value.
        let d = intern(("key".to_string(), 1u8));
        assert_eq!(d.0, "key");
    }
}
