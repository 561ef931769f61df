//! The statistics pages through the real router: totals, chart data, region
//! table, and their page-data caches.

use axum::http::{StatusCode, header};
use chrono::{Datelike, NaiveDate, Utc};
use ichnaea_core::stats::{REGION_STATS_CACHE_KEY, RegionStat, StatKey, StatRow};
use ichnaea_web::router;
use serde_json::{Value, json};

use crate::site::{get, site_state, spec_config};
use crate::{Fx, Reply, backend_tests};

fn today() -> NaiveDate {
    Utc::now().date_naive()
}

async fn stat(fx: &Fx, key: StatKey, time: NaiveDate, value: i64) {
    fx.store
        .upsert_stat(&StatRow { key, time, value })
        .await
        .unwrap();
}

/// The (name, value) lines of the metrics table `id`.
fn metrics(r: &Reply, id: &str) -> Vec<(String, String)> {
    let text = r.text();
    let start = text
        .find(&format!("<table id=\"{id}\">"))
        .unwrap_or_else(|| panic!("table {id}"));
    let table = &text[start..start + text[start..].find("</table>").unwrap()];
    table
        .split("<tr><td>")
        .skip(1)
        .map(|row| {
            let (name, rest) = row.split_once("</td><td class=\"num\">").unwrap();
            let value = rest.split_once("</td>").unwrap().0;
            (name.to_string(), value.to_string())
        })
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

async fn stats_page_shows_todays_totals_then_serves_them_from_the_cache(fx: Fx) {
    let day = today();
    for (key, value) in [
        (StatKey::Blue, 2_200_000),
        (StatKey::Cell, 2_000_000),
        (StatKey::Wifi, 2_000_000),
        (StatKey::UniqueBlue, 1_500_000),
        (StatKey::UniqueCell, 1_000_000),
        (StatKey::UniqueWifi, 2_000_000),
        (StatKey::UniqueNr, 250_000),
    ] {
        stat(&fx, key, day, value).await;
    }
    let app = router(site_state(&fx, spec_config()));
    let r = get(&app, "/stats").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header(header::CACHE_CONTROL), Some("max-age=3600"));
    let want1 = pairs(&[
        ("Bluetooth Networks", "1.50"),
        ("Bluetooth Observations", "2.20"),
        ("Wifi Networks", "2.00"),
        ("Wifi Observations", "2.00"),
    ]);
    let want2 = pairs(&[
        ("Cells", "1.00"),
        ("Cell Observations", "2.00"),
        ("5G NR Cells", "0.25"),
        ("5G NR Cell Observations", "0.00"),
    ]);
    assert_eq!(metrics(&r, "metrics1"), want1);
    assert_eq!(metrics(&r, "metrics2"), want2);
    let text = r.text();
    for chart in ["blue_chart", "cell_chart", "wifi_chart"] {
        assert!(
            text.contains(&format!("id=\"{chart}\" class=\"chart\"")),
            "{chart}"
        );
    }
    assert!(text.contains("/static/vendor/uplot/uPlot.iife.min.js"));
    assert!(text.contains("/static/js/stats.js"));
    // A second request reads the cache only: the database is gone.
    fx.store.close().await;
    let again = get(&app, "/stats").await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(metrics(&again, "metrics1"), want1);
    assert_eq!(metrics(&again, "metrics2"), want2);
}

async fn stats_use_each_counters_latest_row(fx: Fx) {
    let yesterday = today() - chrono::Duration::days(1);
    let before = today() - chrono::Duration::days(2);
    for (key, value) in [
        (StatKey::Blue, 2_200_000),
        (StatKey::Cell, 6_100_000),
        (StatKey::Wifi, 3_212_000),
        (StatKey::UniqueBlue, 1_100_000),
        (StatKey::UniqueCell, 3_289_900),
        (StatKey::UniqueWifi, 2_009_000),
    ] {
        stat(&fx, key, yesterday, value).await;
    }
    // An older row of a counter loses to its latest one.
    stat(&fx, StatKey::Cell, before, 5_000_000).await;
    // A counter whose latest row is today's zero shows zero.
    stat(&fx, StatKey::Nr, before, 7_000_000).await;
    stat(&fx, StatKey::Nr, today(), 0).await;
    let app = router(site_state(&fx, spec_config()));
    let r = get(&app, "/stats").await;
    assert_eq!(
        metrics(&r, "metrics1"),
        pairs(&[
            ("Bluetooth Networks", "1.10"),
            ("Bluetooth Observations", "2.20"),
            ("Wifi Networks", "2.00"),
            ("Wifi Observations", "3.21"),
        ])
    );
    assert_eq!(
        metrics(&r, "metrics2"),
        pairs(&[
            ("Cells", "3.28"),
            ("Cell Observations", "6.10"),
            ("5G NR Cells", "0.00"),
            ("5G NR Cell Observations", "0.00"),
        ])
    );
}

