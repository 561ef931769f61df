//! Applying a leased queue batch to the station tables exactly once: one
//! transaction reads the stored rows, lets the caller compute the new rows, writes
//! them, adds the day's statistics and records the batch id. A batch whose id is
//! already recorded (a re-delivery after a crash) changes nothing.
//!
//! Writers of one station table are serialised (SQLite's write lock; a
//! PostgreSQL advisory lock per table), so the rows read are the rows replaced:
//! no lost updates when two workers drain the same shard. Workers take the
//! PostgreSQL lock without waiting ([`Store::try_lock_station_table`]) and
//! move on to another table when it is held.

use std::collections::HashMap;

use chrono::{NaiveDate, NaiveDateTime};
use ichnaea_core::cell::{AreaKey, CellKey};
use ichnaea_core::locate::estimate::Estimate;
use ichnaea_core::mac::Mac;
use ichnaea_core::radio::Radio;
use ichnaea_core::station::{CellStation, StationFields};
use ichnaea_core::stats::StatKey;
use sqlx::AssertSqlSafe;

use crate::rows::{bind_station_fields, station_fields};
use crate::schema::{blue_table, wifi_table};
use crate::stations::{
    cell_select_estimate_sql, cell_upsert_estimate_sql, cid_column, decode_cell, decode_estimate,
    decode_mac, mac_select_estimate_sql, mac_upsert_estimate_sql,
};
use crate::{Backend, LOOKUP_CHUNK, Result, Store, with_pool};

/// One station table.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum StationTable {
    /// `wifi_shard_<h>`.
    Wifi(u8),
    /// `blue_shard_<h>`.
    Blue(u8),
    /// `cell_<radio>`.
    Cell(Radio),
}

impl StationTable {
    /// The SQL table name.
    pub fn name(self) -> String {
        match self {
            StationTable::Wifi(s) => wifi_table(s),
            StationTable::Blue(s) => blue_table(s),
            StationTable::Cell(r) => r.cell_table().to_string(),
        }
    }
}

/// Key of a station row.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StationKey {
    /// Wi-Fi or Bluetooth.
    Mac(Mac),
    /// A cell.
    Cell(CellKey),
}

/// A stored station as the updater sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredStation {
    /// Common columns.
    pub fields: StationFields,
    /// Cells: `psc`.
    pub psc: Option<i64>,
    /// The calibrated locate model's state (the `estimate` column).
    pub estimate: Option<Estimate>,
}

/// What a batch writes: whole rows, and increments of today's counters.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StationWrites {
    /// Rows to insert or replace.
    pub rows: Vec<(StationKey, StoredStation)>,
    /// Counter increments for `day`.
    pub stats: Vec<(StatKey, i64)>,
    /// Day the counters belong to.
    pub day: Option<NaiveDate>,
}

/// The `stat_counter` increment statement.
const STAT_INCREMENT: &str = "INSERT INTO stat_counter (\"key\", day, value) VALUES ($1, $2, $3) \
    ON CONFLICT (\"key\", day) DO UPDATE SET value = stat_counter.value + excluded.value";

/// Takes every pending counter for the fold (SQLite: the write lock is held).
const FOLD_TAKE_SQLITE: &str = "DELETE FROM stat_counter RETURNING \"key\", day, value";

/// The same on PostgreSQL, locking the rows in (day, key) order first: station
/// batches add to them in key order, so neither side can wait on the other in a
/// cycle (a deadlock would abort one of them).
const FOLD_TAKE_POSTGRES: &str = "DELETE FROM stat_counter WHERE (\"key\", day) IN \
    (SELECT \"key\", day FROM stat_counter ORDER BY day, \"key\" FOR UPDATE) \
    RETURNING \"key\", day, value";

/// PostgreSQL advisory lock key of a table (stable across processes).
fn lock_key(table: &str) -> i64 {
    // FNV-1a, folded into the positive i64 range.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in table.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h >> 1) as i64
}

