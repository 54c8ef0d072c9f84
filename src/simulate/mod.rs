//! Replays a request-rate trace through a target's scaling policies, with a model of the
//! service, to see what capacity they would have run and what it would have cost.
//!
//! The scaler is the very same [`policy::decide`](crate::policy::decide) and
//! [`History::record`](crate::policy::History::record) the daemon runs, ticking every poll
//! interval (or a [baseline](baseline) in its place). Everything here is pure: the CLI
//! (`capstan simulate`) reads the files and writes the results.
//!
//! # The service model
//!
//! - **Load** is a rate: a trace bin's count divided by the bin's seconds, in requests per
//!   second, constant over the bin. Rows missing from a trace are gaps: nothing is known
//!   there, so no metric is published for them (the scaler sees missing data, as it would
//!   during a monitoring outage) and they count in no result.
//! - **Capacity**: one ready unit serves `unit_capacity` requests per second. An increase of
//!   the desired capacity becomes ready `startup` later; a decrease takes effect at once,
//!   cancelling launches that are not ready yet (newest first), then stopping ready units.
//!   Capacity never goes below 0.
//! - **Metrics** are averaged over periods of `metric_period` aligned to the Unix epoch (as
//!   CloudWatch aligns them) and published `metric_delay` after the period ends. At a tick
//!   the scaler sees only published datapoints, the newest one as the metric value, and a
//!   forecaster only the trace bins that ended `metric_delay` before the tick: the replay is
//!   strictly causal.
//!
//! # What each metric measures
//!
//! Every metric of the target gets a [`MetricModel`], chosen by [`plan_metrics`] (and
//! overridable per metric on the command line):
//!
//! | model | value | chosen for |
//! |---|---|---|
//! | `utilization` | `100 * load / (ready * unit_capacity)`, at most 100 (CPU-like, percent) | target-tracking average with `target_value` <= 100; names with CPU or Utilization |
//! | `per-unit-count` | `load * period / ready`, requests per ready unit per the metric's configured period | target-tracking average with `target_value` > 100; `RequestCountPerTarget` |
//! | `rate` | the total load, requests per second | target-tracking `target_per_unit` (totals); a predictive policy's metric; names with RequestCount, rps, requests |
//! | `backlog` | a queue: arrivals beyond the ready capacity accumulate, the ready capacity drains it; for SQS `visible` = backlog, `in_flight` = busy units | SQS metrics |
//! | `latency` | `base_latency / (1 - min(load / (ready * unit_capacity), 0.99))` seconds, a crude M/M/1-like curve | names with ResponseTime, latency, duration |
//! | `none` | missing | anything else (the policy holds: no scale-in on missing data) |
//!
//! A metric-math expression is not evaluated: its model follows from the policies that read
//! it, like any other metric. With no capacity ready, utilization is 100 when load arrives.
//!
//! # Results
//!
//! One row per trace bin: `timestamp,load,needed,desired,ready`, where `needed =
//! ceil(load / unit_capacity)`, `desired` is the capacity asked for at the end of the bin
//! and `ready` the least capacity ready during it (so a bin is under-provisioned exactly
//! when `load > ready * unit_capacity`). The [`Summary`] adds the share of requests that
//! arrived beyond the ready capacity, the unit-hours paid for (desired capacity, starting
//! units included), the scaling actions, and the oracle: `ceil(load / unit_capacity)` each
//! bin, at least the target's min.
//!
//! # Predictive policies
//!
//! A [`Forecaster`] gets the published load history every `refresh` of the predictive
//! policy. [`SeasonalProfile`], the daemon's forecaster on 5-minute averages, is the
//! default; [`SeasonalNaive`] (the load a day earlier, a week once there are seven days of
//! history) is there for comparison.

pub mod baseline;
pub mod engine;
pub mod forecast;
pub mod model;
pub mod plot;
pub mod policies;
pub mod report;
pub mod trace;

#[cfg(test)]
mod tests;

pub use baseline::Baseline;
pub use engine::{replay, Action, BinResult, Controller, Datapoint, Replay, View};
pub use forecast::{Forecaster, SeasonalNaive, SeasonalProfile};
pub use model::{derive_unit_capacity, plan_metrics, MetricModel, MetricPlan, ServiceModel};
pub use policies::PolicyController;
pub use report::Summary;
pub use trace::{Bin, Trace};

use crate::config::Target;

/// How to run a replay.
#[derive(Clone, Debug, PartialEq)]
pub struct Options {
    pub service: ServiceModel,
    /// Seconds between ticks of the target's own policies (baselines have their own).
    pub poll_interval_secs: u64,
    /// Initial capacity; the target's min when `None`.
    pub initial: Option<u32>,
    /// Run this baseline instead of the target's policies.
    pub baseline: Option<Baseline>,
}

