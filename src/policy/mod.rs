//! The pure decision core: a target's config, its latest [`Observation`] and its
//! [`History`] in, a [`Decision`] with a full explanation out. No async, no AWS SDK, no
//! clock reads, no I/O: `now` is the observation's `at`.
//!
//! One tick runs these stages, each recorded in the explanation when it changes the value:
//!
//! 1. **Metrics**: missing (the sources report stale data as missing), NaN, infinite and
//!    negative values are unusable.
//! 2. **Bounds**: the target's min/max, changed by active schedules (largest min, largest
//!    max), and floors from schedules, the predictive policy and the fallback.
//! 3. **Proposals**: each target-tracking and step policy proposes a capacity; the largest
//!    wins (AWS: "the policy with the largest capacity wins"; HPA: max over metrics).
//!    A missing metric that a target-tracking or step policy reads never lets the result
//!    go below the current capacity (the predictive policy's metric only checks the
//!    forecast).
//! 4. **Behavior** (HPA semantics): stabilization windows, then scale-in holds (disable,
//!    deployment in progress, cooldowns, warm-up), then rate-limit policies.
//! 5. **Clamp** to the effective bounds; bounds and floors act at once, as AWS scheduled
//!    actions do, and are never shaped by rate limits. A capacity outside the bounds is
//!    brought to the nearest bound alone (even when paused), and that tick's proposals are
//!    not remembered as a recommendation; the policies then act from there on the next
//!    tick, through the behavior rules.
//! 6. **Scale to zero** (KEDA): with min = 0, only after the target was inactive for
//!    `scale_to_zero_after`, and never on missing data.

mod behavior;
mod clock;
mod explain;
mod history;
mod observation;

pub use behavior::{scale_down_limit, scale_up_limit, stabilize};
pub use clock::{check_time, check_time_secs, Stamp, EARLIEST_SECS, LATEST_SECS};
pub use explain::{
    num, Action, BoundsLine, Decision, Explanation, ForecastLine, MetricLine, Name, Problem,
    ProposalLine, StepLine, Update,
};
pub use history::{
    Cache, ChangeAnswer, ForecastCheck, History, PendingChange, PendingState, Recommendation,
    Reconciled, ScaleEvent, WindowState, FORECAST_CHECK_EVERY_SECS,
};
pub use observation::{ForecastSeries, Metrics, Observation, Sample};

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};

use crate::config::duration::format_secs;
use crate::config::{
    AdjustmentType, MaxCapacityBreach, Metric, MetricSource, PolicyKind, PredictiveMode,
    PredictivePolicy, Schedule, ScheduleWhen, StepPolicy, Target, TrackingTarget,
};

/// Least number of live checks before the forecast error is trusted.
pub const MIN_FORECAST_CHECKS: usize = 12;

/// `format!` when explaining; an empty, unallocated string otherwise.
/// Pushes a `format!`ted line onto `$v` when explaining.
macro_rules! note {
    ($x:expr, $v:expr, $($arg:tt)*) => {
        if $x {
            $v.push(format!($($arg)*))
        }
    };
}

macro_rules! text {
    ($x:expr, $($arg:tt)*) => {
        if $x {
            format!($($arg)*)
        } else {
            String::new()
        }
    };
}

/// Decides the capacity of `target` for the observation `obs`, given its history, with the
/// full explanation (every text line and the one-line reason).
pub fn decide(target: &Target, obs: &Observation, history: &History) -> Decision {
    decide_with(target, obs, history, true)
}

/// The same decision as [`decide`] (same capacity, same history update, same structured
/// numbers: bounds, proposals, forecast), without rendering any explanation text: the
/// `detail`/`note`/`sources` strings and `reason` are empty and `explained` is false. For
/// callers that need the text only for some decisions (the simulator explains only the
/// ticks that change capacity): call [`decide`] again with the same inputs for those.
pub fn decide_quiet(target: &Target, obs: &Observation, history: &History) -> Decision {
    decide_with(target, obs, history, false)
}

