//! A map that remembers only its newest entries, in the order they arrived.
//!
//! The aggregate uses it for reply and grant ids: idempotency is forever,
//! but memory is not. The store holds every id behind a unique index (the
//! authority); the aggregate remembers the newest ones so that the common
//! retry (seconds later) is answered without touching the store. When an
//! id older than the window comes back, the store's index rejects the
//! second write and the engine teaches the aggregate the first answer with
//! [`super::Workspace::remember_reply`] before deciding again.

use serde::{Deserialize, Serialize};
use std::collections::{HashMap, VecDeque};
use std::hash::Hash;

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(
    from = "Vec<(K, V)>",
    into = "Vec<(K, V)>",
    bound(serialize = "K: Clone + Serialize, V: Clone + Serialize"),
    bound(deserialize = "K: Eq + Hash + Clone + Deserialize<'de>, V: Deserialize<'de>")
)]
pub struct Recent<K: Eq + Hash + Clone, V> {
    entries: HashMap<K, V>,
    order: VecDeque<K>,
}

impl<K: Eq + Hash + Clone, V> Default for Recent<K, V> {
    fn default() -> Self {
        Recent { entries: HashMap::new(), order: VecDeque::new() }
    }
}

impl<K: Eq + Hash + Clone, V: PartialEq> PartialEq for Recent<K, V> {
    fn eq(&self, other: &Self) -> bool {
        self.order == other.order && self.entries == other.entries
    }
}
impl<K: Eq + Hash + Clone, V: Eq> Eq for Recent<K, V> {}

impl<K: Eq + Hash + Clone, V> Recent<K, V> {
    pub fn get(&self, key: &K) -> Option<&V> {
        self.entries.get(key)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Inserts or replaces `key`, then forgets the oldest entries beyond
    /// `capacity`. Deterministic: the same inserts give the same map.
    pub fn insert(&mut self, key: K, value: V, capacity: usize) {
        if self.entries.insert(key.clone(), value).is_none() {
            self.order.push_back(key);
        }
        while self.order.len() > capacity {
            if let Some(oldest) = self.order.pop_front() {
                self.entries.remove(&oldest);
            }
        }
    }
}

impl<K: Eq + Hash + Clone, V> From<Vec<(K, V)>> for Recent<K, V> {
    fn from(pairs: Vec<(K, V)>) -> Self {
        let mut recent = Recent::default();
        for (k, v) in pairs {
            recent.insert(k, v, usize::MAX);
        }
        recent
    }
}

impl<K: Eq + Hash + Clone, V: Clone> From<Recent<K, V>> for Vec<(K, V)> {
    fn from(recent: Recent<K, V>) -> Self {
        recent.order.iter().filter_map(|k| recent.entries.get(k).map(|v| (k.clone(), v.clone()))).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn keeps_exactly_the_newest_distinct_keys(keys in prop::collection::vec(0u8..20, 0..100), cap in 1usize..10) {
            let mut recent = Recent::default();
            for (i, k) in keys.iter().enumerate() {
                recent.insert(*k, i, cap);
            }
            // The newest `cap` distinct keys, by first insertion order.
            let mut firsts: Vec<u8> = Vec::new();
            for k in &keys {
                if !firsts.contains(k) { firsts.push(*k); }
            }
            prop_assert!(recent.len() <= cap);
            let pairs: Vec<(u8, usize)> = recent.clone().into();
            let back: Recent<u8, usize> = pairs.into();
            prop_assert_eq!(&back, &recent);
            for k in keys.iter() {
                if let Some(v) = recent.get(k) {
                    // The value is the latest insert of that key.
                    prop_assert_eq!(keys.iter().rposition(|x| x == k), Some(*v));
                }
            }
        }
    }

    #[test]
    fn forgets_the_oldest_first() {
        let mut recent = Recent::default();
        for k in 0..5 {
            recent.insert(k, k * 10, 3);
        }
        assert_eq!(recent.get(&0), None);
        assert_eq!(recent.get(&1), None);
        assert_eq!(recent.get(&2), Some(&20));
        assert_eq!(recent.get(&4), Some(&40));
    }
}
