//! capstan's own metrics: per target (dimension `Target`, namespace `Capstan` by default)
//! the current, desired, min and max capacity, decisions by direction, actuation failures,
//! and for predictive policies whether a forecast is available (`ForecastAvailable`, 1 or
//! 0), the forecast load, forecast capacity and live forecast error. Published batched with `PutMetricData`, or as CloudWatch Embedded Metric Format
//! log lines on standard output, or not at all (`[global] metrics`).

use aws_sdk_cloudwatch::primitives::DateTime as AwsTime;
use aws_sdk_cloudwatch::types::{Dimension, MetricDatum, StandardUnit};
use chrono::{DateTime, Utc};
use serde_json::json;

use crate::aws::AwsError;
use crate::controller::{Outcome, TargetResult, TickReport};
use crate::policy::Action;

/// Datums per `PutMetricData` call (the API allows 1000).
pub const DATUMS_PER_CALL: usize = 500;

/// One value of one metric for one target; the name is borrowed from the tick report (at
/// 10,000 targets a tick has 70,000 points, which each copied it).
#[derive(Clone, Debug, PartialEq)]
pub struct Point<'a> {
    pub target: &'a str,
    pub name: &'static str,
    pub value: f64,
    pub unit: &'static str,
    pub at: DateTime<Utc>,
}

/// Most points one target gives in a tick.
const MAX_POINTS_PER_TARGET: usize = 13;

/// The metrics of a tick (pure), made as they are read: at 10,000 targets a tick has
/// 70,000 points, which a publisher takes a call's worth at a time.
pub fn points(report: &TickReport) -> impl Iterator<Item = Point<'_>> + '_ {
    report
        .results
        .iter()
        .flat_map(move |r| target_points(report.at, r))
        .flatten()
}

/// One target's points of a tick.
fn target_points(
    at: DateTime<Utc>,
    r: &TargetResult,
) -> [Option<Point<'_>>; MAX_POINTS_PER_TARGET] {
    let mut out: [Option<Point<'_>>; MAX_POINTS_PER_TARGET] = std::array::from_fn(|_| None);
    let mut n = 0;
    let mut push = |name: &'static str, value: f64, unit: &'static str| {
        // CloudWatch refuses a whole call for one NaN or infinite value.
        if value.is_finite() {
            // A point beyond the array is a new metric without a larger bound: a test
            // (debug build) stops on it; a release build drops it rather than panic.
            debug_assert!(n < MAX_POINTS_PER_TARGET, "raise MAX_POINTS_PER_TARGET");
            if let Some(slot) = out.get_mut(n) {
                *slot = Some(Point {
                    target: &r.target,
                    name,
                    value,
                    unit,
                    at,
                });
                n += 1;
            }
        }
    };
    if r.error.is_some() {
        push("ObserveFailures", 1.0, "Count");
    }
    if let Some(d) = &r.decision {
        push("CurrentCapacity", d.current as f64, "Count");
        push("DesiredCapacity", d.desired as f64, "Count");
        push("MinCapacity", d.explanation.bounds.min as f64, "Count");
        push("MaxCapacity", d.explanation.bounds.max as f64, "Count");
        push(
            "ScaleOutDecisions",
            (d.action == Action::ScaleOut) as u8 as f64,
            "Count",
        );
        push(
            "ScaleInDecisions",
            (d.action == Action::ScaleIn) as u8 as f64,
            "Count",
        );
        let missing = d
            .explanation
            .metrics
            .iter()
            .filter(|m| m.value.is_none())
            .count();
        push("MissingMetrics", missing as f64, "Count");
        if matches!(r.outcome, Some(Outcome::Failed { .. })) {
            push("ActuationFailures", 1.0, "Count");
        }
        if let Some(f) = &d.explanation.forecast {
            // 1 while a forecast covers now, 0 while the predictive policy has none (its
            // reason is in the decision's explanation): an alarm can watch it.
            push(
                "ForecastAvailable",
                f.predicted_load.is_some() as u8 as f64,
                "Count",
            );
            if let Some(v) = f.predicted_load {
                push("ForecastLoad", v, "None");
            }
            if let Some(c) = f.capacity {
                push("ForecastCapacity", c as f64, "Count");
            }
            if let Some(e) = f.error.filter(|e| e.is_finite()) {
                push("ForecastError", e, "None");
            }
        }
    }
    out
}

/// Points grouped a `PutMetricData` call's worth ([`DATUMS_PER_CALL`]) at a time, each
/// group made only when the one before is done with.
pub fn per_call<'a>(
    points: impl Iterator<Item = Point<'a>>,
) -> impl Iterator<Item = Vec<Point<'a>>> {
    let mut points = points.peekable();
    std::iter::from_fn(move || {
        points.peek()?;
        Some(points.by_ref().take(DATUMS_PER_CALL).collect())
    })
}

/// Groups points into EMF log lines, one per target (a target's points come together).
pub fn emf_lines<'a>(
    namespace: &'a str,
    points: impl Iterator<Item = Point<'a>> + 'a,
) -> impl Iterator<Item = String> + 'a {
    let mut points = points.peekable();
    std::iter::from_fn(move || {
        let first = points.next()?;
        let mut ps = vec![first];
        while let Some(p) = points.next_if(|p| p.target == ps[0].target) {
            ps.push(p);
        }
        Some(emf_line(namespace, &ps))
    })
}