/// The writer lock of one station table, taken without waiting by
/// [`Store::try_lock_station_table`] and held until the batch applied under it
/// ([`Store::apply_station_batch_locked`]) commits, or until it is released.
pub struct StationLock {
    table: StationTable,
    /// PostgreSQL: the open transaction holding the table's advisory lock, in
    /// which the batch will be applied. SQLite: none; its single write lock is
    /// taken when the batch is applied.
    tx: Option<sqlx::Transaction<'static, sqlx::Postgres>>,
}

impl std::fmt::Debug for StationLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StationLock")
            .field("table", &self.table)
            .field("held", &self.tx.is_some())
            .finish()
    }
}

impl StationLock {
    /// The table this lock is for.
    pub fn table(&self) -> StationTable {
        self.table
    }

    /// Gives the lock up without applying anything (rolls its transaction
    /// back). Dropping the lock does the same, a little later.
    pub async fn release(self) -> Result<()> {
        if let Some(tx) = self.tx {
            tx.rollback().await?;
        }
        Ok(())
    }
}

impl Store {
    /// The advisory lock key of `name`, scoped by the schema when the store
    /// has one of its own.
    fn scoped_lock_key(&self, name: &str) -> i64 {
        match &self.lock_scope {
            Some(scope) => lock_key(&format!("{scope}.{name}")),
            None => lock_key(name),
        }
    }

    /// Takes the writer lock of `table` if no other writer holds it, without
    /// waiting: `None` when it is held. On PostgreSQL this opens the
    /// transaction the batch will be applied in and takes the table's advisory
    /// lock in it (`pg_try_advisory_xact_lock`); a worker that gets `None`
    /// leases nothing from the table's queue and moves on to another table, so
    /// workers never queue up behind one table's lock. On SQLite, whose single
    /// write lock covers every table, it always succeeds and takes nothing:
    /// the batch waits for the write lock when it is applied, as before.
    pub async fn try_lock_station_table(&self, table: StationTable) -> Result<Option<StationLock>> {
        match &self.backend {
            Backend::Sqlite(_) => Ok(Some(StationLock { table, tx: None })),
            Backend::Postgres(pool) => {
                let mut tx = pool.begin_with("BEGIN").await?;
                let taken: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
                    .bind(self.scoped_lock_key(&table.name()))
                    .fetch_one(&mut *tx)
                    .await?;
                if taken {
                    Ok(Some(StationLock {
                        table,
                        tx: Some(tx),
                    }))
                } else {
                    tx.rollback().await?;
                    Ok(None)
                }
            }
        }
    }

    /// Applies one batch of `queue` to `table`: reads the rows of `keys`, calls
    /// `compute` with them, writes its rows and counters and records `batch_id`, all
    /// in one transaction. Returns `false` (and writes nothing) when `batch_id` was
    /// applied before. Waits for the table's writer lock; see
    /// [`Store::apply_station_batch_locked`] for the variant that does not.
    pub async fn apply_station_batch<F>(
        &self,
        table: StationTable,
        queue: &str,
        batch_id: &str,
        now: NaiveDateTime,
        keys: &[StationKey],
        compute: F,
    ) -> Result<bool>
    where
        F: FnOnce(&HashMap<StationKey, StoredStation>) -> StationWrites,
    {
        self.apply_station_batch_in(None, table, queue, batch_id, now, keys, compute)
            .await
    }

    /// [`Store::apply_station_batch`] under a lock taken by
    /// [`Store::try_lock_station_table`], in the lock's transaction and table.
    pub async fn apply_station_batch_locked<F>(
        &self,
        lock: StationLock,
        queue: &str,
        batch_id: &str,
        now: NaiveDateTime,
        keys: &[StationKey],
        compute: F,
    ) -> Result<bool>
    where
        F: FnOnce(&HashMap<StationKey, StoredStation>) -> StationWrites,
    {
        self.apply_station_batch_in(
            Some(lock.tx),
            lock.table,
            queue,
            batch_id,
            now,
            keys,
            compute,
        )
        .await
    }