async fn stats_with_missing_or_no_counters_show_zero(fx: Fx) {
    let app = router(site_state(&fx, spec_config()));
    let empty = get(&app, "/stats").await;
    assert_eq!(empty.status, StatusCode::OK);
    for (_, value) in metrics(&empty, "metrics1")
        .into_iter()
        .chain(metrics(&empty, "metrics2"))
    {
        assert_eq!(value, "0.00");
    }
    let (d1, d2) = (
        today() - chrono::Duration::days(1),
        today() - chrono::Duration::days(2),
    );
    stat(&fx, StatKey::Cell, d2, 5_000_000).await;
    stat(&fx, StatKey::Cell, d1, 6_000_000).await;
    stat(&fx, StatKey::Wifi, d1, 3_000_000).await;
    stat(&fx, StatKey::UniqueCell, d2, 4_000_000).await;
    // Once the cached (empty) figures are dropped, the page sees the rows.
    fx.counters
        .cache_delete(&[b"cache:stats:5".to_vec()])
        .await
        .unwrap();
    let r = get(&app, "/stats").await;
    assert_eq!(
        metrics(&r, "metrics1"),
        pairs(&[
            ("Bluetooth Networks", "0.00"),
            ("Bluetooth Observations", "0.00"),
            ("Wifi Networks", "0.00"),
            ("Wifi Observations", "3.00"),
        ])
    );
    assert_eq!(
        metrics(&r, "metrics2")[..2],
        pairs(&[("Cells", "4.00"), ("Cell Observations", "6.00")])
    );
}

/// UTC midnight of the first of `day`'s month in epoch ms.
fn month_ms(day: NaiveDate) -> i64 {
    day.with_day(1)
        .unwrap()
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc()
        .timestamp_millis()
}

async fn chart_data_is_one_series_per_counter_and_cached(fx: Fx) {
    let day = today();
    stat(&fx, StatKey::UniqueBlue, day, 2).await;
    stat(&fx, StatKey::UniqueCell, day, 3).await;
    stat(&fx, StatKey::UniqueWifi, day, 4).await;
    stat(&fx, StatKey::UniqueNr, day, 5).await;
    // Observation counters are not charted.
    stat(&fx, StatKey::Blue, day, 99).await;
    let app = router(site_state(&fx, spec_config()));
    let cases = [
        ("/stats_blue.json", "Bluetooth networks", 2),
        ("/stats_cell.json", "Cells", 3),
        ("/stats_wifi.json", "Wi-Fi networks", 4),
        ("/stats_nr.json", "5G NR cells", 5),
    ];
    for (path, title, value) in cases {
        let r = get(&app, path).await;
        assert_eq!(r.status, StatusCode::OK, "{path}");
        assert_eq!(r.header(header::CONTENT_TYPE), Some("application/json"));
        assert_eq!(r.header(header::CACHE_CONTROL), Some("max-age=3600"));
        assert_eq!(
            r.json(),
            json!({"series": [{"title": title, "data": [[month_ms(day), value]]}]}),
            "{path}"
        );
    }
    fx.store.close().await;
    for (path, title, value) in cases {
        let r = get(&app, path).await;
        assert_eq!(r.status, StatusCode::OK, "{path} from the cache");
        assert_eq!(
            r.json(),
            json!({"series": [{"title": title, "data": [[month_ms(day), value]]}]})
        );
    }
}

