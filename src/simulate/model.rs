//! How each metric of a target is derived from the simulated load and ready capacity, and
//! what one unit of capacity serves.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::Serialize;

use crate::config::{MetricSource, PolicyKind, Target, TrackingTarget};
use crate::policy::Sample;

/// The parameters of the simulated service.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ServiceModel {
    /// Requests per second one ready unit serves.
    pub unit_capacity: f64,
    /// Seconds from a desired increase to ready capacity.
    pub startup_secs: u64,
    /// How late a metric datapoint is published after its period ends.
    pub metric_delay_secs: u64,
    /// Length of the aligned periods metrics average over.
    pub metric_period_secs: u64,
    /// Latency at zero load, for metrics modeled as [`MetricModel::Latency`].
    pub base_latency_secs: f64,
}

impl Default for ServiceModel {
    fn default() -> Self {
        ServiceModel {
            unit_capacity: 1.0,
            startup_secs: 60,
            metric_delay_secs: 60,
            metric_period_secs: 60,
            base_latency_secs: 0.1,
        }
    }
}

/// What a metric measures in the simulated service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum MetricModel {
    /// CPU-like utilization in percent: `100 * load / (ready * unit_capacity)`, at most 100.
    Utilization,
    /// Requests per ready unit per metric period (ALB `RequestCountPerTarget`):
    /// `load * period / ready`.
    PerUnitCount,
    /// The total load in requests per second.
    Rate,
    /// A queue's backlog: requests that arrived beyond the ready capacity and wait.
    Backlog,
    /// Response time in seconds: `base / (1 - utilization)`, utilization at most 0.99.
    Latency,
    /// Not modeled: the metric is reported missing.
    Unmodeled,
}

impl MetricModel {
    pub const NAMES: [&'static str; 6] = [
        "utilization",
        "per-unit-count",
        "rate",
        "backlog",
        "latency",
        "none",
    ];

    pub fn name(self) -> &'static str {
        match self {
            MetricModel::Utilization => "utilization",
            MetricModel::PerUnitCount => "per-unit-count",
            MetricModel::Rate => "rate",
            MetricModel::Backlog => "backlog",
            MetricModel::Latency => "latency",
            MetricModel::Unmodeled => "none",
        }
    }
}

impl fmt::Display for MetricModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for MetricModel {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "utilization" => MetricModel::Utilization,
            "per-unit-count" => MetricModel::PerUnitCount,
            "rate" => MetricModel::Rate,
            "backlog" => MetricModel::Backlog,
            "latency" => MetricModel::Latency,
            "none" => MetricModel::Unmodeled,
            other => {
                return Err(format!(
                    "unknown metric model `{other}` (use {})",
                    MetricModel::NAMES.join(", ")
                ))
            }
        })
    }
}

/// One metric of the target and how the simulation produces it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MetricPlan {
    /// The config metric's own (shared) name.
    pub name: std::sync::Arc<str>,
    pub model: MetricModel,
    /// Why this model was chosen.
    pub why: String,
    /// For [`MetricModel::PerUnitCount`]: the seconds one count covers (the metric's period
    /// in the config, so that the policy's target keeps its meaning).
    pub count_secs: u64,
    /// For SQS metrics: the KEDA counters the core adds (`visible` always).
    #[serde(skip)]
    pub sqs: Option<(bool, bool)>,
}

/// The simulated service's state over one metric period, from which every model reads.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Values {
    /// Average utilization in percent (0..=100).
    pub utilization: f64,
    /// Average requests per second per ready unit.
    pub per_unit_rate: f64,
    /// Requests that arrived in the period (the period's `Sum` of a request count).
    pub count: f64,
    /// Requests per ready unit that arrived in the period (`RequestCountPerTarget`'s `Sum`).
    pub per_unit_count: f64,
    /// Average load in requests per second.
    pub rate: f64,
    /// Requests waiting at the end of the period.
    pub backlog: f64,
    /// Units busy at the end of the period (SQS in-flight messages).
    pub busy: f64,
    /// Average modeled latency in seconds.
    pub latency: f64,
}

impl MetricPlan {
    /// The sample the policy sees, `None` for an unmodeled metric.
    pub fn sample(&self, v: &Values) -> Option<Sample> {
        let x = match self.model {
            MetricModel::Utilization => v.utilization,
            MetricModel::PerUnitCount => v.per_unit_rate * self.count_secs as f64,
            MetricModel::Rate => v.rate,
            MetricModel::Latency => v.latency,
            MetricModel::Unmodeled => return None,
            MetricModel::Backlog => {
                if self.sqs.is_some() {
                    return Some(Sample::Queue {
                        visible: v.backlog,
                        in_flight: v.busy,
                        delayed: 0.0,
                    });
                }
                v.backlog
            }
        };
        Some(Sample::Value(x))
    }

    /// The number the policy reads from [`MetricPlan::sample`] (queue counters added as the
    /// core adds them).
    pub fn value(&self, v: &Values) -> Option<f64> {
        match self.sample(v)? {
            Sample::Value(x) => Some(x),
            Sample::Queue {
                visible, in_flight, ..
            } => {
                let with_in_flight = self.sqs.is_some_and(|(f, _)| f);
                Some(visible + if with_in_flight { in_flight } else { 0.0 })
            }
        }
    }
}

