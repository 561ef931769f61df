//! The backends one test of the service runs against: store, queue and counters,
//! either embedded (one SQLite file) or cluster (PostgreSQL + Redis).

use std::sync::Arc;

use ichnaea_queue::{Counters, Queue, QueueError};
use ichnaea_store::Store;

use ichnaea_store::ReplicaOptions;

use crate::store::{close, postgres_options, postgres_store_with, sqlite_store};
use crate::{PgSchema, RedisPrefix, TempDir, run_then, servers};

/// Store, queue and counters of one test.
#[derive(Clone)]
pub struct Backends {
    /// The database.
    pub store: Store,
    /// The queues.
    pub queue: Queue,
    /// The per-day counters and caches.
    pub counters: Arc<Counters>,
    /// Redis URL and key prefix of the cluster backends (`None` when embedded).
    pub redis: Option<(String, String)>,
}

/// Runs `body` on a fresh SQLite file with the embedded queue and counters in it,
/// then removes the file.
pub async fn on_embedded(body: impl AsyncFnOnce(Backends)) {
    let dir = TempDir::new("backends");
    let store = sqlite_store(&dir).await;
    let pool = store
        .sqlite_pool()
        .expect("a SQLite store has a pool")
        .clone();
    let backends = Backends::new(
        store.clone(),
        Queue::embedded(pool.clone()).await,
        Counters::embedded(pool).await,
        None,
    );
    run_then(body(backends), close(store)).await;
}

/// Runs `body` on a fresh PostgreSQL schema and Redis key prefix, then removes
/// both; returns at once (after a notice) unless both servers are configured.
pub async fn on_cluster(body: impl AsyncFnOnce(Backends)) {
    on_cluster_with(None, body).await
}

/// [`on_cluster`] with a read replica attached to the store (the schema,
/// created on the primary, reaches the replica through replication).
pub async fn on_cluster_with(replica: Option<ReplicaOptions>, body: impl AsyncFnOnce(Backends)) {
    if servers::cluster_urls().is_none() {
        return;
    }
    let (Some(schema), Some(redis)) = (PgSchema::new("test"), RedisPrefix::new()) else {
        return;
    };
    let options = ichnaea_store::StoreOptions {
        replica,
        ..postgres_options(&schema)
    };
    let store = postgres_store_with(&schema, options).await;
    let (url, prefix) = (redis.url(), redis.prefix());
    let backends = Backends::new(
        store.clone(),
        Queue::redis(url, prefix).await,
        Counters::redis(url, prefix).await,
        Some((url.to_string(), prefix.to_string())),
    );
    run_then(body(backends), async move {
        close(store).await;
        schema.drop().await.expect("drop the test schema");
        drop(redis);
    })
    .await;
}

impl Backends {
    fn new(
        store: Store,
        queue: Result<Queue, QueueError>,
        counters: Result<Counters, QueueError>,
        redis: Option<(String, String)>,
    ) -> Backends {
        Backends {
            store,
            queue: queue.expect("open the test queue"),
            counters: Arc::new(counters.expect("open the test counters")),
            redis,
        }
    }
}
