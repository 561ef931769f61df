//! The schema and its migrations, one set per backend, generated from one
//! description so the 32 MAC shards and the per-radio cell tables cannot drift.
//!
//! Types: every integer column is `BIGINT` on PostgreSQL (SQLite `INTEGER` is
//! 64-bit anyway), so one Rust type (`i64`) reads and writes both; binary keys are
//! `BYTEA`/`BLOB`; times are `TIMESTAMP`/`DATETIME` (UTC, whole seconds) and days
//! `DATE`.

use ichnaea_core::datamap::Quadrant;
use ichnaea_core::mac::shard_suffix;
use ichnaea_core::radio::Radio;

/// SQL dialect of a backend.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Dialect {
    /// SQLite 3.
    Sqlite,
    /// PostgreSQL 13+.
    Postgres,
}

impl Dialect {
    fn blob(self) -> &'static str {
        match self {
            Dialect::Sqlite => "BLOB",
            Dialect::Postgres => "BYTEA",
        }
    }
    fn double(self) -> &'static str {
        match self {
            Dialect::Sqlite => "REAL",
            Dialect::Postgres => "DOUBLE PRECISION",
        }
    }
    fn int(self) -> &'static str {
        match self {
            Dialect::Sqlite => "INTEGER",
            Dialect::Postgres => "BIGINT",
        }
    }
    fn datetime(self) -> &'static str {
        match self {
            Dialect::Sqlite => "DATETIME",
            Dialect::Postgres => "TIMESTAMP",
        }
    }
}

/// One schema change.
#[derive(Clone, Debug)]
pub struct Migration {
    /// Increasing number; the highest applied one is the schema version.
    pub version: i64,
    /// Short description.
    pub name: &'static str,
    /// Statements, `;`-separated.
    pub sql: String,
}

