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
            run: Arc::new(move |ctx| Box::pin(f(ctx))),
        }
    }
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
    /// skipped while this process does not hold `lease` (cluster mode: another
    /// scheduler leads); the lease is renewed every third of `lease_ttl` and
    /// released at shutdown so a spare takes over at once.
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
            set.spawn(async move {
                let mut ticker = tokio::time::interval(task.interval);
                ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = ticker.tick() => {}
                    }
                    // Not leading: hold this tick until leadership comes (a spare
                    // then runs its tasks at once) or shutdown.
                    while !leading.load(Ordering::SeqCst) {
                        tokio::select! {
                            _ = shutdown.cancelled() => return,
                            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                        }
                    }
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
