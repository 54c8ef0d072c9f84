//! Reference scalers to compare a target's policies with, each in its own file with its
//! source: [`aws_target_tracking`], [`hpa`] and [`static_peak`]; [`clairvoyant`] is the
//! non-causal limit every replay is measured against.

pub mod aws_target_tracking;
pub mod clairvoyant;
pub mod hpa;
pub mod static_peak;

use std::fmt;
use std::str::FromStr;

use crate::config::{Policy, PolicyKind, Target};

/// A baseline scaler.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Baseline {
    AwsTargetTracking,
    Hpa,
    StaticPeak,
    Clairvoyant,
}

impl Baseline {
    pub const ALL: [Baseline; 4] = [
        Baseline::AwsTargetTracking,
        Baseline::Hpa,
        Baseline::StaticPeak,
        Baseline::Clairvoyant,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Baseline::AwsTargetTracking => "aws-target-tracking",
            Baseline::Hpa => "hpa",
            Baseline::StaticPeak => "static-peak",
            Baseline::Clairvoyant => "clairvoyant",
        }
    }
}

impl fmt::Display for Baseline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Baseline {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Baseline::ALL
            .into_iter()
            .find(|b| b.name() == s)
            .ok_or_else(|| {
                format!("unknown baseline `{s}` (use aws-target-tracking, hpa, static-peak or clairvoyant)")
            })
    }
}

/// The target's target-tracking policies, or an error naming the baseline that needs one.
fn tracking_policies<'a>(target: &'a Target, baseline: &str) -> Result<Vec<&'a Policy>, String> {
    let v: Vec<&Policy> = target
        .policies
        .iter()
        .filter(|p| matches!(p.kind, PolicyKind::TargetTracking { .. }))
        .collect();
    if v.is_empty() {
        return Err(format!(
            "the {baseline} baseline needs a target-tracking policy, and target `{}` has none",
            target.name
        ));
    }
    Ok(v)
}
