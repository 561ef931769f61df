//! A migrated [`Store`] of its own for one test: a fresh SQLite file, or a fresh
//! schema on the PostgreSQL test server.

use std::time::Duration;

use ichnaea_store::{Store, StoreOptions};

use crate::{PgSchema, TempDir, run_then};

/// How long closing a store may wait for connections a failed test left
/// checked out, before the clean-up goes on without it.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs `body` against a migrated store on a fresh SQLite file, then removes it.
pub async fn on_sqlite(body: impl AsyncFnOnce(Store)) {
    let dir = TempDir::new("store");
    let store = sqlite_store(&dir).await;
    run_then(body(store.clone()), close(store)).await;
}

/// Runs `body` against a migrated store in a fresh PostgreSQL schema, then drops
/// the schema; returns at once (after a notice) when no server is configured.
pub async fn on_postgres(body: impl AsyncFnOnce(Store)) {
    let Some(schema) = PgSchema::new("test") else {
        return;
    };
    let store = postgres_store(&schema).await;
    run_then(body(store.clone()), async move {
        close(store).await;
        schema.drop().await.expect("drop the test schema");
    })
    .await;
}

/// A migrated store on `t.db` in `dir`.
pub async fn sqlite_store(dir: &TempDir) -> Store {
    let url = format!("sqlite://{}/t.db", dir.as_str());
    let store = Store::connect(&url, &StoreOptions::default())
        .await
        .expect("open the SQLite test database");
    store.migrate().await.expect("migrate");
    store
}

/// The store options of a test's own PostgreSQL schema (four connections).
pub fn postgres_options(schema: &PgSchema) -> StoreOptions {
    StoreOptions {
        pg_schema: Some(schema.name().to_owned()),
        max_connections: 4,
        ..StoreOptions::default()
    }
}

/// A migrated store in `schema` (created by the connection).
pub async fn postgres_store(schema: &PgSchema) -> Store {
    postgres_store_with(schema, postgres_options(schema)).await
}

/// A migrated store in `schema` with `options` (a read replica, say).
pub async fn postgres_store_with(schema: &PgSchema, options: StoreOptions) -> Store {
    let store = Store::connect(schema.url(), &options)
        .await
        .expect("connect to PostgreSQL");
    store.migrate().await.expect("migrate");
    store
}

/// Closes `store`, bounded: a failed test can leave tasks that never finish
/// holding pool connections, and closing waits for those.
pub async fn close(store: Store) {
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, store.close()).await;
}