fn decide_with(target: &Target, obs: &Observation, history: &History, x: bool) -> Decision {
    let at = obs.at;
    let now = Stamp::from(at);
    let current = obs.current;
    let mut ex = Explanation::default();
    let mut upd = Update::default();

    // Names are text too: quiet decisions leave them empty (their lines follow the order of
    // the target's metrics and policies).
    let name = |n: &Arc<str>| if x { Name::from(n) } else { Name::default() };

    // 1. Metrics.
    ex.metrics.reserve_exact(target.metrics.len());
    for (i, m) in target.metrics.iter().enumerate() {
        let v = read_metric(m, obs.metrics.get_at(i, &m.name));
        ex.metrics.push(MetricLine {
            name: name(&m.name),
            value: v.ok(),
            problem: v.err(),
            read_secs_ago: None,
        });
    }
    let lines = &ex.metrics;
    let line_value = |i: usize| {
        lines[i]
            .problem
            .map_or_else(|| Ok(lines[i].value.unwrap_or(0.0)), Err)
    };
    // A policy's metric by the index validation gave it (by name for a hand-built target
    // whose index does not fit).
    let value_of = |p: &crate::config::Policy| {
        let fits = target
            .metrics
            .get(p.metric_index)
            .is_some_and(|m| m.name.len() == p.metric.len());
        let i = if fits {
            debug_assert_eq!(*target.metrics[p.metric_index].name, *p.metric);
            Some(p.metric_index)
        } else {
            target.metrics.iter().position(|m| *m.name == *p.metric)
        };
        i.map_or(Err(Problem::NotObserved), line_value)
    };
    let mut missing = target
        .policies
        .iter()
        .filter(|p| !matches!(p.kind, PolicyKind::Predictive(_)))
        .filter(|p| value_of(p).is_err())
        .map(|p| &*p.metric)
        .peekable();
    let any_missing = missing.peek().is_some();
    upd.consecutive_failures = if !any_missing {
        0
    } else {
        history.consecutive_failures.saturating_add(1)
    };
    let active = target
        .metrics
        .iter()
        .enumerate()
        .any(|(i, m)| matches!(line_value(i), Ok(v) if v > m.activation));
    // Missing data never starts (or finishes) the countdown to zero, but it does not
    // wake a target at zero either: only a real value above its activation does.
    upd.active = active || (any_missing && current > 0);

    // 2. Bounds from schedules.
    let mut bounds = schedule_bounds(target, at, history, &mut upd.windows, x);

    // AWS cooldown: while a scale-out's cooldown runs, the capacity it added counts as
    // already there, so a lagging metric does not add the same capacity again.
    let cooldown_base = until(
        history.last_scale_out,
        target.behavior.scale_out_cooldown_secs,
        now,
    )
    .map(|_| {
        current.saturating_sub(history.added_within(now, target.behavior.scale_out_cooldown_secs))
    });

    // 3. Proposals.
    let mut best: Option<(u32, &Arc<str>)> = None;
    let mut forecast_floor: Option<(u32, &PredictivePolicy, &str)> = None;
    let mut proposals = Vec::with_capacity(target.policies.len());
    let mut forecast_line = None;
    for p in &target.policies {
        let value = value_of(p);
        let (proposal, detail) = match &p.kind {
            PolicyKind::TargetTracking {
                target: tt,
                tolerance_up,
                tolerance_down,
            } => match value {
                Ok(v) => track(
                    *tt,
                    v,
                    current,
                    obs.ready.unwrap_or(current),
                    (*tolerance_up, *tolerance_down),
                    cooldown_base,
                    &p.metric,
                    x,
                ),
                Err(why) => (None, text!(x, "{}: {why}, no proposal", p.metric)),
            },
            PolicyKind::Step(s) => match value {
                Ok(v) => {
                    let (prop, detail, since) =
                        step(s, &p.name, v, current, cooldown_base, now, history, x);
                    if history.breach_since.get(&*p.name).copied() != since {
                        upd.breaches.insert(p.name.to_string(), since);
                    }
                    (prop, text!(x, "{}: {detail}", p.metric))
                }
                Err(why) => (None, text!(x, "{}: {why}, no proposal", p.metric)),
            },
            PolicyKind::Predictive(pp) => {
                // A queue's depth is not its arrival rate (what an SQS forecast is of):
                // nothing to check the forecast against live.
                let sqs = target
                    .metric(&p.metric)
                    .is_some_and(|m| matches!(m.source, MetricSource::Sqs { .. }));
                let (line, floor, check) = predictive(
                    pp,
                    &p.name,
                    now,
                    obs,
                    if sqs { None } else { value.ok() },
                    history,
                    target.max.max(bounds.max),
                    x,
                );
                upd.forecast_check = check;
                if let Some(f) = floor {
                    forecast_floor = Some((f, pp, &p.name));
                }
                let detail = text!(x, "{}: {}", p.name, line.note);
                forecast_line = Some(line);
                proposals.push(ProposalLine {
                    policy: name(&p.name),
                    metric: name(&p.metric),
                    proposal: None,
                    detail,
                });
                continue;
            }
        };
        let detail = text!(x, "{}: {detail}", p.name);
        if let Some(c) = proposal {
            if best.is_none_or(|(b, _)| c > b) {
                best = Some((c, &p.name));
            }
        }
        proposals.push(ProposalLine {
            policy: name(&p.name),
            metric: name(&p.metric),
            proposal,
            detail,
        });
    }
    ex.proposals = proposals;
    ex.forecast = forecast_line;
    ex.winner = best.map(|b| name(b.1));
    let mut raw = best.map(|b| b.0).unwrap_or(current);
    let mut steps: Vec<StepLine> = Vec::new();
    if any_missing && raw < current {
        steps.push(StepLine {
            rule: "missing_data",
            from: raw,
            to: current,
            detail: text!(
                x,
                "no scale-in while {} is missing",
                missing.collect::<Vec<_>>().join(", ")
            ),
        });
        raw = current;
    }
    upd.recommendation = Some(raw);

    // Floors: predictive and fallback join the schedules'.
    if let Some((f, pp, name)) = forecast_floor {
        if let MaxCapacityBreach::IncreaseByPercent(pct) = pp.breach {
            let raised = (f as f64 * (1.0 + pct / 100.0)).ceil() as u32;
            if f > bounds.max {
                note!(
                    x,
                    bounds.sources,
                    "max {} -> {raised} ({name} may exceed max by {}%)",
                    bounds.max,
                    num(pct)
                );
                bounds.max = raised;
            }
        }
        let f = f.min(bounds.max);
        note!(x, bounds.sources, "floor {f} ({name})");
        bounds.floor = Some(bounds.floor.map_or(f, |x| x.max(f)));
    }
    if let Some(fb) = target.fallback {
        if upd.consecutive_failures > fb.after_failures {
            note!(
                x,
                bounds.sources,
                "floor {} (fallback after {} failed ticks)",
                fb.capacity,
                upd.consecutive_failures
            );
            bounds.floor = Some(bounds.floor.map_or(fb.capacity, |x| x.max(fb.capacity)));
        }
    }
    let upper = bounds.max;
    let mut lower = bounds.min.max(bounds.floor.unwrap_or(0)).min(upper);

    let b = &target.behavior;
    let hold_scale_in = scale_in_hold(b, obs, history, now, x);

    // Scale to zero (KEDA): with min 0, hold at least 1 until idle long enough.
    let mut to_zero = false;
    let mut stay_zero = false;
    if lower == 0 && current == 0 && !active {
        // KEDA activation: below every activation value, zero stays zero.
        stay_zero = true;
    } else if lower == 0 {
        let idle_since = history.last_active.or(history.first_seen).unwrap_or(now);
        let idle_for = now.secs_since(idle_since).max(0) as u64;
        if upd.active {
            lower = 1;
            if current == 0 {
                note!(x, bounds.sources, "min 1 (active: scale from zero)");
            }
        } else if idle_for > target.behavior.scale_to_zero_after_secs && hold_scale_in.is_none() {
            // KEDA: lastActiveTime + cooldownPeriod < now.
            to_zero = current > 0;
        } else {
            lower = 1;
            note!(
                x,
                bounds.sources,
                "min 1 (idle {}, scale to zero after {})",
                format_secs(idle_for),
                format_secs(target.behavior.scale_to_zero_after_secs)
            );
        }
    }
    ex.bounds = BoundsLine {
        min: lower,
        max: upper,
        floor: bounds.floor,
        sources: bounds.sources,
    };

    // 4-5. Behavior, then bounds.
    let mut desired;
    let bound_sources = || {
        if ex.bounds.sources.is_empty() {
            String::new()
        } else {
            text!(x, " ({})", ex.bounds.sources.join(", "))
        }
    };
    if current < lower || current > upper {
        // Bounds act at once and alone: the policies' wishes go through the behavior rules
        // from the corrected capacity on the next tick, and this tick's proposals are not
        // remembered (a scale-down window would otherwise hold a wish computed on the
        // capacity that was out of bounds).
        desired = current.clamp(lower, upper);
        upd.recommendation = None;
        let what = if current < lower {
            text!(x, "below the effective min {lower}")
        } else {
            text!(x, "above the effective max {upper}")
        };
        steps.push(StepLine {
            rule: "bounds",
            from: raw,
            to: desired,
            detail: text!(
                x,
                "current {current} is {what}{}: set {desired} at once",
                bound_sources()
            ),
        });
    } else if b.paused {
        desired = current;
        steps.push(StepLine {
            rule: "paused",
            from: raw,
            to: current,
            detail: text!(x, "paused: policies propose {}", raw.clamp(lower, upper)),
        });
    } else if stay_zero {
        desired = 0;
        if raw > 0 {
            steps.push(StepLine {
                rule: "activation",
                from: raw,
                to: 0,
                detail: text!(
                    x,
                    "inactive (no metric above its activation value): stay at zero"
                ),
            });
        }
    } else if to_zero {
        desired = 0;
        steps.push(StepLine {
            rule: "scale_to_zero",
            from: raw,
            to: 0,
            detail: text!(
                x,
                "inactive for more than {}: scale to zero",
                format_secs(b.scale_to_zero_after_secs)
            ),
        });
    } else {
        let seed;
        let hist = if history.first_seen.is_none() {
            // HPA seeds the window with the current capacity when it first sees a target.
            seed = History {
                recommendations: vec![Recommendation {
                    at: now,
                    capacity: current,
                }],
                ..History::default()
            };
            &seed
        } else {
            history
        };
        let (stab, held) = stabilize(now, current, raw, hist, &b.scale_up, &b.scale_down);
        desired = stab;
        if let Some((up_rec, down_rec)) = held {
            let detail = if raw > current {
                text!(
                    x,
                    "scale-up stabilization ({}): lowest recommendation in window is {up_rec}",
                    format_secs(b.scale_up.stabilization_window_secs)
                )
            } else {
                text!(
                    x,
                    "scale-down stabilization ({}): highest recommendation in window is {down_rec}",
                    format_secs(b.scale_down.stabilization_window_secs)
                )
            };
            steps.push(StepLine {
                rule: "stabilization",
                from: raw,
                to: stab,
                detail,
            });
        }
        if desired < current {
            let hold = hold_scale_in.clone();
            if let Some((rule, detail)) = hold {
                steps.push(StepLine {
                    rule,
                    from: desired,
                    to: current,
                    detail,
                });
                desired = current;
            }
        }
        if desired > current {
            let limit = scale_up_limit(now, current, history, &b.scale_up);
            if desired > limit {
                steps.push(StepLine {
                    rule: "rate_limit",
                    from: desired,
                    to: limit,
                    detail: text!(
                        x,
                        "scale-up rate limit: at most {limit} now ({})",
                        describe_rules(&b.scale_up)
                    ),
                });
                desired = limit;
            }
        } else if desired < current {
            let limit = scale_down_limit(now, current, history, &b.scale_down);
            if desired < limit {
                steps.push(StepLine {
                    rule: "rate_limit",
                    from: desired,
                    to: limit,
                    detail: text!(
                        x,
                        "scale-down rate limit: at least {limit} now ({})",
                        describe_rules(&b.scale_down)
                    ),
                });
                desired = limit;
            }
        }
        let clamped = desired.clamp(lower, upper);
        if clamped != desired {
            let which = if clamped > desired {
                text!(x, "min {lower}")
            } else {
                text!(x, "max {upper}")
            };
            steps.push(StepLine {
                rule: "bounds",
                from: desired,
                to: clamped,
                detail: text!(x, "clamped to {which}{}", bound_sources()),
            });
            desired = clamped;
        }
    }

    let action = match desired.cmp(&current) {
        std::cmp::Ordering::Greater => Action::ScaleOut,
        std::cmp::Ordering::Less => Action::ScaleIn,
        std::cmp::Ordering::Equal => Action::None,
    };
    ex.steps = steps;
    Decision {
        at,
        target: if x {
            target.name.clone()
        } else {
            String::new()
        },
        current,
        desired,
        action,
        explained: x,
        explanation: ex,
        update: upd,
    }
}

