//! What the core remembers between ticks of one target. Plain data: serializable so the
//! daemon can keep it in DynamoDB across restarts, and small (pruned to the longest window).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::config::Target;

use super::clock::Stamp;
use super::Decision;

/// A past recommendation (HPA stores the unstabilized desired capacity).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recommendation {
    pub at: Stamp,
    pub capacity: u32,
}

/// A scaling action that was carried out: `change` units up or down.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScaleEvent {
    pub at: Stamp,
    pub change: u32,
}

/// A capacity change recorded before its call (write-ahead) and not yet known to have
/// happened. While it is pending it counts as a scale event for every rate limit and
/// cooldown; a fresh read of the resource either confirms it or, when the resource still
/// runs `from`, drops it ([`History::reconcile`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingChange {
    pub at: Stamp,
    pub from: u32,
    pub to: u32,
    /// The lease's fencing token of the leader that made it (0 without a lease).
    pub fencing: u64,
    pub state: PendingState,
    /// The last scale-out (or scale-in) before this change, restored if it is dropped.
    pub prev_last: Option<Stamp>,
}

/// Where a pending change stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PendingState {
    /// Recorded before the call; no answer yet (a process that died here left it).
    Intended,
    /// The call failed in a way that may have applied it (timeout, reset, 5xx, an answer
    /// that could not be read).
    Ambiguous,
}

/// What the call of a pending change answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangeAnswer {
    Applied,
    /// A definite refusal (throttled, access denied, invalid): nothing changed.
    NotApplied,
    /// No answer that says either.
    Ambiguous,
}

/// What a fresh read of the resource said about a pending change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reconciled {
    /// The resource no longer runs `from`: the change counts as made.
    Confirmed(PendingChange),
    /// The resource still runs `from`: the change did not happen and no longer counts.
    Dropped(PendingChange),
}

/// One live comparison of the forecast with the load that came.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ForecastCheck {
    pub at: Stamp,
    pub forecast: f64,
    pub actual: f64,
}

/// The per-target memory of the decision core.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct History {
    pub recommendations: Vec<Recommendation>,
    pub scale_ups: Vec<ScaleEvent>,
    pub scale_downs: Vec<ScaleEvent>,
    pub last_scale_out: Option<Stamp>,
    pub last_scale_in: Option<Stamp>,
    /// Consecutive ticks with a missing metric.
    pub consecutive_failures: u32,
    /// Last tick at which the target was active (some metric above its activation value).
    pub last_active: Option<Stamp>,
    /// First tick seen; stands in for `last_active` when the target was never active.
    pub first_seen: Option<Stamp>,
    /// Since when each step policy's alarm condition has held.
    pub breach_since: BTreeMap<String, Stamp>,
    /// Live forecast checks, at most one per [`FORECAST_CHECK_EVERY_SECS`], for a day.
    pub forecast_checks: Vec<ForecastCheck>,
    /// A change written ahead of its call and not yet confirmed by a read of the resource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<PendingChange>,
    /// Derived data kept to make ticks cheap (schedule windows, forecast error sums); never
    /// stored, never compared, rebuilt when missing or out of date.
    #[serde(skip)]
    pub cache: Cache,
}

/// A schedule window's state: `open` (or closed) from `checked` until `until` (exclusive).
/// Windows change only at their edges, so one cron search per edge is enough.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WindowState {
    /// The schedule's [`crate::config::ScheduleWhen::Cron`] `key`.
    pub key: u64,
    pub open: bool,
    pub checked: DateTime<Utc>,
    pub until: DateTime<Utc>,
}

/// Sums of the live forecast checks, valid for the checks they were computed from.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct ErrorSums {
    n: usize,
    first: Option<Stamp>,
    last: Option<Stamp>,
    abs_error: f64,
    abs_actual: f64,
}

impl ErrorSums {
    fn of(checks: &[ForecastCheck]) -> Self {
        ErrorSums {
            n: checks.len(),
            first: checks.first().map(|c| c.at),
            last: checks.last().map(|c| c.at),
            abs_error: checks.iter().map(|c| (c.forecast - c.actual).abs()).sum(),
            abs_actual: checks.iter().map(|c| c.actual.abs()).sum(),
        }
    }

    fn matches(&self, checks: &[ForecastCheck]) -> bool {
        self.n == checks.len()
            && self.first == checks.first().map(|c| c.at)
            && self.last == checks.last().map(|c| c.at)
    }
}