    /// Both of the above: `held` is `Some` for a lock of
    /// [`Store::try_lock_station_table`] (its PostgreSQL transaction, if any).
    #[allow(clippy::too_many_arguments)]
    async fn apply_station_batch_in<F>(
        &self,
        held: Option<Option<sqlx::Transaction<'static, sqlx::Postgres>>>,
        table: StationTable,
        queue: &str,
        batch_id: &str,
        now: NaiveDateTime,
        keys: &[StationKey],
        compute: F,
    ) -> Result<bool>
    where
        F: FnOnce(&HashMap<StationKey, StoredStation>) -> StationWrites,
    {
        let name = table.name();
        macro_rules! apply_in {
            ($tx:ident) => {{
                let recorded = sqlx::query(
                    "INSERT INTO applied_batch (queue, batch_id, applied_at) VALUES ($1, $2, $3) \
                         ON CONFLICT (queue, batch_id) DO NOTHING",
                )
                .bind(queue)
                .bind(batch_id)
                .bind(now)
                .execute(&mut *$tx)
                .await?
                .rows_affected();
                if recorded == 0 {
                    $tx.rollback().await?;
                    return Ok(false);
                }
                let mut stored = HashMap::with_capacity(keys.len());
                for chunk in keys.chunks(LOOKUP_CHUNK) {
                    let sql = match table {
                        StationTable::Cell(_) => cell_select_estimate_sql(&name, chunk.len()),
                        _ => mac_select_estimate_sql(&name, chunk.len()),
                    };
                    let mut q = sqlx::query(AssertSqlSafe(&*sql));
                    for key in chunk {
                        q = match key {
                            StationKey::Mac(mac) => q.bind(mac.bytes().to_vec()),
                            StationKey::Cell(cell) => q.bind(cell.to_bytes()?),
                        };
                    }
                    for row in q.fetch_all(&mut *$tx).await? {
                        match table {
                            StationTable::Cell(radio) => {
                                let cell = decode_cell(&row, radio)?;
                                stored.insert(
                                    StationKey::Cell(cell.key),
                                    StoredStation {
                                        fields: cell.fields,
                                        psc: cell.psc.map(i64::from),
                                        estimate: decode_estimate(&row)?,
                                    },
                                );
                            }
                            _ => {
                                stored.insert(
                                    StationKey::Mac(decode_mac(&row, &name)?),
                                    StoredStation {
                                        fields: station_fields(&row, &name)?,
                                        psc: None,
                                        estimate: decode_estimate(&row)?,
                                    },
                                );
                            }
                        }
                    }
                }
                let writes = compute(&stored);
                let upsert = match table {
                    StationTable::Cell(_) => cell_upsert_estimate_sql(&name),
                    _ => mac_upsert_estimate_sql(&name),
                };
                for (key, row) in &writes.rows {
                    let q = sqlx::query(AssertSqlSafe(&*upsert));
                    let q = match key {
                        StationKey::Mac(mac) => q.bind(mac.bytes().to_vec()),
                        StationKey::Cell(k) => q
                            .bind(k.to_bytes()?)
                            .bind(i64::from(k.radio.code()))
                            .bind(i64::from(k.mcc))
                            .bind(i64::from(k.mnc))
                            .bind(i64::from(k.lac))
                            .bind(cid_column(k.cid)?)
                            .bind(row.psc),
                    };
                    bind_station_fields!(q, row.fields)
                        .bind(row.estimate.map(|e| e.to_bytes()))
                        .execute(&mut *$tx)
                        .await?;
                }
                if let Some(day) = writes.day {
                    // In key order, the order in which the fold locks them, so the
                    // two never wait on each other in a cycle.
                    let mut stats: Vec<&(StatKey, i64)> =
                        writes.stats.iter().filter(|(_, n)| *n != 0).collect();
                    stats.sort_by_key(|(key, _)| key.code());
                    for (key, n) in stats {
                        sqlx::query(STAT_INCREMENT)
                            .bind(i64::from(key.code()))
                            .bind(day)
                            .bind(*n)
                            .execute(&mut *$tx)
                            .await?;
                    }
                }
                $tx.commit().await?;
            }};
        }
        match (&self.backend, held) {
            (Backend::Postgres(_), Some(Some(mut tx))) => apply_in!(tx),
            (Backend::Postgres(pool), _) => {
                let mut tx = pool.begin_with("BEGIN").await?;
                sqlx::query("SELECT pg_advisory_xact_lock($1)")
                    .bind(self.scoped_lock_key(&name))
                    .execute(&mut *tx)
                    .await?;
                apply_in!(tx)
            }
            (Backend::Sqlite(pool), _) => {
                let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
                apply_in!(tx)
            }
        }
        Ok(true)
    }