/// Why scale-in must wait now, if it must: disabled, blocked by the actuator (a deployment
/// in progress), the scale-in cooldown (ended early by a later scale-out, as in AWS), or
/// new capacity still warming up.
fn scale_in_hold(
    b: &crate::config::Behavior,
    obs: &Observation,
    h: &History,
    now: Stamp,
    x: bool,
) -> Option<(&'static str, String)> {
    if b.disable_scale_in {
        return Some(("disable_scale_in", text!(x, "scale-in disabled")));
    }
    if let Some(why) = &obs.scale_in_blocked {
        return Some(("scale_in_blocked", text!(x, "scale-in held: {why}")));
    }
    let scaled_out_since =
        matches!((h.last_scale_out, h.last_scale_in), (Some(o), Some(i)) if o > i);
    if !scaled_out_since {
        if let Some(end) = until(h.last_scale_in, b.scale_in_cooldown_secs, now) {
            return Some((
                "cooldown",
                text!(
                    x,
                    "scale-in cooldown until {}",
                    end.to_datetime().format("%H:%M:%S")
                ),
            ));
        }
    }
    until(h.last_scale_out, b.warmup_secs, now).map(|end| {
        let warming = h.added_within(now, b.warmup_secs);
        (
            "warmup",
            text!(
                x,
                "{warming} new units warming until {}: no scale-in",
                end.to_datetime().format("%H:%M:%S")
            ),
        )
    })
}

