//! `capstan dashboard`: one CloudWatch dashboard for all targets (pure: config in, dashboard
//! body out). Per target a row: a header, then for each policy its load against its target
//! (the target's own CloudWatch metrics, or the SQS queue's metrics), the capacity (current,
//! desired, min, max from capstan's own metrics), the forecast when a predictive policy
//! exists, and the decisions (scale-outs, scale-ins, actuation failures, missing metrics).
//!
//! Capstan's metric names are those `telemetry::points` publishes (namespace from
//! `[global] metrics_namespace`, dimension `Target`).

use std::collections::{BTreeMap, HashMap};

use serde_json::{json, Value};

use crate::config::validate::expression_inputs;
use crate::config::{Config, MetricSource, PolicyKind, Target, TrackingTarget};
use crate::sources::cloudwatch::rewrite_expression;
use crate::sources::sqs::is_url;

/// Grid width of a dashboard (CloudWatch's is 24 units).
const GRID: u32 = 24;
const W: u32 = 8;
const H: u32 = 6;

/// The dashboard body (a JSON object for `PutDashboard`). `region` is where the metrics live.
pub fn body(cfg: &Config, region: &str) -> Value {
    let mut widgets = Vec::new();
    let mut y = 0;
    for t in &cfg.targets {
        widgets.push(json!({
            "type": "text", "x": 0, "y": y, "width": GRID, "height": 1,
            "properties": { "markdown": header(t) },
        }));
        y += 1;
        let mut row: Vec<Value> = Vec::new();
        for p in &t.policies {
            if let Some(w) = load_widget(cfg, t, p, region) {
                row.push(w);
            }
        }
        row.push(capacity_widget(cfg, t, region));
        if t.policies
            .iter()
            .any(|p| matches!(p.kind, PolicyKind::Predictive(_)))
        {
            row.push(forecast_widget(cfg, t, region));
        }
        row.push(decisions_widget(cfg, t, region));
        let per_line = GRID / W;
        let n = row.len() as u32;
        for (i, mut w) in row.into_iter().enumerate() {
            let i = i as u32;
            w["x"] = json!((i % per_line) * W);
            w["y"] = json!(y + (i / per_line) * H);
            w["width"] = json!(W);
            w["height"] = json!(H);
            widgets.push(w);
        }
        y += n.div_ceil(per_line) * H;
    }
    json!({ "widgets": widgets })
}

fn header(t: &Target) -> String {
    let what = match &t.resource {
        crate::config::Resource::EcsService { cluster, service } => {
            format!("ECS service {cluster}/{service}")
        }
        crate::config::Resource::Asg { name } => format!("Auto Scaling group {name}"),
        crate::config::Resource::AuroraReaders { db_cluster, .. } => {
            format!("Aurora readers of {db_cluster}")
        }
    };
    format!("## {} — {what}, {}..{}", t.name, t.min, t.max)
}

fn own(cfg: &Config, t: &Target, name: &str, stat: &str, extra: Value) -> Value {
    let mut opts = json!({ "stat": stat, "label": name });
    if let Value::Object(o) = extra {
        for (k, v) in o {
            opts[k] = v;
        }
    }
    json!([cfg.global.metrics_namespace, name, "Target", t.name, opts])
}

fn widget(title: String, region: &str, metrics: Vec<Value>, extra: Value) -> Value {
    let mut w = json!({
        "type": "metric",
        "properties": {
            "title": title,
            "region": region,
            "view": "timeSeries",
            "stacked": false,
            "period": 60,
            "metrics": metrics,
        },
    });
    if let Value::Object(o) = extra {
        for (k, v) in o {
            w["properties"][k] = v;
        }
    }
    w
}