    /// Every cell of an area, blocked ones included (their position is NULL):
    /// a range scan on the cellid, whose prefix is the areaid.
    pub async fn cells_in_area(&self, area: AreaKey) -> Result<Vec<CellStation>> {
        let low = area.to_bytes()?;
        let mut high = low.clone();
        // The smallest byte string above every string with this prefix.
        while let Some(last) = high.pop() {
            if last < u8::MAX {
                high.push(last + 1);
                break;
            }
        }
        let table = area.radio.cell_table();
        let sql = format!(
            "SELECT cellid, radio, mcc, mnc, lac, cid, psc, {} FROM {table} WHERE cellid >= $1 AND cellid < $2",
            crate::rows::STATION_COLUMNS.join(", ")
        );
        with_pool!(self, pool => {
            let rows = sqlx::query(AssertSqlSafe(&*sql)).bind(&low).bind(&high).fetch_all(pool).await?;
            rows.iter().map(|r| decode_cell(r, area.radio)).collect()
        })
    }

    /// Today's not yet folded counter values (tests only).
    #[cfg(feature = "testing")]
    pub async fn stat_counters(&self, day: NaiveDate) -> Result<Vec<(StatKey, i64)>> {
        with_pool!(self, pool => {
            let rows = sqlx::query("SELECT \"key\", value FROM stat_counter WHERE day = $1 ORDER BY \"key\"")
                .bind(day)
                .fetch_all(pool)
                .await?;
            let mut out = Vec::new();
            for row in rows {
                let code: i64 = sqlx::Row::try_get(&row, 0)?;
                let value: i64 = sqlx::Row::try_get(&row, 1)?;
                if let Some(key) = StatKey::from_code(code) {
                    out.push((key, value));
                }
            }
            Ok(out)
        })
    }

