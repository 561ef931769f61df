//! `api_key`: administered keys and their permissions.

use ichnaea_core::apikey::ApiKey;
use sqlx::AssertSqlSafe;

use crate::rows::{SqlRow, corrupt};
use crate::{Result, Store, StoreError, with_pool};

const COLUMNS: &str = "valid_key, maxreq, allow_fallback, allow_locate, allow_region, \
    fallback_name, fallback_schema, fallback_url, fallback_ratelimit, \
    fallback_ratelimit_interval, fallback_cache_expire, store_sample_locate, store_sample_submit";

fn decode(row: &impl SqlRow) -> Result<ApiKey> {
    let percent = |col: &str| -> Result<Option<i16>> {
        row.i64_opt(col)?
            .map(|v| i16::try_from(v).map_err(|_| corrupt("api_key", format!("{col} {v}"))))
            .transpose()
    };
    Ok(ApiKey {
        valid_key: row.string("valid_key")?,
        maxreq: row.i64_opt("maxreq")?,
        allow_fallback: row.bool_opt("allow_fallback")?,
        allow_locate: row.bool_opt("allow_locate")?,
        allow_region: row.bool_opt("allow_region")?,
        fallback_name: row.str_opt("fallback_name")?,
        fallback_schema: row.str_opt("fallback_schema")?,
        fallback_url: row.str_opt("fallback_url")?,
        fallback_ratelimit: row.i64_opt("fallback_ratelimit")?,
        fallback_ratelimit_interval: row.i64_opt("fallback_ratelimit_interval")?,
        fallback_cache_expire: row.i64_opt("fallback_cache_expire")?,
        store_sample_locate: percent("store_sample_locate")?,
        store_sample_submit: percent("store_sample_submit")?,
    })
}

macro_rules! bind_key_columns {
    ($q:expr, $k:expr) => {
        $q.bind($k.maxreq)
            .bind($k.allow_fallback)
            .bind($k.allow_locate)
            .bind($k.allow_region)
            .bind($k.fallback_name.as_deref())
            .bind($k.fallback_schema.as_deref())
            .bind($k.fallback_url.as_deref())
            .bind($k.fallback_ratelimit)
            .bind($k.fallback_ratelimit_interval)
            .bind($k.fallback_cache_expire)
            .bind($k.store_sample_locate.map(i64::from))
            .bind($k.store_sample_submit.map(i64::from))
    };
}

impl Store {
    /// Looks a key up by its text, ignoring ASCII case as the original's MySQL
    /// collation did; the row carries the stored spelling.
    pub async fn api_key(&self, key: &str) -> Result<Option<ApiKey>> {
        let sql = format!("SELECT {COLUMNS} FROM api_key WHERE lower(valid_key) = lower($1)");
        with_pool!(self, pool => {
            let row = sqlx::query(AssertSqlSafe(&*sql)).bind(key).fetch_optional(pool).await?;
            row.as_ref().map(decode).transpose()
        })
    }

    /// Every key, ordered by key text.
    pub async fn api_keys(&self) -> Result<Vec<ApiKey>> {
        let sql = format!("SELECT {COLUMNS} FROM api_key ORDER BY valid_key");
        with_pool!(self, pool => {
            let rows = sqlx::query(AssertSqlSafe(&*sql)).fetch_all(pool).await?;
            rows.iter().map(decode).collect()
        })
    }

    /// Inserts a new key; [`StoreError::Duplicate`] if one with the same text
    /// (ignoring case) exists.
    pub async fn insert_api_key(&self, key: &ApiKey) -> Result<()> {
        let sql = format!(
            "INSERT INTO api_key ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) \
             ON CONFLICT DO NOTHING"
        );
        let inserted = with_pool!(self, pool => {
            let q = sqlx::query(AssertSqlSafe(&*sql)).bind(&key.valid_key);
            bind_key_columns!(q, key).execute(pool).await?.rows_affected()
        });
        if inserted == 0 {
            return Err(StoreError::Duplicate(format!(
                "api key {:?}",
                key.valid_key
            )));
        }
        Ok(())
    }

    /// Replaces every column of an existing key (matched ignoring case); false if
    /// there is none.
    pub async fn update_api_key(&self, key: &ApiKey) -> Result<bool> {
        let sql = "UPDATE api_key SET maxreq = $2, allow_fallback = $3, allow_locate = $4, \
            allow_region = $5, fallback_name = $6, fallback_schema = $7, fallback_url = $8, \
            fallback_ratelimit = $9, fallback_ratelimit_interval = $10, fallback_cache_expire = $11, \
            store_sample_locate = $12, store_sample_submit = $13 WHERE lower(valid_key) = lower($1)";
        let n = with_pool!(self, pool => {
            let q = sqlx::query(sql).bind(&key.valid_key);
            bind_key_columns!(q, key).execute(pool).await?.rows_affected()
        });
        Ok(n > 0)
    }

    /// Deletes a key (matched ignoring case); false if there was none.
    pub async fn delete_api_key(&self, key: &str) -> Result<bool> {
        let n = with_pool!(self, pool => {
            sqlx::query("DELETE FROM api_key WHERE lower(valid_key) = lower($1)")
                .bind(key)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(n > 0)
    }

    /// The admin generation: a number that grows with every change to
    /// `api_key` or `export_config`, by any process (see the migration).
    pub async fn admin_generation(&self) -> Result<i64> {
        with_pool!(self, pool => {
            let row = sqlx::query("SELECT generation FROM admin_generation WHERE id = 1")
                .fetch_one(pool)
                .await?;
            Ok(sqlx::Row::try_get::<i64, _>(&row, 0)?)
        })
    }
}