/// Every migration of a backend, in order.
pub fn migrations(d: Dialect) -> Vec<Migration> {
    vec![
        Migration {
            version: 1,
            name: "base schema",
            sql: base_schema(d),
        },
        Migration {
            version: 2,
            name: "daily stat counters",
            sql: format!(
                "CREATE TABLE stat_counter (\"key\" {int} NOT NULL, day DATE NOT NULL, value {int} NOT NULL,
                    PRIMARY KEY (\"key\", day));",
                int = d.int()
            ),
        },
        Migration {
            version: 3,
            name: "data-map tile changes",
            sql: format!(
                "CREATE TABLE datamap_tile_change (tile {int} NOT NULL PRIMARY KEY, changed {int} NOT NULL);
                CREATE INDEX datamap_tile_change_changed_idx ON datamap_tile_change (changed);",
                int = d.int()
            ),
        },
        Migration {
            version: 4,
            name: "admin generation",
            sql: admin_generation(d),
        },
        Migration {
            version: 5,
            name: "station estimates of the calibrated locate model",
            sql: station_estimates(d),
        },
    ]
}

/// The calibrated locate model's per-station state
/// (`ichnaea_core::locate::estimate::Estimate`, 44 bytes), next to the
/// original's columns, which stay as they are: both models read the same rows.
fn station_estimates(d: Dialect) -> String {
    let mut tables: Vec<String> = (0..16u8)
        .flat_map(|s| [wifi_table(s), blue_table(s)])
        .collect();
    tables.extend(Radio::ALL.iter().map(|r| r.cell_table().to_string()));
    tables
        .iter()
        .map(|t| format!("ALTER TABLE {t} ADD COLUMN estimate {};\n", d.blob()))
        .collect()
}

/// A counter that every change to `api_key` or `export_config` raises, by
/// triggers (so direct SQL counts too): running servers poll it and drop their
/// cached keys when it moves, so admin changes made by another process apply
/// within a poll.
fn admin_generation(d: Dialect) -> String {
    let mut sql = format!(
        "CREATE TABLE admin_generation (id {int} NOT NULL PRIMARY KEY, generation {int} NOT NULL);
        INSERT INTO admin_generation (id, generation) VALUES (1, 0);\n",
        int = d.int()
    );
    match d {
        Dialect::Sqlite => {
            for table in ["api_key", "export_config"] {
                for event in ["INSERT", "UPDATE", "DELETE"] {
                    sql.push_str(&format!(
                        "CREATE TRIGGER {table}_{e}_generation AFTER {event} ON {table} \
                         BEGIN UPDATE admin_generation SET generation = generation + 1 \
                         WHERE id = 1; END;\n",
                        e = event.to_ascii_lowercase()
                    ));
                }
            }
        }
        Dialect::Postgres => {
            sql.push_str(
                "CREATE FUNCTION raise_admin_generation() RETURNS trigger LANGUAGE plpgsql AS $$
                 BEGIN
                     UPDATE admin_generation SET generation = generation + 1 WHERE id = 1;
                     RETURN NULL;
                 END $$;\n",
            );
            for table in ["api_key", "export_config"] {
                sql.push_str(&format!(
                    "CREATE TRIGGER {table}_generation AFTER INSERT OR UPDATE OR DELETE ON {table} \
                     FOR EACH ROW EXECUTE FUNCTION raise_admin_generation();\n"
                ));
            }
        }
    }
    sql
}

/// Names of the 16 Wi-Fi shard tables.
pub fn wifi_tables() -> Vec<String> {
    (0..16u8).map(|s| wifi_table(s).to_string()).collect()
}

/// Table of a Wi-Fi shard (`wifi_shard_0` … `wifi_shard_f`).
pub fn wifi_table(shard: u8) -> String {
    format!("wifi_shard_{}", shard_suffix(shard))
}

/// Table of a Bluetooth shard (`blue_shard_0` … `blue_shard_f`).
pub fn blue_table(shard: u8) -> String {
    format!("blue_shard_{}", shard_suffix(shard))
}

fn station_columns(d: Dialect) -> String {
    let (dbl, int, dt) = (d.double(), d.int(), d.datetime());
    format!(
        "lat {dbl}, lon {dbl}, max_lat {dbl}, min_lat {dbl}, max_lon {dbl}, min_lon {dbl}, \
         radius {int}, region VARCHAR(2), samples {int}, source {int}, weight {dbl}, \
         created {dt}, modified {dt}, last_seen DATE, block_first DATE, block_last DATE, \
         block_count {int}"
    )
}

fn station_indexes(t: &str) -> String {
    format!(
        "CREATE INDEX {t}_region_idx ON {t} (region);\n\
         CREATE INDEX {t}_created_idx ON {t} (created);\n\
         CREATE INDEX {t}_modified_idx ON {t} (modified);\n\
         CREATE INDEX {t}_latlon_idx ON {t} (lat, lon);\n"
    )
}

fn base_schema(d: Dialect) -> String {
    let (blob, dbl, int, dt) = (d.blob(), d.double(), d.int(), d.datetime());
    let mut sql = String::new();
    sql.push_str(&format!(
        "CREATE TABLE api_key (
            valid_key VARCHAR(40) NOT NULL PRIMARY KEY,
            maxreq {int},
            allow_fallback BOOLEAN,
            allow_locate BOOLEAN,
            allow_region BOOLEAN,
            fallback_name VARCHAR(40),
            fallback_schema VARCHAR(64),
            fallback_url VARCHAR(256),
            fallback_ratelimit {int},
            fallback_ratelimit_interval {int},
            fallback_cache_expire {int},
            store_sample_locate {int},
            store_sample_submit {int}
        );
        CREATE UNIQUE INDEX api_key_lower_idx ON api_key (lower(valid_key));
        CREATE TABLE export_config (
            name VARCHAR(40) NOT NULL PRIMARY KEY,
            batch {int} NOT NULL DEFAULT 0,
            \"schema\" VARCHAR(32) NOT NULL,
            url VARCHAR(512),
            skip_keys VARCHAR(1024),
            skip_sources VARCHAR(64)
        );
        INSERT INTO export_config (name, batch, \"schema\") VALUES ('internal', 100, 'internal');
        "
    ));
    for shard in 0..16u8 {
        for table in [wifi_table(shard), blue_table(shard)] {
            sql.push_str(&format!(
                "CREATE TABLE {table} (mac {blob} NOT NULL PRIMARY KEY, {});\n",
                station_columns(d)
            ));
            sql.push_str(&station_indexes(&table));
        }
    }
    for radio in Radio::ALL {
        let t = radio.cell_table();
        sql.push_str(&format!(
            "CREATE TABLE {t} (cellid {blob} NOT NULL PRIMARY KEY, radio {int} NOT NULL, \
             mcc {int} NOT NULL, mnc {int} NOT NULL, lac {int} NOT NULL, cid {int} NOT NULL, \
             psc {int}, {});\n",
            station_columns(d)
        ));
        sql.push_str(&station_indexes(t));
    }
    sql.push_str(&format!(
        "CREATE TABLE cell_area (
            areaid {blob} NOT NULL PRIMARY KEY,
            radio {int} NOT NULL, mcc {int} NOT NULL, mnc {int} NOT NULL, lac {int} NOT NULL,
            lat {dbl}, lon {dbl}, radius {int}, region VARCHAR(2),
            avg_cell_radius {int}, num_cells {int}, last_seen DATE,
            created {dt}, modified {dt}
        );
        CREATE INDEX cell_area_region_radio_idx ON cell_area (region, radio);
        CREATE INDEX cell_area_created_idx ON cell_area (created);
        CREATE INDEX cell_area_modified_idx ON cell_area (modified);
        CREATE INDEX cell_area_latlon_idx ON cell_area (lat, lon);
        "
    ));
    for q in Quadrant::ALL {
        let t = q.table();
        sql.push_str(&format!(
            "CREATE TABLE {t} (grid {blob} NOT NULL PRIMARY KEY, created DATE, modified DATE);\n\
             CREATE INDEX {t}_created_idx ON {t} (created);\n\
             CREATE INDEX {t}_modified_idx ON {t} (modified);\n"
        ));
    }
    sql.push_str(&format!(
        "CREATE TABLE stat (\"key\" {int} NOT NULL, \"time\" DATE NOT NULL, value {int},
            PRIMARY KEY (\"key\", \"time\"));
        CREATE TABLE region_stat (
            region VARCHAR(2) NOT NULL PRIMARY KEY,
            gsm {int}, wcdma {int}, lte {int}, nr {int}, blue {int}, wifi {int}
        );
        CREATE TABLE applied_batch (
            queue VARCHAR(200) NOT NULL,
            batch_id VARCHAR(64) NOT NULL,
            applied_at {dt} NOT NULL,
            PRIMARY KEY (queue, batch_id)
        );
        CREATE INDEX applied_batch_applied_at_idx ON applied_batch (applied_at);
        "
    ));
    sql
}

/// Every table the migrations create (for row counts and test clean-up).
pub fn all_tables() -> Vec<String> {
    let mut t: Vec<String> = [
        "api_key",
        "export_config",
        "cell_area",
        "stat",
        "stat_counter",
        "datamap_tile_change",
        "region_stat",
        "applied_batch",
        "admin_generation",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    t.extend((0..16u8).map(wifi_table));
    t.extend((0..16u8).map(blue_table));
    t.extend(Radio::ALL.map(|r| r.cell_table().to_string()));
    t.extend(Quadrant::ALL.map(|q| q.table().to_string()));
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_schema_has_every_table() {
        for d in [Dialect::Sqlite, Dialect::Postgres] {
            let sql = base_schema(d);
            for t in [
                "wifi_shard_0",
                "wifi_shard_f",
                "blue_shard_a",
                "cell_nr",
                "cell_gsm",
                "datamap_sw",
                "region_stat",
            ] {
                assert!(
                    sql.contains(&format!("CREATE TABLE {t} (")),
                    "{t} missing for {d:?}"
                );
            }
            assert_eq!(sql.matches("CREATE TABLE wifi_shard_").count(), 16);
            assert_eq!(sql.matches("CREATE TABLE blue_shard_").count(), 16);
        }
    }
}