/// `Some(end)` while `since + secs` is still ahead of `now`.
fn until(since: Option<Stamp>, secs: u64, now: Stamp) -> Option<Stamp> {
    let end = since?.shift(secs as i64);
    (secs > 0 && end > now).then_some(end)
}

fn describe_rules(r: &crate::config::Rules) -> String {
    use crate::config::{RateKind, Select};
    if r.select == Select::Disabled {
        return "disabled".into();
    }
    let ps: Vec<String> = r
        .policies
        .iter()
        .map(|p| match p.kind {
            RateKind::Pods => format!("{} units per {}", p.value, format_secs(p.period_secs)),
            RateKind::Percent => format!("{}% per {}", p.value, format_secs(p.period_secs)),
        })
        .collect();
    let sel = if r.select == Select::Min {
        "min"
    } else {
        "max"
    };
    if ps.len() > 1 {
        format!("{}, select {sel}", ps.join(" or "))
    } else {
        ps.join("")
    }
}

/// A metric's usable value, or why there is none.
fn read_metric(m: &Metric, sample: Option<&Option<Sample>>) -> Result<f64, Problem> {
    let v = match (sample, &m.source) {
        (None, _) | (Some(None), _) => return Err(Problem::Missing),
        (Some(Some(Sample::Value(v))), _) => *v,
        (
            Some(Some(Sample::Queue {
                visible,
                in_flight,
                delayed,
            })),
            MetricSource::Sqs {
                include_in_flight,
                include_delayed,
                ..
            },
        ) => {
            // KEDA: visible + in-flight (scaleOnInFlight) + delayed (scaleOnDelayed).
            let parts = [
                (*visible, true),
                (*in_flight, *include_in_flight),
                (*delayed, *include_delayed),
            ];
            if parts.iter().any(|(p, _)| !p.is_finite() || *p < 0.0) {
                return Err(Problem::QueueUnusable);
            }
            parts.iter().filter(|(_, on)| *on).map(|(p, _)| p).sum()
        }
        (Some(Some(Sample::Queue { .. })), _) => return Err(Problem::QueueOnNonSqs),
    };
    if v.is_nan() {
        Err(Problem::NaN)
    } else if v.is_infinite() {
        Err(Problem::Infinite)
    } else if v < 0.0 {
        Err(Problem::Negative(v))
    } else {
        Ok(v)
    }
}

