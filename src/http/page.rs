//! The status page at `/`: server-rendered HTML with inline CSS and one inline SVG chart
//! per target; no script, no external asset (the page's Content-Security-Policy forbids
//! them). It refreshes itself every poll interval. Every text from the config or from AWS
//! is redacted and HTML-escaped.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};

use super::redact::redact;
use super::status::{
    capacity_changes, direction, CapacitySample, DecisionEntry, State, TargetStatus,
};
use crate::policy::num;

/// Decisions shown per target.
pub const PAGE_DECISIONS: usize = 8;

/// HTML-escapes text (after redaction) for element content and quoted attributes.
pub fn esc(s: &str) -> String {
    let s = redact(s);
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "
:root{--fg:#1d2330;--mute:#5d6677;--line:#d9dee7;--bg:#f6f7f9;--card:#fff;--out:#0b7a3e;--in:#a4451a;--cur:#2456c9;--des:#8a3ac9}
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;color:var(--fg);background:var(--bg)}
header{padding:14px 24px;background:var(--card);border-bottom:1px solid var(--line);display:flex;gap:18px;align-items:baseline;flex-wrap:wrap}
h1{font-size:20px;margin:0}
.meta span{margin-right:14px;color:var(--mute)}
.pill{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px;font-weight:600}
.ok{background:#dff3e6;color:#0b5d31}.bad{background:#fbe2de;color:#8e2414}.neutral{background:#e8ebf1;color:#394152}
main{padding:16px 24px;display:grid;gap:16px;grid-template-columns:repeat(auto-fill,minmax(560px,1fr))}
section.target{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:14px 16px;min-width:0}
section.target h2{font-size:17px;margin:0 8px 0 0;display:inline}
.res{color:var(--mute);font-size:13px}
.nums{display:flex;gap:22px;margin:10px 0 6px}
.nums div{color:var(--mute);font-size:12px}.nums b{display:block;font-size:22px;color:var(--fg)}
.load{margin:6px 0}
.bar{height:8px;background:#eceff4;border-radius:4px;position:relative;overflow:hidden;margin-top:3px}
.bar i{position:absolute;left:0;top:0;bottom:0;border-radius:4px}
.bar b{position:absolute;top:-2px;bottom:-2px;width:2px;background:var(--fg)}
svg{display:block;width:100%;height:110px;margin:8px 0}
.legend{font-size:12px;color:var(--mute)}.legend i{display:inline-block;width:14px;height:3px;vertical-align:middle;margin:0 4px 0 10px}
table{width:100%;border-collapse:collapse;font-size:12.5px;table-layout:fixed}
td{border-top:1px solid var(--line);padding:4px 6px 4px 0;vertical-align:top;overflow-wrap:anywhere}
td.t{width:74px;color:var(--mute);white-space:nowrap}td.a{width:118px;font-weight:600;white-space:nowrap}
.scale_out{color:var(--out)}.scale_in{color:var(--in)}.hold{color:var(--mute)}
.err{color:#8e2414;font-size:13px;margin:6px 0}
.outcome{color:var(--mute)}
";

fn time(at: DateTime<Utc>) -> String {
    at.format("%H:%M:%S").to_string()
}

/// Renders the page.
pub fn render(s: &State, now: DateTime<Utc>) -> String {
    let r = s.readiness(now);
    let mut h = String::with_capacity(16 * 1024);
    let _ = write!(
        h,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
<meta http-equiv=\"refresh\" content=\"{}\"><title>capstan</title><style>{STYLE}</style></head><body>",
        s.poll_interval_secs.max(5)
    );
    let ready = if r.ready {
        "<span class=\"pill ok\">ready</span>"
    } else {
        "<span class=\"pill bad\">not ready</span>"
    };
    let _ = write!(
        h,
        "<header><h1>capstan</h1><div class=\"meta\">{ready} <span>lease: <b>{}</b></span>",
        r.lease
    );
    if s.dry_run {
        h.push_str("<span class=\"pill neutral\">dry run</span> ");
    }
    match &s.last_tick {
        Some(t) => {
            let _ = write!(
                h,
                "<span>last tick {} UTC, {} ms</span><span>{} targets, {} unreadable</span>",
                time(t.at),
                t.elapsed_ms,
                s.targets.len(),
                t.failed
            );
            if let Some(e) = &t.lease_error {
                let _ = write!(h, "<span class=\"err\">lease: {}</span>", esc(e));
            }
        }
        None => {
            let _ = write!(
                h,
                "<span>no tick yet</span><span>{} targets</span>",
                s.targets.len()
            );
        }
    }
    let _ = write!(
        h,
        "<span>poll every {}s</span></div></header><main>",
        s.poll_interval_secs
    );
    for t in &s.targets {
        target(&mut h, t, now);
    }
    if s.targets.is_empty() {
        h.push_str("<p>No targets configured.</p>");
    }
    h.push_str("</main></body></html>\n");
    h
}

fn target(h: &mut String, t: &TargetStatus, now: DateTime<Utc>) {
    let _ = write!(
        h,
        "<section class=\"target\" id=\"target-{}\"><h2>{}</h2><span class=\"res\">{} ({})</span>",
        esc(&t.name),
        esc(&t.name),
        esc(&t.resource),
        t.kind
    );
    if !t.in_last_tick && t.last().is_some() {
        h.push_str("<div class=\"err\">not decided in the last tick (see the logs: AWS may already scale it)</div>");
    }
    if let Some(e) = &t.error {
        let _ = write!(
            h,
            "<div class=\"err\">cannot read its state: {}</div>",
            esc(e)
        );
    }
    match t.last() {
        Some(d) => {
            let _ = write!(
                h,
                "<div class=\"nums\"><div><b>{}</b>current</div><div><b class=\"{}\">{}</b>desired</div>\
<div><b>{}&ndash;{}</b>bounds now</div><div><b>{}&ndash;{}</b>configured</div></div>",
                d.current,
                direction(d.action),
                d.desired,
                d.explanation.bounds.min,
                d.explanation.bounds.max,
                t.min,
                t.max
            );
        }
        None => {
            let _ = write!(
                h,
                "<div class=\"nums\"><div><b>&ndash;</b>current</div><div><b>&ndash;</b>desired</div>\
<div><b>{}&ndash;{}</b>configured</div></div>",
                t.min, t.max
            );
        }
    }
    load(h, t, now);
    forecast(h, t);
    chart(h, &t.capacity, now);
    decisions(h, t.decisions.iter().rev().take(PAGE_DECISIONS));
    h.push_str("</section>");
}

/// " (read 45 s ago)" for a metric whose value the last tick reused (poll_every).
fn reused(t: &TargetStatus, metric: &str, now: DateTime<Utc>) -> String {
    t.metrics
        .iter()
        .find(|m| *m.name == *metric)
        .and_then(|m| m.read_at.filter(|_| m.value.is_some()))
        .map(|at| format!(" (read {} s ago)", (now - at).num_seconds().max(0)))
        .unwrap_or_default()
}

fn load(h: &mut String, t: &TargetStatus, now: DateTime<Utc>) {
    let Some(l) = &t.load else {
        let metrics: Vec<String> = t
            .metrics
            .iter()
            .map(|m| match m.value {
                Some(v) => format!("{} {}{}", esc(&m.name), num(v), reused(t, &m.name, now)),
                None => format!("{} missing", esc(&m.name)),
            })
            .collect();
        if !metrics.is_empty() {
            let _ = write!(h, "<div class=\"load\">{}</div>", metrics.join(", "));
        }
        return;
    };
    let basis = if l.basis == "total" {
        " (total for the current capacity)"
    } else {
        " per unit"
    };
    match (l.value, l.ratio) {
        (Some(v), Some(ratio)) => {
            // The bar spans 0 to twice the target; the mark is the target.
            let width = (ratio * 50.0).clamp(0.0, 100.0);
            let color = if ratio > 1.1 {
                "var(--out)"
            } else if ratio < 0.9 {
                "var(--in)"
            } else {
                "var(--cur)"
            };
            let _ = write!(
                h,
                "<div class=\"load\">load <b>{}</b> {}{} vs target {}{basis}: <b>{:.0}%</b> of target\
<div class=\"bar\"><i style=\"width:{width:.1}%;background:{color}\"></i><b style=\"left:50%\"></b></div></div>",
                esc(&l.metric),
                num(v),
                reused(t, &l.metric, now),
                num(l.target),
                ratio * 100.0
            );
        }
        _ => {
            let _ = write!(
                h,
                "<div class=\"load\">load <b>{}</b> missing (target {}{basis})</div>",
                esc(&l.metric),
                num(l.target)
            );
        }
    }
}

/// The predictive policy's forecast in the last decision: the peak ahead and its unit, or
/// why there is none.
fn forecast(h: &mut String, t: &TargetStatus) {
    let Some(f) = t.last().and_then(|d| d.explanation.forecast.as_ref()) else {
        return;
    };
    let _ = match f.predicted_load {
        Some(v) => write!(
            h,
            "<div class=\"load\">forecast <b>{}</b> {} ({}): {}</div>",
            num(v),
            esc(&f.unit),
            esc(&f.policy),
            esc(&f.note)
        ),
        None => write!(
            h,
            "<div class=\"load\">forecast <b>none</b> ({}): {}</div>",
            esc(&f.policy),
            esc(&f.note)
        ),
    };
}

/// An SVG chart of the last hour (or since the first sample): the bounds as a band,
/// desired dashed, current solid.
fn chart(h: &mut String, all: &std::collections::VecDeque<CapacitySample>, now: DateTime<Utc>) {
    let samples = capacity_changes(all);
    const W: f64 = 600.0;
    const H: f64 = 110.0;
    const TOP: f64 = 8.0;
    const BOTTOM: f64 = 16.0;
    const LEFT: f64 = 28.0;
    // The last hour, or since the first sample when there is less (at least a minute).
    let hour_ago = now - chrono::Duration::seconds(super::status::CAPACITY_WINDOW_SECS);
    let from = samples
        .first()
        .map_or(hour_ago, |s| s.at.max(hour_ago))
        .min(now - chrono::Duration::seconds(60));
    let span_ms = ((now - from).num_milliseconds() as f64).max(1.0);
    let left_label = if from <= hour_ago {
        "1 h ago".to_string()
    } else {
        format!("{} UTC", time(from))
    };
    let top = samples
        .iter()
        .map(|s| s.max.max(s.current).max(s.desired))
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let x = |at: DateTime<Utc>| {
        let f = (at - from).num_milliseconds() as f64 / span_ms;
        LEFT + f.clamp(0.0, 1.0) * (W - LEFT)
    };
    let y = |v: u32| TOP + (1.0 - v as f64 / top) * (H - TOP - BOTTOM);
    let _ = write!(
        h,
        "<svg viewBox=\"0 0 {W} {H}\" preserveAspectRatio=\"none\" role=\"img\" aria-label=\"capacity over the last hour\">\
<line x1=\"{LEFT}\" y1=\"{b}\" x2=\"{W}\" y2=\"{b}\" stroke=\"#d9dee7\"/>\
<text x=\"{tx}\" y=\"{ty}\" font-size=\"10\" fill=\"#5d6677\" text-anchor=\"end\">{top}</text>\
<text x=\"{tx}\" y=\"{b}\" font-size=\"10\" fill=\"#5d6677\" text-anchor=\"end\">0</text>\
<text x=\"{LEFT}\" y=\"{H}\" font-size=\"10\" fill=\"#5d6677\">{left_label}</text>\
<text x=\"{W}\" y=\"{H}\" font-size=\"10\" fill=\"#5d6677\" text-anchor=\"end\">now</text>",
        b = H - BOTTOM,
        tx = LEFT - 4.0,
        ty = TOP + 8.0,
    );
    if samples.is_empty() {
        let _ = write!(
            h,
            "<text x=\"{}\" y=\"{}\" font-size=\"12\" fill=\"#5d6677\" text-anchor=\"middle\">no samples yet</text></svg>",
            (W + LEFT) / 2.0,
            H / 2.0
        );
        return;
    }
    // Step lines: each value holds until the next sample (the last one until now).
    let step = |pick: &dyn Fn(&CapacitySample) -> u32| {
        let mut pts = String::new();
        for (i, s) in samples.iter().enumerate() {
            let next = samples.get(i + 1).map_or(now, |n| n.at);
            let _ = write!(
                pts,
                "{:.1},{:.1} {:.1},{:.1} ",
                x(s.at),
                y(pick(s)),
                x(next),
                y(pick(s))
            );
        }
        pts
    };
    let upper = step(&|s| s.max);
    let mut lower: Vec<&str> = Vec::new();
    let lower_pts = step(&|s| s.min);
    lower.extend(lower_pts.split_whitespace().rev());
    let _ = write!(
        h,
        "<polygon points=\"{upper}{}\" fill=\"#e8ecf5\"/>\
<polyline points=\"{}\" fill=\"none\" stroke=\"#8a3ac9\" stroke-width=\"1.5\" stroke-dasharray=\"5 3\" vector-effect=\"non-scaling-stroke\"/>\
<polyline points=\"{}\" fill=\"none\" stroke=\"#2456c9\" stroke-width=\"2\" vector-effect=\"non-scaling-stroke\"/></svg>",
        lower.join(" "),
        step(&|s| s.desired),
        step(&|s| s.current),
    );
    h.push_str(
        "<div class=\"legend\"><i style=\"background:var(--cur)\"></i>current\
<i style=\"background:var(--des)\"></i>desired<i style=\"background:#e8ecf5;height:8px\"></i>bounds</div>",
    );
}

fn decisions<'a>(h: &mut String, entries: impl Iterator<Item = &'a DecisionEntry>) {
    let mut rows = String::new();
    for e in entries {
        let head = match direction(e.action) {
            "hold" => format!("hold at {}", e.current),
            "scale_out" => format!("out {} &rarr; {}", e.current, e.desired),
            _ => format!("in {} &rarr; {}", e.current, e.desired),
        };
        let times = if e.count > 1 {
            format!(
                " <span class=\"outcome\">&times;{} since {}</span>",
                e.count,
                time(e.first_at)
            )
        } else {
            String::new()
        };
        let outcome = e
            .outcome
            .as_ref()
            .map(|o| format!(" <span class=\"outcome\">[{}]</span>", esc(o)))
            .unwrap_or_default();
        let _ = write!(
            rows,
            "<tr><td class=\"t\">{}</td><td class=\"a {}\">{head}</td><td>{}{outcome}{times}</td></tr>",
            time(e.at),
            direction(e.action),
            esc(&e.reason())
        );
    }
    if rows.is_empty() {
        h.push_str("<p class=\"outcome\">No decisions yet.</p>");
    } else {
        let _ = write!(h, "<table>{rows}</table>");
    }
}
