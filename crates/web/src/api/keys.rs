//! API key handling of the public API (api §2.2, §7.2–§7.5): the key text of
//! a request, the per-process lookup cache, and the daily limit.
//!
//! Sections (§) refer to docs/reference/api.md.

use std::sync::Arc;
use std::time::Duration;

use ichnaea_core::ApiKey;
use ichnaea_core::apikey::{is_valid_key_text, metric_label};
use ichnaea_store::Store;

/// The `key` query parameter: its last occurrence, percent-decoded; `None` when
/// missing, empty or malformed (which the API treats alike).
pub fn key_text(query: Option<&str>) -> (Option<String>, Option<String>) {
    let raw = query.and_then(|q| {
        form_urlencoded::parse(q.as_bytes())
            .filter(|(name, _)| name == "key")
            .map(|(_, value)| value.into_owned())
            .last()
    });
    match raw {
        Some(text) if is_valid_key_text(&text) => (Some(text), None),
        Some(text) if !text.is_empty() => (None, Some(text)),
        _ => (None, None),
    }
}

/// A stored key as the request path uses it: the row, and the label its
/// metrics carry instead of the key (computed once per cache entry).
#[derive(Debug)]
pub struct KnownKey {
    /// The `api_key` row.
    pub row: ApiKey,
    /// [`ichnaea_core::apikey::metric_label`] of the key.
    pub metric_label: String,
}

impl std::ops::Deref for KnownKey {
    type Target = ApiKey;

    fn deref(&self) -> &ApiKey {
        &self.row
    }
}

/// Result of looking a key up.
#[derive(Clone, Debug)]
pub enum KeyLookup {
    /// A stored key.
    Known(Arc<KnownKey>),
    /// Well-formed, but not in `api_key`.
    Unknown,
    /// The database could not be asked; requests go on with the anonymous defaults.
    Failed,
}

/// Per-process cache of key lookups (positive and negative; database errors are
/// not cached), so a busy key costs no database round trip.
#[derive(Clone)]
pub struct ApiKeyCache {
    cache: moka::future::Cache<String, Option<Arc<KnownKey>>>,
}

/// Most keys held by the cache.
const CACHE_CAPACITY: u64 = 500;

impl ApiKeyCache {
    /// A cache whose entries live `ttl`.
    pub fn new(ttl: Duration) -> ApiKeyCache {
        ApiKeyCache {
            cache: moka::future::Cache::builder()
                .max_capacity(CACHE_CAPACITY)
                .time_to_live(ttl)
                .build(),
        }
    }

    /// Looks `key` up, through the cache.
    pub async fn lookup(&self, store: &Store, key: &str) -> KeyLookup {
        if let Some(hit) = self.cache.get(key).await {
            return hit.map_or(KeyLookup::Unknown, KeyLookup::Known);
        }
        match store.api_key(key).await {
            Ok(row) => {
                let row = row.map(|row| {
                    Arc::new(KnownKey {
                        metric_label: metric_label(&row.valid_key),
                        row,
                    })
                });
                self.cache.insert(key.to_string(), row.clone()).await;
                row.map_or(KeyLookup::Unknown, KeyLookup::Known)
            }
            Err(e) => {
                tracing::warn!(error = %e, "api key lookup failed, continuing without key checks");
                KeyLookup::Failed
            }
        }
    }

    /// Forgets every entry, so admin changes made in this process apply at once.
    pub fn invalidate_all(&self) {
        self.cache.invalidate_all();
    }

    /// Keeps the cache in step with admin changes made by other processes (the
    /// CLI, other web processes, direct SQL): polls the store's admin
    /// generation every `interval` and forgets every entry when it moves,
    /// until `stop` is cancelled. A failed poll is logged and retried; entries
    /// still expire after the cache's time to live.
    pub async fn follow_admin_changes(
        &self,
        store: Store,
        interval: Duration,
        stop: tokio_util::sync::CancellationToken,
    ) {
        let mut seen: Option<i64> = None;
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = ticks.tick() => {}
            }
            match store.admin_generation().await {
                Ok(now) => {
                    if seen.is_some_and(|before| before != now) {
                        tracing::debug!(
                            generation = now,
                            "admin change seen, api key cache cleared"
                        );
                        self.cache.invalidate_all();
                    }
                    seen = Some(now);
                }
                Err(e) => tracing::warn!(error = %e, "admin generation unavailable"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_key_wins_and_malformed_is_none() {
        assert_eq!(
            key_text(Some("key=abcdefg&key=test")),
            (Some("test".into()), None)
        );
        assert_eq!(key_text(Some("key=")), (None, None));
        assert_eq!(key_text(None), (None, None));
        assert_eq!(
            key_text(Some("key=invalid_key")),
            (None, Some("invalid_key".into()))
        );
        assert_eq!(key_text(Some("key=abc")), (None, Some("abc".into())));
        assert_eq!(
            key_text(Some("other=1&key=te%73t")),
            (Some("test".into()), None)
        );
    }
}
