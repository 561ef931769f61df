//! The `ichnaea` binary: command line, configuration and the wiring of store,
//! queue, pipeline and web.

mod admin;
mod cli;
mod config;
mod datamap;
mod dump;
mod progress;
mod seed;
mod serve;
mod site;

use std::process::ExitCode;

use clap::Parser;

/// mimalloc instead of glibc malloc: the request path allocates many small JSON
/// values from several threads, and glibc's arena locks showed as the top cost.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use tracing_subscriber::EnvFilter;

use crate::cli::{Cli, Command};
use crate::config::{Config, LogFormat};

/// Libraries whose chatter is kept at warnings unless the filter names them:
/// sqlx logs every statement at debug (hundreds a second while the worker
/// polls) and PostgreSQL's notices ("relation already exists") at info.
const QUIET_BY_DEFAULT: &str = "sqlx::query=warn,sqlx::postgres::notice=warn";

/// The same for one-off commands, which read whole tables: a statement over a
/// second is expected there, not worth sqlx's slow-statement warning.
const QUIET_FOR_COMMANDS: &str = "sqlx::query=error,sqlx::postgres::notice=warn";

fn init_logging(config: &Config, default_level: &str) {
    let level = if default_level.is_empty() {
        config.log_level.as_str()
    } else {
        default_level
    };
    let directives = if level.contains("sqlx") {
        level.to_string()
    } else if default_level.is_empty() {
        format!("{level},{QUIET_BY_DEFAULT}")
    } else {
        format!("{level},{QUIET_FOR_COMMANDS}")
    };
    let filter = EnvFilter::try_new(&directives).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match config.log_format.resolved() {
        LogFormat::Text => builder.init(),
        _ => builder.json().flatten_event(true).init(),
    }
}

/// The effective configuration at start-up, secrets hidden: in JSON logs one
/// line whose `config` member is the configuration as an object (not a
/// string); in text logs one line per setting.
fn log_configuration(config: &Config) {
    if !tracing::enabled!(tracing::Level::INFO) {
        return;
    }
    let settings = config.redacted();
    match config.log_format.resolved() {
        LogFormat::Text => {
            tracing::info!("effective configuration:");
            if let Some(settings) = settings.as_object() {
                for (name, value) in settings {
                    tracing::info!("  {name} = {value}");
                }
            }
        }
        _ => {
            let line = serde_json::json!({
                "timestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                "level": "INFO",
                "message": "effective configuration",
                "config": settings,
                "target": "ichnaea",
            });
            eprintln!("{line}");
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let (config, unknown) = Config::load(cli.config.as_deref(), std::env::vars())?;
    match cli.command {
        Command::Serve { roles } => {
            init_logging(&config, "");
            for var in unknown {
                tracing::warn!(variable = %var, "unknown ICHNAEA_ variable ignored");
            }
            log_configuration(&config);
            serve::serve(config, roles).await
        }
        Command::Migrate => {
            init_logging(&config, "");
            let store = serve::open_store(&config).await?;
            let version = store.schema_version().await?;
            store.close().await;
            println!("database schema at version {version}");
            Ok(())
        }
        Command::Dump {
            datatype,
            filename,
            lat,
            lon,
            radius,
        } => {
            init_logging(&config, "warn");
            let store = serve::open_store(&config).await?;
            let around = lat.zip(lon).zip(radius).map(|((a, b), r)| (a, b, r));
            let result = dump::dump(&store, &datatype, &filename, around).await;
            store.close().await;
            println!("wrote {} stations to {}", result?, filename.display());
            Ok(())
        }
        Command::Import { file, datatype } => {
            init_logging(&config, "warn");
            serve::import(config, &file, datatype.as_deref()).await
        }
        Command::SeedStations {
            count,
            mac_pool_seed,
        } => {
            init_logging(&config, "warn");
            let store = serve::open_store(&config).await?;
            let result = seed::seed(&store, count, mac_pool_seed).await;
            store.close().await;
            result
        }
        Command::SeedDatamap { count, seed } => {
            init_logging(&config, "warn");
            let store = serve::open_store(&config).await?;
            let result = datamap::seed(&store, count, seed).await;
            store.close().await;
            println!("wrote {} datamap rows", result?);
            Ok(())
        }
        Command::Datamap(args) => {
            init_logging(&config, datamap::log_level(&args));
            datamap::run(&config, args).await
        }
        Command::Drain => {
            init_logging(&config, "warn");
            serve::drain(config).await
        }
        Command::Apikey(command) => {
            init_logging(&config, "warn");
            let store = serve::open_store(&config).await?;
            let result = admin::apikey(&store, command).await;
            store.close().await;
            result
        }
        Command::ExportConfig(command) => {
            init_logging(&config, "warn");
            let store = serve::open_store(&config).await?;
            let result = match serve::open_queue(&config, &store).await {
                Ok((queue, _)) => admin::export_config(&store, &queue, command).await,
                Err(e) => Err(e),
            };
            store.close().await;
            result
        }
        Command::Queues(command) => {
            init_logging(&config, "warn");
            let store = serve::open_store(&config).await?;
            let result = match serve::open_queue(&config, &store).await {
                Ok((queue, _)) => admin::queues(&store, &queue, command).await,
                Err(e) => Err(e),
            };
            store.close().await;
            result
        }
        Command::Sim(command) => {
            init_logging(&config, "warn");
            Ok(ichnaea_sim::run(command).await?)
        }
        Command::Completions { shell } => {
            let mut command = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut command, "ichnaea", &mut std::io::stdout());
            Ok(())
        }
        Command::Man { dir } => manual(dir.as_deref()),
    }
}

/// `ichnaea man`: the main page on stdout, or every page into `dir`.
fn manual(dir: Option<&std::path::Path>) -> anyhow::Result<()> {
    use anyhow::Context;
    let command = <Cli as clap::CommandFactory>::command();
    match dir {
        None => {
            clap_mangen::Man::new(command).render(&mut std::io::stdout())?;
        }
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            clap_mangen::generate_to(command, dir)
                .with_context(|| format!("writing manual pages to {}", dir.display()))?;
            println!("manual pages written to {}", dir.display());
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // One TLS stack for every HTTPS client of the process: rustls on ring.
    ichnaea_pipeline::export::geosubmit::install_crypto_provider();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            let invalid_sim_option = matches!(
                e.downcast_ref::<ichnaea_sim::SimError>(),
                Some(ichnaea_sim::SimError::InvalidOption { .. })
            );
            if e.downcast_ref::<admin::InvalidInput>().is_some() || invalid_sim_option {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}