async fn chart_data_is_the_monthly_maximum_of_a_year(fx: Fx) {
    let day = today();
    let rows = [(400, 40), (300, 50), (35, 60), (2, 70), (1, 80), (0, 90)];
    for (age, value) in rows {
        stat(
            &fx,
            StatKey::UniqueCell,
            day - chrono::Duration::days(age),
            value,
        )
        .await;
    }
    let mut want: Vec<[i64; 2]> = Vec::new();
    for (age, value) in rows {
        if age > 365 {
            continue;
        }
        let month = month_ms(day - chrono::Duration::days(age));
        match want.last_mut() {
            Some(last) if last[0] == month => last[1] = last[1].max(value),
            _ => want.push([month, value]),
        }
    }
    let app = router(site_state(&fx, spec_config()));
    let r = get(&app, "/stats_cell.json").await;
    let data = r.json()["series"][0]["data"].clone();
    assert_eq!(data, json!(want));
    assert!(want.contains(&[month_ms(day), 90]));
    assert!(
        !data.as_array().unwrap().iter().any(|p| p[1] == json!(40)),
        "older than a year"
    );
}

/// The (code, name, order, cells) of the region table's rows, in order.
fn region_table(r: &Reply) -> Vec<(String, String, String, String)> {
    let text = r.text();
    text.split("<tr data-code=\"")
        .skip(1)
        .map(|row| {
            let code = row[..2].to_string();
            let order = row.split("data-order=\"").nth(1).unwrap();
            let (order, rest) = order.split_once("\">").unwrap();
            let name = rest.split_once("</td>").unwrap().0;
            let cells = row
                .split("<td class=\"num\" data-order=\"")
                .nth(6)
                .unwrap()
                .split_once('"')
                .unwrap()
                .0;
            (code, name.to_string(), order.to_string(), cells.to_string())
        })
        .collect()
}

fn region(code: &str, counts: [i64; 6]) -> RegionStat {
    let [gsm, wcdma, lte, nr, blue, wifi] = counts;
    RegionStat {
        region: code.into(),
        gsm,
        wcdma,
        lte,
        nr,
        blue,
        wifi,
    }
}

async fn region_table_lists_regions_by_cells(fx: Fx) {
    fx.store
        .replace_region_stats(&[
            region("DE", [2, 1, 0, 0, 0, 4]),
            region("GB", [0, 0, 0, 0, 1, 1]),
            region("TW", [0, 1, 0, 0, 0, 0]),
            region("US", [3, 0, 0, 0, 2, 0]),
            region("CI", [0, 0, 1, 4, 0, 0]),
        ])
        .await
        .unwrap();
    let app = router(site_state(&fx, spec_config()));
    let r = get(&app, "/stats/regions").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header(header::CACHE_CONTROL), Some("max-age=3600"));
    let row = |c: &str, n: &str, o: &str, cells: &str| {
        (
            c.to_string(),
            n.to_string(),
            o.to_string(),
            cells.to_string(),
        )
    };
    assert_eq!(
        region_table(&r),
        vec![
            // The apostrophe is escaped in the attribute.
            row("CI", "Côte d’Ivoire", "cote d&#39;ivo", "5"),
            row("DE", "Germany", "germany", "3"),
            row("US", "United States", "united sta", "3"),
            row("TW", "Taiwan", "taiwan", "1"),
            row("GB", "United Kingdom", "united kin", "0"),
        ]
    );
    let text = r.text();
    assert!(text.contains("<table id=\"region-stats\""));
    assert!(text.contains("/static/js/regions.js"));
    assert!(text.contains("id=\"region-search\""));
    assert!(!text.contains("jquery"), "no jQuery");

    // The page is cached: a rebuilt table shows only once the entry is
    // dropped (as update_statregion does).
    fx.store
        .replace_region_stats(&[region("FR", [0, 0, 7, 0, 0, 0])])
        .await
        .unwrap();
    assert_eq!(region_table(&get(&app, "/stats/regions").await).len(), 5);
    fx.counters
        .cache_delete(&[REGION_STATS_CACHE_KEY.as_bytes().to_vec()])
        .await
        .unwrap();
    let rebuilt = region_table(&get(&app, "/stats/regions").await);
    assert_eq!(rebuilt, vec![row("FR", "France", "france", "7")]);
}