    /// Folds pending `stat_counter` values into the cumulative `stat` rows, oldest
    /// day first, in one transaction, so every counted observation lands in `stat`
    /// exactly once. Returns the days folded.
    ///
    /// Station batches keep adding to `stat_counter` meanwhile (on PostgreSQL
    /// under other locks), so the fold takes its input with `DELETE … RETURNING`:
    /// it folds exactly the values it removes, and an increment committed after
    /// that statement stays for the next fold.
    pub async fn fold_stat_counters(&self) -> Result<Vec<NaiveDate>> {
        let postgres = matches!(self.backend, Backend::Postgres(_));
        with_pool!(self, pool => {
            let mut tx = pool.begin_with(if postgres { "BEGIN" } else { "BEGIN IMMEDIATE" }).await?;
            if postgres {
                sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(self.scoped_lock_key("stat")).execute(&mut *tx).await?;
            }
            let rows = sqlx::query(if postgres { FOLD_TAKE_POSTGRES } else { FOLD_TAKE_SQLITE })
                .fetch_all(&mut *tx)
                .await?;
            let mut pending = Vec::with_capacity(rows.len());
            for row in &rows {
                let key: i64 = sqlx::Row::try_get(row, 0)?;
                let day: NaiveDate = sqlx::Row::try_get(row, 1)?;
                let value: i64 = sqlx::Row::try_get(row, 2)?;
                pending.push((day, key, value));
            }
            pending.sort_unstable();
            let mut days = Vec::new();
            for (day, key, value) in pending {
                let exists = sqlx::query("SELECT 1 FROM stat WHERE \"key\" = $1 AND \"time\" = $2")
                    .bind(key)
                    .bind(day)
                    .fetch_optional(&mut *tx)
                    .await?
                    .is_some();
                if exists {
                    sqlx::query("UPDATE stat SET value = COALESCE(value, 0) + $3 WHERE \"key\" = $1 AND \"time\" = $2")
                        .bind(key)
                        .bind(day)
                        .bind(value)
                        .execute(&mut *tx)
                        .await?;
                } else {
                    let base: Option<i64> = sqlx::query(
                        "SELECT value FROM stat WHERE \"key\" = $1 AND \"time\" < $2 ORDER BY \"time\" DESC LIMIT 1",
                    )
                    .bind(key)
                    .bind(day)
                    .fetch_optional(&mut *tx)
                    .await?
                    .map(|r| sqlx::Row::try_get::<Option<i64>, _>(&r, 0))
                    .transpose()?
                    .flatten();
                    sqlx::query("INSERT INTO stat (\"key\", \"time\", value) VALUES ($1, $2, $3)")
                        .bind(key)
                        .bind(day)
                        .bind(base.unwrap_or(0) + value)
                        .execute(&mut *tx)
                        .await?;
                }
                if !days.contains(&day) {
                    days.push(day);
                }
            }
            tx.commit().await?;
            Ok(days)
        })
    }

    /// Deletes `stat` rows before `before` (retention); returns rows deleted.
    pub async fn prune_stats(&self, before: NaiveDate) -> Result<u64> {
        with_pool!(self, pool => {
            Ok(sqlx::query("DELETE FROM stat WHERE \"time\" < $1").bind(before).execute(pool).await?.rows_affected())
        })
    }

    /// Deletes datamap grids last seen before `before`; returns rows deleted.
    pub async fn prune_datamap(
        &self,
        quadrant: ichnaea_core::Quadrant,
        before: NaiveDate,
    ) -> Result<u64> {
        let sql = format!("DELETE FROM {} WHERE modified < $1", quadrant.table());
        with_pool!(self, pool => {
            Ok(sqlx::query(AssertSqlSafe(&*sql)).bind(before).execute(pool).await?.rows_affected())
        })
    }

    /// Recomputes `region_stat` (pipeline §4.3.2): cells per region and radio
    /// from `cell_area`, Bluetooth and Wi-Fi stations per region from their shards.
    /// Leaves the table alone when nothing is counted. Returns the new rows.
    pub async fn update_region_stats(&self) -> Result<Vec<ichnaea_core::stats::RegionStat>> {
        use ichnaea_core::stats::RegionStat;
        let mut by_region: std::collections::BTreeMap<String, RegionStat> = Default::default();
        let mut add = |region: String, f: &dyn Fn(&mut RegionStat, i64), n: i64| {
            let r = by_region.entry(region.clone()).or_insert(RegionStat {
                region,
                gsm: 0,
                wcdma: 0,
                lte: 0,
                nr: 0,
                blue: 0,
                wifi: 0,
            });
            f(r, n);
        };
        let areas: Vec<(String, i64, i64)> = with_pool!(self, pool => {
            let rows = sqlx::query(
                "SELECT region, radio, CAST(COALESCE(SUM(num_cells), 0) AS BIGINT) FROM cell_area \
                 WHERE region IS NOT NULL GROUP BY region, radio",
            )
            .fetch_all(pool)
            .await?;
            rows.iter()
                .map(|r| Ok((sqlx::Row::try_get(r, 0)?, sqlx::Row::try_get(r, 1)?, sqlx::Row::try_get(r, 2)?)))
                .collect::<Result<Vec<_>>>()?
        });
        for (region, radio, n) in areas {
            match Radio::from_code(radio) {
                Some(Radio::Gsm) => add(region, &|r, n| r.gsm += n, n),
                Some(Radio::Wcdma) => add(region, &|r, n| r.wcdma += n, n),
                Some(Radio::Lte) => add(region, &|r, n| r.lte += n, n),
                Some(Radio::Nr) => add(region, &|r, n| r.nr += n, n),
                None => {}
            }
        }
        for shard in 0..16u8 {
            for (table, blue) in [(blue_table(shard), true), (wifi_table(shard), false)] {
                let sql = format!(
                    "SELECT region, COUNT(*) FROM {table} WHERE region IS NOT NULL GROUP BY region"
                );
                let counts: Vec<(String, i64)> = with_pool!(self, pool => {
                    let rows = sqlx::query(AssertSqlSafe(&*sql)).fetch_all(pool).await?;
                    rows.iter()
                        .map(|r| Ok((sqlx::Row::try_get(r, 0)?, sqlx::Row::try_get(r, 1)?)))
                        .collect::<Result<Vec<_>>>()?
                });
                for (region, n) in counts {
                    if blue {
                        add(region, &|r, n| r.blue += n, n);
                    } else {
                        add(region, &|r, n| r.wifi += n, n);
                    }
                }
            }
        }
        let rows: Vec<RegionStat> = by_region.into_values().collect();
        if !rows.is_empty() {
            self.replace_region_stats(&rows).await?;
        }
        Ok(rows)
    }
}

