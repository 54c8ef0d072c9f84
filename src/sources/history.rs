//! A metric's past for the forecaster, in the units the policy means. Each input is read
//! at the metric's own period and statistic (as the live reading is), the metric-math
//! expression is evaluated on those values, and only then are the values averaged into
//! the forecaster's step. So a per-minute `Sum` of requests divided by 60 is a per-second
//! rate at every minute, and a 5-minute forecaster point is the mean of five of them, not
//! a 5-minute total divided by 60.
//!
//! An SQS metric (`GetQueueAttributes` has no past) is forecast from the queue's arrivals:
//! AWS/SQS `NumberOfMessagesSent`, `Sum` per minute, divided by 60 (messages/s).
//!
//! Everything here is pure: the readers ([`super::cloudwatch::CloudWatchSource`], the fake)
//! fetch the [`Leaf`] series of a [`HistoryPlan`] and hand them to [`HistoryPlan::finish`].

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};

use super::cloudwatch::{floor_to, Points};
use crate::config::{Metric, MetricSource};

/// Period of the SQS arrivals metric read for a forecast.
pub const SQS_ARRIVALS_PERIOD_SECS: u64 = 60;

/// One CloudWatch statistic read for a history.
#[derive(Clone, Debug, PartialEq)]
pub struct Leaf {
    /// The config metric it stands for (for an SQS metric, that metric's own name).
    pub name: String,
    pub namespace: String,
    pub metric_name: String,
    pub dimensions: BTreeMap<String, String>,
    pub statistic: String,
    pub period_secs: u64,
}

/// Arithmetic over the leaves' values at one period.
#[derive(Clone, Debug, PartialEq)]
pub enum Expr {
    Num(f64),
    Leaf(usize),
    Neg(Box<Expr>),
    Bin(char, Box<Expr>, Box<Expr>),
}

impl Expr {
    /// The value at one period, from the leaves' values there.
    pub fn eval(&self, v: &[f64]) -> f64 {
        match self {
            Expr::Num(n) => *n,
            Expr::Leaf(i) => v[*i],
            Expr::Neg(e) => -e.eval(v),
            Expr::Bin(op, a, b) => {
                let (a, b) = (a.eval(v), b.eval(v));
                match op {
                    '+' => a + b,
                    '-' => a - b,
                    '*' => a * b,
                    _ => a / b,
                }
            }
        }
    }
}

/// How to read a metric's history.
#[derive(Clone, Debug, PartialEq)]
pub struct HistoryPlan {
    /// The statistics to read, each at `period_secs`.
    pub leaves: Vec<Leaf>,
    /// The policy's value from the leaves' values at one period; `None`: the one leaf as is.
    pub expr: Option<Expr>,
    pub period_secs: u64,
}

/// Why a metric's history cannot be planned here.
#[derive(Clone, Debug, PartialEq)]
pub enum PlanError {
    /// An expression with metric-math functions: only CloudWatch can evaluate it.
    Functions(String),
    /// Not readable at all (unknown metric, a cycle, an expression reading an SQS metric).
    Invalid(String),
}

impl std::fmt::Display for PlanError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PlanError::Functions(s) | PlanError::Invalid(s) => f.write_str(s),
        }
    }
}

/// A CloudWatch statistic over the datapoints of one bucket.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Statistic {
    Sum,
    Average,
    Maximum,
    Minimum,
    SampleCount,
    /// A percentile, nearest rank.
    Percentile(f64),
}

impl Statistic {
    pub fn parse(s: &str) -> Result<Statistic, String> {
        Ok(match s {
            "Sum" => Statistic::Sum,
            "Average" => Statistic::Average,
            "Maximum" => Statistic::Maximum,
            "Minimum" => Statistic::Minimum,
            "SampleCount" => Statistic::SampleCount,
            p if p.starts_with('p') => match p[1..].parse::<f64>() {
                Ok(q) if (0.0..=100.0).contains(&q) => Statistic::Percentile(q),
                _ => return Err(format!("statistic `{s}` is not modeled")),
            },
            _ => return Err(format!("statistic `{s}` is not modeled")),
        })
    }

