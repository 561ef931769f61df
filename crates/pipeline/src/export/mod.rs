//! `export_reports` (pipeline §2.5): drains each export target's queue(s)
//! when ready and hands the batch to its exporter. A batch is acknowledged only
//! when its exporter succeeded; a failed remote export stays queued and is
//! retried after its lease expires — nothing is dropped.
//!
//! Sections (§) refer to docs/reference/pipeline.md.

pub mod geosubmit;
pub mod internal;
pub mod remote;
pub mod s3;

use chrono::Utc;
use ichnaea_core::ExportItem;
use ichnaea_core::export::{ExportConfig, ExportSchema};
use ichnaea_core::queues::{UPDATE_INCOMING, export_queue};
use ichnaea_queue::Batch;
use serde_json::Value;

use crate::{PipelineContext, PipelineError};

pub use geosubmit::ExportError;

/// The exporters that talk to other systems, created once per process.
pub struct Exporters {
    /// POSTs gzip JSON to other geosubmit endpoints.
    pub geosubmit: geosubmit::GeosubmitExporter,
    /// Writes gzip JSON objects to S3 or a local directory.
    pub objects: s3::ObjectExporter,
}

impl Exporters {
    /// Builds the exporters; `timeout` bounds one geosubmit request.
    pub fn new(timeout: std::time::Duration) -> Result<Exporters, PipelineError> {
        let geosubmit =
            geosubmit::GeosubmitExporter::new(timeout).map_err(|e| PipelineError::Export {
                name: "geosubmit".into(),
                message: e.to_string(),
            })?;
        Ok(Exporters {
            geosubmit,
            objects: s3::ObjectExporter::new(),
        })
    }

    /// Resolves relative `file://dir` export URLs under `exports_dir` instead of
    /// the working directory of whichever process runs the export.
    pub fn with_exports_dir(mut self, exports_dir: std::path::PathBuf) -> Exporters {
        self.objects = s3::ObjectExporter::with_root(exports_dir);
        self
    }
}

/// The queues holding reports for `config`: one, or one per s3 partition.
pub async fn partitions(
    ctx: &PipelineContext,
    config: &ExportConfig,
) -> Result<Vec<String>, PipelineError> {
    let base = export_queue(&config.name, None);
    Ok(match config.schema {
        ExportSchema::S3 => ctx.queue.queue_names(&format!("{base}:")).await?,
        _ => vec![base],
    })
}

/// Whether an export queue should be sent now: it holds a full batch, or its
/// oldest report waited `export_max_age` (§2.1, judged by oldest element
/// age rather than time since the last push), or `drain` asks for everything.
///
/// The `internal` target (the station tables) also goes as soon as
/// `update_incoming` is empty: its batch size saves per-batch work while reports
/// stream in, but must not hold back what was submitted once the stream pauses,
/// so a submission is learnt on the worker's next pass instead of up to
/// `export_max_age` later.
async fn ready(
    ctx: &PipelineContext,
    config: &ExportConfig,
    queue: &str,
    drain: bool,
) -> Result<bool, PipelineError> {
    let len = ctx.queue.len(queue).await?;
    if len == 0 {
        return Ok(false);
    }
    if drain || config.batch <= 0 || len >= config.batch as u64 {
        return Ok(true);
    }
    if config.schema == ExportSchema::Internal && ctx.queue.len(UPDATE_INCOMING).await? == 0 {
        return Ok(true);
    }
    let age = ctx.queue.oldest_age(queue).await?.unwrap_or_default();
    Ok(age >= ctx.settings.export_max_age)
}

/// Runs every ready export queue once; returns the number of batches exported.
/// Remote targets are included: `drain` and tests use this; the long-running
/// worker sends to remote targets from [`remote::run`] instead, so a hanging
/// target never delays the station updates.
pub async fn run_once(ctx: &PipelineContext, drain: bool) -> Result<usize, PipelineError> {
    run_where(ctx, drain, |_| true).await
}

/// [`run_once`] for the targets inside the service only (`internal`, `dummy`):
/// the worker's pass, which must never wait on another system.
pub async fn run_local(ctx: &PipelineContext, drain: bool) -> Result<usize, PipelineError> {
    run_where(ctx, drain, |schema| !schema.is_remote()).await
}

