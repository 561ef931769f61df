//! `ichnaea serve`: opens the store and queue, then runs the web, worker and
//! scheduler roles until SIGTERM/SIGINT, and shuts down gracefully.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use ichnaea_core::locate::LocateModel;
use ichnaea_core::region::RegionGeocoder;
use ichnaea_pipeline::export::Exporters;
use ichnaea_pipeline::periodic::Intervals;
use ichnaea_pipeline::scheduler::Scheduler;
use ichnaea_pipeline::{PipelineContext, PipelineSettings, worker};
use ichnaea_queue::{Counters, Queue};
use ichnaea_store::{Store, StoreOptions};
use ichnaea_web::api::ApiSettings;
use ichnaea_web::api::body::BodyLimits;
use ichnaea_web::api::client_ip::TrustedProxies;
use ichnaea_web::api::keys::ApiKeyCache;
use ichnaea_web::{AppState, FallbackClient, GeoIp};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::cli::Role;
use crate::config::Config;

/// Connects to the configured database and brings its schema up to date.
/// A configured read replica is checked (refused with SQLite) but not used:
/// only the web role reads from it (see [`open_store_with_replica`]).
pub async fn open_store(config: &Config) -> anyhow::Result<Store> {
    config.readonly_replica()?;
    open_store_with_replica(config, false).await
}

/// [`open_store`], with the read replica of `database_readonly_url` attached
/// when `replica` and one is configured.
async fn open_store_with_replica(config: &Config, replica: bool) -> anyhow::Result<Store> {
    let url = config.database_url();
    let replica = match config.readonly_replica()? {
        Some(options) if replica => {
            if options.max_lag <= options.check_interval {
                tracing::warn!(
                    max_lag_ms = config.database_readonly_max_lag_ms,
                    check_ms = config.database_readonly_check_ms,
                    "database_readonly_max_lag_ms is not above database_readonly_check_ms: the lag \
                     bound grows between checks, so the replica will rarely be used"
                );
            }
            tracing::info!(
                replica = %crate::config::redact_url(&options.url),
                max_lag_ms = config.database_readonly_max_lag_ms,
                "locate and statistics reads use the read replica while it is fresh enough"
            );
            Some(options)
        }
        _ => None,
    };
    let options = StoreOptions {
        max_connections: config.db_max_connections,
        read_timeout: Duration::from_millis(config.locate_read_timeout_ms),
        replica,
        ..StoreOptions::default()
    };
    let store = Store::connect(&url, &options)
        .await
        .with_context(|| format!("opening database {}", crate::config::redact_url(&url)))?;
    let report = store.migrate().await.context("migrating the database")?;
    if !report.applied.is_empty() {
        tracing::info!(applied = ?report.applied, version = report.version, "database migrated");
    }
    Ok(store)
}

/// Opens the queue backend and the usage counters beside it: Redis when
/// configured, otherwise embedded in the SQLite database (or, next to a PostgreSQL
/// database, in `<data_dir>/queue.db`).
pub async fn open_queue(config: &Config, store: &Store) -> anyhow::Result<(Queue, Counters)> {
    if let Some(url) = &config.redis_url {
        check_redis(url, config.redis_allow_volatile).await?;
        let queue = Queue::redis(url, &config.redis_prefix)
            .await
            .with_context(|| format!("connecting to Redis {}", crate::config::redact_url(url)))?;
        let counters = match &queue {
            Queue::Redis(redis) => Counters::redis_shared(redis),
            Queue::Embedded(_) => anyhow::bail!("Redis URL gave an embedded queue"),
        };
        return Ok((queue, counters));
    }
    let pool = match store.sqlite_pool() {
        Some(pool) => pool.clone(),
        None => {
            let url = format!("sqlite://{}", config.data_dir.join("queue.db").display());
            let queue_db = Store::connect(&url, &StoreOptions::default())
                .await
                .with_context(|| format!("opening embedded queue {url}"))?;
            queue_db
                .sqlite_pool()
                .cloned()
                .context("embedded queue needs a SQLite pool")?
        }
    };
    let queue = Queue::embedded(pool.clone())
        .await
        .context("opening the embedded queue")?;
    let counters = Counters::embedded(pool)
        .await
        .context("opening the embedded counters")?;
    Ok((queue, counters))
}

