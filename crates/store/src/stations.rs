//! Station tables: `wifi_shard_*`, `blue_shard_*` (routed by MAC shard) and
//! `cell_*` (routed by radio).

use sqlx::AssertSqlSafe;
use std::collections::BTreeMap;
use std::sync::LazyLock;

use ichnaea_core::cell::CellKey;
use ichnaea_core::locate::estimate::Estimate;
use ichnaea_core::mac::Mac;
use ichnaea_core::radio::Radio;
use ichnaea_core::station::{BlueStation, CellStation, StationFields, WifiStation};

use crate::rows::{STATION_COLUMNS, SqlRow, bind_station_fields, corrupt, station_fields};
use crate::schema::{blue_table, wifi_table};
use crate::{LOOKUP_CHUNK, Result, Store, placeholders, with_pool};

#[derive(Copy, Clone)]
enum MacKind {
    Wifi,
    Blue,
}

impl MacKind {
    fn table(self, shard: u8) -> String {
        match self {
            MacKind::Wifi => wifi_table(shard),
            MacKind::Blue => blue_table(shard),
        }
    }

    /// The one-key `SELECT` of a shard, built once (the embedded read path);
    /// with the `estimate` column when `estimate`.
    fn point_select(self, shard: u8, estimate: bool) -> &'static str {
        static WIFI: LazyLock<Vec<String>> =
            LazyLock::new(|| (0..16).map(|s| mac_select_sql(&wifi_table(s), 1)).collect());
        static BLUE: LazyLock<Vec<String>> =
            LazyLock::new(|| (0..16).map(|s| mac_select_sql(&blue_table(s), 1)).collect());
        static WIFI_EST: LazyLock<Vec<String>> = LazyLock::new(|| {
            (0..16)
                .map(|s| mac_select_estimate_sql(&wifi_table(s), 1))
                .collect()
        });
        static BLUE_EST: LazyLock<Vec<String>> = LazyLock::new(|| {
            (0..16)
                .map(|s| mac_select_estimate_sql(&blue_table(s), 1))
                .collect()
        });
        let all = match (self, estimate) {
            (MacKind::Wifi, false) => &WIFI,
            (MacKind::Blue, false) => &BLUE,
            (MacKind::Wifi, true) => &WIFI_EST,
            (MacKind::Blue, true) => &BLUE_EST,
        };
        all.get(usize::from(shard)).map_or("", String::as_str)
    }
}

/// Columns of [`mac_select_sql`], in order.
static MAC_COLUMNS: LazyLock<Vec<&'static str>> =
    LazyLock::new(|| std::iter::once("mac").chain(STATION_COLUMNS).collect());

/// Columns of [`mac_select_estimate_sql`], in order.
static MAC_EST_COLUMNS: LazyLock<Vec<&'static str>> = LazyLock::new(|| {
    ["mac", "estimate"]
        .into_iter()
        .chain(STATION_COLUMNS)
        .collect()
});

/// Columns of [`cell_select_estimate_sql`], in order.
static CELL_EST_COLUMNS: LazyLock<Vec<&'static str>> = LazyLock::new(|| {
    [
        "cellid", "radio", "mcc", "mnc", "lac", "cid", "psc", "estimate",
    ]
    .into_iter()
    .chain(STATION_COLUMNS)
    .collect()
});

/// Columns of [`cell_select_sql`], in order.
static CELL_COLUMNS: LazyLock<Vec<&'static str>> = LazyLock::new(|| {
    ["cellid", "radio", "mcc", "mnc", "lac", "cid", "psc"]
        .into_iter()
        .chain(STATION_COLUMNS)
        .collect()
});

/// The one-key `SELECT` of a radio's cell table, built once; with the
/// `estimate` column when `estimate`.
fn cell_point_select(radio: Radio, estimate: bool) -> &'static str {
    static ALL: LazyLock<Vec<(Radio, String)>> = LazyLock::new(|| {
        Radio::ALL
            .iter()
            .map(|r| (*r, cell_select_sql(r.cell_table(), 1)))
            .collect()
    });
    static EST: LazyLock<Vec<(Radio, String)>> = LazyLock::new(|| {
        Radio::ALL
            .iter()
            .map(|r| (*r, cell_select_estimate_sql(r.cell_table(), 1)))
            .collect()
    });
    let all = if estimate { &EST } else { &ALL };
    all.iter()
        .find(|(r, _)| *r == radio)
        .map_or("", |(_, sql)| sql.as_str())
}