    /// The statistic of `xs` (never empty).
    pub fn of(self, xs: &[f64]) -> f64 {
        let n = xs.len() as f64;
        match self {
            Statistic::Sum => xs.iter().sum(),
            Statistic::Average => xs.iter().sum::<f64>() / n,
            Statistic::Maximum => xs.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            Statistic::Minimum => xs.iter().copied().fold(f64::INFINITY, f64::min),
            Statistic::SampleCount => n,
            Statistic::Percentile(q) => {
                let mut s = xs.to_vec();
                s.sort_by(f64::total_cmp);
                let rank = ((q / 100.0 * n).ceil() as usize).clamp(1, s.len());
                s[rank - 1]
            }
        }
    }
}

/// The queue name of an SQS queue given by name or URL.
pub fn queue_name(queue: &str) -> &str {
    queue
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or(queue)
}

/// Plans the history of `metric` among a target's `metrics`.
pub fn plan(metrics: &[Metric], metric: &str) -> Result<HistoryPlan, PlanError> {
    let m = find(metrics, metric)?;
    match &m.source {
        MetricSource::Cloudwatch { period_secs, .. } => {
            let mut leaves = Vec::new();
            leaf_of(m, *period_secs, &mut leaves);
            Ok(HistoryPlan {
                leaves,
                expr: None,
                period_secs: *period_secs,
            })
        }
        MetricSource::Sqs { queue, .. } => Ok(HistoryPlan {
            leaves: vec![Leaf {
                name: m.name.to_string(),
                namespace: "AWS/SQS".into(),
                metric_name: "NumberOfMessagesSent".into(),
                dimensions: [("QueueName".to_string(), queue_name(queue).to_string())].into(),
                statistic: "Sum".into(),
                period_secs: SQS_ARRIVALS_PERIOD_SECS,
            }],
            expr: Some(Expr::Bin(
                '/',
                Box::new(Expr::Leaf(0)),
                Box::new(Expr::Num(SQS_ARRIVALS_PERIOD_SECS as f64)),
            )),
            period_secs: SQS_ARRIVALS_PERIOD_SECS,
        }),
        MetricSource::Expression { period_secs, .. } => {
            let mut leaves = Vec::new();
            let expr = expr_of(metrics, m, *period_secs, &mut leaves, 0)?;
            Ok(HistoryPlan {
                leaves,
                expr: Some(expr),
                period_secs: *period_secs,
            })
        }
    }
}

fn find<'a>(metrics: &'a [Metric], name: &str) -> Result<&'a Metric, PlanError> {
    metrics
        .iter()
        .find(|m| *m.name == *name)
        .ok_or_else(|| PlanError::Invalid(format!("`{name}` is not a metric of this target")))
}

fn leaf_of(m: &Metric, period: u64, leaves: &mut Vec<Leaf>) -> usize {
    if let Some(i) = leaves.iter().position(|l| *l.name == *m.name) {
        return i;
    }
    if let MetricSource::Cloudwatch {
        namespace,
        metric_name,
        dimensions,
        statistic,
        ..
    } = &m.source
    {
        leaves.push(Leaf {
            name: m.name.to_string(),
            namespace: namespace.clone(),
            metric_name: metric_name.clone(),
            dimensions: dimensions.clone(),
            statistic: statistic.clone(),
            period_secs: period,
        });
    }
    leaves.len() - 1
}

/// The expression of `m` over leaves, nested expressions inlined; inputs read at `period`
/// (metric math evaluates all its inputs at the expression's period).
fn expr_of(
    metrics: &[Metric],
    m: &Metric,
    period: u64,
    leaves: &mut Vec<Leaf>,
    depth: u32,
) -> Result<Expr, PlanError> {
    let MetricSource::Expression { expression, .. } = &m.source else {
        return Err(PlanError::Invalid(format!(
            "`{}` is not an expression",
            m.name
        )));
    };
    if depth > 8 {
        return Err(PlanError::Invalid(format!(
            "`{}`: expressions nested too deep",
            m.name
        )));
    }
    parse(expression, &mut |name: &str| {
        let input = find(metrics, name)?;
        match &input.source {
            MetricSource::Cloudwatch { .. } => Ok(Expr::Leaf(leaf_of(input, period, leaves))),
            MetricSource::Expression { .. } => expr_of(metrics, input, period, leaves, depth + 1),
            MetricSource::Sqs { .. } => Err(PlanError::Invalid(format!(
                "`{name}` is an SQS metric; metric math only combines CloudWatch metrics"
            ))),
        }
    })
}