/// The metric lines of one configured metric (with hidden inputs for an expression), the
/// id of the visible line, or None when it cannot be drawn.
fn metric_lines(
    t: &Target,
    name: &str,
    ids: &mut HashMap<String, String>,
    out: &mut Vec<Value>,
    visible: bool,
    depth: u32,
) -> Option<String> {
    if let Some(id) = ids.get(name) {
        return Some(id.clone());
    }
    if depth > 8 {
        return None;
    }
    let m = t.metric(name)?;
    let id = format!("m{}", out.len());
    match &m.source {
        MetricSource::Cloudwatch {
            namespace,
            metric_name,
            dimensions,
            statistic,
            period_secs,
            ..
        } => {
            let mut line = vec![json!(namespace), json!(metric_name)];
            for (k, v) in dimensions {
                line.push(json!(k));
                line.push(json!(v));
            }
            line.push(json!({
                "stat": statistic, "period": period_secs, "id": id,
                "label": name, "visible": visible,
            }));
            out.push(Value::Array(line));
        }
        MetricSource::Expression {
            expression,
            period_secs,
            ..
        } => {
            let mut local = HashMap::new();
            for input in expression_inputs(expression) {
                let iid = metric_lines(t, &input, ids, out, false, depth + 1)?;
                local.insert(input, iid);
            }
            let id = format!("m{}", out.len());
            out.push(json!([{
                "expression": rewrite_expression(expression, &local),
                "id": id, "label": name, "period": period_secs, "visible": visible,
            }]));
            ids.insert(name.to_string(), id.clone());
            return Some(id);
        }
        MetricSource::Sqs {
            queue,
            include_in_flight,
            include_delayed,
        } => {
            let queue_name = if is_url(queue) {
                queue.rsplit('/').next().unwrap_or(queue)
            } else {
                queue.as_str()
            };
            let mut parts = vec![("ApproximateNumberOfMessagesVisible", "v")];
            if *include_in_flight {
                parts.push(("ApproximateNumberOfMessagesNotVisible", "f"));
            }
            if *include_delayed {
                parts.push(("ApproximateNumberOfMessagesDelayed", "d"));
            }
            let mut sum = Vec::new();
            for (metric, suffix) in parts {
                let pid = format!("{id}{suffix}");
                // SQS publishes these every 5 minutes.
                out.push(json!([
                    "AWS/SQS", metric, "QueueName", queue_name,
                    { "stat": "Maximum", "id": pid, "period": 300, "visible": false }
                ]));
                sum.push(pid);
            }
            let id = format!("m{}", out.len());
            out.push(json!([{
                "expression": sum.join(" + "), "id": id, "label": name, "visible": visible,
            }]));
            ids.insert(name.to_string(), id.clone());
            return Some(id);
        }
    }
    ids.insert(name.to_string(), id.clone());
    Some(id)
}

/// One policy's load against its target.
fn load_widget(cfg: &Config, t: &Target, p: &crate::config::Policy, region: &str) -> Option<Value> {
    let mut lines = Vec::new();
    let mut ids = HashMap::new();
    let sqs = t
        .metric(&p.metric)
        .is_some_and(|m| matches!(m.source, MetricSource::Sqs { .. }));
    if matches!(p.kind, PolicyKind::Predictive(_)) && sqs {
        // An SQS forecast is of the queue's arrivals, not its depth: draw those.
        let plan = crate::sources::history::plan(&t.metrics, &p.metric).ok()?;
        let leaf = plan.leaves.first()?;
        let mut line = vec![json!(leaf.namespace), json!(leaf.metric_name)];
        for (k, v) in &leaf.dimensions {
            line.extend([json!(k), json!(v)]);
        }
        line.push(json!({ "stat": leaf.statistic, "id": "s0", "period": leaf.period_secs, "visible": false }));
        lines.push(Value::Array(line));
        lines.push(json!([{
            "expression": format!("s0 / {}", leaf.period_secs),
            "id": "m0", "label": "messages sent/s", "period": leaf.period_secs,
        }]));
    } else {
        metric_lines(t, &p.metric, &mut ids, &mut lines, true, 0)?;
    }
    let mut horizontal = Vec::new();
    let title;
    match &p.kind {
        PolicyKind::TargetTracking { target, .. } => match target {
            TrackingTarget::Average(v) => {
                title = format!("{}: {} vs target {v}", p.name, p.metric);
                horizontal.push(json!({ "label": format!("target {v}"), "value": v }));
            }
            TrackingTarget::PerUnit(per) => {
                title = format!("{}: {} vs {per} per unit", p.name, p.metric);
                lines.push(own(
                    cfg,
                    t,
                    "CurrentCapacity",
                    "Average",
                    json!({"id": "cap", "visible": false}),
                ));
                lines.push(json!([{
                    "expression": format!("cap * {per}"), "id": "tgt",
                    "label": format!("target at current capacity ({per} per unit)"),
                }]));
            }
        },
        PolicyKind::Step(s) => {
            title = format!(
                "{}: {} {} {}",
                p.name,
                p.metric,
                s.comparison.symbol(),
                s.threshold
            );
            horizontal.push(
                json!({ "label": format!("threshold {}", s.threshold), "value": s.threshold }),
            );
        }
        PolicyKind::Predictive(pp) => {
            title = format!("{}: {} vs forecast ({})", p.name, p.metric, pp.unit);
            lines.push(own(
                cfg,
                t,
                "ForecastLoad",
                "Average",
                json!({"id": "fl", "label": "forecast load"}),
            ));
        }
    }
    let extra = if horizontal.is_empty() {
        json!({})
    } else {
        json!({ "annotations": { "horizontal": horizontal } })
    };
    Some(widget(title, region, lines, extra))
}