/// A latitude/longitude box for [`Store::station_page`].
#[derive(Copy, Clone, Debug, PartialEq)]
pub struct BoundingBox {
    /// Southern edge.
    pub min_lat: f64,
    /// Northern edge.
    pub max_lat: f64,
    /// Western edge.
    pub min_lon: f64,
    /// Eastern edge.
    pub max_lon: f64,
}

impl Store {
    /// One page of a station table in key order after `after` (keyset paging for
    /// dumps), optionally only positioned stations inside `area`.
    pub async fn station_page(
        &self,
        table: StationTable,
        after: Option<&[u8]>,
        limit: i64,
        area: Option<BoundingBox>,
    ) -> Result<Vec<(StationKey, StoredStation)>> {
        let name = table.name();
        let (key_col, extra) = match table {
            StationTable::Cell(_) => ("cellid", "cellid, radio, mcc, mnc, lac, cid, psc"),
            _ => ("mac", "mac"),
        };
        let filter = if area.is_some() {
            "AND lat >= $3 AND lat <= $4 AND lon >= $5 AND lon <= $6"
        } else {
            ""
        };
        let sql = format!(
            "SELECT {extra}, {} FROM {name} WHERE ($1 IS NULL OR {key_col} > $1) {filter} ORDER BY {key_col} LIMIT $2",
            crate::rows::STATION_COLUMNS.join(", ")
        );
        let b = area.unwrap_or(BoundingBox {
            min_lat: 0.0,
            max_lat: 0.0,
            min_lon: 0.0,
            max_lon: 0.0,
        });
        with_pool!(self, pool => {
            let mut q = sqlx::query(AssertSqlSafe(&*sql)).bind(after).bind(limit);
            if area.is_some() {
                q = q.bind(b.min_lat).bind(b.max_lat).bind(b.min_lon).bind(b.max_lon);
            }
            let rows = q.fetch_all(pool).await?;
            let mut out = Vec::with_capacity(rows.len());
            for row in &rows {
                match table {
                    StationTable::Cell(radio) => {
                        let cell = decode_cell(row, radio)?;
                        out.push((StationKey::Cell(cell.key), StoredStation { fields: cell.fields, psc: cell.psc.map(i64::from), estimate: None }));
                    }
                    _ => out.push((
                        StationKey::Mac(decode_mac(row, &name)?),
                        StoredStation { fields: station_fields(row, &name)?, psc: None, estimate: None },
                    )),
                }
            }
            Ok(out)
        })
    }
}
