//! Sending to remote export targets (geosubmit, s3/file) beside the worker's
//! passes, never inside them: each target runs in a task of its own, so a
//! target that hangs (up to the export timeout per attempt, three attempts)
//! delays neither `update_incoming`, the station updaters nor the other
//! targets. A target whose run fails backs off exponentially (1 s doubling,
//! capped at `export_backoff_max`); its state is a pair of gauges
//! (`data.export.consecutive_failures`, `data.export.retry_in`, tag
//! `key:<name>`) and an [`ExportHealth`] record that `/__heartbeat__` shows.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use ichnaea_core::export::{ExportConfig, ExportHealth, export_health_key};
use tokio::task::{Id, JoinSet};
use tokio_util::sync::CancellationToken;

use crate::PipelineContext;

/// The first wait after a failed run; it doubles with every further failure.
const BACKOFF_BASE: Duration = Duration::from_secs(1);

/// How long a health record lives in the counters' cache without being
/// rewritten (a target with nothing to send is not tried, so its record ages).
const HEALTH_TTL_SECS: u64 = 24 * 3600;

/// The wait after `failures` failed runs in a row: 1 s, 2 s, 4 s, … up to `cap`.
pub fn backoff(failures: u32, cap: Duration) -> Duration {
    if failures == 0 {
        return Duration::ZERO;
    }
    let factor = 1u32.checked_shl(failures - 1).unwrap_or(u32::MAX);
    BACKOFF_BASE.saturating_mul(factor).min(cap)
}

/// What the loop remembers of one target.
#[derive(Default)]
struct TargetState {
    failures: u32,
    next_attempt: Option<Instant>,
}

/// How one task's run of a target ended.
enum Outcome {
    /// Batches sent (0: nothing was ready).
    Sent(usize),
    /// Why the run failed.
    Failed(String),
}

/// Runs the remote targets until `shutdown`: every `idle_poll` (every
/// `idle_poll_max` while none is configured), each remote
/// target that is neither running nor backing off gets a task that sends its
/// ready queues once. On shutdown running sends are abandoned; their batches
/// stay leased and come back after `export_visibility`, as after a crash.
pub async fn run(ctx: PipelineContext, shutdown: CancellationToken) {
    let mut tasks: JoinSet<Outcome> = JoinSet::new();
    let mut running: HashMap<Id, String> = HashMap::new();
    let mut states: HashMap<String, TargetState> = HashMap::new();
    loop {
        if shutdown.is_cancelled() {
            break;
        }
        // Without remote targets the loop only watches for new ones: look
        // less often.
        let mut pause = ctx.settings.idle_poll_max.max(ctx.settings.idle_poll);
        match ctx.store.export_configs().await {
            Ok(configs) => {
                if configs.iter().any(|c| c.schema.is_remote()) {
                    pause = ctx.settings.idle_poll;
                }
                let busy: HashSet<&String> = running.values().collect();
                let now = Instant::now();
                let mut start = Vec::new();
                for config in configs.into_iter().filter(|c| c.schema.is_remote()) {
                    if busy.contains(&config.name) {
                        continue;
                    }
                    let waiting = states
                        .get(&config.name)
                        .and_then(|s| s.next_attempt)
                        .is_some_and(|at| at > now);
                    if !waiting {
                        start.push(config);
                    }
                }
                for config in start {
                    let name = config.name.clone();
                    let handle = tasks.spawn(send_target(ctx.clone(), config));
                    running.insert(handle.id(), name);
                }
            }
            Err(e) => tracing::warn!(error = %e, "remote exports: cannot read the export targets"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(pause) => {}
            Some(joined) = tasks.join_next_with_id() => {
                let (id, outcome) = match joined {
                    Ok((id, outcome)) => (id, outcome),
                    Err(e) => (e.id(), Outcome::Failed(format!("export task ended: {e}"))),
                };
                if let Some(name) = running.remove(&id) {
                    let state = states.entry(name.clone()).or_default();
                    settle(&ctx, &name, state, outcome).await;
                }
            }
        }
    }
    tasks.abort_all();
}

/// One run of one target: every ready queue once, stopping at the first failure.
async fn send_target(ctx: PipelineContext, config: ExportConfig) -> Outcome {
    match super::run_target(&ctx, &config, false, true).await {
        Ok((_, Some(e))) => Outcome::Failed(e.to_string()),
        Ok((sent, None)) => Outcome::Sent(sent),
        Err(e) => Outcome::Failed(e.to_string()),
    }
}

/// Updates a target's back-off, gauges and health record after a run.
async fn settle(ctx: &PipelineContext, name: &str, state: &mut TargetState, outcome: Outcome) {
    let error = match outcome {
        // Nothing was ready: says nothing about the target (a failed batch is
        // invisible while its lease lasts), so the state stays as it is.
        Outcome::Sent(0) => return,
        Outcome::Sent(_) => {
            state.failures = 0;
            state.next_attempt = None;
            None
        }
        Outcome::Failed(e) => {
            state.failures = state.failures.saturating_add(1);
            let wait = backoff(state.failures, ctx.settings.export_backoff_max);
            state.next_attempt = Some(Instant::now() + wait);
            tracing::warn!(export = %name, failures = state.failures, retry_in = ?wait, error = %e, "export target failing, backing off");
            Some(e)
        }
    };
    let retry_in = state
        .next_attempt
        .map(|at| at.saturating_duration_since(Instant::now()))
        .unwrap_or_default();
    metrics::gauge!("data.export.consecutive_failures", "key" => name.to_string())
        .set(f64::from(state.failures));
    metrics::gauge!("data.export.retry_in", "key" => name.to_string()).set(retry_in.as_secs_f64());
    let health = ExportHealth {
        up: error.is_none(),
        consecutive_failures: state.failures,
        retry_in_seconds: retry_in.as_secs(),
        last_error: error,
        checked_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    };
    match serde_json::to_vec(&health) {
        Ok(json) => {
            if let Err(e) = ctx
                .counters
                .cache_set(&[(export_health_key(name), json)], HEALTH_TTL_SECS)
                .await
            {
                tracing::warn!(export = %name, error = %e, "cannot record the export target's health");
            }
        }
        Err(e) => tracing::warn!(export = %name, error = %e, "cannot encode the export health"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let cap = Duration::from_secs(300);
        let waits: Vec<u64> = (0..12).map(|f| backoff(f, cap).as_secs()).collect();
        assert_eq!(waits, [0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
        assert_eq!(backoff(u32::MAX, cap), cap);
    }
}