fn capacity_widget(cfg: &Config, t: &Target, region: &str) -> Value {
    let lines = vec![
        own(cfg, t, "CurrentCapacity", "Average", json!({})),
        own(cfg, t, "DesiredCapacity", "Average", json!({})),
        own(cfg, t, "MinCapacity", "Minimum", json!({})),
        own(cfg, t, "MaxCapacity", "Maximum", json!({})),
    ];
    widget(
        format!("{}: capacity", t.name),
        region,
        lines,
        json!({ "yAxis": { "left": { "min": 0 } } }),
    )
}

fn forecast_widget(cfg: &Config, t: &Target, region: &str) -> Value {
    let lines = vec![
        own(cfg, t, "ForecastCapacity", "Average", json!({})),
        own(cfg, t, "CurrentCapacity", "Average", json!({})),
        own(
            cfg,
            t,
            "ForecastError",
            "Average",
            json!({"yAxis": "right"}),
        ),
    ];
    widget(
        format!("{}: forecast capacity and error", t.name),
        region,
        lines,
        json!({}),
    )
}

fn decisions_widget(cfg: &Config, t: &Target, region: &str) -> Value {
    let lines = vec![
        own(cfg, t, "ScaleOutDecisions", "Sum", json!({})),
        own(cfg, t, "ScaleInDecisions", "Sum", json!({})),
        own(cfg, t, "ActuationFailures", "Sum", json!({})),
        own(cfg, t, "MissingMetrics", "Maximum", json!({})),
    ];
    widget(
        format!("{}: decisions and failures", t.name),
        region,
        lines,
        json!({ "view": "bar" }),
    )
}

