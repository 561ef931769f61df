//! `export_config`: where submitted reports are sent.

use ichnaea_core::export::{ExportConfig, ExportSchema, join_set, split_set};
use ichnaea_core::source::ReportSource;
use sqlx::AssertSqlSafe;

use crate::rows::{SqlRow, corrupt};
use crate::{Result, Store, StoreError, with_pool};

const COLUMNS: &str = "name, batch, \"schema\", url, skip_keys, skip_sources";

fn decode(row: &impl SqlRow) -> Result<ExportConfig> {
    let skip_sources = match row.str_opt("skip_sources")? {
        None => None,
        Some(text) => Some(
            split_set(&text)
                .iter()
                .map(|name| {
                    ReportSource::from_name(name)
                        .ok_or_else(|| corrupt("export_config", format!("skip_sources {name:?}")))
                })
                .collect::<Result<Vec<_>>>()?,
        ),
    };
    Ok(ExportConfig {
        name: row.string("name")?,
        batch: row.i64("batch")?,
        schema: ExportSchema::parse(&row.string("schema")?),
        url: row.str_opt("url")?,
        skip_keys: row.str_opt("skip_keys")?.map(|t| split_set(&t)),
        skip_sources,
    })
}

fn set_columns(config: &ExportConfig) -> (Option<String>, Option<String>) {
    let keys = config.skip_keys.as_deref().map(join_set);
    let sources = config
        .skip_sources
        .as_ref()
        .map(|s| join_set(&s.iter().map(|s| s.name()).collect::<Vec<_>>()));
    (keys, sources)
}

impl Store {
    /// One export target by name.
    pub async fn export_config(&self, name: &str) -> Result<Option<ExportConfig>> {
        let sql = format!("SELECT {COLUMNS} FROM export_config WHERE name = $1");
        with_pool!(self, pool => {
            let row = sqlx::query(AssertSqlSafe(&*sql)).bind(name).fetch_optional(pool).await?;
            row.as_ref().map(decode).transpose()
        })
    }

    /// Every export target, ordered by name (read on every multiplexer run).
    pub async fn export_configs(&self) -> Result<Vec<ExportConfig>> {
        let sql = format!("SELECT {COLUMNS} FROM export_config ORDER BY name");
        with_pool!(self, pool => {
            let rows = sqlx::query(AssertSqlSafe(&*sql)).fetch_all(pool).await?;
            rows.iter().map(decode).collect()
        })
    }

    /// Inserts a target; [`StoreError::Duplicate`] if the name is taken.
    pub async fn insert_export_config(&self, config: &ExportConfig) -> Result<()> {
        let sql = format!(
            "INSERT INTO export_config ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING"
        );
        let (keys, sources) = set_columns(config);
        let n = with_pool!(self, pool => {
            sqlx::query(AssertSqlSafe(&*sql))
                .bind(&config.name)
                .bind(config.batch)
                .bind(config.schema.as_str())
                .bind(config.url.as_deref())
                .bind(keys.as_deref())
                .bind(sources.as_deref())
                .execute(pool)
                .await?
                .rows_affected()
        });
        if n == 0 {
            return Err(StoreError::Duplicate(format!(
                "export config {:?}",
                config.name
            )));
        }
        Ok(())
    }

    /// Replaces every column of an existing target; false if there is none.
    pub async fn update_export_config(&self, config: &ExportConfig) -> Result<bool> {
        let sql = "UPDATE export_config SET batch = $2, \"schema\" = $3, url = $4, skip_keys = $5, \
            skip_sources = $6 WHERE name = $1";
        let (keys, sources) = set_columns(config);
        let n = with_pool!(self, pool => {
            sqlx::query(sql)
                .bind(&config.name)
                .bind(config.batch)
                .bind(config.schema.as_str())
                .bind(config.url.as_deref())
                .bind(keys.as_deref())
                .bind(sources.as_deref())
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(n > 0)
    }

    /// Deletes a target; false if there was none.
    pub async fn delete_export_config(&self, name: &str) -> Result<bool> {
        let n = with_pool!(self, pool => {
            sqlx::query("DELETE FROM export_config WHERE name = $1")
                .bind(name)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(n > 0)
    }
}
