//! `capstan alarms`: CloudWatch alarms on capstan's own metrics, per target (pure: config in,
//! alarm definitions out, with the property names of `PutMetricAlarm` and of CloudFormation's
//! `AWS::CloudWatch::Alarm`).
//!
//! - `pinned-at-max`: metric math `cur - max` over one-minute `Minimum` of
//!   `CurrentCapacity` and `Maximum` of `MaxCapacity` is `>= 0` in every minute of the last
//!   N (`--pinned-minutes`): the target sat at its (effective) max the whole time. Metric
//!   math alarms need all metrics at the same period, which these are. Minutes without data
//!   do not count as pinned (`notBreaching`): the `no-data` alarm covers them.
//! - `metrics-missing`: `MissingMetrics` `Minimum >= 1` for 5 minutes: every tick of every
//!   one of those minutes had a metric missing.
//! - `no-data`: `CurrentCapacity` `SampleCount < 1` with missing data treated as breaching,
//!   for 5 minutes: capstan published nothing for the target (daemon down, no leader, or
//!   the target cannot be observed).
//! - `actuation-failing`: `ActuationFailures` `Sum >= 1` in at least 3 of the last 5 minutes
//!   (one transient failure, already retried, does not page).
//! - `forecast-missing` (targets with a predictive policy only): `ForecastAvailable`
//!   `Maximum < 1` for 30 minutes: no tick had a forecast covering now (a failed refresh is
//!   retried within 15 minutes; the decision's explanation says why there is none).
//!
//! With an SNS topic, the topic is notified on ALARM and on OK.

use serde_json::{json, Value};

use crate::config::{Config, Target};

/// Options of `capstan alarms`.
#[derive(Clone, Debug)]
pub struct AlarmOptions {
    pub pinned_minutes: u32,
    pub sns_topic: Option<String>,
}

impl Default for AlarmOptions {
    fn default() -> Self {
        AlarmOptions {
            pinned_minutes: 15,
            sns_topic: None,
        }
    }
}

/// The alarm kinds, in output order (`forecast-missing` only for a target with a
/// predictive policy).
pub const KINDS: [&str; 5] = [
    "pinned-at-max",
    "metrics-missing",
    "no-data",
    "actuation-failing",
    "forecast-missing",
];

const PERIOD: u32 = 60;

/// The alarms of all targets.
pub fn alarms(cfg: &Config, opts: &AlarmOptions) -> Vec<Value> {
    cfg.targets
        .iter()
        .flat_map(|t| target_alarms(cfg, t, opts))
        .collect()
}

fn dims(t: &Target) -> Value {
    json!([{ "Name": "Target", "Value": t.name }])
}

fn target_alarms(cfg: &Config, t: &Target, opts: &AlarmOptions) -> Vec<Value> {
    let ns = &cfg.global.metrics_namespace;
    let name = |kind: &str| format!("{ns}-{}-{kind}", t.name);
    let n = opts.pinned_minutes.max(1);
    let stat = |id: &str, metric: &str, s: &str| {
        json!({
            "Id": id,
            "MetricStat": {
                "Metric": { "Namespace": ns, "MetricName": metric, "Dimensions": dims(t) },
                "Period": PERIOD,
                "Stat": s,
            },
            "ReturnData": false,
        })
    };
    let simple = |metric: &str, s: &str| {
        json!({
            "Namespace": ns,
            "MetricName": metric,
            "Dimensions": dims(t),
            "Statistic": s,
            "Period": PERIOD,
        })
    };
    let mut out = vec![
        json!({
                "AlarmName": name("pinned-at-max"),
                "AlarmDescription": format!(
                    "capstan: target {} has been at its max capacity for {n} minutes", t.name
                ),
                "Metrics": [
                    stat("cur", "CurrentCapacity", "Minimum"),
                    stat("max", "MaxCapacity", "Maximum"),
                    { "Id": "pinned", "Expression": "cur - max", "Label": "current - max", "ReturnData": true },
                ],
                "ComparisonOperator": "GreaterThanOrEqualToThreshold",
                "Threshold": 0,
                "EvaluationPeriods": n,
                "DatapointsToAlarm": n,
                "TreatMissingData": "notBreaching",
        }),
        merge(
            simple("MissingMetrics", "Minimum"),
            json!({
                "AlarmName": name("metrics-missing"),
                "AlarmDescription": format!(
                    "capstan: a metric of target {} has been missing for 5 minutes", t.name
                ),
                "ComparisonOperator": "GreaterThanOrEqualToThreshold",
                "Threshold": 1,
                "EvaluationPeriods": 5,
                "DatapointsToAlarm": 5,
                "TreatMissingData": "notBreaching",
            }),
        ),
        merge(
            simple("CurrentCapacity", "SampleCount"),
            json!({
                "AlarmName": name("no-data"),
                "AlarmDescription": format!(
                    "capstan: no metrics for target {} for 5 minutes (daemon down, no leader, or the target cannot be observed)", t.name
                ),
                "ComparisonOperator": "LessThanThreshold",
                "Threshold": 1,
                "EvaluationPeriods": 5,
                "DatapointsToAlarm": 5,
                "TreatMissingData": "breaching",
            }),
        ),
        merge(
            simple("ActuationFailures", "Sum"),
            json!({
                "AlarmName": name("actuation-failing"),
                "AlarmDescription": format!(
                    "capstan: changing the capacity of target {} failed in 3 of the last 5 minutes", t.name
                ),
                "ComparisonOperator": "GreaterThanOrEqualToThreshold",
                "Threshold": 1,
                "EvaluationPeriods": 5,
                "DatapointsToAlarm": 3,
                "TreatMissingData": "notBreaching",
            }),
        ),
    ];
    let predictive = t
        .policies
        .iter()
        .any(|p| matches!(p.kind, crate::config::PolicyKind::Predictive(_)));
    if predictive {
        out.push(merge(
            simple("ForecastAvailable", "Maximum"),
            json!({
                "AlarmName": name("forecast-missing"),
                "AlarmDescription": format!(
                    "capstan: the predictive policy of target {} has had no forecast for 30 minutes (its decisions say why)", t.name
                ),
                "ComparisonOperator": "LessThanThreshold",
                "Threshold": 1,
                "EvaluationPeriods": 30,
                "DatapointsToAlarm": 30,
                "TreatMissingData": "notBreaching",
            }),
        ));
    }
    if let Some(topic) = &opts.sns_topic {
        for a in &mut out {
            a["AlarmActions"] = json!([topic]);
            a["OKActions"] = json!([topic]);
        }
    }
    out
}

