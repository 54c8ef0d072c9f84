//! Operating capstan: its dashboard, alarms, IAM policy, CloudFormation template and the
//! container health check. The generators are pure functions of the validated
//! [`Config`](crate::config::Config) (tested alone); `apply_*` write the result with the AWS
//! SDK (`PutDashboard`, `PutMetricAlarm`).

pub mod alarms;
pub mod cloudformation;
pub mod dashboard;
pub mod healthcheck;
pub mod iam;

use aws_sdk_cloudwatch::types::{
    ComparisonOperator, Dimension, Metric, MetricDataQuery, MetricStat, Statistic,
};
use serde_json::Value;

use crate::aws::AwsError;
use crate::aws_error;

/// Writes a dashboard; returns CloudWatch's validation messages (empty when all is well).
pub async fn apply_dashboard(
    client: &aws_sdk_cloudwatch::Client,
    name: &str,
    body: &Value,
) -> Result<Vec<String>, AwsError> {
    let out = client
        .put_dashboard()
        .dashboard_name(name)
        .dashboard_body(body.to_string())
        .send()
        .await
        .map_err(|e| aws_error!(aws_sdk_cloudwatch, e, "cloudwatch", "PutDashboard", name))?;
    Ok(out
        .dashboard_validation_messages()
        .iter()
        .map(|m| {
            format!(
                "{}: {}",
                m.data_path().unwrap_or("body"),
                m.message().unwrap_or("")
            )
        })
        .collect())
}

fn s<'a>(v: &'a Value, k: &str) -> Option<&'a str> {
    v.get(k).and_then(Value::as_str)
}

fn i(v: &Value, k: &str) -> Option<i32> {
    v.get(k).and_then(Value::as_i64).map(|n| n as i32)
}

fn dims(v: &Value) -> Option<Vec<Dimension>> {
    v.get("Dimensions").and_then(Value::as_array).map(|a| {
        a.iter()
            .map(|d| {
                Dimension::builder()
                    .name(s(d, "Name").unwrap_or_default())
                    .value(s(d, "Value").unwrap_or_default())
                    .build()
            })
            .collect()
    })
}

fn strings(v: &Value, k: &str) -> Option<Vec<String>> {
    v.get(k).and_then(Value::as_array).map(|a| {
        a.iter()
            .filter_map(|x| x.as_str().map(str::to_string))
            .collect()
    })
}

/// Writes one alarm as [`alarms::alarms`] describes it.
pub async fn apply_alarm(
    client: &aws_sdk_cloudwatch::Client,
    alarm: &Value,
) -> Result<(), AwsError> {
    let name = s(alarm, "AlarmName").unwrap_or_default();
    let mut req = client
        .put_metric_alarm()
        .alarm_name(name)
        .set_alarm_description(s(alarm, "AlarmDescription").map(str::to_string))
        .comparison_operator(ComparisonOperator::from(
            s(alarm, "ComparisonOperator").unwrap_or_default(),
        ))
        .set_threshold(alarm.get("Threshold").and_then(Value::as_f64))
        .set_evaluation_periods(i(alarm, "EvaluationPeriods"))
        .set_datapoints_to_alarm(i(alarm, "DatapointsToAlarm"))
        .set_treat_missing_data(s(alarm, "TreatMissingData").map(str::to_string))
        .set_alarm_actions(strings(alarm, "AlarmActions"))
        .set_ok_actions(strings(alarm, "OKActions"));
    if let Some(metrics) = alarm.get("Metrics").and_then(Value::as_array) {
        for m in metrics {
            let mut q = MetricDataQuery::builder()
                .id(s(m, "Id").unwrap_or_default())
                .set_expression(s(m, "Expression").map(str::to_string))
                .set_label(s(m, "Label").map(str::to_string))
                .set_return_data(m.get("ReturnData").and_then(Value::as_bool));
            if let Some(ms) = m.get("MetricStat") {
                let metric = &ms["Metric"];
                q = q.metric_stat(
                    MetricStat::builder()
                        .metric(
                            Metric::builder()
                                .set_namespace(s(metric, "Namespace").map(str::to_string))
                                .set_metric_name(s(metric, "MetricName").map(str::to_string))
                                .set_dimensions(dims(metric))
                                .build(),
                        )
                        .set_period(i(ms, "Period"))
                        .set_stat(s(ms, "Stat").map(str::to_string))
                        .build(),
                );
            }
            req = req.metrics(q.build());
        }
    } else {
        req = req
            .set_namespace(s(alarm, "Namespace").map(str::to_string))
            .set_metric_name(s(alarm, "MetricName").map(str::to_string))
            .set_dimensions(dims(alarm))
            .set_statistic(s(alarm, "Statistic").map(Statistic::from))
            .set_period(i(alarm, "Period"));
    }
    req.send()
        .await
        .map_err(|e| aws_error!(aws_sdk_cloudwatch, e, "cloudwatch", "PutMetricAlarm", name))?;
    Ok(())
}
