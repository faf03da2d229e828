//! Helpers over the engine's in-memory LRU caches.

use std::hash::Hash;
use std::num::NonZeroUsize;
use std::sync::Mutex;

use lru::LruCache;

/// A cache of at most `n` entries (at least one).
pub(crate) fn lru<K: Hash + Eq, V>(n: usize) -> Mutex<LruCache<K, V>> {
    Mutex::new(LruCache::new(NonZeroUsize::new(n.max(1)).expect("non-zero")))
}

/// Removes every entry whose key is `stale`; returns the values removed.
pub(crate) fn pop_where<K: Hash + Eq + Clone, V>(cache: &mut LruCache<K, V>, stale: impl Fn(&K) -> bool) -> Vec<V> {
    let keys: Vec<K> = cache.iter().map(|(k, _)| k).filter(|k| stale(k)).cloned().collect();
    keys.iter().filter_map(|k| cache.pop(k)).collect()
}
