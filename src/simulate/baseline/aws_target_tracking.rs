//! AWS target tracking as Application Auto Scaling runs it, with the CloudWatch alarms it
//! creates for a policy.
//!
//! Source: "How target tracking scaling for Application Auto Scaling works",
//! <https://docs.aws.amazon.com/autoscaling/application/userguide/target-tracking-scaling-policy-overview.html>,
//! and the alarms a target tracking policy creates (`AlarmHigh`: 3 datapoints of 1 minute
//! above the target; `AlarmLow`: 15 datapoints of 1 minute below 90% of the target). Both
//! cooldowns are 300 s, the Application Auto Scaling default for ECS services.
//!
//! The model:
//! - every 60 s the alarms look at the newest published datapoints of the metric of the
//!   target's first target-tracking policy (the simulated metric datapoints, one per metric
//!   period; 1 minute by default);
//! - scale out when the newest 3 are all above the target, unless a scale-out happened in
//!   the last 300 s;
//! - scale in when the newest 15 are all below 90% of the target, unless a scale-in or a
//!   scale-out happened in the last 300 s;
//! - the new capacity is proportional: `ceil(current * value / target)` for an average
//!   metric, `ceil(total / target_per_unit)` for a total, from the newest datapoint, within
//!   the target's min and max (schedules are not part of this baseline);
//! - a missing datapoint breaks a run of datapoints (the alarm lacks data).
//!
//! Simplification: AWS lets a larger scale-out through during the scale-out cooldown; this
//! model does not.

use crate::config::{PolicyKind, Target, TrackingTarget};

use super::super::engine::{ceil_units, Controller, View};
use super::super::model::MetricPlan;

pub const INTERVAL_SECS: u64 = 60;
pub const HIGH_DATAPOINTS: usize = 3;
pub const LOW_DATAPOINTS: usize = 15;
pub const LOW_RATIO: f64 = 0.9;
pub const COOLDOWN_SECS: i64 = 300;

/// The AWS target tracking baseline.
pub struct AwsTargetTracking {
    tracking: TrackingTarget,
    plan: MetricPlan,
    min: u32,
    max: u32,
    last_out: Option<i64>,
    last_in: Option<i64>,
    reason: String,
}

impl AwsTargetTracking {
    /// Tracks the first target-tracking policy of `target`; `plans` are its metric models.
    pub fn new(target: &Target, plans: &[MetricPlan]) -> Result<Self, String> {
        let p = super::tracking_policies(target, "aws-target-tracking")?[0];
        let PolicyKind::TargetTracking { target: tt, .. } = &p.kind else {
            unreachable!("filtered to target tracking");
        };
        let plan = plans
            .iter()
            .find(|m| *m.name == *p.metric)
            .cloned()
            .ok_or_else(|| format!("no model for metric `{}`", p.metric))?;
        Ok(AwsTargetTracking {
            tracking: *tt,
            plan,
            min: target.min,
            max: target.max,
            last_out: None,
            last_in: None,
            reason: String::new(),
        })
    }

    /// Whether `value` breaches the high (`+1`) or the low (`-1`) alarm at `current`.
    fn side(&self, value: f64, current: u32) -> i8 {
        let (v, t) = match self.tracking {
            TrackingTarget::Average(t) => (value, t),
            TrackingTarget::PerUnit(u) => (value, u * current as f64),
        };
        if v > t {
            1
        } else if v < LOW_RATIO * t {
            -1
        } else {
            0
        }
    }

    fn proportional(&self, value: f64, current: u32) -> u32 {
        match self.tracking {
            TrackingTarget::Average(t) => {
                if current == 0 {
                    u32::from(value > 0.0)
                } else {
                    ceil_units(current as f64 * value / t)
                }
            }
            TrackingTarget::PerUnit(u) => ceil_units(value / u),
        }
    }
}

impl Controller for AwsTargetTracking {
    fn interval_secs(&self) -> u64 {
        INTERVAL_SECS
    }

    fn tick(&mut self, view: &View<'_>) -> u32 {
        let now = view.now;
        let current = view.current;
        if current < self.min || current > self.max {
            self.reason = format!(
                "current {current} outside min {} .. max {}",
                self.min, self.max
            );
            return current.clamp(self.min, self.max);
        }
        let newest = |n: usize| -> Option<Vec<f64>> {
            if view.datapoints.len() < n {
                return None;
            }
            view.datapoints[view.datapoints.len() - n..]
                .iter()
                .map(|d| d.values.as_ref().and_then(|v| self.plan.value(v)))
                .collect()
        };
        let since = |t: Option<i64>| t.is_some_and(|t| now - t < COOLDOWN_SECS);
        if let Some(vs) = newest(HIGH_DATAPOINTS) {
            if vs.iter().all(|v| self.side(*v, current) > 0) && !since(self.last_out) {
                let want = self
                    .proportional(*vs.last().expect("n > 0"), current)
                    .clamp(self.min, self.max);
                if want > current {
                    self.last_out = Some(now);
                    self.reason = format!(
                        "{} datapoints of `{}` above the target, newest {}: scale out {current} -> {want}",
                        HIGH_DATAPOINTS,
                        self.plan.name,
                        crate::policy::num(*vs.last().expect("n > 0"))
                    );
                    return want;
                }
            }
        }
        if let Some(vs) = newest(LOW_DATAPOINTS) {
            if vs.iter().all(|v| self.side(*v, current) < 0)
                && !since(self.last_in)
                && !since(self.last_out)
            {
                let want = self
                    .proportional(*vs.last().expect("n > 0"), current)
                    .clamp(self.min, self.max);
                if want < current {
                    self.last_in = Some(now);
                    self.reason = format!(
                        "{} datapoints of `{}` below 90% of the target, newest {}: scale in {current} -> {want}",
                        LOW_DATAPOINTS,
                        self.plan.name,
                        crate::policy::num(*vs.last().expect("n > 0"))
                    );
                    return want;
                }
            }
        }
        current
    }

    fn reason(&self) -> Option<String> {
        Some(self.reason.clone())
    }
}