/// A finished simulation.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub replay: Replay,
    pub summary: Summary,
}

/// The scaler to replay: the target's policies (with `forecaster` for a predictive policy)
/// or a baseline. Returns it with the name it reports under.
pub fn controller(
    target: &Target,
    plans: &[MetricPlan],
    trace: &Trace,
    opts: &Options,
    forecaster: Option<Box<dyn Forecaster>>,
) -> Result<(Box<dyn Controller>, String), String> {
    Ok(match opts.baseline {
        None => (
            Box::new(PolicyController::new(
                target.clone(),
                plans.to_vec(),
                opts.poll_interval_secs.max(1),
                forecaster,
            )),
            "policies".to_string(),
        ),
        Some(b @ Baseline::Hpa) => (
            Box::new(PolicyController::new(
                baseline::hpa::hpa_target(target)?,
                plans.to_vec(),
                baseline::hpa::INTERVAL_SECS,
                None,
            )),
            b.name().to_string(),
        ),
        Some(b @ Baseline::AwsTargetTracking) => (
            Box::new(baseline::aws_target_tracking::AwsTargetTracking::new(
                target, plans,
            )?),
            b.name().to_string(),
        ),
        Some(b @ Baseline::StaticPeak) => (
            Box::new(baseline::static_peak::StaticPeak::new(
                trace,
                opts.service.unit_capacity,
                target.min,
            )),
            b.name().to_string(),
        ),
    })
}

/// Replays `trace` for `target` with `opts`, the daemon's forecaster ([`SeasonalProfile`])
/// serving a predictive policy. `progress` gets the share done now and then.
pub fn simulate(
    target: &Target,
    plans: &[MetricPlan],
    trace: &Trace,
    opts: &Options,
    progress: &mut dyn FnMut(f64),
) -> Result<Outcome, String> {
    let forecaster: Box<dyn Forecaster> = Box::new(SeasonalProfile);
    simulate_with(target, plans, trace, opts, Some(forecaster), progress)
}

/// The most ticks (or metric periods) one replay runs: about 4.8 years at a 15 s poll
/// interval. The replay keeps every tick, so a longer one would fill memory (a two-row
/// trace spanning centuries asked for 19.7 GB).
pub const MAX_TICKS: u64 = 10_000_000;

/// Refuses a trace longer than [`MAX_TICKS`] ticks of `interval_secs` or metric periods of
/// `period_secs`, before anything is allocated for it.
pub fn check_length(trace: &Trace, interval_secs: u64, period_secs: u64) -> Result<(), String> {
    let step = interval_secs.min(period_secs).max(1);
    let span = trace.end().saturating_sub(trace.start()).max(0) as u64;
    let steps = span / step;
    if steps <= MAX_TICKS {
        return Ok(());
    }
    Err(format!(
        "the trace spans {} (from {} to the end of its last bin, {}): at one tick or metric period every {}, that is {steps} steps, more than the {MAX_TICKS} a replay runs\n  hint: replay a shorter part of the trace, or pass a longer --poll-interval and --metric-period",
        crate::config::duration::format_secs(span),
        trace.format_time(trace.start()),
        trace.format_time(trace.end()),
        crate::config::duration::format_secs(step),
    ))
}

/// [`simulate`] with a forecaster of your own.
pub fn simulate_with(
    target: &Target,
    plans: &[MetricPlan],
    trace: &Trace,
    opts: &Options,
    forecaster: Option<Box<dyn Forecaster>>,
    progress: &mut dyn FnMut(f64),
) -> Result<Outcome, String> {
    let s = &opts.service;
    if !(s.unit_capacity.is_finite() && s.unit_capacity > 0.0) {
        return Err(format!(
            "the unit capacity must be a positive number, not {}",
            s.unit_capacity
        ));
    }
    let (mut ctl, name) = controller(target, plans, trace, opts, forecaster)?;
    check_length(trace, ctl.interval_secs(), s.metric_period_secs)?;
    let mut initial = opts.initial.unwrap_or(target.min);
    if opts.baseline == Some(Baseline::Hpa) {
        initial = initial.max(1);
    }
    let initial = ctl.initial().unwrap_or(initial);
    let replay = engine::replay(trace, s, initial, ctl.as_mut(), progress);
    let summary = report::summarize(
        &target.name,
        &name,
        trace,
        s,
        ctl.interval_secs(),
        initial,
        target.min,
        plans.iter().any(|p| p.model == MetricModel::Backlog),
        &replay,
    );
    Ok(Outcome { replay, summary })
}