/// Refuses a Redis that would lose accepted reports or cannot run the queue
/// scripts: Redis Cluster always (multi-key scripts, CROSSSLOT); missing
/// durability (no AOF, `appendfsync no`, an evicting `maxmemory-policy`) or
/// settings that cannot be read (CONFIG disabled) unless `allow_volatile`,
/// in which case each problem is a warning.
async fn check_redis(url: &str, allow_volatile: bool) -> anyhow::Result<()> {
    let shown = crate::config::redact_url(url);
    let check = ichnaea_queue::redis_check::check_server(url)
        .await
        .with_context(|| format!("connecting to Redis {shown}"))?;
    if check.cluster_enabled {
        anyhow::bail!(
            "Redis {shown} runs in cluster mode (cluster_enabled:1), which ichnaea does not support: \
             its queue scripts move batches between keys of several queues in one call, which Redis \
             Cluster refuses (CROSSSLOT). Use one Redis server (with replicas and Sentinel for failover)"
        );
    }
    let problems = check.problems();
    if problems.is_empty() {
        return Ok(());
    }
    if allow_volatile {
        for problem in &problems {
            tracing::warn!(redis = %shown, problem = %problem, "Redis may lose accepted reports (redis_allow_volatile = true)");
        }
        return Ok(());
    }
    anyhow::bail!(
        "Redis {shown} may lose accepted reports: {}. Set appendonly yes, appendfsync everysec \
         (or always) and maxmemory-policy noeviction, or set redis_allow_volatile = true \
         (ICHNAEA_REDIS_ALLOW_VOLATILE=true) to start anyway",
        problems.join("; ")
    )
}

/// The pipeline's context over an opened store and queue.
fn pipeline_context(
    config: &Config,
    store: &Store,
    queue: &Arc<Queue>,
    counters: &Arc<Counters>,
) -> anyhow::Result<PipelineContext> {
    let settings = PipelineSettings {
        visibility: Duration::from_secs(config.queue_visibility.max(1)),
        ..PipelineSettings::default()
    };
    let geocoder = RegionGeocoder::new().context("loading the region boundaries")?;
    Ok(PipelineContext {
        store: store.clone(),
        queue: queue.clone(),
        counters: counters.clone(),
        geocoder: Arc::new(geocoder),
        exporters: Arc::new(
            Exporters::new(settings.export_timeout)
                .context("creating the exporters")?
                .with_exports_dir(config.exports_dir()),
        ),
        settings,
    })
}

/// Opens store, queue and counters and the pipeline's context over them, for the
/// commands that run pipeline work outside `serve`.
async fn open_pipeline(config: &Config) -> anyhow::Result<(Store, Arc<Counters>, PipelineContext)> {
    let store = open_store(config).await?;
    let (queue, counters) = open_queue(config, &store).await?;
    let (queue, counters) = (Arc::new(queue), Arc::new(counters));
    let ctx = pipeline_context(config, &store, &queue, &counters)?;
    Ok((store, counters, ctx))
}

