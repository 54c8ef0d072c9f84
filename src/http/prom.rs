//! `/metrics`: the Prometheus text exposition format (version 0.0.4), written by hand.
//! Each family is written whole (HELP, TYPE, samples) before the next; label values and
//! help text are escaped as the format requires.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};

use crate::aws::CallStats;
use crate::util::Histogram;

use super::status::State;

/// A metrics page under construction.
#[derive(Default)]
pub struct Prom {
    out: String,
}

/// Escapes a label value: backslash, double quote and line feed.
pub fn escape_label(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

/// A sample value: Go-style `NaN`, `+Inf`, `-Inf`, else the shortest exact decimal.
pub fn value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{v}")
    }
}

impl Prom {
    /// Starts a family: `kind` is `gauge`, `counter` or `histogram`.
    pub fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], v: f64) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, val)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", escape_label(val));
            }
            self.out.push('}');
        }
        self.out.push(' ');
        self.out.push_str(&value(v));
        self.out.push('\n');
    }

    /// The `_bucket`, `_sum` and `_count` samples of one histogram.
    pub fn histogram(&mut self, name: &str, labels: &[(&str, &str)], h: &Histogram) {
        let bucket = format!("{name}_bucket");
        for (b, c) in h.bounds.iter().zip(&h.counts) {
            let le = value(*b);
            let mut l = labels.to_vec();
            l.push(("le", &le));
            self.sample(&bucket, &l, *c as f64);
        }
        let mut l = labels.to_vec();
        l.push(("le", "+Inf"));
        self.sample(&bucket, &l, h.count as f64);
        self.sample(&format!("{name}_sum"), labels, h.sum);
        self.sample(&format!("{name}_count"), labels, h.count as f64);
    }

    pub fn finish(self) -> String {
        self.out
    }
}