/// Parses an arithmetic metric-math expression (`+ - * /`, unary signs, parentheses,
/// numbers), each metric name resolved by `resolve`; a function is
/// [`PlanError::Functions`]. The one parser of such expressions: the history reader and
/// the replay's simulated CloudWatch ([`crate::simulate::metric_math`]) both use it.
pub fn parse(expression: &str, resolve: &mut Resolve<'_>) -> Result<Expr, PlanError> {
    let tokens = tokenize(expression)?;
    let mut p = Parser {
        tokens: &tokens,
        at: 0,
    };
    let e = p.sum(resolve)?;
    if p.at != tokens.len() {
        return Err(PlanError::Invalid(format!(
            "cannot read the expression `{expression}`"
        )));
    }
    Ok(e)
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Num(f64),
    Ident(String),
    Op(char),
}

fn tokenize(expr: &str) -> Result<Vec<Tok>, PlanError> {
    let mut out = Vec::new();
    let mut chars = expr.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if c.is_whitespace() {
            continue;
        }
        if "+-*/()".contains(c) {
            out.push(Tok::Op(c));
        } else if c.is_ascii_digit() || c == '.' {
            let mut end = i + 1;
            while let Some(&(j, d)) = chars.peek() {
                let exp_sign = (d == '+' || d == '-') && expr[..j].ends_with(['e', 'E']);
                if d.is_ascii_alphanumeric() || d == '.' || exp_sign {
                    end = j + 1;
                    chars.next();
                } else {
                    break;
                }
            }
            let text = &expr[i..end];
            let n = text
                .parse::<f64>()
                .map_err(|_| PlanError::Invalid(format!("`{text}` in `{expr}` is not a number")))?;
            out.push(Tok::Num(n));
        } else if c.is_ascii_alphabetic() || c == '_' {
            let mut end = i + 1;
            while let Some(&(j, d)) = chars.peek() {
                if d.is_ascii_alphanumeric() || d == '_' {
                    end = j + 1;
                    chars.next();
                } else {
                    break;
                }
            }
            let ident = &expr[i..end];
            if !ident.starts_with(|c: char| c.is_ascii_lowercase()) {
                return Err(PlanError::Functions(format!(
                    "the expression `{expr}` uses `{ident}`"
                )));
            }
            out.push(Tok::Ident(ident.to_string()));
        } else {
            return Err(PlanError::Functions(format!(
                "the expression `{expr}` uses `{c}`"
            )));
        }
    }
    Ok(out)
}

struct Parser<'a> {
    tokens: &'a [Tok],
    at: usize,
}

/// Resolves a metric name of an expression to its part of the tree.
pub type Resolve<'r> = dyn FnMut(&str) -> Result<Expr, PlanError> + 'r;