async fn an_unreadable_cache_entry_is_recomputed(fx: Fx) {
    stat(&fx, StatKey::UniqueWifi, today(), 1_230_000).await;
    for key in [
        "cache:stats:5",
        "cache:stats_wifi_json:2",
        REGION_STATS_CACHE_KEY,
    ] {
        fx.counters
            .cache_set(&[(key.as_bytes().to_vec(), b"{not json".to_vec())], 600)
            .await
            .unwrap();
    }
    let app = router(site_state(&fx, spec_config()));
    let r = get(&app, "/stats").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        metrics(&r, "metrics1")[2],
        ("Wifi Networks".into(), "1.23".into())
    );
    let chart = get(&app, "/stats_wifi.json").await;
    assert_eq!(chart.status, StatusCode::OK);
    assert_eq!(chart.json()["series"][0]["data"][0][1], json!(1_230_000));
    assert_eq!(get(&app, "/stats/regions").await.status, StatusCode::OK);
    // The recomputed value replaced the bad entry.
    let stored = fx
        .counters
        .cache_get(&[b"cache:stats_wifi_json:2".to_vec()])
        .await
        .unwrap();
    let stored: Value = serde_json::from_slice(stored[0].as_ref().unwrap()).unwrap();
    assert_eq!(stored[0][0][1], json!(1_230_000));
}

/// A TCP relay to `target` that can be cut: Redis "going away" under a
/// connected client.
struct Relay {
    address: std::net::SocketAddr,
    task: tokio::task::JoinHandle<()>,
    links: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl Relay {
    async fn start(target: std::net::SocketAddr) -> Relay {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let links = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let held = links.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let link = tokio::spawn(async move {
                    if let Ok(mut server) = tokio::net::TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                held.lock().unwrap().push(link);
            }
        });
        Relay {
            address,
            task,
            links,
        }
    }

    /// Closes every connection and stops accepting new ones.
    fn cut(&self) {
        self.task.abort();
        for link in self.links.lock().unwrap().drain(..) {
            link.abort();
        }
    }
}

async fn pages_are_computed_when_redis_goes_away(fx: Fx) {
    let Some((url, prefix)) = fx.redis.clone() else {
        return; // Only the cluster's cache can fail.
    };
    let target = url
        .trim_start_matches("redis://")
        .split('/')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let relay = Relay::start(target).await;
    let counters = ichnaea_queue::Counters::redis(
        &format!("redis://{}/0", relay.address),
        &format!("{prefix}relay:"),
    )
    .await
    .unwrap();
    stat(&fx, StatKey::UniqueBlue, today(), 4_560_000).await;
    fx.store
        .replace_region_stats(&[region("DE", [1, 0, 0, 0, 0, 0])])
        .await
        .unwrap();
    let mut state = site_state(&fx, spec_config());
    state.counters = std::sync::Arc::new(counters);
    let app = router(state);
    assert_eq!(get(&app, "/stats").await.status, StatusCode::OK);
    relay.cut();
    let r = get(&app, "/stats").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(
        metrics(&r, "metrics1")[0],
        ("Bluetooth Networks".into(), "4.56".into())
    );
    let chart = get(&app, "/stats_blue.json").await;
    assert_eq!(chart.status, StatusCode::OK);
    assert_eq!(chart.json()["series"][0]["data"][0][1], json!(4_560_000));
    let regions = get(&app, "/stats/regions").await;
    assert_eq!(regions.status, StatusCode::OK);
    assert_eq!(region_table(&regions)[0].0, "DE");
}

backend_tests!(
    pages_are_computed_when_redis_goes_away,
    stats_page_shows_todays_totals_then_serves_them_from_the_cache,
    stats_use_each_counters_latest_row,
    stats_with_missing_or_no_counters_show_zero,
    chart_data_is_one_series_per_counter_and_cached,
    chart_data_is_the_monthly_maximum_of_a_year,
    region_table_lists_regions_by_cells,
    an_unreadable_cache_entry_is_recomputed,
);
