//! The rate controller (pipeline §4.7.2), an option that is off by
//! default: a PID controller that lowers the global locate sample rate when the
//! observation backlog approaches a target, so locate queries stop feeding the
//! pipeline before it falls behind. With the defaults (P only, Kp = 8) the rate
//! is 100 % up to 87.5 % of the target, falls linearly to 0 % at the target, and
//! is 0 % above it.
//!
//! Improvements on the original, as its spec recommends: the backlog includes
//! `update_incoming`; time is wall-clock; a zero target is refused at start-up
//! instead of dividing by zero; parameters come from configuration instead of
//! Redis strings.

use std::sync::Mutex;
use std::time::Instant;

use ichnaea_core::queues::UPDATE_INCOMING;

use crate::stations::station_queues;
use crate::{PipelineContext, PipelineError};

/// Controller parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RateControl {
    /// Backlog (queued observations and reports) the controller steers towards.
    pub target: f64,
    /// Proportional gain.
    pub kp: f64,
    /// Integral gain.
    pub ki: f64,
    /// Derivative gain.
    pub kd: f64,
}

impl RateControl {
    /// Parameters with the original's defaults for the gains; `None` for a
    /// target of zero or less (the controller would divide by zero).
    pub fn new(target: f64) -> Option<RateControl> {
        (target > 0.0).then_some(RateControl {
            target,
            kp: 8.0,
            ki: 0.0,
            kd: 0.0,
        })
    }
}

/// What the controller remembers between runs.
#[derive(Clone, Copy, Debug, Default)]
pub struct PidState {
    integral: f64,
    last_input: Option<f64>,
    last_time: Option<Instant>,
}

/// One controller step: the new sample rate (0–100) for `backlog`.
pub fn step(params: &RateControl, state: &mut PidState, backlog: f64, now: Instant) -> f64 {
    let target = params.target;
    let dt = state
        .last_time
        .map(|t| now.duration_since(t).as_secs_f64())
        .filter(|d| *d > 0.0)
        .unwrap_or(1e-16);
    let error = target - backlog;
    let p = params.kp * error;
    state.integral = (state.integral + params.ki * error * dt).clamp(0.0, target);
    let d = match state.last_input {
        Some(last) if state.last_time.is_some() => -params.kd * (backlog - last) / dt,
        _ => 0.0,
    };
    let output = (p + state.integral + d).clamp(0.0, target);
    state.last_input = Some(backlog);
    state.last_time = Some(now);
    100.0 * (output / target).clamp(0.0, 1.0)
}

/// The backlog the controller watches: reports waiting in `update_incoming` and
/// observations waiting in the station queues.
pub async fn backlog(ctx: &PipelineContext) -> Result<f64, PipelineError> {
    let mut total = ctx.queue.len(UPDATE_INCOMING).await?;
    for (queue, _) in station_queues() {
        total += ctx.queue.len(&queue).await?;
    }
    Ok(total as f64)
}

/// The periodic task: one step, then the new global locate sample rate.
pub async fn run(
    ctx: PipelineContext,
    params: RateControl,
    state: &Mutex<PidState>,
) -> Result<(), PipelineError> {
    let backlog = backlog(&ctx).await?;
    let rate = {
        let mut state = state.lock().unwrap_or_else(|e| e.into_inner());
        step(&params, &mut state, backlog, Instant::now())
    };
    ctx.counters.set_locate_sample_rate(Some(rate)).await?;
    metrics::gauge!("rate_control.locate").set(rate);
    metrics::gauge!("rate_control.locate.target").set(params.target);
    metrics::gauge!("rate_control.locate.backlog").set(backlog);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn p_only_defaults() {
        let params = RateControl::new(1000.0).unwrap();
        let rate = |backlog| step(&params, &mut PidState::default(), backlog, Instant::now());
        assert_eq!(rate(0.0), 100.0);
        assert_eq!(rate(875.0), 100.0);
        assert_eq!(rate(900.0), 80.0);
        assert_eq!(rate(950.0), 40.0);
        assert_eq!(rate(1000.0), 0.0);
        assert_eq!(rate(5000.0), 0.0);
        assert!(RateControl::new(0.0).is_none());
    }

    #[test]
    fn integral_accumulates_within_limits() {
        let params = RateControl {
            target: 100.0,
            kp: 0.0,
            ki: 1.0,
            kd: 0.0,
        };
        let mut state = PidState::default();
        let t0 = Instant::now();
        assert!(
            step(&params, &mut state, 90.0, t0) < 1e-9,
            "first step: dt ~ 0"
        );
        let r = step(
            &params,
            &mut state,
            90.0,
            t0 + std::time::Duration::from_secs(2),
        );
        assert!((r - 20.0).abs() < 1e-9, "{r}");
        let r = step(
            &params,
            &mut state,
            0.0,
            t0 + std::time::Duration::from_secs(100),
        );
        assert_eq!(r, 100.0, "integral clamped to the target");
    }
}