fn merge(mut a: Value, b: Value) -> Value {
    if let (Some(a), Value::Object(b)) = (a.as_object_mut(), b) {
        a.extend(b);
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config;

    #[test]
    fn four_alarms_per_target_on_capstans_metrics_and_one_more_with_a_forecast() {
        let cfg = config::from_str("example.toml", config::EMBEDDED_EXAMPLE).unwrap();
        let opts = AlarmOptions {
            pinned_minutes: 10,
            sns_topic: Some("arn:aws:sns:us-east-1:123456789012:oncall".into()),
        };
        let all = alarms(&cfg, &opts);
        // sales-api alone has a predictive policy.
        assert_eq!(all.len(), 4 * cfg.targets.len() + 1);
        let get = |n: &str| {
            all.iter()
                .find(|a| a["AlarmName"] == n)
                .unwrap_or_else(|| panic!("no alarm {n}"))
        };
        let pinned = get("Capstan-sales-api-pinned-at-max");
        assert_eq!(pinned["EvaluationPeriods"], 10);
        assert_eq!(pinned["DatapointsToAlarm"], 10);
        assert_eq!(pinned["Metrics"][2]["Expression"], "cur - max");
        assert_eq!(
            pinned["Metrics"][0]["MetricStat"]["Metric"]["MetricName"],
            "CurrentCapacity"
        );
        assert_eq!(
            pinned["Metrics"][1]["MetricStat"]["Metric"]["Dimensions"][0]["Value"],
            "sales-api"
        );
        let missing = get("Capstan-order-workers-no-data");
        assert_eq!(missing["TreatMissingData"], "breaching");
        assert_eq!(missing["MetricName"], "CurrentCapacity");
        let failing = get("Capstan-search-asg-actuation-failing");
        assert_eq!(failing["MetricName"], "ActuationFailures");
        assert_eq!(
            failing["AlarmActions"][0],
            opts.sns_topic.as_deref().unwrap()
        );
        assert!(get("Capstan-catalog-db-readers-metrics-missing")["OKActions"].is_array());
        let forecast = get("Capstan-sales-api-forecast-missing");
        assert_eq!(forecast["MetricName"], "ForecastAvailable");
        assert_eq!(forecast["ComparisonOperator"], "LessThanThreshold");
        assert!(!all
            .iter()
            .any(|a| a["AlarmName"] == "Capstan-order-workers-forecast-missing"));
        // Without a topic there are no actions.
        let quiet = alarms(&cfg, &AlarmOptions::default());
        assert!(quiet.iter().all(|a| a.get("AlarmActions").is_none()));
        assert_eq!(quiet[0]["EvaluationPeriods"], 15);
    }

    #[test]
    fn alarm_metrics_are_ones_telemetry_publishes() {
        // The names come from telemetry::points; a renamed metric there must fail here.
        let src = include_str!("../telemetry.rs");
        let cfg = config::from_str("example.toml", config::EMBEDDED_EXAMPLE).unwrap();
        for a in alarms(&cfg, &AlarmOptions::default()) {
            let mut names = vec![a["MetricName"].as_str().map(str::to_string)];
            for m in a["Metrics"].as_array().into_iter().flatten() {
                names.push(
                    m["MetricStat"]["Metric"]["MetricName"]
                        .as_str()
                        .map(str::to_string),
                );
            }
            for n in names.into_iter().flatten() {
                assert!(src.contains(&format!("\"{n}\"")), "{n}");
            }
        }
    }
}