/// `ceil` that forgives floating-point noise such as 3.0000000000000004.
fn ceil_u32(x: f64) -> u32 {
    let c = (x - 1e-9).ceil();
    if c <= 0.0 {
        0
    } else if c >= u32::MAX as f64 {
        u32::MAX
    } else {
        c as u32
    }
}

/// Target tracking with HPA arithmetic.
///
/// Per-unit averages: `ceil(ratio * ready)`. When scaling up with units not yet ready, HPA
/// counts those as using nothing and holds if the corrected ratio falls back into the
/// dead band or below 1 (the new units will take load). During a scale-out cooldown the
/// ratio applies to the capacity before that scale-out (AWS). Totals: `ceil(total /
/// per_unit)`, the dead band judged on the current capacity.
#[allow(clippy::too_many_arguments)]
fn track(
    tt: TrackingTarget,
    value: f64,
    current: u32,
    ready: u32,
    (tol_up, tol_down): (f64, f64),
    cooldown_base: Option<u32>,
    metric: &str,
    x: bool,
) -> (Option<u32>, String) {
    let within = |ratio: f64| (1.0 - tol_down) <= ratio && ratio <= (1.0 + tol_up);
    match tt {
        TrackingTarget::Average(target) => {
            if current == 0 {
                return (
                    None,
                    text!(x, "{metric} {} per unit, but no unit runs", num(value)),
                );
            }
            let ratio = value / target;
            let head = text!(x, "{metric} {} vs target {}", num(value), num(target));
            if within(ratio) {
                return (
                    Some(current),
                    text!(x, "{head} within tolerance: keep {current}"),
                );
            }
            let ready = ready.min(current);
            if ratio > 1.0 && ready > 0 && ready < current {
                let corrected = ratio * ready as f64 / current as f64;
                if within(corrected) || corrected < 1.0 {
                    return (
                        Some(current),
                        text!(x, "{head} on {ready} ready of {current}: with the starting units the ratio is {corrected:.3}, keep {current}"),
                    );
                }
                let p = ceil_u32(corrected * current as f64).max(current);
                return (Some(p), text!(x, "{head} on {ready} ready of {current}: ceil({current} x {corrected:.3}) = {p}"));
            }
            if let Some(cb) = cooldown_base.filter(|cb| ratio > 1.0 && *cb < current) {
                let p = ceil_u32(ratio * cb as f64).max(current);
                return (
                    Some(p),
                    text!(
                        x,
                        "{head}, counted from {cb} units before the scale-out cooldown: {p}"
                    ),
                );
            }
            // HPA multiplies by the units that report (ready), not the desired count.
            let base = if ready == 0 { current } else { ready };
            let p = ceil_u32(ratio * base as f64);
            (
                Some(p),
                text!(x, "{head} on {base} units: ceil({base} x {ratio:.3}) = {p}"),
            )
        }
        TrackingTarget::PerUnit(per_unit) => {
            let p = ceil_u32(value / per_unit);
            if current > 0 && within(value / (per_unit * current as f64)) {
                return (
                    Some(current),
                    text!(
                        x,
                        "{metric} {} at {} per unit within tolerance: keep {current}",
                        num(value),
                        num(per_unit)
                    ),
                );
            }
            (
                Some(p),
                text!(
                    x,
                    "{metric} {} at {} per unit: ceil({} / {}) = {p}",
                    num(value),
                    num(per_unit),
                    num(value),
                    num(per_unit)
                ),
            )
        }
    }
}

