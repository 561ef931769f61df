//! `ichnaea seed-stations`: fills the configured database with Wi-Fi stations for
//! locate benchmarks — the `sim load --endpoint geolocate` MAC pool placed within
//! a few metres of one point (so every query of three of them is answered from a
//! cluster), plus random stations spread over a city up to `count`.

use std::time::Instant;

use chrono::Utc;
use ichnaea_core::mac::Mac;
use ichnaea_core::source::ReportSource;
use ichnaea_core::station::{StationFields, WifiStation};
use ichnaea_store::Store;

/// Stations written per transaction.
const CHUNK: usize = 5_000;

fn station(mac: Mac, lat: f64, lon: f64, now: chrono::NaiveDateTime) -> WifiStation {
    WifiStation {
        mac,
        fields: StationFields {
            lat: Some(lat),
            lon: Some(lon),
            max_lat: Some(lat),
            min_lat: Some(lat),
            max_lon: Some(lon),
            min_lon: Some(lon),
            radius: Some(30),
            region: Some("DE".into()),
            samples: Some(10),
            source: Some(ReportSource::Gnss),
            weight: Some(10.0),
            created: Some(now),
            modified: Some(now),
            last_seen: Some(now.date()),
            ..StationFields::default()
        },
    }
}

/// Writes `count` stations (at least the MAC pool of `mac_pool_seed`).
pub async fn seed(store: &Store, count: usize, mac_pool_seed: u64) -> anyhow::Result<()> {
    let now = Utc::now().naive_utc();
    let started = Instant::now();
    let pool = ichnaea_sim::bodies::mac_pool(mac_pool_seed);
    let mut rng = fastrand::Rng::with_seed(mac_pool_seed ^ 0x5eed);
    let mut batch: Vec<WifiStation> = Vec::with_capacity(CHUNK);
    let mut written = 0usize;
    let total = count.max(pool.len());
    let progress = crate::progress::Progress::bar("seed-stations", total as u64, "stations");
    for i in 0..total {
        let row = match pool.get(i) {
            // Berlin Mitte, within ~20 m.
            Some(text) => {
                let mac = Mac::from_hex(&text.replace(':', ""))
                    .map_err(|e| anyhow::anyhow!("pool MAC {text}: {e}"))?;
                station(
                    mac,
                    52.52 + rng.f64() * 2e-4,
                    13.405 + rng.f64() * 3e-4,
                    now,
                )
            }
            None => {
                let mut b = [0u8; 6];
                rng.fill(&mut b);
                b[0] = (b[0] & 0b1111_1100) | 0b10;
                station(Mac(b), 52.3 + rng.f64() * 0.4, 13.1 + rng.f64() * 0.6, now)
            }
        };
        batch.push(row);
        if batch.len() == CHUNK || i + 1 == total {
            store.upsert_wifi_stations(&batch).await?;
            written += batch.len();
            batch.clear();
            progress.set_position(written as u64);
        }
    }
    drop(progress);
    println!(
        "wrote {written} Wi-Fi stations ({} from the MAC pool of seed {mac_pool_seed}) in {:.1} s",
        pool.len().min(total),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