fn emf_line(namespace: &str, ps: &[Point<'_>]) -> String {
    let at = ps.first().map(|p| p.at.timestamp_millis()).unwrap_or(0);
    let mut obj = json!({
        "_aws": {
            "Timestamp": at,
            "CloudWatchMetrics": [{
                "Namespace": namespace,
                "Dimensions": [["Target"]],
                "Metrics": ps.iter().map(|p| json!({"Name": p.name, "Unit": p.unit})).collect::<Vec<_>>(),
            }],
        },
        "Target": ps.first().map(|p| p.target),
    });
    for p in ps {
        obj[p.name] = json!(p.value);
    }
    obj.to_string()
}

/// Publishes points with `PutMetricData`, batched.
#[derive(Clone, Debug)]
pub struct CloudWatchPublisher {
    client: aws_sdk_cloudwatch::Client,
    namespace: String,
}

impl CloudWatchPublisher {
    pub fn new(sdk: &aws_config::SdkConfig, namespace: &str) -> Self {
        CloudWatchPublisher {
            client: crate::aws_client!(aws_sdk_cloudwatch, sdk),
            namespace: namespace.into(),
        }
    }

    /// Publishes the points a call's worth at a time; returns the number of calls made.
    pub async fn publish<'a>(
        &self,
        points: impl Iterator<Item = Point<'a>>,
    ) -> Result<usize, AwsError> {
        let mut calls = 0;
        for call in per_call(points) {
            let data: Vec<MetricDatum> = call
                .into_iter()
                .map(|p| {
                    MetricDatum::builder()
                        .metric_name(p.name)
                        .dimensions(Dimension::builder().name("Target").value(p.target).build())
                        .value(p.value)
                        .unit(if p.unit == "Count" {
                            StandardUnit::Count
                        } else {
                            StandardUnit::None
                        })
                        .timestamp(AwsTime::from_secs(p.at.timestamp()))
                        .build()
                })
                .collect();
            self.client
                .put_metric_data()
                .namespace(&self.namespace)
                .set_metric_data(Some(data))
                .send()
                .await
                .map_err(|e| {
                    crate::aws_error!(
                        aws_sdk_cloudwatch,
                        e,
                        "cloudwatch",
                        "PutMetricData",
                        &self.namespace
                    )
                })?;
            calls += 1;
        }
        Ok(calls)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config;
    use crate::policy::{decide, History, Observation};

    fn report() -> TickReport {
        let cfg = config::from_str(
            "t.toml",
            "[[target]]\nname = \"api\"\nkind = \"ecs_service\"\ncluster = \"c\"\nservice = \"s\"\nmin = 1\nmax = 9\n[[target.metric]]\nname = \"cpu\"\nsource = \"ecs_cpu\"\n[[target.policy]]\ntype = \"target_tracking\"\nmetric = \"cpu\"\ntarget_value = 50\n",
        )
        .unwrap();
        let at: DateTime<Utc> = "2026-11-27T10:00:00Z".parse().unwrap();
        let d = decide(
            &cfg.targets[0],
            &Observation::new(at, 2).with("cpu", 100.0),
            &History::default(),
        );
        TickReport {
            at,
            leader: true,
            dry_run: false,
            results: vec![
                TargetResult {
                    target: "api".into(),
                    decision: Some(std::sync::Arc::new(d)),
                    outcome: None,
                    error: None,
                },
                TargetResult {
                    target: "gone".into(),
                    decision: None,
                    outcome: None,
                    error: Some(AwsError::new(
                        crate::aws::ErrorClass::NotFound,
                        "ecs",
                        "DescribeServices",
                        "gone",
                        "",
                    )),
                },
            ],
            readings: vec![],
            lease_error: None,
            store_errors: vec![],
            elapsed_ms: 1,
        }
    }

    #[test]
    fn points_cover_capacity_decisions_and_failures() {
        let r = report();
        let ps: Vec<Point<'_>> = points(&r).collect();
        let get = |t: &str, n: &str| {
            ps.iter()
                .find(|p| p.target == t && p.name == n)
                .map(|p| p.value)
        };
        assert_eq!(get("api", "CurrentCapacity"), Some(2.0));
        assert_eq!(get("api", "DesiredCapacity"), Some(4.0));
        assert_eq!(get("api", "ScaleOutDecisions"), Some(1.0));
        assert_eq!(get("api", "MaxCapacity"), Some(9.0));
        assert_eq!(get("gone", "ObserveFailures"), Some(1.0));
        assert_eq!(get("api", "ForecastLoad"), None);
    }

    #[test]
    fn points_go_a_call_s_worth_at_a_time() {
        let at: DateTime<Utc> = "2026-11-27T10:00:00Z".parse().unwrap();
        let point = |i: usize| Point {
            target: "api",
            name: "CurrentCapacity",
            value: i as f64,
            unit: "Count",
            at,
        };
        let calls: Vec<Vec<Point<'_>>> = per_call((0..1201).map(point)).collect();
        let sizes: Vec<usize> = calls.iter().map(Vec::len).collect();
        assert_eq!(sizes, [DATUMS_PER_CALL, DATUMS_PER_CALL, 201]);
        assert_eq!(calls[2][200].value, 1200.0);
        assert_eq!(per_call(std::iter::empty()).count(), 0);
    }

    #[test]
    fn emf_lines_are_valid_embedded_metric_format() {
        let r = report();
        let lines: Vec<String> = emf_lines("Capstan", points(&r)).collect();
        assert_eq!(lines.len(), 2);
        let v: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
        assert_eq!(v["Target"], "api");
        assert_eq!(v["DesiredCapacity"], 4.0);
        assert_eq!(v["_aws"]["CloudWatchMetrics"][0]["Namespace"], "Capstan");
        assert_eq!(
            v["_aws"]["CloudWatchMetrics"][0]["Dimensions"][0][0],
            "Target"
        );
        let names: Vec<&str> = v["_aws"]["CloudWatchMetrics"][0]["Metrics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["Name"].as_str().unwrap())
            .collect();
        assert!(names.contains(&"CurrentCapacity"));
    }
}