/// A step policy with AWS semantics. Returns the proposal, its detail, and the breach start
/// to remember (`None` clears it).
#[allow(clippy::too_many_arguments)]
fn step(
    s: &StepPolicy,
    name: &str,
    value: f64,
    current: u32,
    cooldown_base: Option<u32>,
    now: Stamp,
    h: &History,
    x: bool,
) -> (Option<u32>, String, Option<Stamp>) {
    let sym = s.comparison.symbol();
    if !s.comparison.breached(value, s.threshold) {
        return (
            None,
            text!(x, "{} not {sym} {}: no alarm", num(value), num(s.threshold)),
            None,
        );
    }
    let since = h.breach_since.get(name).copied().unwrap_or(now);
    let lasted = now.secs_since(since).max(0) as u64;
    if lasted < s.breach_for_secs {
        let detail = text!(
            x,
            "{} {sym} {} for {} of {}: waiting",
            num(value),
            num(s.threshold),
            format_secs(lasted),
            format_secs(s.breach_for_secs)
        );
        return (None, detail, Some(since));
    }
    let d = value - s.threshold;
    // Above the threshold a step is [lower, upper); below it, (lower, upper].
    let upper_side = s.comparison.is_upper();
    let hit = s.steps.iter().find(|st| {
        let lo = st.lower.unwrap_or(f64::NEG_INFINITY);
        let hi = st.upper.unwrap_or(f64::INFINITY);
        if upper_side {
            lo <= d && d < hi
        } else {
            lo < d && d <= hi
        }
    });
    let Some(st) = hit else {
        return (
            None,
            text!(
                x,
                "{} {sym} {} but no step covers {}",
                num(value),
                num(s.threshold),
                num(d)
            ),
            Some(since),
        );
    };
    // During a scale-out cooldown a scale-out step counts from the capacity before it
    // (AWS: "+2, then a +3 step inside the cooldown adds only 1 more").
    let base = match cooldown_base {
        Some(b) if st.adjustment > 0 && s.adjustment != AdjustmentType::ExactCapacity => b,
        _ => current,
    };
    let cur = base as i64;
    let (new, how) = match s.adjustment {
        AdjustmentType::ChangeInCapacity => {
            (cur + st.adjustment, text!(x, "{:+} units", st.adjustment))
        }
        AdjustmentType::ExactCapacity => (st.adjustment, text!(x, "exactly {}", st.adjustment)),
        AdjustmentType::PercentChangeInCapacity => {
            let delta = cur as f64 * st.adjustment as f64 / 100.0;
            let mut change = if delta == 0.0 {
                0
            } else if delta.fract() == 0.0 {
                delta as i64
            } else {
                // AWS: fractions round toward zero, but never below one unit.
                delta.signum() as i64 * (delta.abs().floor() as i64).max(1)
            };
            if let Some(mag) = s.min_adjustment_magnitude {
                if change != 0 && change.unsigned_abs() < mag as u64 {
                    change = change.signum() * mag as i64;
                }
            }
            (
                cur + change,
                text!(x, "{:+}% = {change:+} units", st.adjustment),
            )
        }
    };
    let mut new = new.clamp(0, u32::MAX as i64) as u32;
    let mut how = how;
    if base != current && new <= current {
        how = text!(x, "{how} from {base} before the scale-out cooldown");
        new = current;
    }
    (
        Some(new),
        text!(
            x,
            "{} {sym} {}: step {how} -> {new}",
            num(value),
            num(s.threshold)
        ),
        Some(since),
    )
}