impl Parser<'_> {
    fn peek(&self) -> Option<&Tok> {
        self.tokens.get(self.at)
    }
    fn sum(&mut self, r: &mut Resolve<'_>) -> Result<Expr, PlanError> {
        let mut e = self.product(r)?;
        while let Some(Tok::Op(op @ ('+' | '-'))) = self.peek().cloned() {
            self.at += 1;
            e = Expr::Bin(op, Box::new(e), Box::new(self.product(r)?));
        }
        Ok(e)
    }
    fn product(&mut self, r: &mut Resolve<'_>) -> Result<Expr, PlanError> {
        let mut e = self.unary(r)?;
        while let Some(Tok::Op(op @ ('*' | '/'))) = self.peek().cloned() {
            self.at += 1;
            e = Expr::Bin(op, Box::new(e), Box::new(self.unary(r)?));
        }
        Ok(e)
    }
    fn unary(&mut self, r: &mut Resolve<'_>) -> Result<Expr, PlanError> {
        let tok = self.peek().cloned();
        self.at += 1;
        match tok {
            Some(Tok::Op('-')) => Ok(Expr::Neg(Box::new(self.unary(r)?))),
            Some(Tok::Op('+')) => self.unary(r),
            Some(Tok::Num(n)) => Ok(Expr::Num(n)),
            Some(Tok::Ident(name)) => r(&name),
            Some(Tok::Op('(')) => {
                let e = self.sum(r)?;
                if self.peek() != Some(&Tok::Op(')')) {
                    return Err(PlanError::Invalid("unbalanced parentheses".into()));
                }
                self.at += 1;
                Ok(e)
            }
            _ => Err(PlanError::Invalid("incomplete expression".into())),
        }
    }
}

impl HistoryPlan {
    /// The policy's values from the leaves' series (in the order of `leaves`), averaged
    /// into steps of `step_secs`: the value at each period where every leaf has a
    /// datapoint (a non-finite result, e.g. a division by zero, is left out), then the
    /// mean of the values within each step (by step start), sorted.
    pub fn finish(&self, series: &[Points], step_secs: u64) -> Points {
        let values: Points = match &self.expr {
            None => series.first().cloned().unwrap_or_default(),
            Some(e) => combine(e, series),
        };
        to_step(&values, step_secs)
    }
}

/// The value of `expr` at every period where each of its leaves' `series` (in leaf order)
/// has a datapoint, as CloudWatch combines series; a non-finite value (a division by
/// zero) is left out. In the order of the first series.
pub fn combine(expr: &Expr, series: &[Points]) -> Points {
    let Some(first) = series.first() else {
        return Vec::new();
    };
    let finite = |p: &(DateTime<Utc>, f64)| p.1.is_finite();
    if series.len() == 1 {
        // One input (`requests / 60`): no timestamps to match.
        let mut out = Vec::with_capacity(first.len());
        out.extend(
            first
                .iter()
                .map(|(t, v)| (*t, expr.eval(std::slice::from_ref(v))))
                .filter(finite),
        );
        return out;
    }
    let maps: Vec<HashMap<i64, f64>> = series
        .iter()
        .map(|s| s.iter().map(|(t, v)| (t.timestamp(), *v)).collect())
        .collect();
    let mut row = vec![0.0; maps.len()];
    first
        .iter()
        .filter_map(|(t, _)| {
            for (k, m) in maps.iter().enumerate() {
                row[k] = *m.get(&t.timestamp())?;
            }
            Some((*t, expr.eval(&row)))
        })
        .filter(finite)
        .collect()
}

/// The mean of the finite values within each step (by step start), sorted.
pub fn to_step(points: &[(DateTime<Utc>, f64)], step_secs: u64) -> Points {
    // Sorted by time (answers come newest first, pages in any order), a period returned
    // twice (pages overlapping) counted once; then one mean per step, in one pass.
    let mut pts: Vec<(i64, f64)> = Vec::with_capacity(points.len());
    pts.extend(
        points
            .iter()
            .filter(|(_, v)| v.is_finite())
            .map(|(t, v)| (t.timestamp(), *v)),
    );
    pts.sort_by_key(|p| p.0);
    pts.dedup_by_key(|p| p.0);
    let step = step_secs.max(1) as i64;
    let mut out: Points = Vec::with_capacity(pts.len() / (step as usize / 60).max(1) + 1);
    let mut current: Option<(i64, f64, u32)> = None;
    for (t, v) in pts {
        let b = t.div_euclid(step) * step;
        match &mut current {
            Some((at, sum, n)) if *at == b => {
                *sum += v;
                *n += 1;
            }
            _ => {
                if let Some((at, sum, n)) = current.take() {
                    out.extend(step_point(at, sum, n));
                }
                current = Some((b, v, 1));
            }
        }
    }
    if let Some((at, sum, n)) = current {
        out.extend(step_point(at, sum, n));
    }
    out
}