/// Chooses the model of every metric of `target`: an override first, then SQS queues are
/// backlogs, then what the policies that read the metric imply (a target-tracking average
/// with a target of at most 100 is a utilization in percent, a larger one a count per unit
/// per period; totals and predictive loads are rates), then the metric's name.
pub fn plan_metrics(
    target: &Target,
    overrides: &BTreeMap<String, MetricModel>,
    default_period_secs: u64,
) -> Result<Vec<MetricPlan>, String> {
    for name in overrides.keys() {
        if target.metric(name).is_none() {
            let names: Vec<&str> = target.metrics.iter().map(|m| &*m.name).collect();
            return Err(format!(
                "--metric-model {name}=...: target `{}` has no metric `{name}` (it has {})",
                target.name,
                names.join(", ")
            ));
        }
    }
    let mut plans = Vec::new();
    for m in &target.metrics {
        let (count_secs, sqs) = match &m.source {
            MetricSource::Cloudwatch { period_secs, .. }
            | MetricSource::Expression { period_secs, .. } => (*period_secs, None),
            MetricSource::Sqs {
                include_in_flight,
                include_delayed,
                ..
            } => (
                default_period_secs,
                Some((*include_in_flight, *include_delayed)),
            ),
        };
        let (model, why) = if let Some(o) = overrides.get(&*m.name) {
            (*o, "set with --metric-model".to_string())
        } else if sqs.is_some() {
            (MetricModel::Backlog, "an SQS queue".to_string())
        } else if let Some(found) = from_policies(target, &m.name) {
            found
        } else {
            from_name(m)
        };
        plans.push(MetricPlan {
            name: m.name.clone(),
            model,
            why,
            count_secs: count_secs.max(1),
            sqs,
        });
    }
    Ok(plans)
}

fn from_policies(target: &Target, metric: &str) -> Option<(MetricModel, String)> {
    target
        .policies
        .iter()
        .filter(|p| *p.metric == *metric)
        .find_map(|p| match &p.kind {
            PolicyKind::TargetTracking {
                target: TrackingTarget::Average(t),
                ..
            } if *t <= 100.0 => Some((
                MetricModel::Utilization,
                format!(
                    "policy `{}` tracks an average of {t} (at most 100: a percentage)",
                    p.name
                ),
            )),
            PolicyKind::TargetTracking {
                target: TrackingTarget::Average(t),
                ..
            } => Some((
                MetricModel::PerUnitCount,
                format!(
                    "policy `{}` tracks an average of {t} (above 100: a count per unit)",
                    p.name
                ),
            )),
            PolicyKind::TargetTracking {
                target: TrackingTarget::PerUnit(_),
                ..
            } => Some((
                MetricModel::Rate,
                format!("policy `{}` tracks a total per unit", p.name),
            )),
            PolicyKind::Predictive(_) => Some((
                MetricModel::Rate,
                format!("predictive policy `{}` forecasts it as the load", p.name),
            )),
            PolicyKind::Step(_) => None,
        })
}

fn from_name(m: &crate::config::Metric) -> (MetricModel, String) {
    let label = match &m.source {
        MetricSource::Cloudwatch { metric_name, .. } => metric_name.clone(),
        _ => m.name.to_string(),
    };
    let l = label.to_ascii_lowercase();
    let has = |w: &str| l.contains(w);
    let model = if has("utilization") || has("cpu") {
        MetricModel::Utilization
    } else if has("requestcountpertarget") {
        MetricModel::PerUnitCount
    } else if has("responsetime") || has("latency") || has("duration") {
        MetricModel::Latency
    } else if has("requestcount") || has("rps") || has("requests") {
        MetricModel::Rate
    } else {
        return (
            MetricModel::Unmodeled,
            format!("no model for `{label}`: reported missing (set one with --metric-model)"),
        );
    };
    (model, format!("named `{label}`"))
}

/// What one unit serves, from the target's own policies: a predictive policy's
/// `target_per_unit`, a target-tracking total per unit on a rate, or a target-tracking count
/// per unit per period divided by the period.
pub fn derive_unit_capacity(target: &Target, plans: &[MetricPlan]) -> Option<(f64, String)> {
    let model_of = |name: &str| plans.iter().find(|p| *p.name == *name);
    for p in &target.policies {
        if let PolicyKind::Predictive(pp) = &p.kind {
            return Some((
                pp.per_unit,
                format!("target_per_unit of predictive policy `{}`", p.name),
            ));
        }
    }
    for p in &target.policies {
        let PolicyKind::TargetTracking { target: tt, .. } = &p.kind else {
            continue;
        };
        let Some(plan) = model_of(&p.metric) else {
            continue;
        };
        match (tt, plan.model) {
            (TrackingTarget::PerUnit(u), MetricModel::Rate) => {
                return Some((*u, format!("target_per_unit of policy `{}`", p.name)))
            }
            (TrackingTarget::Average(t), MetricModel::PerUnitCount) => {
                return Some((
                    t / plan.count_secs as f64,
                    format!(
                        "target_value of policy `{}` over the {} s period of `{}`",
                        p.name, plan.count_secs, plan.name
                    ),
                ))
            }
            _ => {}
        }
    }
    None
}
