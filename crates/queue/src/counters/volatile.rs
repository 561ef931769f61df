//! In-process, expiring values of the embedded backend: the windowed counters of
//! the external fallback's rate limit, the fallback answer cache and the global
//! locate sample rate.
//!
//! None of this is persisted: a restart starts with empty windows, an empty cache and
//! no sample rate (which readers take as 100 %), as a Redis restart would.
//! Expiry is checked on every read; expired entries are removed whenever a map grows
//! past its cap, and a write that would still exceed the cap is dropped (the cache is
//! an optimisation, a dropped entry costs one provider call).

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// Most entries the answer cache holds.
pub const MAX_CACHE_ENTRIES: usize = 100_000;

/// Most rate-limit windows held at once.
const MAX_WINDOWS: usize = 10_000;

/// A value with its expiry.
struct Expiring<T> {
    value: T,
    expires: Instant,
}

impl<T> Expiring<T> {
    fn live(&self, now: Instant) -> bool {
        self.expires > now
    }
}

#[derive(Default)]
struct Maps {
    windows: HashMap<String, Expiring<u64>>,
    cache: HashMap<Vec<u8>, Expiring<Vec<u8>>>,
    sample_rate: Option<f64>,
}

/// The volatile values of one embedded counters instance.
#[derive(Default)]
pub(crate) struct Volatile {
    maps: Mutex<Maps>,
}

/// Removes expired entries when `map` is at `cap`; whether there is room left.
fn make_room<K, T>(map: &mut HashMap<K, Expiring<T>>, cap: usize, now: Instant) -> bool {
    if map.len() >= cap {
        map.retain(|_, e| e.live(now));
    }
    map.len() < cap
}

impl Volatile {
    /// The maps; every change is a single insert or removal, so a poisoned lock is
    /// used as it is.
    fn lock(&self) -> MutexGuard<'_, Maps> {
        self.maps.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Increments the counter `name`, which lives `ttl` from its creation (like
    /// Redis `INCR` + `EXPIRE` on a new key); returns the value after the increment.
    pub(crate) fn increment(&self, name: &str, ttl: Duration) -> u64 {
        let now = Instant::now();
        let mut maps = self.lock();
        if let Some(entry) = maps.windows.get_mut(name)
            && entry.live(now)
        {
            entry.value = entry.value.saturating_add(1);
            entry.expires = now + ttl;
            return entry.value;
        }
        if make_room(&mut maps.windows, MAX_WINDOWS, now) || maps.windows.contains_key(name) {
            maps.windows.insert(
                name.to_owned(),
                Expiring {
                    value: 1,
                    expires: now + ttl,
                },
            );
        }
        1
    }

    /// The live values of `keys`, in order.
    pub(crate) fn get(&self, keys: &[Vec<u8>]) -> Vec<Option<Vec<u8>>> {
        let now = Instant::now();
        let maps = self.lock();
        keys.iter()
            .map(|k| {
                maps.cache
                    .get(k)
                    .filter(|e| e.live(now))
                    .map(|e| e.value.clone())
            })
            .collect()
    }

    /// Stores every entry for `ttl`.
    pub(crate) fn set(&self, entries: &[(Vec<u8>, Vec<u8>)], ttl: Duration) {
        let now = Instant::now();
        let mut maps = self.lock();
        for (key, value) in entries {
            if maps.cache.contains_key(key) || make_room(&mut maps.cache, MAX_CACHE_ENTRIES, now) {
                maps.cache.insert(
                    key.clone(),
                    Expiring {
                        value: value.clone(),
                        expires: now + ttl,
                    },
                );
            }
        }
    }

    /// Removes `keys`.
    pub(crate) fn remove(&self, keys: &[Vec<u8>]) {
        let mut maps = self.lock();
        for key in keys {
            maps.cache.remove(key);
        }
    }

    /// The stored global locate sample rate.
    pub(crate) fn sample_rate(&self) -> Option<f64> {
        self.lock().sample_rate
    }

    /// Stores (or, with `None`, removes) the global locate sample rate.
    pub(crate) fn set_sample_rate(&self, rate: Option<f64>) {
        self.lock().sample_rate = rate;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_count_and_expire() {
        let v = Volatile::default();
        assert_eq!(v.increment("a", Duration::from_secs(60)), 1);
        assert_eq!(v.increment("a", Duration::from_secs(60)), 2);
        assert_eq!(v.increment("b", Duration::from_secs(60)), 1);
        assert_eq!(v.increment("c", Duration::ZERO), 1);
        assert_eq!(v.increment("c", Duration::ZERO), 1, "expired at once");
    }

    #[test]
    fn cache_entries_expire_and_the_cap_holds() {
        let v = Volatile::default();
        v.set(&[(b"k".to_vec(), b"v".to_vec())], Duration::from_secs(60));
        v.set(&[(b"gone".to_vec(), b"v".to_vec())], Duration::ZERO);
        assert_eq!(
            v.get(&[b"k".to_vec(), b"gone".to_vec(), b"x".to_vec()]),
            vec![Some(b"v".to_vec()), None, None]
        );
        let many: Vec<(Vec<u8>, Vec<u8>)> = (0..MAX_CACHE_ENTRIES + 10)
            .map(|i| (i.to_be_bytes().to_vec(), Vec::new()))
            .collect();
        v.set(&many, Duration::from_secs(60));
        assert!(v.lock().cache.len() <= MAX_CACHE_ENTRIES);
        // An existing key can always be overwritten.
        v.set(&[(b"k".to_vec(), b"w".to_vec())], Duration::from_secs(60));
        assert_eq!(v.get(&[b"k".to_vec()]), vec![Some(b"w".to_vec())]);
    }
}
