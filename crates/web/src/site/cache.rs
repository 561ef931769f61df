//! Page-data caches: the JSON behind the statistics, region and download pages,
//! kept in the web tier's cache (Redis in a cluster, process memory when
//! embedded). A hit costs no database or bucket access. The cache is an
//! optimisation only: when it fails or holds something unreadable, the data is
//! computed as if it were empty, never answered with an error.

use std::future::Future;
use std::time::Duration;

use ichnaea_queue::Counters;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// How long a cache read or write may take before the page goes on without it.
const CACHE_TIMEOUT: Duration = Duration::from_secs(2);

/// The value under `key`, or `compute`d and stored for `ttl_secs`.
pub(crate) async fn cached<T, E, F, Fut>(
    counters: &Counters,
    key: &str,
    ttl_secs: u64,
    compute: F,
) -> Result<T, E>
where
    T: Serialize + DeserializeOwned,
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let id = key.as_bytes().to_vec();
    match tokio::time::timeout(CACHE_TIMEOUT, counters.cache_get(std::slice::from_ref(&id))).await {
        Ok(Ok(values)) => {
            if let Some(Some(bytes)) = values.into_iter().next() {
                match serde_json::from_slice(&bytes) {
                    Ok(value) => {
                        metrics::counter!("site.cache", "result" => "hit").increment(1);
                        return Ok(value);
                    }
                    Err(e) => {
                        tracing::warn!(key, error = %e, "unreadable page cache entry; recomputing")
                    }
                }
            }
        }
        Ok(Err(e)) => tracing::warn!(key, error = %e, "page cache unavailable; computing"),
        Err(_) => tracing::warn!(key, "page cache timed out; computing"),
    }
    metrics::counter!("site.cache", "result" => "miss").increment(1);
    let value = compute().await?;
    match serde_json::to_vec(&value) {
        Ok(bytes) => {
            let entry = [(id, bytes)];
            match tokio::time::timeout(CACHE_TIMEOUT, counters.cache_set(&entry, ttl_secs)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(key, error = %e, "cannot store page cache entry"),
                Err(_) => tracing::warn!(key, "page cache write timed out"),
            }
        }
        Err(e) => tracing::warn!(key, error = %e, "cannot encode page cache entry"),
    }
    Ok(value)
}