/// The names of capstan's own metrics a dashboard uses, per target (for checks).
pub fn own_metrics(body: &Value, namespace: &str) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for w in body["widgets"].as_array().into_iter().flatten() {
        for line in w["properties"]["metrics"].as_array().into_iter().flatten() {
            if line[0] == namespace && line[2] == "Target" {
                let target = line[3].as_str().unwrap_or_default().to_string();
                let name = line[1].as_str().unwrap_or_default().to_string();
                let names = out.entry(target).or_default();
                if !names.contains(&name) {
                    names.push(name);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config;

    fn example() -> Config {
        config::from_str("example.toml", config::EMBEDDED_EXAMPLE).unwrap()
    }

    #[test]
    fn an_sqs_forecast_is_drawn_against_the_queues_arrivals_per_second() {
        let cfg = config::from_str(
            "t.toml",
            r#"
[[target]]
name = "workers"
kind = "ecs_service"
cluster = "shop"
service = "workers"
min = 1
max = 10
[[target.metric]]
name = "queue"
source = "sqs"
queue = "https://sqs.us-east-1.amazonaws.com/1/orders"
[[target.policy]]
type = "predictive"
metric = "queue"
target_per_unit = 5
"#,
        )
        .unwrap();
        let b = body(&cfg, "us-east-1");
        let w = b["widgets"]
            .as_array()
            .unwrap()
            .iter()
            .find(|w| {
                w["properties"]["title"].as_str()
                    == Some("predictive:queue: queue vs forecast (messages sent/s)")
            })
            .expect("the forecast widget");
        let m = w["properties"]["metrics"].as_array().unwrap();
        assert_eq!(
            m[0],
            json!(["AWS/SQS", "NumberOfMessagesSent", "QueueName", "orders",
                {"stat": "Sum", "id": "s0", "period": 60, "visible": false}])
        );
        assert_eq!(m[1][0]["expression"], "s0 / 60");
        assert!(!w.to_string().contains("ApproximateNumberOfMessages"));
    }

    #[test]
    fn one_row_per_target_with_capacity_and_decisions() {
        let cfg = example();
        let b = body(&cfg, "us-east-1");
        let own = own_metrics(&b, "Capstan");
        assert_eq!(own.len(), cfg.targets.len());
        for t in &cfg.targets {
            let names = &own[&t.name];
            for n in [
                "CurrentCapacity",
                "DesiredCapacity",
                "MinCapacity",
                "MaxCapacity",
                "ScaleOutDecisions",
                "ScaleInDecisions",
            ] {
                assert!(names.iter().any(|x| x == n), "{} lacks {n}", t.name);
            }
        }
        // Only sales-api has a predictive policy.
        assert!(own["sales-api"].iter().any(|n| n == "ForecastError"));
        assert!(!own["order-workers"]
            .iter()
            .any(|n| n.starts_with("Forecast")));
        // Widgets never overlap and fit the grid.
        let ws = b["widgets"].as_array().unwrap();
        let mut cells = std::collections::HashSet::new();
        for w in ws {
            let (x, y, wd, h) = (
                w["x"].as_u64().unwrap(),
                w["y"].as_u64().unwrap(),
                w["width"].as_u64().unwrap(),
                w["height"].as_u64().unwrap(),
            );
            assert!(x + wd <= 24);
            for cx in x..x + wd {
                for cy in y..y + h {
                    assert!(cells.insert((cx, cy)), "overlap at {cx},{cy}");
                }
            }
            if w["type"] == "metric" {
                assert_eq!(w["properties"]["region"], "us-east-1");
            }
        }
    }

    #[test]
    fn load_widgets_draw_the_configured_metrics_against_their_targets() {
        let b = body(&example(), "us-east-1");
        let ws = b["widgets"].as_array().unwrap();
        let titled = |s: &str| {
            ws.iter()
                .find(|w| w["properties"]["title"].as_str() == Some(s))
                .unwrap_or_else(|| panic!("no widget {s}"))
        };
        let cpu = titled("target_tracking:cpu: cpu vs target 70");
        assert_eq!(
            cpu["properties"]["metrics"][0],
            json!(["AWS/ECS", "CPUUtilization", "ClusterName", "shop", "ServiceName", "sales-api",
                {"stat": "Average", "period": 60, "id": "m0", "label": "cpu", "visible": true}])
        );
        assert_eq!(
            cpu["properties"]["annotations"]["horizontal"][0]["value"],
            70.0
        );
        // An expression keeps its inputs hidden, renamed to dashboard ids.
        // The forecast's unit is in the title.
        let rps = titled("predictive:rps: rps vs forecast (requests/s)");
        let m = rps["properties"]["metrics"].as_array().unwrap();
        let input = m[0].as_array().unwrap();
        assert_eq!(input[1], "RequestCount");
        assert_eq!(input.last().unwrap()["visible"], false);
        assert_eq!(m[1][0]["expression"], "m0 / 60");
        // SQS backlog: visible + in flight, against capacity x per-unit target.
        let q = titled("target_tracking:backlog: backlog vs 20 per unit");
        let text = q.to_string();
        assert!(text.contains("ApproximateNumberOfMessagesNotVisible"));
        assert!(!text.contains("ApproximateNumberOfMessagesDelayed"));
        assert!(text.contains("\"cap * 20\""));
        // Step policies show their threshold.
        let step = titled("cpu-high: cpu >= 80");
        assert_eq!(
            step["properties"]["annotations"]["horizontal"][0]["value"],
            80.0
        );
    }
}