/// `ichnaea drain`: runs every pipeline stage until the queues are empty.
pub async fn drain(config: Config) -> anyhow::Result<()> {
    let (store, counters, ctx) = open_pipeline(&config).await?;
    let shutdown = CancellationToken::new();
    cancel_on_signal(shutdown.clone());
    let progress = crate::progress::Progress::spinner("drain");
    progress.set_message("starting");
    let started = std::time::Instant::now();
    let mut last_done = 0;
    let result = worker::drain(&ctx, &shutdown, |done, waiting| {
        progress.set_message(if done == last_done && waiting > 0 {
            // Nothing taken this pass: another process holds the work.
            format!("{done} items processed; {waiting} waiting, leased by another process")
        } else {
            format!("{done} items processed, {waiting} waiting")
        });
        last_done = done;
    })
    .await;
    drop(progress);
    let _ = counters.flush().await;
    store.close().await;
    let (done, stuck) = result.context("draining the queues")?;
    for (name, len) in &stuck {
        eprintln!(
            "warning: {len} items in {name} have no consumer (unknown schema or deleted export target; `ichnaea queues purge-orphaned` removes them)"
        );
    }
    println!(
        "drained {done} items in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// `ichnaea import FILE [--datatype]`: merges a public cell export or a dump
/// (recognised by its header) into the station tables.
pub async fn import(
    config: Config,
    file: &std::path::Path,
    datatype: Option<&str>,
) -> anyhow::Result<()> {
    use ichnaea_pipeline::station_dump::{self, CELL_HEADER, DumpKind, MAC_HEADER};
    use std::io::{BufRead, BufReader, Read};
    let open = || std::fs::File::open(file).with_context(|| format!("opening {}", file.display()));
    let mut opened = open()?;
    let size = opened.metadata().map(|m| m.len()).unwrap_or(0);
    let mut magic = [0u8; 2];
    let gzip = opened
        .read(&mut magic)
        .map(|n| n == 2 && magic == [0x1f, 0x8b])
        .unwrap_or(false);
    let reader =
        |progress: Option<&crate::progress::Progress>| -> anyhow::Result<Box<dyn BufRead>> {
            let file: Box<dyn Read> = match progress {
                Some(p) => Box::new(p.wrap_read(open()?)),
                None => Box::new(open()?),
            };
            Ok(if gzip {
                Box::new(BufReader::new(flate2::read::MultiGzDecoder::new(file)))
            } else {
                Box::new(BufReader::new(file))
            })
        };
    let mut header = String::new();
    reader(None)?
        .read_line(&mut header)
        .with_context(|| format!("reading {}", file.display()))?;
    let header = header.trim_end_matches(['\r', '\n']);
    let dump_kind = if header == CELL_HEADER {
        if datatype.is_some_and(|d| d != "cell") {
            return Err(usage_error("datatype", "the file is a cell dump"));
        }
        Some(DumpKind::Cell)
    } else if header == MAC_HEADER {
        match datatype.and_then(DumpKind::parse) {
            Some(kind @ (DumpKind::Wifi | DumpKind::Blue)) => Some(kind),
            _ => {
                return Err(usage_error(
                    "datatype",
                    "the file is a Wi-Fi or Bluetooth dump: say which with --datatype wifi or --datatype blue",
                ));
            }
        }
    } else {
        if datatype.is_some_and(|d| d != "cell") {
            return Err(usage_error(
                "datatype",
                "the file is not a Wi-Fi or Bluetooth dump (header \"mac,lat,lon,...\" expected)",
            ));
        }
        None
    };
    let (store, _, ctx) = open_pipeline(&config).await?;
    let progress = crate::progress::Progress::bytes("import", size);
    let result = match reader(Some(&progress)) {
        Err(e) => Err(e),
        Ok(read) => match dump_kind {
            Some(kind) => station_dump::import(&ctx, kind, read)
                .await
                .map_err(Into::into),
            None => ichnaea_pipeline::cell_import::import(&ctx, read)
                .await
                .map_err(Into::into),
        },
    };
    drop(progress);
    store.close().await;
    let report = result.context("importing stations")?;
    let what = match dump_kind {
        Some(DumpKind::Wifi) => "Wi-Fi networks",
        Some(DumpKind::Blue) => "Bluetooth beacons",
        _ => "cells",
    };
    println!(
        "read {} rows: {} {what} inserted, {} updated, {} skipped",
        report.rows, report.inserted, report.updated, report.skipped
    );
    Ok(())
}

fn usage_error(field: &'static str, message: &str) -> anyhow::Error {
    crate::admin::InvalidInput(ichnaea_core::FieldError::new(field, message)).into()
}

fn version_body(config: &Config) -> anyhow::Result<serde_json::Value> {
    match &config.version_file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
        }
        None => Ok(ichnaea_web::build_version(config.source_url.as_deref())),
    }
}

/// Cancels `token` on SIGTERM or SIGINT.
fn cancel_on_signal(token: CancellationToken) {
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot listen for SIGTERM");
                    std::future::pending::<()>().await;
                }
            }
        };
        #[cfg(not(unix))]
        let term = std::future::pending::<()>();
        tokio::select! {
            _ = ctrl_c => tracing::info!("SIGINT received, shutting down"),
            _ = term => tracing::info!("SIGTERM received, shutting down"),
        }
        token.cancel();
    });
}

/// Logs how a role ended and keeps the first failure.
fn record_exit(
    joined: Result<anyhow::Result<&'static str>, tokio::task::JoinError>,
    failure: &mut Option<anyhow::Error>,
) {
    match joined {
        Ok(Ok(role)) => tracing::info!(role, "stopped"),
        Ok(Err(e)) => {
            tracing::error!(error = %format!("{e:#}"), "role failed, shutting down");
            failure.get_or_insert(e);
        }
        Err(e) => {
            failure.get_or_insert(anyhow::anyhow!("role panicked: {e}"));
        }
    }
}

/// How often the web role looks for admin changes made by other processes.
const ADMIN_POLL: Duration = Duration::from_secs(1);

/// The role tasks of this process; each ends with its role's name.
type Roles = JoinSet<anyhow::Result<&'static str>>;