/// Renders the daemon's state and the AWS call statistics.
pub fn render(s: &State, calls: &CallStats, now: DateTime<Utc>) -> String {
    let mut p = Prom::default();
    p.family(
        "capstan_build_info",
        "gauge",
        "Always 1; the version label is capstan's.",
    );
    p.sample(
        "capstan_build_info",
        &[("version", env!("CARGO_PKG_VERSION"))],
        1.0,
    );

    let r = s.readiness(now);
    p.family(
        "capstan_ready",
        "gauge",
        "1 when /readyz answers 200: a recent tick, AWS reachable, lease role known.",
    );
    p.sample("capstan_ready", &[], r.ready as u8 as f64);
    p.family(
        "capstan_lease_state",
        "gauge",
        "1 for the replica's lease state: leader, follower, disabled (no lease) or unknown.",
    );
    let role = s.lease_role();
    for st in ["leader", "follower", "disabled", "unknown"] {
        p.sample(
            "capstan_lease_state",
            &[("state", st)],
            (role == st) as u8 as f64,
        );
    }

    p.family("capstan_ticks_total", "counter", "Ticks completed.");
    p.sample("capstan_ticks_total", &[], s.ticks as f64);
    p.family(
        "capstan_tick_duration_seconds",
        "histogram",
        "Duration of a tick: lease, observe, decide, act, record.",
    );
    p.histogram("capstan_tick_duration_seconds", &[], &s.tick_seconds);
    p.family(
        "capstan_last_tick_timestamp_seconds",
        "gauge",
        "Unix time of the last completed tick.",
    );
    if let Some(t) = &s.last_tick {
        p.sample(
            "capstan_last_tick_timestamp_seconds",
            &[],
            t.at.timestamp_millis() as f64 / 1000.0,
        );
    }

    type Pick = fn(&super::status::DecisionEntry) -> u32;
    let capacity: [(&str, &str, Pick); 4] = [
        (
            "capstan_target_current_capacity",
            "Capacity asked for at the resource when the last tick observed it.",
            |d| d.current,
        ),
        (
            "capstan_target_desired_capacity",
            "Capacity the last decision wants.",
            |d| d.desired,
        ),
        (
            "capstan_target_min_capacity",
            "Effective minimum of the last decision (schedules, floors included).",
            |d| d.explanation.bounds.min,
        ),
        (
            "capstan_target_max_capacity",
            "Effective maximum of the last decision (schedules included).",
            |d| d.explanation.bounds.max,
        ),
    ];
    for (name, help, pick) in capacity {
        p.family(name, "gauge", help);
        for t in &s.targets {
            if let Some(d) = t.last() {
                p.sample(name, &[("target", &t.name)], pick(d) as f64);
            }
        }
    }

    p.family(
        "capstan_target_load",
        "gauge",
        "The tracked load: the winning (or first) target-tracking policy's metric value.",
    );
    for t in &s.targets {
        if let Some(v) = t.load.as_ref().and_then(|l| l.value) {
            let metric = &t
                .load
                .as_ref()
                .map(|l| l.metric.clone())
                .unwrap_or_default();
            p.sample(
                "capstan_target_load",
                &[("target", &t.name), ("metric", metric)],
                v,
            );
        }
    }
    p.family(
        "capstan_target_load_target",
        "gauge",
        "What the current capacity should carry of that metric (per-unit target for averages, per-unit target x current for totals).",
    );
    for t in &s.targets {
        if let Some(l) = &t.load {
            p.sample(
                "capstan_target_load_target",
                &[("target", &t.name), ("metric", &l.metric)],
                l.target,
            );
        }
    }

    p.family(
        "capstan_metric_age_seconds",
        "gauge",
        "Seconds since the newest datapoint read of a metric (its period start for CloudWatch); grows while the metric is missing.",
    );
    for t in &s.targets {
        for m in &t.metrics {
            if let Some(at) = m.at {
                let age = (now - at).num_milliseconds() as f64 / 1000.0;
                p.sample(
                    "capstan_metric_age_seconds",
                    &[("target", &t.name), ("metric", &m.name)],
                    age.max(0.0),
                );
            }
        }
    }
    p.family(
        "capstan_metric_missing",
        "gauge",
        "1 when the last read of a metric gave no usable value (missing or stale).",
    );
    for t in &s.targets {
        for m in &t.metrics {
            p.sample(
                "capstan_metric_missing",
                &[("target", &t.name), ("metric", &m.name)],
                m.missing as u8 as f64,
            );
        }
    }

    p.family(
        "capstan_decisions_total",
        "counter",
        "Decisions by direction (scale_out, scale_in, hold) and reason: the last rule that moved or held the value, else the winning policy's kind, else no_proposal.",
    );
    for ((target, dir, reason), n) in &s.decisions {
        p.sample(
            "capstan_decisions_total",
            &[("target", target), ("direction", dir), ("reason", reason)],
            *n as f64,
        );
    }
    p.family(
        "capstan_actions_total",
        "counter",
        "Decisions that wanted a change, by outcome: applied, failed or skipped (follower, dry run, change in flight...).",
    );
    for ((target, outcome), n) in &s.outcomes {
        p.sample(
            "capstan_actions_total",
            &[("target", target), ("outcome", outcome)],
            *n as f64,
        );
    }
    p.family(
        "capstan_observe_errors_total",
        "counter",
        "Ticks in which a target's state could not be read.",
    );
    for (target, n) in &s.observe_errors {
        p.sample(
            "capstan_observe_errors_total",
            &[("target", target)],
            *n as f64,
        );
    }

    let calls = calls.snapshot();
    p.family(
        "capstan_aws_call_duration_seconds",
        "histogram",
        "Duration of AWS calls, retries included, by service and operation.",
    );
    for ((service, operation), c) in &calls {
        p.histogram(
            "capstan_aws_call_duration_seconds",
            &[("service", service), ("operation", operation)],
            &c.latency,
        );
    }
    p.family(
        "capstan_aws_call_errors_total",
        "counter",
        "Failed AWS calls (after retries) by service, operation and kind: timeout, connection, response, service, other.",
    );
    for ((service, operation), c) in &calls {
        for (kind, n) in &c.errors {
            p.sample(
                "capstan_aws_call_errors_total",
                &[
                    ("service", service),
                    ("operation", operation),
                    ("kind", kind),
                ],
                *n as f64,
            );
        }
    }
    p.finish()
}