/// See [`History::cache`]. Equal to any other cache: it is not part of the state.
#[derive(Clone, Debug, Default)]
pub struct Cache {
    pub windows: Vec<WindowState>,
    errors: ErrorSums,
}

impl PartialEq for Cache {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

/// How often the live forecast accuracy is sampled.
pub const FORECAST_CHECK_EVERY_SECS: i64 = 300;
/// How far back the live forecast accuracy looks.
pub const FORECAST_CHECK_WINDOW_SECS: i64 = 86_400;

impl History {
    /// Records a decision. `acted` says whether its capacity was actually set (the daemon
    /// passes false when the actuation failed or in dry-run; `decide` on the CLI passes true).
    pub fn record(&mut self, target: &Target, d: &Decision, acted: bool) {
        let now = Stamp::from(d.at);
        let u = &d.update;
        if self.first_seen.is_none() {
            // HPA seeds a new target's window with its current capacity (see `decide`).
            self.first_seen = Some(now);
            self.recommendations.push(Recommendation {
                at: now,
                capacity: d.current,
            });
        }
        // HPA keeps the unstabilized recommendation (none on a tick that only corrected a
        // capacity found outside the bounds).
        if let Some(capacity) = u.recommendation {
            self.recommendations
                .push(Recommendation { at: now, capacity });
        }
        self.consecutive_failures = u.consecutive_failures;
        if u.active {
            self.last_active = Some(now);
        }
        for (policy, since) in &u.breaches {
            match since {
                Some(s) => {
                    self.breach_since.insert(policy.clone(), *s);
                }
                None => {
                    self.breach_since.remove(policy);
                }
            }
        }
        if let Some(check) = u.forecast_check {
            self.forecast_checks.push(check);
        }
        for w in &u.windows {
            match self.cache.windows.iter_mut().find(|c| c.key == w.key) {
                Some(c) => *c = *w,
                None => self.cache.windows.push(*w),
            }
        }
        if acted && d.desired != d.current {
            if d.desired > d.current {
                self.scale_ups.push(ScaleEvent {
                    at: now,
                    change: d.desired - d.current,
                });
                self.last_scale_out = Some(now);
            } else {
                self.scale_downs.push(ScaleEvent {
                    at: now,
                    change: d.current - d.desired,
                });
                self.last_scale_in = Some(now);
            }
        }
        self.prune(target, now);
    }

    /// Records a decision whose change is about to be made, before the call (write-ahead):
    /// the change counts as a scale event from now on, and stays pending until its answer
    /// ([`History::answer`]) or a fresh read of the resource ([`History::reconcile`]) settles it.
    pub fn intend(&mut self, target: &Target, d: &Decision, fencing: u64) {
        let prev_last = if d.desired > d.current {
            self.last_scale_out
        } else {
            self.last_scale_in
        };
        self.record(target, d, true);
        self.pending = (d.desired != d.current).then(|| PendingChange {
            at: Stamp::from(d.at),
            from: d.current,
            to: d.desired,
            fencing,
            state: PendingState::Intended,
            prev_last,
        });
    }

    /// Settles the pending change with its call's answer: applied (no longer pending), not
    /// applied (dropped: it never counted), or ambiguous (still counted, until a fresh read).
    pub fn answer(&mut self, answer: ChangeAnswer) {
        match answer {
            ChangeAnswer::Applied => self.pending = None,
            ChangeAnswer::NotApplied => {
                if let Some(p) = self.pending.take() {
                    self.undo(&p);
                }
            }
            ChangeAnswer::Ambiguous => {
                if let Some(p) = self.pending.as_mut() {
                    p.state = PendingState::Ambiguous;
                }
            }
        }
    }

    /// Settles a pending change with a fresh read of what the resource is asked to run
    /// (`observed`, read after the change was sent and with no change in flight): still
    /// `from` means the change did not happen (dropped); anything else means it did, or was
    /// overtaken, and it keeps counting. Returns what was settled, if anything was pending.
    pub fn reconcile(&mut self, observed: u32) -> Option<Reconciled> {
        let p = self.pending.take()?;
        if observed == p.from && p.from != p.to {
            self.undo(&p);
            Some(Reconciled::Dropped(p))
        } else {
            Some(Reconciled::Confirmed(p))
        }
    }