fn step_point(at: i64, sum: f64, n: u32) -> Option<(DateTime<Utc>, f64)> {
    Some((DateTime::from_timestamp(at, 0)?, sum / f64::from(n)))
}

/// What CloudWatch answers for raw datapoints `(time, value)` asked at `period_secs` with
/// `statistic` over `[from, to)`: one value per period that has datapoints, by period start.
/// Percentiles are by nearest rank; another statistic (trimmed means...) is `None`.
pub fn aggregate(
    raw: &[(DateTime<Utc>, f64)],
    statistic: &str,
    period_secs: u64,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Option<Points> {
    let mut bins: BTreeMap<DateTime<Utc>, Vec<f64>> = BTreeMap::new();
    for (t, v) in raw.iter().filter(|(t, _)| *t >= from && *t < to) {
        bins.entry(floor_to(*t, period_secs)).or_default().push(*v);
    }
    let stat = Statistic::parse(statistic).ok()?;
    Some(bins.into_iter().map(|(t, vs)| (t, stat.of(&vs))).collect())
}

/// The unit of a forecast of `metric`, for the explanation and the dashboard: e.g.
/// "requests/s" for `requests / 60` over a per-minute `Sum`, "requests per 1m" for the
/// `Sum` itself, "messages sent/s" for an SQS queue; otherwise the metric's name.
pub fn unit(metrics: &[Metric], metric: &str) -> String {
    let Ok(m) = find(metrics, metric) else {
        return metric.to_string();
    };
    let per_period = |m: &Metric| match &m.source {
        MetricSource::Cloudwatch {
            statistic,
            period_secs,
            ..
        } if statistic == "Sum" || statistic == "SampleCount" => Some(*period_secs),
        _ => None,
    };
    match &m.source {
        MetricSource::Sqs { .. } => "messages sent/s".into(),
        MetricSource::Cloudwatch { statistic, .. } => match per_period(m) {
            Some(p) => format!("{} per {}", m.name, crate::config::duration::format_secs(p)),
            None => format!("{} ({statistic})", m.name),
        },
        MetricSource::Expression {
            expression,
            period_secs,
            ..
        } => {
            // `x / P` over a per-period count x: a per-second rate of x.
            let rate = match plan(metrics, metric).ok().and_then(|p| p.expr) {
                Some(Expr::Bin('/', a, b)) => match (*a, *b) {
                    (Expr::Leaf(_), Expr::Num(n)) if n == *period_secs as f64 => {
                        let input = crate::config::validate::expression_inputs(expression);
                        input
                            .first()
                            .and_then(|i| find(metrics, i).ok())
                            .filter(|i| per_period(i).is_some())
                            .map(|i| format!("{}/s", i.name))
                    }
                    _ => None,
                },
                _ => None,
            };
            rate.unwrap_or_else(|| m.name.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    const CFG: &str = r#"
[[target]]
name = "web"
kind = "ecs_service"
cluster = "shop"
service = "web"
min = 1
max = 10
[[target.metric]]
name = "requests"
source = "cloudwatch"
namespace = "AWS/ApplicationELB"
metric_name = "RequestCount"
dimensions = { TargetGroup = "targetgroup/web/1", LoadBalancer = "app/shop/2" }
statistic = "Sum"
[[target.metric]]
name = "errors"
source = "cloudwatch"
namespace = "AWS/ApplicationELB"
metric_name = "HTTPCode_Target_5XX_Count"
statistic = "Sum"
[[target.metric]]
name = "rps"
source = "expression"
expression = "requests / 60"
[[target.metric]]
name = "ok_rps"
source = "expression"
expression = "rps - errors / 60"
[[target.metric]]
name = "filled"
source = "expression"
expression = "FILL(requests, 0) / 60"
[[target.metric]]
name = "queue"
source = "sqs"
queue = "https://sqs.us-east-1.amazonaws.com/1/orders"
[[target.policy]]
type = "target_tracking"
metric = "rps"
target_per_unit = 100
"#;

    fn metrics() -> Vec<Metric> {
        config::from_str("t.toml", CFG)
            .unwrap_or_else(|d| panic!("{}", d[0]))
            .targets
            .remove(0)
            .metrics
    }

    #[test]
    fn a_rate_over_a_per_minute_sum_is_averaged_not_summed_into_the_step() {
        let m = metrics();
        let p = plan(&m, "rps").unwrap();
        assert_eq!(p.period_secs, 60);
        assert_eq!(p.leaves.len(), 1);
        assert_eq!(p.leaves[0].statistic, "Sum");
        assert_eq!(p.leaves[0].period_secs, 60, "the metric's own period");
        // 6000 requests in each minute: 100 requests/s, whatever the step.
        let start = t("2026-11-27T10:00:00Z");
        let per_min: Points = (0..10)
            .map(|i| (start + chrono::Duration::minutes(i), 6000.0))
            .collect();
        let got = p.finish(&[per_min], 300);
        assert_eq!(
            got,
            vec![
                (start, 100.0),
                (start + chrono::Duration::minutes(5), 100.0)
            ]
        );
    }

    #[test]
    fn nested_expressions_are_inlined_and_need_every_input() {
        let m = metrics();
        let p = plan(&m, "ok_rps").unwrap();
        let names: Vec<&str> = p.leaves.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["requests", "errors"]);
        let a = t("2026-11-27T10:00:00Z");
        let b = a + chrono::Duration::minutes(1);
        let got = p.finish(&[vec![(a, 600.0), (b, 1200.0)], vec![(a, 60.0)]], 60);
        // (600 - 60) / 60 at `a`; `b` lacks `errors`.
        assert_eq!(got, vec![(a, 9.0)]);
    }

    #[test]
    fn sqs_reads_the_queues_arrivals_per_second() {
        let m = metrics();
        let p = plan(&m, "queue").unwrap();
        assert_eq!(p.leaves[0].namespace, "AWS/SQS");
        assert_eq!(p.leaves[0].metric_name, "NumberOfMessagesSent");
        assert_eq!(p.leaves[0].dimensions["QueueName"], "orders");
        let a = t("2026-11-27T10:00:00Z");
        assert_eq!(p.finish(&[vec![(a, 120.0)]], 300), vec![(a, 2.0)]);
        assert_eq!(unit(&m, "queue"), "messages sent/s");
    }

    #[test]
    fn functions_are_left_to_cloudwatch() {
        let m = metrics();
        assert!(matches!(plan(&m, "filled"), Err(PlanError::Functions(_))));
        assert!(matches!(plan(&m, "nope"), Err(PlanError::Invalid(_))));
    }

    #[test]
    fn units_say_rate_or_count() {
        let m = metrics();
        assert_eq!(unit(&m, "rps"), "requests/s");
        assert_eq!(unit(&m, "requests"), "requests per 1m");
        assert_eq!(unit(&m, "ok_rps"), "ok_rps");
    }

    #[test]
    fn aggregation_follows_the_statistic() {
        let a = t("2026-11-27T10:00:00Z");
        let raw: Points = (0..10)
            .map(|i| (a + chrono::Duration::minutes(i), (i + 1) as f64))
            .collect();
        let to = a + chrono::Duration::minutes(10);
        let five = chrono::Duration::minutes(5);
        assert_eq!(
            aggregate(&raw, "Sum", 300, a, to).unwrap(),
            vec![(a, 15.0), (a + five, 40.0)]
        );
        assert_eq!(
            aggregate(&raw, "Average", 300, a, to).unwrap(),
            vec![(a, 3.0), (a + five, 8.0)]
        );
        assert_eq!(aggregate(&raw, "Maximum", 300, a, to).unwrap()[0], (a, 5.0));
        assert_eq!(
            aggregate(&raw, "SampleCount", 600, a, to).unwrap(),
            vec![(a, 10.0)]
        );
        // Percentiles by nearest rank: p99 of ten datapoints is the largest.
        assert_eq!(
            aggregate(&raw, "p99", 600, a, to),
            aggregate(&raw, "Maximum", 600, a, to)
        );
        assert!(aggregate(&raw, "tm99", 60, a, to).is_none());
    }
}