/// The predictive policy: the forecast's capacity `schedule_ahead` early, as a floor, unless
/// forecast-only or its live error is too high.
#[allow(clippy::too_many_arguments)]
fn predictive(
    pp: &PredictivePolicy,
    name: &Arc<str>,
    now: Stamp,
    obs: &Observation,
    actual: Option<f64>,
    h: &History,
    max: u32,
    x: bool,
) -> (ForecastLine, Option<u32>, Option<ForecastCheck>) {
    let mode = match pp.mode {
        PredictiveMode::ForecastOnly => "forecast_only",
        PredictiveMode::ForecastAndScale => "forecast_and_scale",
    };
    let mut line = ForecastLine {
        policy: if x { Name::from(name) } else { Name::default() },
        unit: if x {
            Name::from(&pp.unit)
        } else {
            Name::default()
        },
        mode,
        predicted_load: None,
        capacity: None,
        error: None,
        applied: false,
        note: String::new(),
    };
    let Some(fc) = &obs.forecast else {
        line.note = text!(x, "no forecast yet");
        return (line, None, None);
    };
    // Live accuracy: one check per FORECAST_CHECK_EVERY_SECS.
    let start = Stamp::from(fc.start);
    let check = match (fc.value_from(start, now), actual) {
        (Some(f), Some(a))
            if h.forecast_checks
                .last()
                .is_none_or(|c| now.secs_since(c.at) >= FORECAST_CHECK_EVERY_SECS) =>
        {
            Some(ForecastCheck {
                at: now,
                forecast: f,
                actual: a,
            })
        }
        _ => None,
    };
    line.error = h.forecast_error(check.as_ref());
    let ahead = now.shift(pp.schedule_ahead_secs as i64);
    let Some(load) = fc.max_from(start, now, ahead) else {
        line.note = if now >= Stamp::from(fc.end()) || ahead < start {
            text!(x, "the forecast does not cover now")
        } else {
            text!(x, "the forecast has no usable value for now")
        };
        return (line, None, check);
    };
    let cap = ceil_u32(load / pp.per_unit);
    line.predicted_load = Some(load);
    line.capacity = Some(cap);
    let desc = text!(
        x,
        "forecast peak {} {} within {} needs {cap}",
        num(load),
        pp.unit,
        format_secs(pp.schedule_ahead_secs)
    );
    if let Some(e) = line.error.filter(|e| *e > pp.max_error) {
        line.note = text!(
            x,
            "{desc}; standing down: live error {:.0}% above {:.0}%",
            e * 100.0,
            pp.max_error * 100.0
        );
        return (line, None, check);
    }
    if pp.mode == PredictiveMode::ForecastOnly {
        line.note = text!(x, "{desc} (forecast only)");
        return (line, None, check);
    }
    line.applied = true;
    let shown = if pp.breach == MaxCapacityBreach::Honor && cap > max {
        text!(x, ", held to max {max}")
    } else {
        String::new()
    };
    line.note = text!(x, "{desc}: floor{shown}");
    (line, Some(cap), check)
}

