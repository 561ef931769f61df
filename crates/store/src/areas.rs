//! `cell_area`: aggregates of the cells sharing (radio, mcc, mnc, lac).

use ichnaea_core::cell::AreaKey;
use ichnaea_core::radio::Radio;
use ichnaea_core::station::CellArea;
use sqlx::AssertSqlSafe;
use std::sync::LazyLock;

use crate::rows::{SqlRow, corrupt};
use crate::{LOOKUP_CHUNK, Result, Store, placeholders, with_pool};

const COLUMNS: &str = "areaid, radio, mcc, mnc, lac, lat, lon, radius, region, \
    avg_cell_radius, num_cells, last_seen, created, modified";

fn decode(row: &impl SqlRow) -> Result<CellArea> {
    let bytes = row.bytes("areaid")?;
    let key = AreaKey::from_bytes(&bytes).map_err(|e| corrupt("cell_area", e.to_string()))?;
    let radio = Radio::from_code(row.i64("radio")?);
    if radio != Some(key.radio) {
        return Err(corrupt("cell_area", "radio column disagrees with areaid"));
    }
    Ok(CellArea {
        key,
        lat: row.f64_opt("lat")?,
        lon: row.f64_opt("lon")?,
        radius: row.i64_opt("radius")?,
        region: row.str_opt("region")?,
        avg_cell_radius: row.i64_opt("avg_cell_radius")?,
        num_cells: row.i64_opt("num_cells")?,
        last_seen: row.date_opt("last_seen")?,
        created: row.datetime_opt("created")?,
        modified: row.datetime_opt("modified")?,
    })
}

impl Store {
    /// The stored areas among `keys`.
    pub async fn cell_areas(&self, keys: &[AreaKey]) -> Result<Vec<CellArea>> {
        let mut out = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(LOOKUP_CHUNK) {
            let ids = chunk
                .iter()
                .map(AreaKey::to_bytes)
                .collect::<Result<Vec<_>, _>>()?;
            if let Some(reader) = &self.reader {
                static POINT: LazyLock<(String, Vec<&'static str>)> = LazyLock::new(|| {
                    (
                        format!("SELECT {COLUMNS} FROM cell_area WHERE areaid = $1"),
                        COLUMNS.split(", ").collect(),
                    )
                });
                let lookups: Vec<(&'static str, Vec<u8>)> = ids
                    .iter()
                    .map(|id| (POINT.0.as_str(), id.to_vec()))
                    .collect();
                let found = reader
                    .lookup_bounded(POINT.1.as_slice(), lookups, |row| decode(row))
                    .await?;
                out.extend(found);
                continue;
            }
            let sql = format!(
                "SELECT {COLUMNS} FROM cell_area WHERE areaid IN ({})",
                placeholders(0, ids.len())
            );
            with_pool!(self, pool => {
                let mut q = sqlx::query(AssertSqlSafe(&*sql));
                for id in &ids {
                    q = q.bind(id.as_slice());
                }
                for row in q.fetch_all(pool).await? {
                    out.push(decode(&row)?);
                }
            });
        }
        Ok(out)
    }

    /// Inserts or wholly replaces area rows, in one transaction.
    pub async fn upsert_cell_areas(&self, areas: &[CellArea]) -> Result<()> {
        let sql = format!(
            "INSERT INTO cell_area ({COLUMNS}) VALUES ({}) ON CONFLICT (areaid) DO UPDATE SET \
             lat = excluded.lat, lon = excluded.lon, radius = excluded.radius, \
             region = excluded.region, avg_cell_radius = excluded.avg_cell_radius, \
             num_cells = excluded.num_cells, last_seen = excluded.last_seen, \
             created = excluded.created, modified = excluded.modified",
            placeholders(0, 14)
        );
        with_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            for a in areas {
                sqlx::query(AssertSqlSafe(&*sql))
                    .bind(a.key.to_bytes()?)
                    .bind(i64::from(a.key.radio.code()))
                    .bind(i64::from(a.key.mcc))
                    .bind(i64::from(a.key.mnc))
                    .bind(i64::from(a.key.lac))
                    .bind(a.lat)
                    .bind(a.lon)
                    .bind(a.radius)
                    .bind(a.region.as_deref())
                    .bind(a.avg_cell_radius)
                    .bind(a.num_cells)
                    .bind(a.last_seen)
                    .bind(a.created)
                    .bind(a.modified)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// Deletes areas (no positioned member cells left); returns how many existed.
    pub async fn delete_cell_areas(&self, keys: &[AreaKey]) -> Result<u64> {
        let mut n = 0;
        for chunk in keys.chunks(LOOKUP_CHUNK) {
            let ids = chunk
                .iter()
                .map(AreaKey::to_bytes)
                .collect::<Result<Vec<_>, _>>()?;
            let sql = format!(
                "DELETE FROM cell_area WHERE areaid IN ({})",
                placeholders(0, ids.len())
            );
            n += with_pool!(self, pool => {
                let mut q = sqlx::query(AssertSqlSafe(&*sql));
                for id in &ids {
                    q = q.bind(id.as_slice());
                }
                q.execute(pool).await?.rows_affected()
            });
        }
        Ok(n)
    }
}