fn update_clause() -> String {
    STATION_COLUMNS
        .iter()
        .map(|c| format!("{c} = excluded.{c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn group_by<K: Ord, T>(
    items: impl IntoIterator<Item = T>,
    key: impl Fn(&T) -> K,
) -> BTreeMap<K, Vec<T>> {
    let mut groups: BTreeMap<K, Vec<T>> = BTreeMap::new();
    for item in items {
        groups.entry(key(&item)).or_default().push(item);
    }
    groups
}

/// `SELECT` of `n` MAC stations by key.
pub(crate) fn mac_select_sql(table: &str, n: usize) -> String {
    format!(
        "SELECT mac, {} FROM {table} WHERE mac IN ({})",
        STATION_COLUMNS.join(", "),
        placeholders(0, n)
    )
}

/// `SELECT` of `n` MAC stations by key, with their `estimate`.
pub(crate) fn mac_select_estimate_sql(table: &str, n: usize) -> String {
    format!(
        "SELECT mac, estimate, {} FROM {table} WHERE mac IN ({})",
        STATION_COLUMNS.join(", "),
        placeholders(0, n)
    )
}

/// Upsert of one whole MAC station row with its `estimate` (bound last).
pub(crate) fn mac_upsert_estimate_sql(table: &str) -> String {
    format!(
        "INSERT INTO {table} (mac, {}, estimate) VALUES ({}) ON CONFLICT (mac) DO UPDATE SET {}, \
         estimate = excluded.estimate",
        STATION_COLUMNS.join(", "),
        placeholders(0, STATION_COLUMNS.len() + 2),
        update_clause()
    )
}

/// `SELECT` of `n` cells by binary cellid, with their `estimate`.
pub(crate) fn cell_select_estimate_sql(table: &str, n: usize) -> String {
    format!(
        "SELECT cellid, radio, mcc, mnc, lac, cid, psc, estimate, {} FROM {table} WHERE cellid IN ({})",
        STATION_COLUMNS.join(", "),
        placeholders(0, n)
    )
}

/// Upsert of one whole cell row with its `estimate` (bound last).
pub(crate) fn cell_upsert_estimate_sql(table: &str) -> String {
    format!(
        "INSERT INTO {table} (cellid, radio, mcc, mnc, lac, cid, psc, {}, estimate) VALUES ({}) \
         ON CONFLICT (cellid) DO UPDATE SET radio = excluded.radio, mcc = excluded.mcc, \
         mnc = excluded.mnc, lac = excluded.lac, cid = excluded.cid, psc = excluded.psc, {}, \
         estimate = excluded.estimate",
        STATION_COLUMNS.join(", "),
        placeholders(0, STATION_COLUMNS.len() + 8),
        update_clause()
    )
}

/// Decodes the `estimate` column; a missing or unreadable one is `None`
/// (the station is then used with its classic position).
pub(crate) fn decode_estimate(row: &impl SqlRow) -> Result<Option<Estimate>> {
    Ok(row
        .bytes_opt("estimate")?
        .and_then(|b| Estimate::from_bytes(&b)))
}

/// Upsert of one whole MAC station row.
pub(crate) fn mac_upsert_sql(table: &str) -> String {
    format!(
        "INSERT INTO {table} (mac, {}) VALUES ({}) ON CONFLICT (mac) DO UPDATE SET {}",
        STATION_COLUMNS.join(", "),
        placeholders(0, STATION_COLUMNS.len() + 1),
        update_clause()
    )
}

/// `SELECT` of `n` cells by binary cellid.
pub(crate) fn cell_select_sql(table: &str, n: usize) -> String {
    format!(
        "SELECT cellid, radio, mcc, mnc, lac, cid, psc, {} FROM {table} WHERE cellid IN ({})",
        STATION_COLUMNS.join(", "),
        placeholders(0, n)
    )
}

/// Upsert of one whole cell row.
pub(crate) fn cell_upsert_sql(table: &str) -> String {
    format!(
        "INSERT INTO {table} (cellid, radio, mcc, mnc, lac, cid, psc, {}) VALUES ({}) \
         ON CONFLICT (cellid) DO UPDATE SET radio = excluded.radio, mcc = excluded.mcc, \
         mnc = excluded.mnc, lac = excluded.lac, cid = excluded.cid, psc = excluded.psc, {}",
        STATION_COLUMNS.join(", "),
        placeholders(0, STATION_COLUMNS.len() + 7),
        update_clause()
    )
}

/// Decodes the `mac` column.
pub(crate) fn decode_mac(row: &impl SqlRow, table: &str) -> Result<Mac> {
    let bytes = row.bytes("mac")?;
    Mac::from_slice(&bytes).ok_or_else(|| corrupt(table, format!("mac of {} bytes", bytes.len())))
}

impl Store {
    /// Reads MAC stations from their shard tables: one `UNION ALL` query per
    /// chunk of keys, so a locate query costs one database round trip however
    /// many shards its networks fall into.
    async fn mac_stations(&self, kind: MacKind, macs: &[Mac]) -> Result<Vec<(Mac, StationFields)>> {
        Ok(self
            .mac_stations_with(kind, macs, false)
            .await?
            .into_iter()
            .map(|(mac, fields, _)| (mac, fields))
            .collect())
    }

    /// [`Store::mac_stations`], with the `estimate` column when `estimate`.
    async fn mac_stations_with(
        &self,
        kind: MacKind,
        macs: &[Mac],
        estimate: bool,
    ) -> Result<Vec<(Mac, StationFields, Option<Estimate>)>> {
        let mut out = Vec::with_capacity(macs.len());
        let table = match kind {
            MacKind::Wifi => "wifi_shard_*",
            MacKind::Blue => "blue_shard_*",
        };
        for chunk in macs.chunks(LOOKUP_CHUNK) {
            let groups = group_by(chunk.iter().copied(), Mac::shard);
            let keys: Vec<[u8; 6]> = groups.values().flatten().map(|m| *m.bytes()).collect();
            if let Some(reader) = &self.reader {
                let lookups: Vec<(&'static str, Vec<u8>)> = groups
                    .iter()
                    .flat_map(|(shard, macs)| macs.iter().map(|_| *shard))
                    .zip(&keys)
                    .map(|(shard, key)| (kind.point_select(shard, estimate), key.to_vec()))
                    .collect();
                let columns: &'static [&'static str] = if estimate {
                    MAC_EST_COLUMNS.as_slice()
                } else {
                    MAC_COLUMNS.as_slice()
                };
                let found = reader
                    .lookup_bounded(columns, lookups, move |row| {
                        let e = if estimate {
                            decode_estimate(row)?
                        } else {
                            None
                        };
                        Ok((decode_mac(row, table)?, station_fields(row, table)?, e))
                    })
                    .await?;
                out.extend(found);
                continue;
            }
            let mut parts = Vec::with_capacity(groups.len());
            let mut offset = 0;
            for (shard, macs) in &groups {
                parts.push(format!(
                    "SELECT mac, {}{} FROM {} WHERE mac IN ({})",
                    if estimate { "estimate, " } else { "" },
                    STATION_COLUMNS.join(", "),
                    kind.table(*shard),
                    placeholders(offset, macs.len())
                ));
                offset += macs.len();
            }
            let sql = parts.join(" UNION ALL ");
            with_pool!(self, pool => {
                let mut q = sqlx::query(AssertSqlSafe(&*sql));
                for key in &keys {
                    q = q.bind(key.as_slice());
                }
                for row in q.fetch_all(pool).await? {
                    let e = if estimate { decode_estimate(&row)? } else { None };
                    out.push((decode_mac(&row, table)?, station_fields(&row, table)?, e));
                }
            });
        }
        Ok(out)
    }

    async fn upsert_mac_stations(
        &self,
        kind: MacKind,
        rows: &[(Mac, &StationFields)],
    ) -> Result<()> {
        with_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            for (shard, rows) in group_by(rows.iter(), |(mac, _)| mac.shard()) {
                let sql = mac_upsert_sql(&kind.table(shard));
                for (mac, fields) in rows {
                    let q = sqlx::query(AssertSqlSafe(&*sql)).bind(mac.bytes().as_slice());
                    bind_station_fields!(q, fields).execute(&mut *tx).await?;
                }
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// The stored Wi-Fi stations among `macs` (unknown ones are absent), read from
    /// their shard tables.
    pub async fn wifi_stations(&self, macs: &[Mac]) -> Result<Vec<WifiStation>> {
        let rows = self.mac_stations(MacKind::Wifi, macs).await?;
        Ok(rows
            .into_iter()
            .map(|(mac, fields)| WifiStation { mac, fields })
            .collect())
    }

    /// The stored Bluetooth stations among `macs`.
    pub async fn blue_stations(&self, macs: &[Mac]) -> Result<Vec<BlueStation>> {
        let rows = self.mac_stations(MacKind::Blue, macs).await?;
        Ok(rows
            .into_iter()
            .map(|(mac, fields)| BlueStation { mac, fields })
            .collect())
    }

    /// The stored Wi-Fi stations among `macs` with their estimates (the
    /// calibrated locate model's read: one round trip, like
    /// [`Store::wifi_stations`]).
    pub async fn wifi_stations_estimated(
        &self,
        macs: &[Mac],
    ) -> Result<Vec<(WifiStation, Option<Estimate>)>> {
        let rows = self.mac_stations_with(MacKind::Wifi, macs, true).await?;
        Ok(rows
            .into_iter()
            .map(|(mac, fields, e)| (WifiStation { mac, fields }, e))
            .collect())
    }

    /// The stored Bluetooth stations among `macs` with their estimates.
    pub async fn blue_stations_estimated(
        &self,
        macs: &[Mac],
    ) -> Result<Vec<(BlueStation, Option<Estimate>)>> {
        let rows = self.mac_stations_with(MacKind::Blue, macs, true).await?;
        Ok(rows
            .into_iter()
            .map(|(mac, fields, e)| (BlueStation { mac, fields }, e))
            .collect())
    }

    /// Inserts or wholly replaces Wi-Fi station rows, in one transaction.
    pub async fn upsert_wifi_stations(&self, rows: &[WifiStation]) -> Result<()> {
        let rows: Vec<_> = rows.iter().map(|r| (r.mac, &r.fields)).collect();
        self.upsert_mac_stations(MacKind::Wifi, &rows).await
    }

    /// Inserts or wholly replaces Bluetooth station rows, in one transaction
    /// (dump import, tests).
    pub async fn upsert_blue_stations(&self, rows: &[BlueStation]) -> Result<()> {
        let rows: Vec<_> = rows.iter().map(|r| (r.mac, &r.fields)).collect();
        self.upsert_mac_stations(MacKind::Blue, &rows).await
    }

    /// The stored cells among `keys`, read from their radio's table.
    pub async fn cell_stations(&self, keys: &[CellKey]) -> Result<Vec<CellStation>> {
        Ok(self
            .cell_stations_with(keys, false)
            .await?
            .into_iter()
            .map(|(c, _)| c)
            .collect())
    }

    /// The stored cells among `keys` with their estimates.
    pub async fn cell_stations_estimated(
        &self,
        keys: &[CellKey],
    ) -> Result<Vec<(CellStation, Option<Estimate>)>> {
        self.cell_stations_with(keys, true).await
    }

    async fn cell_stations_with(
        &self,
        keys: &[CellKey],
        estimate: bool,
    ) -> Result<Vec<(CellStation, Option<Estimate>)>> {
        let mut out = Vec::with_capacity(keys.len());
        for (radio, keys) in group_by(keys.iter().copied(), |k| k.radio) {
            let table = radio.cell_table();
            for chunk in keys.chunks(LOOKUP_CHUNK) {
                let ids = chunk
                    .iter()
                    .map(CellKey::to_bytes)
                    .collect::<Result<Vec<_>, _>>()?;
                if let Some(reader) = &self.reader {
                    let point = cell_point_select(radio, estimate);
                    let lookups: Vec<(&'static str, Vec<u8>)> =
                        ids.iter().map(|id| (point, id.to_vec())).collect();
                    let columns: &'static [&'static str] = if estimate {
                        CELL_EST_COLUMNS.as_slice()
                    } else {
                        CELL_COLUMNS.as_slice()
                    };
                    let found = reader
                        .lookup_bounded(columns, lookups, move |row| {
                            let e = if estimate {
                                decode_estimate(row)?
                            } else {
                                None
                            };
                            Ok((decode_cell(row, radio)?, e))
                        })
                        .await?;
                    out.extend(found);
                    continue;
                }
                let sql = if estimate {
                    cell_select_estimate_sql(table, ids.len())
                } else {
                    cell_select_sql(table, ids.len())
                };
                with_pool!(self, pool => {
                    let mut q = sqlx::query(AssertSqlSafe(&*sql));
                    for id in &ids {
                        q = q.bind(id.as_slice());
                    }
                    for row in q.fetch_all(pool).await? {
                        let e = if estimate { decode_estimate(&row)? } else { None };
                        out.push((decode_cell(&row, radio)?, e));
                    }
                });
            }
        }
        Ok(out)
    }

    /// Inserts or wholly replaces cell rows, in one transaction.
    pub async fn upsert_cell_stations(&self, rows: &[CellStation]) -> Result<()> {
        with_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            for (radio, rows) in group_by(rows.iter(), |r| r.key.radio) {
                let sql = cell_upsert_sql(radio.cell_table());
                for row in rows {
                    let k = row.key;
                    let q = sqlx::query(AssertSqlSafe(&*sql))
                        .bind(k.to_bytes()?)
                        .bind(i64::from(k.radio.code()))
                        .bind(i64::from(k.mcc))
                        .bind(i64::from(k.mnc))
                        .bind(i64::from(k.lac))
                        .bind(cid_column(k.cid)?)
                        .bind(row.psc.map(i64::from));
                    bind_station_fields!(q, row.fields).execute(&mut *tx).await?;
                }
            }
            tx.commit().await?;
        });
        Ok(())
    }
}

pub(crate) fn cid_column(cid: u64) -> Result<i64> {
    i64::try_from(cid).map_err(|_| corrupt("cell", format!("cid {cid}")))
}

pub(crate) fn decode_cell(row: &impl SqlRow, radio: Radio) -> Result<CellStation> {
    let table = radio.cell_table();
    let int = |col: &str| -> Result<i64> { row.i64(col) };
    let num = |col: &str, max: u64| -> Result<u64> {
        let v = int(col)?;
        u64::try_from(v)
            .ok()
            .filter(|v| *v <= max)
            .ok_or_else(|| corrupt(table, format!("{col} {v}")))
    };
    let key = CellKey {
        radio,
        mcc: num("mcc", u16::MAX.into())? as u16,
        mnc: num("mnc", u16::MAX.into())? as u16,
        lac: num("lac", radio.max_lac().into())? as u32,
        cid: num("cid", radio.max_cid())?,
    };
    let psc = row
        .i64_opt("psc")?
        .map(|p| i16::try_from(p).map_err(|_| corrupt(table, format!("psc {p}"))))
        .transpose()?;
    Ok(CellStation {
        key,
        psc,
        fields: station_fields(row, table)?,
    })
}

impl Store {
    /// Positioned cells of one radio with `modified` in `[from, to)` (`to`
    /// open-ended when `None`), ordered by cellid, after `after` (keyset paging
    /// for the public cell export).
    pub async fn exportable_cells(
        &self,
        radio: Radio,
        from: chrono::NaiveDateTime,
        to: Option<chrono::NaiveDateTime>,
        after: Option<&[u8]>,
        limit: i64,
    ) -> Result<Vec<CellStation>> {
        let table = radio.cell_table();
        let sql = format!(
            "SELECT cellid, radio, mcc, mnc, lac, cid, psc, {} FROM {table} \
             WHERE lat IS NOT NULL AND lon IS NOT NULL AND modified >= $1 \
             AND ($2 IS NULL OR modified < $2) AND ($3 IS NULL OR cellid > $3) \
             ORDER BY cellid LIMIT $4",
            STATION_COLUMNS.join(", ")
        );
        with_pool!(self, pool => {
            let rows = sqlx::query(AssertSqlSafe(&*sql))
                .bind(from)
                .bind(to)
                .bind(after)
                .bind(limit)
                .fetch_all(pool)
                .await?;
            rows.iter().map(|r| decode_cell(r, radio)).collect()
        })
    }
}
