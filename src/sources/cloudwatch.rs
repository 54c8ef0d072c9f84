//! CloudWatch metrics through `GetMetricData`: every query of a tick in as few calls as
//! possible (up to 500 queries per call, grouped by period and time window), metric-math
//! expressions with their inputs, the newest complete datapoint only, stale data reported
//! as missing. Planning and parsing are pure functions; only [`CloudWatchSource`] calls AWS.

use std::collections::{BTreeMap, HashMap};

use aws_sdk_cloudwatch::primitives::DateTime as AwsTime;
use aws_sdk_cloudwatch::types::{Dimension, Metric as CwMetric, MetricDataQuery, MetricStat};
use chrono::{DateTime, TimeZone, Utc};

use super::{MetricRequest, Reading, Source};
use crate::aws::AwsError;
use crate::config::validate::expression_inputs;
use crate::config::{MetricSource, Target};
use crate::policy::Sample;

/// Datapoints of one query: (period start, value).
pub type Points = Vec<(DateTime<Utc>, f64)>;

/// A call's time window and period.
type WindowKey = (DateTime<Utc>, DateTime<Utc>, u64);

/// CloudWatch's limit of queries per `GetMetricData` call.
pub const MAX_QUERIES_PER_CALL: usize = 500;

/// One query of a planned call.
#[derive(Clone, Debug, PartialEq)]
pub struct PlannedQuery {
    pub id: String,
    pub kind: QueryKind,
    /// Whether CloudWatch returns its values (expression inputs are hidden).
    pub return_data: bool,
    /// The request this query answers, by index into the requests of the tick.
    pub answers: Option<usize>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum QueryKind {
    Stat {
        namespace: String,
        metric_name: String,
        dimensions: BTreeMap<String, String>,
        statistic: String,
        period_secs: u64,
    },
    Expression {
        expression: String,
        period_secs: u64,
    },
}

/// One `GetMetricData` call: a time window and up to 500 queries.
#[derive(Clone, Debug, PartialEq)]
pub struct PlannedCall {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub period_secs: u64,
    /// Datapoints ending longer ago than this count as stale.
    pub queries: Vec<PlannedQuery>,
}

/// Start of the period that contains `t` (CloudWatch aligns buckets to the period).
pub fn floor_to(t: DateTime<Utc>, period_secs: u64) -> DateTime<Utc> {
    let p = period_secs.max(1) as i64;
    let s = t.timestamp().div_euclid(p) * p;
    Utc.timestamp_opt(s, 0).single().unwrap_or(t)
}

/// Period, staleness and end offset of a CloudWatch-backed metric.
fn timing(src: &MetricSource) -> Option<(u64, u64, u64)> {
    match src {
        MetricSource::Cloudwatch {
            period_secs,
            stale_after_secs,
            end_offset_secs,
            ..
        }
        | MetricSource::Expression {
            period_secs,
            stale_after_secs,
            end_offset_secs,
            ..
        } => Some((*period_secs, *stale_after_secs, *end_offset_secs)),
        MetricSource::Sqs { .. } => None,
    }
}

/// The clock a metric is read at: `now`, less its end offset.
fn read_time(now: DateTime<Utc>, offset_secs: u64) -> DateTime<Utc> {
    now - chrono::Duration::seconds(offset_secs as i64)
}

/// The window of a query: ending at the start of the still-filling bucket (so only
/// complete datapoints come back) and reaching back far enough to tell stale from fresh.
pub fn window(
    now: DateTime<Utc>,
    period_secs: u64,
    stale_after_secs: u64,
) -> (DateTime<Utc>, DateTime<Utc>) {
    let end = floor_to(now, period_secs);
    let start = floor_to(
        end - chrono::Duration::seconds((stale_after_secs + period_secs) as i64),
        period_secs,
    );
    (start, end)
}

/// Rewrites the metric names in an expression to the query ids of this call.
pub fn rewrite_expression(expr: &str, ids: &HashMap<String, String>) -> String {
    let mut out = String::with_capacity(expr.len());
    let mut chars = expr.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if c == '"' || c == '\'' {
            out.push(c);
            for (_, d) in chars.by_ref() {
                out.push(d);
                if d == c {
                    break;
                }
            }
        } else if c.is_ascii_alphabetic() || c == '_' {
            let mut end = i + c.len_utf8();
            while let Some(&(j, d)) = chars.peek() {
                if d.is_ascii_alphanumeric() || d == '_' {
                    end = j + d.len_utf8();
                    chars.next();
                } else {
                    break;
                }
            }
            let ident = &expr[i..end];
            out.push_str(ids.get(ident).map(String::as_str).unwrap_or(ident));
        } else if c.is_ascii_digit() || c == '.' {
            out.push(c);
            while let Some(&(_, d)) = chars.peek() {
                if d.is_ascii_alphanumeric() || d == '.' {
                    out.push(d);
                    chars.next();
                } else {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The queries one request needs: its own, plus hidden inputs for an expression
/// (recursively), with ids local to the unit (prefixed later).
fn unit_for(
    target: &Target,
    metric: &str,
    period: u64,
    answers: Option<usize>,
    out: &mut Vec<PlannedQuery>,
    ids: &mut HashMap<String, String>,
    depth: u32,
) -> Option<String> {
    if let Some(id) = ids.get(metric) {
        return Some(id.clone());
    }
    if depth > 8 {
        return None;
    }
    let m = target.metric(metric)?;
    let id_for = |n: usize| format!("u{n}");
    match &m.source {
        MetricSource::Cloudwatch {
            namespace,
            metric_name,
            dimensions,
            statistic,
            ..
        } => {
            let id = id_for(out.len());
            out.push(PlannedQuery {
                id: id.clone(),
                kind: QueryKind::Stat {
                    namespace: namespace.clone(),
                    metric_name: metric_name.clone(),
                    dimensions: dimensions.clone(),
                    statistic: statistic.clone(),
                    period_secs: period,
                },
                return_data: answers.is_some(),
                answers,
            });
            ids.insert(metric.to_string(), id.clone());
            Some(id)
        }
        MetricSource::Expression { expression, .. } => {
            let mut local = HashMap::new();
            for input in expression_inputs(expression) {
                let id = unit_for(target, &input, period, None, out, ids, depth + 1)?;
                local.insert(input, id);
            }
            let id = id_for(out.len());
            out.push(PlannedQuery {
                id: id.clone(),
                kind: QueryKind::Expression {
                    expression: rewrite_expression(expression, &local),
                    period_secs: period,
                },
                return_data: answers.is_some(),
                answers,
            });
            ids.insert(metric.to_string(), id.clone());
            Some(id)
        }
        MetricSource::Sqs { .. } => None,
    }
}

/// Plans the calls for all CloudWatch requests of a tick: grouped by window, packed into
/// calls of at most [`MAX_QUERIES_PER_CALL`] queries, an expression always in the same
/// call as its inputs. Returns the calls and the requests that cannot be planned.
pub fn plan(
    requests: &[MetricRequest<'_>],
    now: DateTime<Utc>,
) -> (Vec<PlannedCall>, Vec<(usize, String)>) {
    let mut groups: BTreeMap<WindowKey, Vec<Vec<PlannedQuery>>> = BTreeMap::new();
    let mut unplannable = Vec::new();
    for (i, r) in requests.iter().enumerate() {
        let Some((period, stale, offset)) = timing(&r.metric.source) else {
            continue;
        };
        let (start, end) = window(read_time(now, offset), period, stale);
        let mut unit = Vec::new();
        let mut ids = HashMap::new();
        if unit_for(
            r.target,
            &r.metric.name,
            period,
            Some(i),
            &mut unit,
            &mut ids,
            0,
        )
        .is_none()
        {
            unplannable.push((
                i,
                "the expression reads a metric that cannot be queried".to_string(),
            ));
            continue;
        }
        groups.entry((start, end, period)).or_default().push(unit);
    }
    let mut calls = Vec::new();
    for ((start, end, period), units) in groups {
        let mut call = PlannedCall {
            start,
            end,
            period_secs: period,
            queries: Vec::new(),
        };
        for unit in units {
            if unit.len() > MAX_QUERIES_PER_CALL {
                if let Some(i) = unit.iter().find_map(|q| q.answers) {
                    unplannable.push((
                        i,
                        format!(
                            "the expression needs {} queries, more than one call allows",
                            unit.len()
                        ),
                    ));
                }
                continue;
            }
            if call.queries.len() + unit.len() > MAX_QUERIES_PER_CALL {
                calls.push(std::mem::replace(
                    &mut call,
                    PlannedCall {
                        start,
                        end,
                        period_secs: period,
                        queries: Vec::new(),
                    },
                ));
            }
            // Make the unit's ids unique within the call.
            let base = call.queries.len();
            let renames: HashMap<String, String> = unit
                .iter()
                .enumerate()
                .map(|(k, q)| (q.id.clone(), format!("q{}", base + k)))
                .collect();
            for mut q in unit {
                q.id = renames[&q.id].clone();
                if let QueryKind::Expression { expression, .. } = &mut q.kind {
                    *expression = rewrite_expression(expression, &renames);
                }
                call.queries.push(q);
            }
        }
        if !call.queries.is_empty() {
            calls.push(call);
        }
    }
    (calls, unplannable)
}

/// The newest datapoint, if it is complete and fresh enough.
///
/// `points` are (period start, value). A datapoint covers `[t, t + period)`; it is complete
/// when `t + period <= now`, and stale when it ended more than `stale_after` before `now`.
pub fn newest_fresh(
    points: &[(DateTime<Utc>, f64)],
    period_secs: u64,
    stale_after_secs: u64,
    now: DateTime<Utc>,
) -> Result<(DateTime<Utc>, f64), String> {
    let period = chrono::Duration::seconds(period_secs as i64);
    let newest = points
        .iter()
        .filter(|(t, _)| *t + period <= now)
        .max_by_key(|(t, _)| *t);
    let Some((t, v)) = newest else {
        return Err(format!(
            "no complete datapoint in the last {}s",
            stale_after_secs + period_secs
        ));
    };
    let age = ended_secs_ago(*t, period_secs, now);
    if age > stale_after_secs as i64 {
        return Err(format!(
            "stale: newest datapoint ended {age}s ago (stale_after {stale_after_secs}s)"
        ));
    }
    Ok((*t, *v))
}

/// Whether a datapoint of period start `at` is still fresh at `now` for this metric, by the
/// rule [`newest_fresh`] applies when it is read (the same `ended_secs_ago`): it ended at
/// most `stale_after` before `now` less the end offset. `None` for a source without staleness (SQS).
pub fn still_fresh(src: &MetricSource, at: DateTime<Utc>, now: DateTime<Utc>) -> Option<bool> {
    let (period, stale, offset) = timing(src)?;
    Some(ended_secs_ago(at, period, read_time(now, offset)) <= stale as i64)
}

/// Seconds from the end of the datapoint of period start `at` to `now`: the age both
/// staleness checks compare with `stale_after`.
fn ended_secs_ago(at: DateTime<Utc>, period_secs: u64, now: DateTime<Utc>) -> i64 {
    (now - (at + chrono::Duration::seconds(period_secs as i64))).num_seconds()
}

/// One `GetMetricData` call as capstan makes it: a planned call in, the points of every
/// query by id out (all pages). [`CloudWatchSource`] sends it to AWS; the replay's simulated
/// cloud answers it from its model of the service, so both run the same planning, metric
/// math wiring and datapoint choice ([`read_with`], [`history_with`]).
pub trait MetricData: Send + Sync {
    fn get_metric_data(
        &self,
        call: &PlannedCall,
    ) -> impl std::future::Future<Output = Result<HashMap<String, Points>, AwsError>> + Send;
}

/// Reads CloudWatch metrics for capstan.
#[derive(Clone, Debug)]
pub struct CloudWatchSource {
    client: aws_sdk_cloudwatch::Client,
}

impl CloudWatchSource {
    pub fn new(sdk: &aws_config::SdkConfig) -> Self {
        CloudWatchSource {
            client: crate::aws_client!(aws_sdk_cloudwatch, sdk),
        }
    }

    /// A metric's history for the forecaster (see [`history_with`]).
    pub async fn history(
        &self,
        target: &Target,
        metric: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        step_secs: u64,
    ) -> Result<Vec<(DateTime<Utc>, f64)>, AwsError> {
        history_with(self, target, metric, from, to, step_secs).await
    }
}

impl MetricData for CloudWatchSource {
    /// Runs one planned call (all pages) and returns the points per query id.
    async fn get_metric_data(
        &self,
        call: &PlannedCall,
    ) -> Result<HashMap<String, Points>, AwsError> {
        let queries: Vec<MetricDataQuery> = call.queries.iter().map(to_sdk_query).collect();
        let mut out: HashMap<String, Points> = HashMap::new();
        let mut token: Option<String> = None;
        loop {
            crate::ratelimit::acquire("GetMetricData").await;
            let resp = self
                .client
                .get_metric_data()
                .start_time(AwsTime::from_secs(call.start.timestamp()))
                .end_time(AwsTime::from_secs(call.end.timestamp()))
                .set_metric_data_queries(Some(queries.clone()))
                .set_next_token(token.clone())
                .send()
                .await
                .map_err(|e| {
                    crate::aws_error!(
                        aws_sdk_cloudwatch,
                        e,
                        "cloudwatch",
                        "GetMetricData",
                        format!("{} queries", queries.len())
                    )
                })?;
            for r in resp.metric_data_results() {
                let Some(id) = r.id() else { continue };
                let entry = out.entry(id.to_string()).or_default();
                for (t, v) in r.timestamps().iter().zip(r.values()) {
                    if let Some(t) = Utc.timestamp_opt(t.secs(), 0).single() {
                        entry.push((t, *v));
                    }
                }
            }
            token = resp.next_token().map(str::to_string);
            if token.is_none() {
                break;
            }
        }
        Ok(out)
    }
}

/// A metric's history for the forecaster, in the units the policy means, averaged into
/// steps of `step_secs`: `(step start, value)` from `from` to `to`, all pages, sorted.
/// Each input is read at the metric's own period and statistic and the expression is
/// evaluated on those values before they are averaged (see [`super::history`]); an SQS
/// metric is read as the queue's arrivals per second.
pub async fn history_with(
    api: &impl MetricData,
    target: &Target,
    metric: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    step_secs: u64,
) -> Result<Vec<(DateTime<Utc>, f64)>, AwsError> {
    let invalid = |why: String| {
        AwsError::new(
            crate::aws::ErrorClass::Invalid,
            "cloudwatch",
            "GetMetricData",
            metric,
            why,
        )
    };
    let plan = match super::history::plan(&target.metrics, metric) {
        Ok(p) => p,
        // Metric-math functions: CloudWatch evaluates the expression itself, at the
        // metric's own period.
        Err(super::history::PlanError::Functions(_)) => {
            let period = timing(
                &target
                    .metric(metric)
                    .ok_or_else(|| invalid("not a metric of the target".into()))?
                    .source,
            )
            .map_or(step_secs, |(p, _, _)| p);
            let mut unit = Vec::new();
            let mut ids = HashMap::new();
            if unit_for(target, metric, period, Some(0), &mut unit, &mut ids, 0).is_none() {
                return Err(invalid("not a CloudWatch metric".into()));
            }
            let call = PlannedCall {
                start: floor_to(from, period),
                end: floor_to(to, period),
                period_secs: period,
                queries: unit,
            };
            let answer = call
                .queries
                .iter()
                .find(|q| q.answers.is_some())
                .map(|q| q.id.clone())
                .unwrap_or_default();
            let points = api
                .get_metric_data(&call)
                .await?
                .remove(&answer)
                .unwrap_or_default();
            return Ok(super::history::to_step(&points, step_secs));
        }
        Err(e) => return Err(invalid(e.to_string())),
    };
    let period = plan.period_secs;
    let call = PlannedCall {
        start: floor_to(from, period),
        end: floor_to(to, period),
        period_secs: period,
        queries: plan
            .leaves
            .iter()
            .enumerate()
            .map(|(i, l)| PlannedQuery {
                id: format!("h{i}"),
                kind: QueryKind::Stat {
                    namespace: l.namespace.clone(),
                    metric_name: l.metric_name.clone(),
                    dimensions: l.dimensions.clone(),
                    statistic: l.statistic.clone(),
                    period_secs: l.period_secs,
                },
                return_data: true,
                answers: Some(i),
            })
            .collect(),
    };
    let mut got = api.get_metric_data(&call).await?;
    let series: Vec<Points> = (0..plan.leaves.len())
        .map(|i| got.remove(&format!("h{i}")).unwrap_or_default())
        .collect();
    Ok(plan.finish(&series, step_secs))
}

/// Reads the CloudWatch requests of a tick through `api`: planned into as few calls as
/// possible, the calls sent together, each answer's newest complete fresh datapoint.
pub async fn read_with(
    api: &impl MetricData,
    requests: &[MetricRequest<'_>],
    now: DateTime<Utc>,
) -> Vec<Reading> {
    let (calls, unplannable) = plan(requests, now);
    let mut readings: Vec<Reading> = unplannable
        .iter()
        .map(|(i, why)| Reading::missing(&requests[*i], why.clone()))
        .collect();
    // The calls of a tick go out together.
    let results = crate::util::join_all(calls.iter().map(|c| api.get_metric_data(c))).await;
    for (call, result) in calls.iter().zip(results) {
        for q in call.queries.iter().filter(|q| q.answers.is_some()) {
            let i = q.answers.unwrap_or_default();
            let req = &requests[i];
            let Some((period, stale, offset)) = timing(&req.metric.source) else {
                continue;
            };
            let reading = match &result {
                Err(e) => Reading::missing(req, e.to_string()),
                Ok(points) => match points.get(&q.id) {
                    None => Reading::missing(req, "CloudWatch returned no result for the query"),
                    Some(pts) => match newest_fresh(pts, period, stale, read_time(now, offset)) {
                        Ok((t, v)) => Reading::ok(req, Sample::Value(v), t),
                        Err(why) => Reading::missing(req, why),
                    },
                },
            };
            readings.push(reading);
        }
    }
    readings
}

fn to_sdk_query(q: &PlannedQuery) -> MetricDataQuery {
    let b = MetricDataQuery::builder()
        .id(&q.id)
        .return_data(q.return_data);
    match &q.kind {
        QueryKind::Stat {
            namespace,
            metric_name,
            dimensions,
            statistic,
            period_secs,
        } => {
            let mut m = CwMetric::builder()
                .namespace(namespace)
                .metric_name(metric_name);
            for (k, v) in dimensions {
                m = m.dimensions(Dimension::builder().name(k).value(v).build());
            }
            b.metric_stat(
                MetricStat::builder()
                    .metric(m.build())
                    .period(*period_secs as i32)
                    .stat(statistic)
                    .build(),
            )
            .build()
        }
        QueryKind::Expression {
            expression,
            period_secs,
        } => b.expression(expression).period(*period_secs as i32).build(),
    }
}

impl Source for CloudWatchSource {
    async fn read(&self, requests: &[MetricRequest<'_>], now: DateTime<Utc>) -> Vec<Reading> {
        read_with(self, requests, now).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config;

    fn cfg(text: &str) -> crate::config::Config {
        config::from_str("t.toml", text).unwrap_or_else(|d| panic!("{}", d[0]))
    }

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    const TWO: &str = r#"
[[target]]
name = "api"
kind = "ecs_service"
cluster = "shop"
service = "api"
alb_target_group = "arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/api/abc"
min = 1
max = 10
[[target.metric]]
name = "cpu"
source = "ecs_cpu"
[[target.metric]]
name = "rpt"
source = "alb_requests_per_target"
[[target.metric]]
name = "per_cpu"
source = "expression"
expression = "rpt / cpu"
[[target.metric]]
name = "fast"
source = "cloudwatch"
namespace = "Shop"
metric_name = "Latency"
period = "10s"
[[target.policy]]
type = "target_tracking"
metric = "cpu"
target_value = 70
"#;

    #[test]
    fn plans_one_call_per_window_with_expression_inputs_hidden() {
        let c = cfg(TWO);
        let targets: Vec<&Target> = c.targets.iter().collect();
        let reqs = MetricRequest::all(&targets);
        let now = t("2026-11-27T10:00:37Z");
        let (calls, bad) = plan(&reqs, now);
        assert!(bad.is_empty());
        // 60 s metrics share one call; the 10 s metric has its own window.
        assert_eq!(calls.len(), 2);
        let main = calls.iter().find(|c| c.period_secs == 60).unwrap();
        assert_eq!(
            main.end,
            t("2026-11-27T10:00:00Z"),
            "the filling bucket is excluded"
        );
        assert_eq!(
            main.start,
            t("2026-11-27T09:56:00Z"),
            "3 periods of staleness + 1"
        );
        // cpu, rpt, and the expression with its two hidden inputs.
        assert_eq!(main.queries.len(), 5);
        let expr = main
            .queries
            .iter()
            .find(|q| matches!(q.kind, QueryKind::Expression { .. }))
            .unwrap();
        let QueryKind::Expression { expression, .. } = &expr.kind else {
            unreachable!()
        };
        assert_eq!(expression, "q2 / q3");
        assert!(expr.return_data);
        let hidden: Vec<&PlannedQuery> = main.queries.iter().filter(|q| !q.return_data).collect();
        assert_eq!(hidden.len(), 2);
        let ids: std::collections::HashSet<&str> =
            main.queries.iter().map(|q| q.id.as_str()).collect();
        assert_eq!(ids.len(), 5, "ids unique within the call");
        let fast = calls.iter().find(|c| c.period_secs == 10).unwrap();
        assert_eq!(fast.end, t("2026-11-27T10:00:30Z"));
    }

    #[test]
    fn an_end_offset_leaves_the_newest_periods_out() {
        let c = cfg(&TWO.replace(
            "source = \"alb_requests_per_target\"",
            "source = \"alb_requests_per_target\"\nend_offset = \"1m\"",
        ));
        let targets: Vec<&Target> = c.targets.iter().collect();
        let reqs = MetricRequest::all(&targets);
        let (calls, _) = plan(&reqs, t("2026-11-27T10:00:37Z"));
        let late = calls.iter().find(|c| c.queries.iter().any(|q| matches!(&q.kind, QueryKind::Stat { metric_name, .. } if metric_name == "RequestCountPerTarget") && q.answers.is_some())).unwrap();
        assert_eq!(late.end, t("2026-11-27T09:59:00Z"));
        // The datapoint of 09:59 ended at 10:00, less than a minute before 10:00:37: not yet.
        let pts = vec![
            (t("2026-11-27T09:58:00Z"), 900.0),
            (t("2026-11-27T09:59:00Z"), 100.0),
        ];
        assert_eq!(
            newest_fresh(&pts, 60, 180, read_time(t("2026-11-27T10:00:37Z"), 60))
                .unwrap()
                .1,
            900.0
        );
    }

    #[test]
    fn packs_at_most_500_queries_per_call() {
        let mut text = String::new();
        for i in 0..1200 {
            text.push_str(&format!(
                "[[target]]\nname = \"s{i}\"\nkind = \"ecs_service\"\ncluster = \"c\"\nservice = \"s{i}\"\nmin = 1\nmax = 2\n[[target.metric]]\nname = \"cpu\"\nsource = \"ecs_cpu\"\n[[target.policy]]\ntype = \"target_tracking\"\nmetric = \"cpu\"\ntarget_value = 50\n"
            ));
        }
        let c = cfg(&text);
        let targets: Vec<&Target> = c.targets.iter().collect();
        let reqs = MetricRequest::all(&targets);
        let (calls, _) = plan(&reqs, t("2026-11-27T10:00:00Z"));
        assert_eq!(
            calls.iter().map(|c| c.queries.len()).collect::<Vec<_>>(),
            vec![500, 500, 200]
        );
        let answered: usize = calls
            .iter()
            .flat_map(|c| &c.queries)
            .filter(|q| q.answers.is_some())
            .count();
        assert_eq!(answered, 1200);
    }

    #[test]
    fn rewrites_only_metric_names() {
        let ids: HashMap<String, String> = [
            ("rpt".to_string(), "q1".to_string()),
            ("cpu".to_string(), "q0".to_string()),
        ]
        .into();
        assert_eq!(
            rewrite_expression("FILL(rpt, 0) / cpu * 1e3", &ids),
            "FILL(q1, 0) / q0 * 1e3"
        );
        assert_eq!(
            rewrite_expression("SEARCH('cpu', 'Average', 60)", &ids),
            "SEARCH('cpu', 'Average', 60)"
        );
        assert_eq!(rewrite_expression("rpt2 + cpu", &ids), "rpt2 + q0");
    }

    #[test]
    fn newest_complete_fresh_datapoint_wins() {
        let now = t("2026-11-27T10:00:37Z");
        let pts = vec![
            (t("2026-11-27T09:58:00Z"), 40.0),
            (t("2026-11-27T09:59:00Z"), 55.0),
            (t("2026-11-27T09:57:00Z"), 10.0),
        ];
        assert_eq!(
            newest_fresh(&pts, 60, 180, now),
            Ok((t("2026-11-27T09:59:00Z"), 55.0))
        );
        // The still-filling bucket is ignored even if returned.
        let mut with_partial = pts.clone();
        with_partial.push((t("2026-11-27T10:00:00Z"), 1.0));
        assert_eq!(newest_fresh(&with_partial, 60, 180, now).unwrap().1, 55.0);
        // Stale: the newest point ended 4m37s ago, more than 3 minutes.
        let old = vec![(t("2026-11-27T09:55:00Z"), 40.0)];
        assert!(newest_fresh(&old, 60, 180, now)
            .unwrap_err()
            .starts_with("stale"));
        assert!(newest_fresh(&[], 60, 180, now)
            .unwrap_err()
            .starts_with("no complete datapoint"));
    }
}
