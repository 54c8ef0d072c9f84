//! Replays a request-rate trace through a target's scaling policies, with a model of the
//! service, to see what capacity they would have run and what it would have cost.
//!
//! The scaler is the daemon itself: every poll interval one
//! [`Controller::tick`](crate::controller::Controller::tick) of `capstan run`'s own
//! controller ([`daemon::DaemonScaler`]) reads metrics, refreshes forecasts from history,
//! decides, acts and records, against a simulated AWS ([`cloud::SimCloud`]) that answers
//! each configured metric as CloudWatch and SQS would, from the service model below. One
//! tick function, two clouds: nothing in a replay decides with code the daemon does not
//! run. A [baseline](baseline) can take the daemon's place; the HPA baseline is the daemon
//! too, on an HPA-shaped target. The CLI (`capstan simulate`) reads the files and writes the
//! results.
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
//! - **Metrics** are published once per `metric_period` aligned to the Unix epoch (as
//!   CloudWatch aligns them), `metric_delay` after the period ends. A query asks for a
//!   statistic (`Sum`, `Average`, `Maximum`, `Minimum`, `SampleCount`, `pNN`) over any
//!   period: each bucket aggregates the published datapoints that start in it, so the
//!   newest bucket may be partial and a bucket with nothing published is absent. Metric
//!   math is evaluated as CloudWatch does ([`metric_math`]). SQS queue attributes are read
//!   live, in whole messages. The replay is strictly causal.
//! - **Capacity readings** are what the actuators report: desired, ready and pending
//!   units; Aurora readers report a change in flight while one is starting.

//! # What each metric measures
//!
//! Every metric of the target gets a [`MetricModel`], chosen by [`plan_metrics`] (and
//! overridable per metric on the command line):
//!
//! | model | each published datapoint | chosen for |
//! |---|---|---|
//! | `utilization` | `100 * load / (ready * unit_capacity)`, at most 100 (CPU-like, percent), averaged over the period | target-tracking average with `target_value` <= 100; names with CPU or Utilization |
//! | `per-unit-count` | requests per ready unit that arrived in the period | target-tracking average with `target_value` > 100; `RequestCountPerTarget` |
//! | `rate` | requests that arrived in the period when the metric's name says it counts (`RequestCount`, `NumberOf...`), else the average requests per second | target-tracking `target_per_unit` (totals); a predictive policy's metric; names with RequestCount, rps, requests |
//! | `backlog` | a queue: arrivals beyond the ready capacity accumulate, the ready capacity drains it; for SQS `visible` = backlog, `in_flight` = busy units | SQS metrics |
//! | `latency` | `base_latency / (1 - min(load / (ready * unit_capacity), 0.99))` seconds, averaged | names with ResponseTime, latency, duration |
//! | `none` | no datapoint | anything else (the policy holds: no scale-in on missing data) |
//!
//! AWS metrics the config does not name are answered by what they are: the queue's
//! `NumberOfMessagesSent` (arrivals) and `ApproximateNumberOfMessagesVisible`, ALB
//! `RequestCount` and `RequestCountPerTarget`, `CPUUtilization`.
//! With no capacity ready, utilization is 100 when load arrives.
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
//! The daemon refreshes a predictive policy's forecast every `refresh` from the metric's
//! history, read from the simulated CloudWatch exactly as from AWS.

pub mod baseline;
pub mod cloud;
pub mod daemon;
pub mod engine;
pub mod metric_math;
pub mod model;
pub mod plot;
pub mod report;
pub mod trace;

#[cfg(test)]
mod tests;

pub use baseline::Baseline;
pub use cloud::SimCloud;
pub use daemon::DaemonScaler;
pub use engine::{replay, Action, BinResult, Controller, Datapoint, Replay, View};
pub use model::{derive_unit_capacity, plan_metrics, MetricModel, MetricPlan, ServiceModel};
pub use report::Summary;
pub use trace::{Bin, Trace};

use crate::config::{Global, Target};

/// How to run a replay.
#[derive(Clone, Debug)]
pub struct Options {
    pub service: ServiceModel,
    /// Seconds between ticks of the target's own policies (baselines have their own).
    pub poll_interval_secs: u64,
    /// The config's `[global]` settings the daemon's loop reads (`settled_refresh`); its
    /// `poll_interval` is replaced by `poll_interval_secs`.
    pub global: Global,
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

/// The scaler to replay: the daemon on the target's policies, or a baseline. Returns it
/// with the name it reports under.
pub fn controller(
    target: &Target,
    plans: &[MetricPlan],
    trace: &Trace,
    opts: &Options,
) -> Result<(Box<dyn Controller>, String), String> {
    let daemon = |target: Target, interval: u64| -> Result<Box<dyn Controller>, String> {
        let global = Global {
            poll_interval_secs: interval.max(1),
            ..opts.global.clone()
        };
        Ok(Box::new(DaemonScaler::new(target, plans.to_vec(), global)?))
    };
    Ok(match opts.baseline {
        None => (
            daemon(target.clone(), opts.poll_interval_secs)?,
            "policies".to_string(),
        ),
        Some(b @ Baseline::Hpa) => (
            daemon(
                baseline::hpa::hpa_target(target)?,
                baseline::hpa::INTERVAL_SECS,
            )?,
            b.name().to_string(),
        ),
        Some(b @ Baseline::AwsTargetTracking) => (
            Box::new(baseline::aws_target_tracking::AwsTargetTracking::new(
                target, plans,
            )?),
            b.name().to_string(),
        ),
        Some(b @ Baseline::Clairvoyant) => (
            Box::new(baseline::clairvoyant::Clairvoyant::new(
                trace,
                &opts.service,
                target.min,
                opts.poll_interval_secs,
            )),
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

/// Replays `trace` for `target` with `opts`. `progress` gets the share done now and then.
pub fn simulate(
    target: &Target,
    plans: &[MetricPlan],
    trace: &Trace,
    opts: &Options,
    progress: &mut dyn FnMut(f64),
) -> Result<Outcome, String> {
    let s = &opts.service;
    if !(s.unit_capacity.is_finite() && s.unit_capacity > 0.0) {
        return Err(format!(
            "the unit capacity must be a positive number, not {}",
            s.unit_capacity
        ));
    }
    let (mut ctl, name) = controller(target, plans, trace, opts)?;
    check_length(trace, ctl.interval_secs(), s.metric_period_secs)?;
    let mut initial = opts.initial.unwrap_or(target.min);
    if opts.baseline == Some(Baseline::Hpa) {
        initial = initial.max(1);
    }
    let initial = ctl.initial().unwrap_or(initial);
    let replay = engine::replay(trace, s, initial, ctl.as_mut(), progress);
    let mut summary = report::summarize(
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
    // Every run is measured against the clairvoyant of the same start-up delay and tick.
    let mut limit =
        baseline::clairvoyant::Clairvoyant::new(trace, s, target.min, opts.poll_interval_secs);
    let best = engine::replay(trace, s, target.min, &mut limit, &mut |_| {});
    summary.set_clairvoyant(best.bins.iter().map(|b| b.unit_secs).sum::<f64>() / 3600.0);
    Ok(Outcome { replay, summary })
}