/// Effective bounds at `now`: min and max from the target, replaced by active schedules
/// (the largest active min and the largest active max win, so overlapping sale windows add
/// up to the most generous one), plus the largest active floor.
struct Bounds {
    min: u32,
    max: u32,
    floor: Option<u32>,
    sources: Vec<String>,
}

fn schedule_bounds(
    target: &Target,
    now: DateTime<Utc>,
    history: &History,
    fresh: &mut Vec<WindowState>,
    x: bool,
) -> Bounds {
    let mut b = Bounds {
        min: target.min,
        max: target.max,
        floor: None,
        sources: Vec::new(),
    };
    let (mut min, mut max) = (None::<u32>, None::<u32>);
    for s in &target.schedules {
        if !window_open(s, now, history, fresh) {
            continue;
        }
        min = min.max(s.min);
        max = max.max(s.max);
        b.floor = b.floor.max(s.floor);
        if x {
            let what: Vec<String> = [("min", s.min), ("max", s.max), ("floor", s.floor)]
                .iter()
                .filter_map(|(k, v)| v.map(|v| format!("{k} {v}")))
                .collect();
            b.sources.push(format!("{} ({})", what.join(", "), s.name));
        }
    }
    if let Some(m) = min {
        b.min = m;
    }
    if let Some(m) = max {
        b.max = m;
    }
    if b.min > b.max {
        // Windows that set only min may meet a window that lowered max: min wins, so a sale
        // window's floor is never capped by another window.
        note!(x, b.sources, "max raised to min {}", b.min);
        b.max = b.min;
    }
    b
}

/// Whether a schedule's window is open at `now`, from the history's cached window state
/// when it still holds, else by a fresh search (recorded in `fresh` for the cache).
fn window_open(
    s: &Schedule,
    now: DateTime<Utc>,
    history: &History,
    fresh: &mut Vec<WindowState>,
) -> bool {
    let ScheduleWhen::Cron { key, .. } = &s.when else {
        return schedule_active(s, now);
    };
    let cached = history
        .cache
        .windows
        .iter()
        .chain(fresh.iter())
        .find(|w| w.key == *key && w.checked <= now && now < w.until);
    if let Some(w) = cached {
        return w.open;
    }
    let w = window_state(s, now).expect("a cron schedule has a window state");
    fresh.push(w);
    w.open
}

/// Whether a schedule's window contains `now`.
pub fn schedule_active(s: &Schedule, now: DateTime<Utc>) -> bool {
    match &s.when {
        ScheduleWhen::Once { start, end } => *start <= now && now < *end,
        ScheduleWhen::Cron { .. } => window_state(s, now).is_some_and(|w| w.open),
    }
}

/// A cron window's state at `now` and until when it holds: open iff some start lies in
/// `(now - duration, now]`, i.e. the first start after `now - duration` is not later than
/// now (a forward search from a point at most one window back is much cheaper than
/// searching backwards from now). Open, it stays open at least until that start plus the
/// duration; closed, it stays closed until that next start. `None` for one-off windows.
pub fn window_state(s: &Schedule, now: DateTime<Utc>) -> Option<WindowState> {
    let ScheduleWhen::Cron {
        timezone,
        duration_secs,
        cron,
        key,
        ..
    } = &s.when
    else {
        return None;
    };
    let dur = Duration::seconds(*duration_secs as i64);
    let mut from = (now - dur).with_timezone(timezone);
    let (open, until) = loop {
        match cron.find_next_occurrence(&from, false) {
            // A wall-clock time repeated when the clocks go back starts a window once (as
            // in cron): skip its second occurrence. (Searching from inside the repeated
            // hour, the search may also answer with the first occurrence, already past.)
            Ok(start) if start <= from => from = start + Duration::hours(1),
            Ok(start) if (start - Duration::hours(1)).naive_local() == start.naive_local() => {
                from = start;
            }
            Ok(start) => {
                let start = start.with_timezone(&Utc);
                break if start <= now {
                    (true, start + dur)
                } else {
                    (false, start)
                };
            }
            // No start ever again: closed for good.
            Err(_) => break (false, DateTime::<Utc>::MAX_UTC),
        }
    };
    Some(WindowState {
        key: *key,
        open,
        checked: now,
        until,
    })
}

#[cfg(test)]
mod tests;
