//! Runs periodic tasks at fixed intervals until shutdown.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ichnaea_queue::LeaderLease;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::{PipelineContext, PipelineError};

type TaskFn = Arc<
    dyn Fn(PipelineContext) -> Pin<Box<dyn Future<Output = Result<(), PipelineError>> + Send>>
        + Send
        + Sync,
>;

/// One periodic task: a name (used in logs and the `task` metric) and an interval.
#[derive(Clone)]
pub struct PeriodicTask {
    /// Task name, e.g. `monitor_queue_size`.
    pub name: &'static str,
    /// Time between the starts of two runs.
    pub interval: Duration,
    /// When set, runs are aligned to UTC: at `offset` past each multiple of
    /// `interval` since midnight (daily at 00:07, hourly at :03), as the
    /// original's clock schedule; otherwise the first run is at start.
    pub offset: Option<Duration>,
    run: TaskFn,
}

impl PeriodicTask {
    /// Wraps an async function as a periodic task.
    pub fn new<F, Fut>(name: &'static str, interval: Duration, f: F) -> PeriodicTask
    where
        F: Fn(PipelineContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), PipelineError>> + Send + 'static,
    {
        PeriodicTask {
            name,
            interval,
            offset: None,
            run: Arc::new(move |ctx| Box::pin(f(ctx))),
        }
    }

    /// Aligns the runs to `offset` past each multiple of the interval (UTC).
    pub fn at(mut self, offset: Duration) -> PeriodicTask {
        self.offset = Some(offset);
        self
    }
}

/// Time from `now` (seconds since the epoch) to the next aligned run:
/// `offset` past a multiple of `interval`.
pub fn until_aligned(now: Duration, interval: Duration, offset: Duration) -> Duration {
    let interval = interval.as_secs().max(1);
    let offset = offset.as_secs() % interval;
    let now_s = now.as_secs();
    let phase = (now_s + interval - offset) % interval;
    let wait = if phase == 0 && now.subsec_nanos() == 0 {
        0
    } else {
        interval - phase
    };
    Duration::from_secs(wait).saturating_sub(Duration::from_nanos(u64::from(now.subsec_nanos())))
}

/// The periodic tasks of the service, each on its own timer.
pub struct Scheduler {
    tasks: Vec<PeriodicTask>,
}

impl Scheduler {
    /// A scheduler for the given tasks.
    pub fn new(tasks: Vec<PeriodicTask>) -> Scheduler {
        Scheduler { tasks }
    }

    /// The names and intervals of the scheduled tasks (logged at start-up).
    pub fn describe(&self) -> Vec<(&'static str, Duration)> {
        self.tasks.iter().map(|t| (t.name, t.interval)).collect()
    }

    /// Runs every task once right away and then every `interval`, until
    /// `shutdown` is cancelled; a run in progress is finished, not abandoned.
    /// A failing run is logged and counted; the next tick tries again. Ticks are
    /// held while this process does not hold `lease` (cluster mode: another
    /// scheduler leads); the lease is renewed every third of `lease_ttl` and
    /// released at shutdown so a spare takes over at once. Each run is claimed
    /// through the lease ([`LeaderLease::claim_run`]) for one interval: across
    /// the deployment a task runs at most once per interval, also when the
    /// leader changes (a new leader waits for the rest of the interval its
    /// predecessor's run started).
    pub async fn run(
        self,
        ctx: PipelineContext,
        lease: LeaderLease,
        lease_ttl: Duration,
        shutdown: CancellationToken,
    ) {
        let leading = Arc::new(AtomicBool::new(false));
        let mut set = JoinSet::new();
        {
            let (leading, shutdown, lease) = (leading.clone(), shutdown.clone(), lease.clone());
            set.spawn(async move {
                loop {
                    let held = match lease.hold(lease_ttl).await {
                        Ok(held) => held,
                        Err(e) => {
                            tracing::warn!(error = %e, "scheduler lease check failed");
                            false
                        }
                    };
                    if held != leading.swap(held, Ordering::SeqCst) {
                        tracing::info!(leading = held, "scheduler leadership changed");
                    }
                    metrics::gauge!("scheduler_leader").set(if held { 1.0 } else { 0.0 });
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(lease_ttl / 3) => {}
                    }
                }
                if leading.load(Ordering::SeqCst)
                    && let Err(e) = lease.release().await
                {
                    tracing::warn!(error = %e, "could not release the scheduler lease");
                }
            });
        }
        for task in self.tasks {
            let ctx = ctx.clone();
            let shutdown = shutdown.clone();
            let leading = leading.clone();
            let lease = lease.clone();
            set.spawn(async move {
                let start = match task.offset {
                    None => tokio::time::Instant::now(),
                    Some(offset) => {
                        let now = std::time::SystemTime::now()
                            .duration_since(std::time::UNIX_EPOCH)
                            .unwrap_or_default();
                        tokio::time::Instant::now() + until_aligned(now, task.interval, offset)
                    }
                };
                let mut ticker = tokio::time::interval_at(start, task.interval);
                ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = ticker.tick() => {}
                    }
                    // Not leading: hold this tick until leadership comes or
                    // shutdown. Leading: claim the run for the deployment, so
                    // that a new leader does not repeat a run its predecessor
                    // made less than an interval ago; it waits for the rest of
                    // that interval instead.
                    loop {
                        while !leading.load(Ordering::SeqCst) {
                            tokio::select! {
                                _ = shutdown.cancelled() => return,
                                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                            }
                        }
                        let wait = match lease.claim_run(task.name, task.interval).await {
                            Ok(None) => break,
                            Ok(Some(wait)) => wait,
                            Err(e) => {
                                tracing::warn!(task = task.name, error = %e, "cannot claim the periodic task's run");
                                Duration::from_secs(1)
                            }
                        };
                        tokio::select! {
                            _ = shutdown.cancelled() => return,
                            _ = tokio::time::sleep(wait) => {}
                        }
                    }
                    tracing::debug!(task = task.name, "periodic task started");
                    let start = Instant::now();
                    let result = (task.run)(ctx.clone()).await;
                    let ms = start.elapsed().as_secs_f64() * 1000.0;
                    metrics::histogram!("task", "task" => task.name).record(ms);
                    if let Err(e) = result {
                        metrics::counter!("task_error", "task" => task.name).increment(1);
                        tracing::error!(task = task.name, error = %e, "periodic task failed");
                    }
                }
            });
        }
        while set.join_next().await.is_some() {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_waits() {
        let day = Duration::from_secs(86_400);
        let seven = Duration::from_secs(7 * 60);
        // 2024-01-12 00:00:00 UTC = 1705017600.
        let midnight = Duration::from_secs(1_705_017_600);
        assert_eq!(until_aligned(midnight, day, seven), seven);
        assert_eq!(until_aligned(midnight + seven, day, seven), Duration::ZERO);
        assert_eq!(
            until_aligned(midnight + Duration::from_secs(8 * 60), day, seven),
            day - Duration::from_secs(60)
        );
        let hour = Duration::from_secs(3600);
        assert_eq!(
            until_aligned(
                midnight + Duration::from_secs(3600 + 120),
                hour,
                Duration::from_secs(180)
            ),
            Duration::from_secs(60)
        );
    }
}
