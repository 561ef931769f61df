//! `datamap_ne/nw/se/sw`: grid cells where data was contributed, with the first
//! and latest day.

use chrono::NaiveDate;
use ichnaea_core::datamap::{DatamapGrid, Quadrant};
use sqlx::AssertSqlSafe;

use ichnaea_core::tiles::keys::grid_change_tiles;

use crate::datamap_tiles::RECORD_TILE_CHANGE;
use crate::rows::{SqlRow, corrupt};
use crate::{Result, Store, with_pool};

/// One stored grid cell.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DatamapRow {
    /// The cell.
    pub grid: DatamapGrid,
    /// First day data was seen there.
    pub created: Option<NaiveDate>,
    /// Latest day data was seen there.
    pub modified: Option<NaiveDate>,
}

/// Decodes one `datamap_*` row (`grid`, `created`, `modified`).
pub(crate) fn decode_row(row: &impl SqlRow, table: &str) -> Result<DatamapRow> {
    let bytes = row.bytes("grid")?;
    let grid = DatamapGrid::from_bytes(&bytes)
        .ok_or_else(|| corrupt(table, format!("grid of {} bytes", bytes.len())))?;
    Ok(DatamapRow {
        grid,
        created: row.date_opt("created")?,
        modified: row.date_opt("modified")?,
    })
}

impl Store {
    /// The stored rows among `grids` of one quadrant table.
    #[cfg(feature = "testing")]
    pub async fn datamap_rows(
        &self,
        quadrant: Quadrant,
        grids: &[DatamapGrid],
    ) -> Result<Vec<DatamapRow>> {
        use crate::{LOOKUP_CHUNK, placeholders};
        let table = quadrant.table();
        let mut out = Vec::with_capacity(grids.len());
        for chunk in grids.chunks(LOOKUP_CHUNK) {
            let sql = format!(
                "SELECT grid, created, modified FROM {table} WHERE grid IN ({})",
                placeholders(0, chunk.len())
            );
            with_pool!(self, pool => {
                let mut q = sqlx::query(AssertSqlSafe(&*sql));
                for g in chunk {
                    q = q.bind(g.to_bytes().to_vec());
                }
                for row in q.fetch_all(pool).await? {
                    out.push(decode_row(&row, table)?);
                }
            });
        }
        Ok(out)
    }

    /// Marks grids as seen on `day`: unknown grids are inserted with
    /// created = modified = `day`, known ones get modified = `day` (never moved
    /// backwards). Returns the number of rows inserted or changed. In the same
    /// transaction, the coverage tiles holding a changed row are recorded in
    /// `datamap_tile_change` (see [`Store::datamap_tile_changes`]), so the live
    /// tiles of every web process are redrawn.
    pub async fn touch_datamap(
        &self,
        quadrant: Quadrant,
        grids: &[DatamapGrid],
        day: NaiveDate,
    ) -> Result<u64> {
        let sql = format!(
            "INSERT INTO {} (grid, created, modified) VALUES ($1, $2, $2) \
             ON CONFLICT (grid) DO UPDATE SET modified = excluded.modified \
             WHERE {}.modified IS NULL OR {}.modified < excluded.modified",
            quadrant.table(),
            quadrant.table(),
            quadrant.table()
        );
        let mut n = 0;
        let now = chrono::Utc::now().timestamp_millis();
        with_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let mut tiles = Vec::new();
            for g in grids {
                let changed = sqlx::query(AssertSqlSafe(&*sql))
                    .bind(g.to_bytes().to_vec())
                    .bind(day)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                if changed > 0 {
                    tiles.extend(grid_change_tiles(g.lat, g.lon));
                }
                n += changed;
            }
            // Sorted, so concurrent writers lock tile rows in one order.
            tiles.sort_unstable();
            tiles.dedup();
            for tile in tiles {
                sqlx::query(RECORD_TILE_CHANGE)
                    .bind(i64::try_from(tile).unwrap_or(i64::MAX))
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
        });
        Ok(n)
    }
}

impl Store {
    /// The number of rows of one quadrant table (the tile export sizes its
    /// point buffer with it).
    pub async fn datamap_count(&self, quadrant: Quadrant) -> Result<u64> {
        let sql = format!("SELECT COUNT(*) AS n FROM {}", quadrant.table());
        with_pool!(self, pool => {
            let n: i64 = sqlx::query_scalar(AssertSqlSafe(&*sql)).fetch_one(pool).await?;
            Ok(u64::try_from(n).unwrap_or(0))
        })
    }

    /// Up to `limit` rows of one quadrant table in grid order, starting after
    /// `after` (keyset pagination on `grid`): the tile export reads whole tables
    /// page by page without holding them in memory. `None` starts at the first
    /// row; an empty result means the table is exhausted.
    pub async fn datamap_page(
        &self,
        quadrant: Quadrant,
        after: Option<DatamapGrid>,
        limit: usize,
    ) -> Result<Vec<DatamapRow>> {
        let table = quadrant.table();
        // The key is big-endian with offsets, so byte order is (lat, lon) order
        // on both backends (SQLite BLOB and PostgreSQL bytea compare bytewise).
        let sql = match after {
            Some(_) => format!(
                "SELECT grid, created, modified FROM {table} WHERE grid > $1 ORDER BY grid LIMIT $2"
            ),
            None => format!("SELECT grid, created, modified FROM {table} ORDER BY grid LIMIT $1"),
        };
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut out = Vec::new();
        with_pool!(self, pool => {
            let mut q = sqlx::query(AssertSqlSafe(&*sql));
            if let Some(g) = after {
                q = q.bind(g.to_bytes().to_vec());
            }
            // Streamed, not fetch_all: a page of driver rows costs several
            // times the few bytes kept per row.
            let mut rows = q.bind(limit).fetch(pool);
            while let Some(row) = futures_util::TryStreamExt::try_next(&mut rows).await? {
                out.push(decode_row(&row, table)?);
            }
        });
        Ok(out)
    }
}
