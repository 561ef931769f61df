//! What the live coverage tiles read: the data-map rows under a tile, and the
//! `datamap_tile_change` log (zoom-11 tile id → time of the latest change, in
//! epoch milliseconds) that tells web processes which cached tiles are stale.

use ichnaea_core::datamap::{DatamapGrid, Quadrant};
use sqlx::AssertSqlSafe;

use crate::datamap::{DatamapRow, decode_row};
use crate::{Backend, Result, Store, with_pool};

/// Records (or moves forward) the change time of one tile.
pub(crate) const RECORD_TILE_CHANGE: &str = "INSERT INTO datamap_tile_change (tile, changed) \
     VALUES ($1, $2) ON CONFLICT (tile) DO UPDATE SET changed = excluded.changed \
     WHERE datamap_tile_change.changed < excluded.changed";

/// A rectangle of data-map grid cells (thousandths of a degree, inclusive).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GridBox {
    /// Southernmost row.
    pub lat_min: i32,
    /// Northernmost row.
    pub lat_max: i32,
    /// Westernmost column.
    pub lon_min: i32,
    /// Easternmost column.
    pub lon_max: i32,
}

impl Store {
    /// The rows of one quadrant table inside `area`, at most `limit`. The scan
    /// runs over the latitude band on the primary key; longitudes outside the
    /// box are filtered by the database.
    pub async fn datamap_in_box(
        &self,
        quadrant: Quadrant,
        area: GridBox,
        limit: usize,
    ) -> Result<Vec<DatamapRow>> {
        let table = quadrant.table();
        let low = DatamapGrid {
            lat: area.lat_min,
            lon: area.lon_min,
        }
        .to_bytes();
        let high = DatamapGrid {
            lat: area.lat_max,
            lon: area.lon_max,
        }
        .to_bytes();
        // Bytes 5–8 of the key are the longitude (big-endian, offset).
        let lon_column = match self.backend {
            Backend::Postgres(_) => "substring(grid from 5 for 4)",
            Backend::Sqlite(_) => "substr(grid, 5, 4)",
        };
        let sql = format!(
            "SELECT grid, created, modified FROM {table} WHERE grid >= $1 AND grid <= $2 \
             AND {lon_column} >= $3 AND {lon_column} <= $4 LIMIT $5"
        );
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut out = Vec::new();
        with_pool!(self, pool => {
            let mut rows = sqlx::query(AssertSqlSafe(&*sql))
                .bind(low.to_vec())
                .bind(high.to_vec())
                .bind(low[4..].to_vec())
                .bind(high[4..].to_vec())
                .bind(limit)
                .fetch(pool);
            while let Some(row) = futures_util::TryStreamExt::try_next(&mut rows).await? {
                out.push(decode_row(&row, table)?);
            }
        });
        Ok(out)
    }

    /// Tile changes recorded after `since` (epoch ms): `(zoom-11 tile id,
    /// changed)`.
    pub async fn datamap_tile_changes(&self, since: i64) -> Result<Vec<(u64, i64)>> {
        with_pool!(self, pool => {
            let rows: Vec<(i64, i64)> = sqlx::query_as(
                "SELECT tile, changed FROM datamap_tile_change WHERE changed > $1",
            )
            .bind(since)
            .fetch_all(pool)
            .await?;
            Ok(rows
                .into_iter()
                .filter_map(|(tile, changed)| Some((u64::try_from(tile).ok()?, changed)))
                .collect())
        })
    }

    /// Forgets tile changes older than `before` (epoch ms); returns rows
    /// deleted.
    pub async fn prune_datamap_tile_changes(&self, before: i64) -> Result<u64> {
        with_pool!(self, pool => {
            Ok(sqlx::query("DELETE FROM datamap_tile_change WHERE changed < $1")
                .bind(before)
                .execute(pool)
                .await?
                .rows_affected())
        })
    }
}