/// Runs the given roles until a signal arrives or a role fails.
pub async fn serve(config: Config, roles: Vec<Role>) -> anyhow::Result<()> {
    let store = open_store_with_replica(&config, roles.contains(&Role::Web)).await?;
    let (queue, counters) = open_queue(&config, &store).await?;
    let (queue, counters) = (Arc::new(queue), Arc::new(counters));
    tracing::info!(database = store.backend_name(), queue = queue.backend(), roles = ?roles, "starting");

    let shutdown = CancellationToken::new();
    cancel_on_signal(shutdown.clone());
    let mut tasks: Roles = JoinSet::new();
    if let Some(address) = config.metrics_listen() {
        spawn_metrics(address, &shutdown, &mut tasks).await;
    }
    if roles.contains(&Role::Web) {
        let state = app_state(&config, &store, &queue, &counters)?;
        spawn_web(&config, state, &shutdown, &mut tasks).await?;
    }
    // Only the worker and the scheduler need the pipeline (and its region data).
    if roles.contains(&Role::Scheduler) || roles.contains(&Role::Worker) {
        let ctx = pipeline_context(&config, &store, &queue, &counters)?;
        if roles.contains(&Role::Scheduler) {
            spawn_scheduler(&config, ctx.clone(), &queue, &shutdown, &mut tasks)?;
        }
        if roles.contains(&Role::Worker) {
            let stop = shutdown.clone();
            tasks.spawn(async move {
                worker::run(ctx, stop).await;
                Ok("worker")
            });
        }
    }

    let failure = run_until_shutdown(tasks, &shutdown, config.shutdown_timeout).await;
    if let Err(e) = counters.flush().await {
        tracing::warn!(error = %e, "could not save usage counters");
    }
    store.close().await;
    tracing::info!("shut down");
    match failure {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// The GeoIP database of `geoip_path`; unset or unusable means no GeoIP source.
fn open_geoip(config: &Config) -> Option<Arc<GeoIp>> {
    let Some(path) = &config.geoip_path else {
        tracing::info!("ICHNAEA_GEOIP_PATH is unset: the GeoIP source is skipped");
        return None;
    };
    match GeoIp::open(path) {
        Ok(db) => {
            let status = db.status(chrono::Utc::now());
            tracing::info!(path = %path.display(), version = ?status.version, age_in_days = ?status.age_in_days, "GeoIP database loaded");
            Some(Arc::new(db))
        }
        Err(e) => {
            tracing::error!(path = %path.display(), error = %e, "GeoIP database unusable: the GeoIP source is skipped");
            None
        }
    }
}

/// The web role's shared state.
fn app_state(
    config: &Config,
    store: &Store,
    queue: &Arc<Queue>,
    counters: &Arc<Counters>,
) -> anyhow::Result<AppState> {
    Ok(AppState {
        store: store.clone(),
        queue: queue.clone(),
        admin_token: config.admin_token.as_deref().map(Arc::from),
        version: Arc::new(version_body(config)?),
        geoip: open_geoip(config),
        geoip_configured: config.geoip_path.is_some(),
        fallback: FallbackClient::new().context("creating the fallback HTTP client")?,
        api_keys: ApiKeyCache::new(Duration::from_secs(config.api_key_cache_ttl)),
        counters: counters.clone(),
        api: ApiSettings {
            body: BodyLimits {
                max_body: config.max_body_bytes,
                max_decoded: config.max_decoded_bytes,
                idle_timeout: Duration::from_secs(config.body_idle_timeout.max(1)),
                min_rate: config.body_min_rate,
            },
            incoming_queue_max: config.incoming_queue_max,
            trusted_proxies: TrustedProxies::parse(&config.trusted_proxies)
                .context("invalid trusted_proxies")?,
            access_log: config.access_log,
            locate_model: LocateModel::parse(&config.locate_model).ok_or_else(|| {
                anyhow::anyhow!(
                    "invalid locate_model {:?}: expected calibrated or classic",
                    config.locate_model
                )
            })?,
        },
        site: Arc::new(crate::site::site(config)?),
    })
}

/// Binds the listen address and starts the web role.
async fn spawn_web(
    config: &Config,
    state: AppState,
    shutdown: &CancellationToken,
    tasks: &mut Roles,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(&config.listen)
        .await
        .with_context(|| format!("listening on {}", config.listen))?;
    let address = listener.local_addr()?;
    tracing::info!(%address, admin_api = state.admin_token.is_some(), "web role listening on http://{address}");
    let keys = state.api_keys.clone();
    let store = state.store.clone();
    let stop = shutdown.clone();
    tasks.spawn(async move {
        keys.follow_admin_changes(store, ADMIN_POLL, stop).await;
        Ok("admin-change follower")
    });
    let app = ichnaea_web::router(state);
    let options = ichnaea_web::server::ServerOptions {
        header_read_timeout: config.header_read_timeout(),
        max_connections: config.max_connections,
    };
    let stop = shutdown.clone();
    tasks.spawn(async move {
        ichnaea_web::server::serve(listener, app, options, stop.cancelled_owned()).await;
        Ok("web")
    });
    Ok(())
}

/// Serves `/metrics` on its own address, for every role of this process. A
/// metrics listener that cannot bind is logged, and the service runs without it.
async fn spawn_metrics(address: &str, shutdown: &CancellationToken, tasks: &mut Roles) {
    let listener = match tokio::net::TcpListener::bind(address).await {
        Ok(listener) => listener,
        Err(e) => {
            tracing::error!(%address, error = %e, "metrics listener not started");
            return;
        }
    };
    let address = listener
        .local_addr()
        .map_or(address.to_string(), |a| a.to_string());
    tracing::info!(%address, "metrics on http://{address}/metrics");
    let app = ichnaea_web::metrics::router(ichnaea_web::metrics::prometheus_handle());
    let stop = shutdown.clone();
    tasks.spawn(async move {
        let options = ichnaea_web::server::ServerOptions::default();
        ichnaea_web::server::serve(listener, app, options, stop.cancelled_owned()).await;
        Ok("metrics")
    });
}

/// Starts the scheduler role with the periodic tasks and intervals configured.
fn spawn_scheduler(
    config: &Config,
    ctx: PipelineContext,
    queue: &Arc<Queue>,
    shutdown: &CancellationToken,
    tasks: &mut Roles,
) -> anyhow::Result<()> {
    let rate_control = match config.rate_control_target {
        None => None,
        Some(target) => Some(
            ichnaea_pipeline::rate_control::RateControl::new(target)
                .map(|p| ichnaea_pipeline::rate_control::RateControl {
                    kp: config.rate_control_kp,
                    ki: config.rate_control_ki,
                    kd: config.rate_control_kd,
                    ..p
                })
                .context("rate_control_target must be greater than 0")?,
        ),
    };
    let mut periodic = ichnaea_pipeline::periodic::tasks(&Intervals {
        rate_control,
        cell_export: config.cell_export_url(),
        datamap: Some(ichnaea_pipeline::periodic::DatamapJob {
            tiles_url: config.tiles_url(),
            work_dir: config.data_dir.join("datamap-render"),
            threads: crate::site::render_threads(),
            interval: Duration::from_secs(86_400),
        }),
        ..Intervals::default()
    });
    for task in &mut periodic {
        if let Some(secs) = config.intervals.get(task.name) {
            task.interval = Duration::from_secs((*secs).max(1));
        }
    }
    let scheduler = Scheduler::new(periodic);
    for (name, interval) in scheduler.describe() {
        tracing::info!(task = name, interval_s = interval.as_secs(), "scheduled");
    }
    let stop = shutdown.clone();
    let lease = ichnaea_queue::LeaderLease::for_queue(queue, "scheduler");
    tasks.spawn(async move {
        scheduler
            .run(ctx, lease, Duration::from_secs(10), stop)
            .await;
        Ok("scheduler")
    });
    Ok(())
}

/// Waits until a signal arrives or a role ends (a role only ends on its own
/// when it fails), then gives the others `timeout_s` seconds to finish; returns
/// the first failure.
async fn run_until_shutdown(
    mut tasks: Roles,
    shutdown: &CancellationToken,
    timeout_s: u64,
) -> Option<anyhow::Error> {
    let mut failure = None;
    tokio::select! {
        _ = shutdown.cancelled() => {}
        Some(joined) = tasks.join_next() => {
            record_exit(joined, &mut failure);
            shutdown.cancel();
        }
    }
    let limit = Duration::from_secs(timeout_s);
    let drain = async {
        while let Some(joined) = tasks.join_next().await {
            record_exit(joined, &mut failure);
        }
    };
    if tokio::time::timeout(limit, drain).await.is_err() {
        tracing::warn!(
            timeout_s = limit.as_secs(),
            "shutdown timeout reached, abandoning remaining work"
        );
        tasks.abort_all();
    }
    failure
}
