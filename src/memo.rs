//! Caches of compiled or loaded things, keyed by their source text (or path): process-wide as
//! statics for regexes, globs and JSON Schema validators, and per batch for stages, prompts
//! and HTTP clients. The runs of a batch ask for the same few again and again, and compiling
//! costs far more than using: a glob becomes a regex, a regex a DFA.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

/// A bounded map from source text to its compiled form. Entries are cloned out (the values
/// kept here are cheap to clone: `Arc`s or types built on them). When full, it starts over:
/// a run never needs more than a handful, and a bound keeps a long process from growing.
pub struct Memo<V> {
    map: OnceLock<Mutex<HashMap<String, V>>>,
    capacity: usize,
}

impl<V: Clone> Memo<V> {
    pub const fn new(capacity: usize) -> Memo<V> {
        Memo {
            map: OnceLock::new(),
            capacity,
        }
    }

    /// The compiled form of `key`, built by `build` the first time (a failure is not kept, so
    /// its error is reported every time it is asked for).
    pub fn get_or_try<E>(&self, key: &str, build: impl FnOnce() -> Result<V, E>) -> Result<V, E> {
        let map = self.map.get_or_init(Mutex::default);
        if let Some(hit) = map.lock().ok().and_then(|m| m.get(key).cloned()) {
            return Ok(hit);
        }
        let value = build()?;
        if let Ok(mut m) = map.lock() {
            if m.len() >= self.capacity {
                m.clear();
            }
            m.insert(key.to_string(), value.clone());
        }
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_once_per_key_and_never_keeps_a_failure() {
        static MEMO: Memo<usize> = Memo::new(2);
        let mut built = 0;
        for _ in 0..3 {
            let v: Result<usize, ()> = MEMO.get_or_try("a", || {
                built += 1;
                Ok(7)
            });
            assert_eq!(v, Ok(7));
        }
        assert_eq!(
            built, 1,
            "the second and third asks are served from the cache"
        );
        let failed: Result<usize, &str> = MEMO.get_or_try("bad", || Err("no"));
        assert_eq!(failed, Err("no"));
        let again: Result<usize, &str> = MEMO.get_or_try("bad", || Ok(1));
        assert_eq!(again, Ok(1), "a failure is not cached");
    }

    #[test]
    fn a_full_cache_starts_over_instead_of_growing() {
        static MEMO: Memo<usize> = Memo::new(2);
        for (i, key) in ["a", "b", "c"].iter().enumerate() {
            let _: Result<usize, ()> = MEMO.get_or_try(key, || Ok(i));
        }
        let len = MEMO.map.get().unwrap().lock().unwrap().len();
        assert_eq!(len, 1, "the third key cleared the two before it");
    }
}
