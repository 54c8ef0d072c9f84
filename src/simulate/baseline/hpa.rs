//! The Kubernetes Horizontal Pod Autoscaler with its defaults, run through the same
//! [`policy::decide`](crate::policy::decide) as the target's own policies, on a derived
//! target.
//!
//! Source: "Horizontal Pod Autoscaling",
//! <https://kubernetes.io/docs/tasks/run-application/horizontal-pod-autoscale/>: the
//! controller loop runs every 15 s (`--horizontal-pod-autoscaler-sync-period`), skips changes
//! within a 0.1 tolerance of the target (`--horizontal-pod-autoscaler-tolerance`), computes
//! `ceil(ready * value / target)`, takes the largest proposal over its metrics, and applies
//! the default behavior: scale-down stabilization of 300 s, scale-down by up to 100% per
//! 15 s, scale-up by up to max(4 pods, 100%) per 15 s, no scale-up stabilization.
//!
//! The derived target keeps the name, min (at least 1: HPA does not scale to zero), max,
//! metrics and the target-tracking policies (tolerance 0.1 both ways) of the configured
//! target; step and predictive policies, schedules, the fallback and the configured behavior
//! are dropped.

use crate::config::{Behavior, PolicyKind, Target};

pub const INTERVAL_SECS: u64 = 15;
pub const TOLERANCE: f64 = 0.1;

/// The HPA version of `target`.
pub fn hpa_target(target: &Target) -> Result<Target, String> {
    let policies = super::tracking_policies(target, "hpa")?
        .into_iter()
        .map(|p| {
            let mut p = p.clone();
            if let PolicyKind::TargetTracking {
                tolerance_up,
                tolerance_down,
                ..
            } = &mut p.kind
            {
                *tolerance_up = TOLERANCE;
                *tolerance_down = TOLERANCE;
            }
            p
        })
        .collect();
    let min = target.min.max(1);
    Ok(Target {
        policies,
        schedules: Vec::new(),
        fallback: None,
        behavior: Behavior::default(),
        min,
        max: target.max.max(min),
        ..target.clone()
    })
}
