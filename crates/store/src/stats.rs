//! `stat` (daily cumulative counters) and `region_stat` (station counts per region).

use chrono::NaiveDate;
use ichnaea_core::stats::{RegionStat, StatKey, StatRow};
use sqlx::AssertSqlSafe;

use crate::rows::{SqlRow, corrupt};
use crate::{Result, Store, with_pool};

fn decode_stat(row: &impl SqlRow) -> Result<StatRow> {
    let code = row.i64("key")?;
    Ok(StatRow {
        key: StatKey::from_code(code).ok_or_else(|| corrupt("stat", format!("key {code}")))?,
        time: row
            .date_opt("time")?
            .ok_or_else(|| corrupt("stat", "time is NULL"))?,
        value: row.i64_opt("value")?.unwrap_or(0),
    })
}

fn decode_region(row: &impl SqlRow) -> Result<RegionStat> {
    let n = |col: &str| -> Result<i64> { Ok(row.i64_opt(col)?.unwrap_or(0)) };
    Ok(RegionStat {
        region: row.string("region")?,
        gsm: n("gsm")?,
        wcdma: n("wcdma")?,
        lte: n("lte")?,
        nr: n("nr")?,
        blue: n("blue")?,
        wifi: n("wifi")?,
    })
}

impl Store {
    /// Rows of one counter from `since` on, oldest first.
    pub async fn stats(&self, key: StatKey, since: NaiveDate) -> Result<Vec<StatRow>> {
        with_pool!(self, pool => {
            let rows = sqlx::query(
                "SELECT \"key\", \"time\", value FROM stat WHERE \"key\" = $1 AND \"time\" >= $2 ORDER BY \"time\"",
            )
            .bind(i64::from(key.code()))
            .bind(since)
            .fetch_all(pool)
            .await?;
            rows.iter().map(decode_stat).collect()
        })
    }

    /// The latest row of every counter, in one query: the running totals as
    /// of the last fold (the statistics page's figures).
    pub async fn latest_stats(&self) -> Result<Vec<StatRow>> {
        with_pool!(self, pool => {
            let rows = sqlx::query(
                "SELECT s.\"key\", s.\"time\", s.value FROM stat s \
                 JOIN (SELECT \"key\", MAX(\"time\") AS latest FROM stat GROUP BY \"key\") m \
                 ON s.\"key\" = m.\"key\" AND s.\"time\" = m.latest ORDER BY s.\"key\"",
            )
            .fetch_all(pool)
            .await?;
            let mut out = Vec::with_capacity(rows.len());
            for row in &rows {
                // Codes this build does not know (retired or newer) are skipped.
                if let Ok(stat) = decode_stat(row) {
                    out.push(stat);
                }
            }
            Ok(out)
        })
    }

    /// Inserts or replaces one `stat` row.
    #[cfg(feature = "testing")]
    pub async fn upsert_stat(&self, row: &StatRow) -> Result<()> {
        with_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO stat (\"key\", \"time\", value) VALUES ($1, $2, $3) \
                 ON CONFLICT (\"key\", \"time\") DO UPDATE SET value = excluded.value",
            )
            .bind(i64::from(row.key.code()))
            .bind(row.time)
            .bind(row.value)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// Every `region_stat` row, ordered by region.
    pub async fn region_stats(&self) -> Result<Vec<RegionStat>> {
        with_pool!(self, pool => {
            let rows = sqlx::query(
                "SELECT region, gsm, wcdma, lte, nr, blue, wifi FROM region_stat ORDER BY region",
            )
            .fetch_all(pool)
            .await?;
            rows.iter().map(decode_region).collect()
        })
    }

    /// Replaces the whole `region_stat` table with `rows` in one transaction:
    /// upserts every row, then deletes regions not among them.
    pub async fn replace_region_stats(&self, rows: &[RegionStat]) -> Result<()> {
        with_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            for r in rows {
                sqlx::query(
                    "INSERT INTO region_stat (region, gsm, wcdma, lte, nr, blue, wifi) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (region) DO UPDATE SET \
                     gsm = excluded.gsm, wcdma = excluded.wcdma, lte = excluded.lte, nr = excluded.nr, \
                     blue = excluded.blue, wifi = excluded.wifi",
                )
                .bind(&r.region)
                .bind(r.gsm)
                .bind(r.wcdma)
                .bind(r.lte)
                .bind(r.nr)
                .bind(r.blue)
                .bind(r.wifi)
                .execute(&mut *tx)
                .await?;
            }
            let keep: Vec<&str> = rows.iter().map(|r| r.region.as_str()).collect();
            let sql = if keep.is_empty() {
                "DELETE FROM region_stat".to_string()
            } else {
                format!("DELETE FROM region_stat WHERE region NOT IN ({})", crate::placeholders(0, keep.len()))
            };
            let mut q = sqlx::query(AssertSqlSafe(&*sql));
            for region in keep {
                q = q.bind(region);
            }
            q.execute(&mut *tx).await?;
            tx.commit().await?;
        });
        Ok(())
    }
}
