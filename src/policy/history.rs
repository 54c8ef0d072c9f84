//! What the core remembers between ticks of one target. Plain data: serializable so the
//! daemon can keep it in DynamoDB across restarts, and small (pruned to the longest window).

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::config::Target;

use super::Decision;

/// A past recommendation (HPA stores the unstabilized desired capacity).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recommendation {
    pub at: DateTime<Utc>,
    pub capacity: u32,
}

/// A scaling action that was carried out: `change` units up or down.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScaleEvent {
    pub at: DateTime<Utc>,
    pub change: u32,
}

/// One live comparison of the forecast with the load that came.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ForecastCheck {
    pub at: DateTime<Utc>,
    pub forecast: f64,
    pub actual: f64,
}

/// The per-target memory of the decision core.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct History {
    pub recommendations: Vec<Recommendation>,
    pub scale_ups: Vec<ScaleEvent>,
    pub scale_downs: Vec<ScaleEvent>,
    pub last_scale_out: Option<DateTime<Utc>>,
    pub last_scale_in: Option<DateTime<Utc>>,
    /// Consecutive ticks with a missing metric.
    pub consecutive_failures: u32,
    /// Last tick at which the target was active (some metric above its activation value).
    pub last_active: Option<DateTime<Utc>>,
    /// First tick seen; stands in for `last_active` when the target was never active.
    pub first_seen: Option<DateTime<Utc>>,
    /// Since when each step policy's alarm condition has held.
    pub breach_since: BTreeMap<String, DateTime<Utc>>,
    /// Live forecast checks, at most one per [`FORECAST_CHECK_EVERY_SECS`], for a day.
    pub forecast_checks: Vec<ForecastCheck>,
}

/// How often the live forecast accuracy is sampled.
pub const FORECAST_CHECK_EVERY_SECS: i64 = 300;
/// How far back the live forecast accuracy looks.
pub const FORECAST_CHECK_WINDOW_SECS: i64 = 86_400;

impl History {
    /// Records a decision. `acted` says whether its capacity was actually set (the daemon
    /// passes false when the actuation failed or in dry-run; `decide` on the CLI passes true).
    pub fn record(&mut self, target: &Target, d: &Decision, acted: bool) {
        let now = d.at;
        let u = &d.update;
        if self.first_seen.is_none() {
            // HPA seeds a new target's window with its current capacity (see `decide`).
            self.first_seen = Some(now);
            self.recommendations.push(Recommendation {
                at: now,
                capacity: d.current,
            });
        }
        // HPA keeps the unstabilized recommendation.
        self.recommendations.push(Recommendation {
            at: now,
            capacity: u.recommendation,
        });
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

    /// Drops what no rule can look at any more.
    pub fn prune(&mut self, target: &Target, now: DateTime<Utc>) {
        let b = &target.behavior;
        let window = b
            .scale_up
            .stabilization_window_secs
            .max(b.scale_down.stabilization_window_secs);
        let keep_recs = now - Duration::seconds(window as i64);
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
        let keep_events = now
            - Duration::seconds(
                longest(&b.scale_up)
                    .max(longest(&b.scale_down))
                    .max(b.warmup_secs)
                    .max(b.scale_out_cooldown_secs) as i64,
            );
        self.scale_ups.retain(|e| e.at > keep_events);
        self.scale_downs.retain(|e| e.at > keep_events);
        let keep_checks = now - Duration::seconds(FORECAST_CHECK_WINDOW_SECS);
        self.forecast_checks.retain(|c| c.at > keep_checks);
        self.breach_since
            .retain(|name, _| target.policies.iter().any(|p| &p.name == name));
    }

    /// Units added by scale-outs within `secs` before `now`.
    pub fn added_within(&self, now: DateTime<Utc>, secs: u64) -> u32 {
        sum_within(&self.scale_ups, now, secs)
    }

    /// Units removed by scale-ins within `secs` before `now`.
    pub fn removed_within(&self, now: DateTime<Utc>, secs: u64) -> u32 {
        sum_within(&self.scale_downs, now, secs)
    }
}

/// HPA's getReplicasChangePerPeriod: events strictly inside the last `secs`.
fn sum_within(events: &[ScaleEvent], now: DateTime<Utc>, secs: u64) -> u32 {
    let cutoff = now - Duration::seconds(secs as i64);
    let total: u64 = events
        .iter()
        .filter(|e| e.at > cutoff)
        .map(|e| e.change as u64)
        .sum();
    total.min(u32::MAX as u64) as u32
}