async fn run_where(
    ctx: &PipelineContext,
    drain: bool,
    wanted: impl Fn(&ExportSchema) -> bool,
) -> Result<usize, PipelineError> {
    let mut done = 0;
    for config in ctx.store.export_configs().await? {
        if matches!(config.schema, ExportSchema::Unknown(_)) || !wanted(&config.schema) {
            continue;
        }
        done += run_target(ctx, &config, drain, false).await?.0;
    }
    Ok(done)
}

/// Sends every ready queue of one target once: `(batches exported, the last
/// export failure)`. With `stop_on_failure`, the first failed batch ends the
/// run (a remote target that fails one batch most likely fails the next).
/// Queue and store errors are returned; export failures leave their batch
/// leased, so it comes back after the visibility timeout.
pub async fn run_target(
    ctx: &PipelineContext,
    config: &ExportConfig,
    drain: bool,
    stop_on_failure: bool,
) -> Result<(usize, Option<PipelineError>), PipelineError> {
    let mut done = 0;
    let mut failure = None;
    for queue in partitions(ctx, config).await? {
        if !ready(ctx, config, &queue, drain).await? {
            continue;
        }
        let max = usize::try_from(config.batch)
            .ok()
            .filter(|b| *b > 0)
            .unwrap_or(usize::MAX);
        let visibility = match config.schema {
            ExportSchema::Internal | ExportSchema::Dummy => ctx.settings.visibility,
            _ => ctx.settings.export_visibility,
        };
        let Some(batch) = ctx.queue.lease(&queue, max, visibility).await? else {
            continue;
        };
        match export(ctx, config, &batch).await {
            Ok(()) => {
                metrics::counter!("data.export.batch", "key" => config.name.clone()).increment(1);
                done += 1;
            }
            Err(e) => {
                // Left leased: it comes back after the visibility timeout.
                tracing::warn!(export = %config.name, queue = %queue, error = %e, "export failed, batch stays queued");
                metrics::counter!("data.export.failure", "key" => config.name.clone()).increment(1);
                failure = Some(e);
                if stop_on_failure {
                    break;
                }
            }
        }
    }
    Ok((done, failure))
}

/// The reports of an export batch; undecodable items are counted and logged.
fn reports(batch: &Batch) -> Vec<Value> {
    batch
        .items
        .iter()
        .filter_map(|item| match ExportItem::decode(item) {
            Ok(item) => Some(Value::Object(item.report)),
            Err(e) => {
                tracing::error!(error = %e, queue = %batch.queue, "undecodable export item dropped");
                metrics::counter!("data.export.undecodable").increment(1);
                None
            }
        })
        .collect()
}

async fn export(
    ctx: &PipelineContext,
    config: &ExportConfig,
    batch: &Batch,
) -> Result<(), PipelineError> {
    match &config.schema {
        ExportSchema::Dummy => {
            ctx.queue.ack(batch).await?;
        }
        ExportSchema::Internal => {
            let (outputs, counts) = internal::observations_for(ctx, &batch.items);
            if ctx.queue.transfer(batch, &outputs).await? {
                internal::emit(ctx, counts).await;
            }
        }
        ExportSchema::Geosubmit | ExportSchema::S3 => {
            let url = config.url.as_deref().unwrap_or_default();
            let reports = reports(batch);
            let sent = match config.schema {
                ExportSchema::Geosubmit => {
                    ctx.exporters
                        .geosubmit
                        .send(&config.name, url, &reports)
                        .await
                }
                _ => ctx
                    .exporters
                    .objects
                    .send(
                        &config.name,
                        url,
                        &batch.queue,
                        &reports,
                        Utc::now().date_naive(),
                    )
                    .await
                    .map(|_| ()),
            };
            sent.map_err(|e| PipelineError::Export {
                name: config.name.clone(),
                message: e.to_string(),
            })?;
            ctx.queue.ack(batch).await?;
        }
        ExportSchema::Unknown(_) => {}
    }
    Ok(())
}