    /// Removes the scale event of a change that did not happen.
    fn undo(&mut self, p: &PendingChange) {
        let (events, last, change) = if p.to > p.from {
            (&mut self.scale_ups, &mut self.last_scale_out, p.to - p.from)
        } else {
            (
                &mut self.scale_downs,
                &mut self.last_scale_in,
                p.from - p.to,
            )
        };
        if let Some(i) = events
            .iter()
            .rposition(|e| e.at == p.at && e.change == change)
        {
            events.remove(i);
        }
        if *last == Some(p.at) {
            *last = p.prev_last;
        }
    }

    /// Drops what no rule can look at any more.
    pub fn prune(&mut self, target: &Target, now: impl Into<Stamp>) {
        let now = now.into();
        let b = &target.behavior;
        let window = b
            .scale_up
            .stabilization_window_secs
            .max(b.scale_down.stabilization_window_secs);
        let keep_recs = now.shift(-(window as i64));
        // Keep the newest recommendation even with zero windows (it is what the target last
        // wanted), and every one inside the longest window.
        let newest = self.recommendations.last().copied();
        self.recommendations.retain(|r| r.at > keep_recs);
        if self.recommendations.is_empty() {
            self.recommendations.extend(newest);
        }
        let longest = |rules: &crate::config::Rules| {
            rules
                .policies
                .iter()
                .map(|p| p.period_secs)
                .max()
                .unwrap_or(0)
        };
        // Both directions' events are read by both rate limits, and scale-ups by warm-up.
        let keep_events = now.shift(
            -(longest(&b.scale_up)
                .max(longest(&b.scale_down))
                .max(b.warmup_secs)
                .max(b.scale_out_cooldown_secs) as i64),
        );
        self.scale_ups.retain(|e| e.at > keep_events);
        self.scale_downs.retain(|e| e.at > keep_events);
        let keep_checks = now.shift(-FORECAST_CHECK_WINDOW_SECS);
        self.forecast_checks.retain(|c| c.at > keep_checks);
        if !self.cache.errors.matches(&self.forecast_checks) {
            self.cache.errors = ErrorSums::of(&self.forecast_checks);
        }
        if !self.breach_since.is_empty() {
            self.breach_since
                .retain(|name, _| target.policies.iter().any(|p| *p.name == **name));
        }
        self.cache
            .windows
            .retain(|w| target.schedules.iter().any(|s| s.when.key() == Some(w.key)));
    }

    /// The live forecast error (WAPE) over the kept checks plus `extra`, once there are at
    /// least [`super::MIN_FORECAST_CHECKS`]; infinite when the load was zero throughout
    /// but the forecast was not.
    pub fn forecast_error(&self, extra: Option<&ForecastCheck>) -> Option<f64> {
        let checks = &self.forecast_checks;
        let sums = if self.cache.errors.matches(checks) {
            self.cache.errors
        } else {
            ErrorSums::of(checks)
        };
        let n = sums.n + extra.is_some() as usize;
        if n < super::MIN_FORECAST_CHECKS {
            return None;
        }
        let (mut err, mut tot) = (sums.abs_error, sums.abs_actual);
        if let Some(c) = extra {
            err += (c.forecast - c.actual).abs();
            tot += c.actual.abs();
        }
        Some(if tot > 0.0 {
            err / tot
        } else if err > 0.0 {
            f64::INFINITY
        } else {
            0.0
        })
    }

    /// Units added by scale-outs within `secs` before `now`.
    pub fn added_within(&self, now: Stamp, secs: u64) -> u32 {
        sum_within(&self.scale_ups, now, secs)
    }

    /// Units removed by scale-ins within `secs` before `now`.
    pub fn removed_within(&self, now: Stamp, secs: u64) -> u32 {
        sum_within(&self.scale_downs, now, secs)
    }
}

/// HPA's getReplicasChangePerPeriod: events strictly inside the last `secs`.
fn sum_within(events: &[ScaleEvent], now: Stamp, secs: u64) -> u32 {
    if events.is_empty() {
        return 0;
    }
    let cutoff = now.shift(-(secs as i64));
    let total: u64 = events
        .iter()
        .filter(|e| e.at > cutoff)
        .map(|e| e.change as u64)
        .sum();
    total.min(u32::MAX as u64) as u32
}
