use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};

use super::status::{Status, DECISIONS_PER_TARGET};
use super::*;
use crate::actuators::Applied;
use crate::aws::{AwsError, CallStats, ErrorClass};
use crate::config::{self, Config};
use crate::controller::{Outcome, TargetResult, TickReport};
use crate::policy::{decide, History, Observation};
use crate::sources::Reading;

const CFG: &str = r#"
[global]
poll_interval = "15s"

[[target]]
name = "api"
kind = "ecs_service"
cluster = "shop"
service = "api"
min = 1
max = 9
[[target.metric]]
name = "cpu"
source = "ecs_cpu"
[[target.policy]]
type = "target_tracking"
metric = "cpu"
target_value = 50

[[target]]
name = "workers"
kind = "ecs_service"
cluster = "shop"
service = "workers"
min = 1
max = 10
[[target.metric]]
name = "backlog"
source = "sqs"
queue = "orders"
[[target.policy]]
type = "target_tracking"
metric = "backlog"
target_per_unit = 20
"#;

fn cfg() -> Config {
    config::from_str("t.toml", CFG).unwrap()
}

fn at(mins: i64) -> DateTime<Utc> {
    "2026-11-27T10:00:00Z".parse::<DateTime<Utc>>().unwrap() + Duration::minutes(mins)
}

/// A tick at `now` where `api` runs `current` units at `cpu` % and `workers` cannot be read.
fn report(
    cfg: &Config,
    now: DateTime<Utc>,
    current: u32,
    cpu: f64,
    outcome: Option<Outcome>,
) -> TickReport {
    let d = decide(
        &cfg.targets[0],
        &Observation::new(now, current).with("cpu", cpu),
        &History::default(),
    );
    TickReport {
        at: now,
        leader: true,
        dry_run: false,
        results: vec![
            TargetResult {
                target: "api".into(),
                decision: Some(std::sync::Arc::new(d)),
                outcome,
                error: None,
            },
            TargetResult {
                target: "workers".into(),
                decision: None,
                outcome: None,
                error: Some(AwsError::new(
                    ErrorClass::NotFound,
                    "ecs",
                    "DescribeServices",
                    "shop/workers",
                    "",
                )),
            },
        ],
        readings: vec![Reading {
            target: "api".into(),
            metric: "cpu".into(),
            sample: Some(crate::policy::Sample::Value(cpu)),
            at: Some(now - Duration::seconds(90)),
            problem: None,
            reused_read_at: None,
        }],
        lease_error: None,
        store_errors: vec![],
        elapsed_ms: 420,
    }
}

/// One parsed sample: name, labels, value.
type Sample = (String, BTreeMap<String, String>, f64);

/// A strict parser of the text format: HELP and TYPE before a family's samples, each
/// family contiguous and declared once, label values unescaped, values numbers.
fn parse_prom(text: &str) -> (BTreeMap<String, String>, Vec<Sample>) {
    let mut types = BTreeMap::new();
    let mut samples = Vec::new();
    let mut current: Option<String> = None;
    let mut seen = std::collections::BTreeSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap().to_string();
            assert!(seen.insert(name.clone()), "family {name} declared twice");
            current = Some(name);
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut it = rest.split(' ');
            let name = it.next().unwrap();
            let kind = it.next().unwrap();
            assert_eq!(Some(name), current.as_deref(), "TYPE after its HELP");
            assert!(["gauge", "counter", "histogram"].contains(&kind), "{line}");
            types.insert(name.to_string(), kind.to_string());
            continue;
        }
        assert!(
            !line.starts_with('#') && !line.is_empty(),
            "stray line {line:?}"
        );
        let (name, rest) = match line.find('{') {
            Some(i) => (&line[..i], &line[i..]),
            None => line.split_at(line.find(' ').unwrap()),
        };
        let fam = current.as_deref().expect("a sample after a HELP line");
        let base = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| {
                name.strip_suffix(s)
                    .filter(|b| types.get(*b).map(String::as_str) == Some("histogram"))
            })
            .unwrap_or(name);
        assert_eq!(base, fam, "sample {name} outside its family");
        let mut labels = BTreeMap::new();
        let mut rest = rest;
        if let Some(body) = rest.strip_prefix('{') {
            let mut chars = body.char_indices().peekable();
            let mut end = None;
            loop {
                let (ks, _) = *chars.peek().unwrap();
                if body[ks..].starts_with('}') {
                    end = Some(ks + 1);
                    break;
                }
                let eq = body[ks..].find("=\"").unwrap() + ks;
                let key = body[ks..eq].to_string();
                assert!(
                    key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                    "{key}"
                );
                while chars.peek().unwrap().0 < eq + 2 {
                    chars.next();
                }
                let mut val = String::new();
                loop {
                    let (_, c) = chars.next().unwrap();
                    match c {
                        '\\' => match chars.next().unwrap().1 {
                            'n' => val.push('\n'),
                            '\\' => val.push('\\'),
                            '"' => val.push('"'),
                            other => panic!("bad escape \\{other}"),
                        },
                        '"' => break,
                        '\n' => panic!("raw newline in a label"),
                        c => val.push(c),
                    }
                }
                labels.insert(key, val);
                if let Some((_, ',')) = chars.peek() {
                    chars.next();
                }
                if end.is_some() {
                    break;
                }
            }
            rest = &body[end.unwrap()..];
        }
        let v = rest.trim();
        let value = match v {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            "NaN" => f64::NAN,
            v => v
                .parse::<f64>()
                .unwrap_or_else(|_| panic!("value {v:?} in {line:?}")),
        };
        samples.push((name.to_string(), labels, value));
    }
    (types, samples)
}

fn get(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|(n, l, _)| {
            n == name
                && labels
                    .iter()
                    .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.2)
}

#[test]
fn metrics_parse_and_carry_capacity_decisions_staleness_and_calls() {
    let cfg = cfg();
    let status = Status::new(&cfg, false, at(0));
    status.record(&report(&cfg, at(0), 2, 100.0, None));
    let calls = CallStats::default();
    calls.record("ecs", "DescribeServices", 0.03, None);
    calls.record("ecs", "DescribeServices", 6.0, Some("timeout"));
    let text = prom::render(&status.read(), &calls, at(0) + Duration::seconds(10));
    let (types, samples) = parse_prom(&text);

    assert_eq!(types["capstan_tick_duration_seconds"], "histogram");
    assert_eq!(types["capstan_decisions_total"], "counter");
    assert_eq!(
        get(
            &samples,
            "capstan_target_current_capacity",
            &[("target", "api")]
        ),
        Some(2.0)
    );
    // 2 units at 100% vs 50% -> 4.
    assert_eq!(
        get(
            &samples,
            "capstan_target_desired_capacity",
            &[("target", "api")]
        ),
        Some(4.0)
    );
    assert_eq!(
        get(
            &samples,
            "capstan_target_min_capacity",
            &[("target", "api")]
        ),
        Some(1.0)
    );
    assert_eq!(
        get(
            &samples,
            "capstan_target_max_capacity",
            &[("target", "api")]
        ),
        Some(9.0)
    );
    assert_eq!(
        get(
            &samples,
            "capstan_target_current_capacity",
            &[("target", "workers")]
        ),
        None
    );
    assert_eq!(
        get(
            &samples,
            "capstan_target_load",
            &[("target", "api"), ("metric", "cpu")]
        ),
        Some(100.0)
    );
    assert_eq!(
        get(&samples, "capstan_target_load_target", &[("target", "api")]),
        Some(50.0)
    );
    assert_eq!(
        get(
            &samples,
            "capstan_decisions_total",
            &[
                ("target", "api"),
                ("direction", "scale_out"),
                ("reason", "target_tracking")
            ]
        ),
        Some(1.0)
    );
    // The datapoint began 90 s before the tick, scraped 10 s after it.
    assert_eq!(
        get(
            &samples,
            "capstan_metric_age_seconds",
            &[("target", "api"), ("metric", "cpu")]
        ),
        Some(100.0)
    );
    assert_eq!(
        get(
            &samples,
            "capstan_metric_missing",
            &[("target", "workers"), ("metric", "backlog")]
        ),
        Some(1.0)
    );
    assert_eq!(
        get(
            &samples,
            "capstan_observe_errors_total",
            &[("target", "workers")]
        ),
        Some(1.0)
    );
    assert_eq!(
        get(&samples, "capstan_lease_state", &[("state", "disabled")]),
        Some(1.0)
    );
    assert_eq!(
        get(&samples, "capstan_lease_state", &[("state", "leader")]),
        Some(0.0)
    );
    assert_eq!(get(&samples, "capstan_ticks_total", &[]), Some(1.0));
    assert_eq!(
        get(&samples, "capstan_tick_duration_seconds_sum", &[]),
        Some(0.42)
    );
    assert_eq!(
        get(
            &samples,
            "capstan_tick_duration_seconds_bucket",
            &[("le", "0.5")]
        ),
        Some(1.0)
    );
    assert_eq!(
        get(
            &samples,
            "capstan_tick_duration_seconds_bucket",
            &[("le", "0.25")]
        ),
        Some(0.0)
    );
    let call = [("service", "ecs"), ("operation", "DescribeServices")];
    assert_eq!(
        get(&samples, "capstan_aws_call_duration_seconds_count", &call),
        Some(2.0)
    );
    assert_eq!(
        get(
            &samples,
            "capstan_aws_call_errors_total",
            &[("operation", "DescribeServices"), ("kind", "timeout")]
        ),
        Some(1.0)
    );
    // Buckets are cumulative and end at +Inf = count.
    let buckets: Vec<f64> = samples
        .iter()
        .filter(|(n, l, _)| {
            n == "capstan_aws_call_duration_seconds_bucket" && l["operation"] == "DescribeServices"
        })
        .map(|s| s.2)
        .collect();
    assert!(buckets.windows(2).all(|w| w[0] <= w[1]), "{buckets:?}");
    assert_eq!(buckets.last(), Some(&2.0));
}

#[test]
fn label_values_and_help_are_escaped() {
    let mut p = prom::Prom::default();
    p.family("x_total", "counter", "a \\ help\nline");
    p.sample("x_total", &[("a", "q\"uo\\te\nnl"), ("b", "ok")], 3.0);
    p.sample("x_total", &[("a", "inf")], f64::INFINITY);
    let text = p.finish();
    assert!(
        text.starts_with("# HELP x_total a \\\\ help\\nline\n# TYPE x_total counter\n"),
        "{text}"
    );
    let (_, samples) = parse_prom(&text);
    assert_eq!(samples[0].1["a"], "q\"uo\\te\nnl");
    assert_eq!(samples[0].2, 3.0);
    assert_eq!(samples[1].2, f64::INFINITY);
}

#[test]
fn a_steady_run_of_capacity_samples_keeps_two_across_the_hour() {
    let cfg = cfg();
    let status = Status::new(&cfg, false, at(0));
    // Three hours of the same capacity, then one change.
    for i in 0..180 {
        status.record(&report(&cfg, at(i), 2, 50.0, None));
    }
    {
        let s = status.read();
        let c = &s.targets[0].capacity;
        assert_eq!(c.len(), 2, "{c:?}");
        // The run's first sample moved up to the start of the last hour.
        assert_eq!(c[0].at, at(179) - Duration::hours(1));
        assert_eq!(c[1].at, at(179));
        assert_eq!(c[0].current, 2);
    }
    status.record(&report(&cfg, at(180), 3, 100.0, None));
    let s = status.read();
    let c = &s.targets[0].capacity;
    assert_eq!(c.len(), 3, "{c:?}");
    assert_eq!((c[1].at, c[1].current), (at(179), 2));
    assert_eq!((c[2].at, c[2].current), (at(180), 3));
    // Drawn as steps: 2 from an hour back until the change, then 3.
    let changes = status::capacity_changes(c);
    assert_eq!(
        changes.iter().map(|s| s.current).collect::<Vec<_>>(),
        vec![2, 3]
    );
}

#[test]
fn a_large_fleet_keeps_fewer_decisions_per_target_but_always_the_last() {
    assert_eq!(status::decisions_per_target(2), DECISIONS_PER_TARGET);
    assert_eq!(status::decisions_per_target(200), DECISIONS_PER_TARGET);
    assert_eq!(status::decisions_per_target(400), 25);
    assert_eq!(status::decisions_per_target(10_000), 1);
    assert_eq!(status::decisions_per_target(50_000), 1);
    // 400 targets: `api`, `workers` and 398 more.
    let mut text = CFG.to_string();
    for i in 0..398 {
        text.push_str(&format!(
            "[[target]]\nname = \"x{i}\"\nkind = \"ecs_service\"\ncluster = \"shop\"\nservice = \"x{i}\"\nmin = 1\nmax = 9\n[[target.metric]]\nname = \"cpu\"\nsource = \"ecs_cpu\"\n[[target.policy]]\ntype = \"target_tracking\"\nmetric = \"cpu\"\ntarget_value = 50\n"
        ));
    }
    let big = config::from_str("t.toml", &text).unwrap();
    let status = Status::new(&cfg(), false, at(0));
    // Alternating capacities: every decision its own entry.
    for i in 0..60 {
        status.record(&report(&cfg(), at(i), 2 + (i % 2) as u32, 100.0, None));
    }
    assert_eq!(
        status.read().targets[0].decisions.len(),
        DECISIONS_PER_TARGET
    );
    // A reload to 400 targets trims at once, keeping the newest.
    status.set_config(&big, false);
    assert_eq!(status.read().targets[0].decisions.len(), 25);
    assert_eq!(status.read().targets[0].last().unwrap().at, at(59));
    for i in 60..100 {
        status.record(&report(&cfg(), at(i), 2 + (i % 2) as u32, 100.0, None));
    }
    let s = status.read();
    assert_eq!(s.targets[0].decisions.len(), 25);
    assert_eq!(s.targets[0].last().unwrap().at, at(99));
}

#[test]
fn equal_decisions_fold_and_logs_stay_bounded() {
    let cfg = cfg();
    let status = Status::new(&cfg, false, at(0));
    // 30 equal holds: one entry.
    for i in 0..30 {
        status.record(&report(&cfg, at(i), 2, 50.0, None));
    }
    {
        let s = status.read();
        let api = &s.targets[0];
        assert_eq!(api.decisions.len(), 1);
        assert_eq!(api.decisions[0].count, 30);
        assert_eq!(api.decisions[0].first_at, at(0));
        assert_eq!(api.decisions[0].at, at(29));
        // 30 equal samples: only the first and the last are kept, enough to draw them.
        assert_eq!(api.capacity.len(), 2);
        assert_eq!((api.capacity[0].at, api.capacity[1].at), (at(0), at(29)));
        let changes = status::capacity_changes(&api.capacity);
        assert_eq!(changes.len(), 2);
        assert_eq!((changes[0].at, changes[1].at), (at(0), at(29)));
    }
    // Alternating capacities: every decision its own entry, the log capped; capacity samples
    // keep the last hour only.
    for i in 30..200 {
        status.record(&report(&cfg, at(i), 2 + (i % 2) as u32, 100.0, None));
    }
    let s = status.read();
    let api = &s.targets[0];
    assert_eq!(api.decisions.len(), DECISIONS_PER_TARGET);
    assert_eq!(api.decisions.back().unwrap().at, at(199));
    assert_eq!(
        api.capacity.len(),
        61,
        "10:00 + 199 min back to one hour before"
    );
    assert!(api.capacity.front().unwrap().at >= at(199) - Duration::hours(1));
    // Alternating every tick: every sample is a change.
    assert_eq!(status::capacity_changes(&api.capacity).len(), 61);
    let recent = s.recent_decisions(None, 10_000);
    assert_eq!(recent.len(), DECISIONS_PER_TARGET);
    assert!(
        recent.windows(2).all(|w| w[0].at >= w[1].at),
        "newest first"
    );
    assert_eq!(s.recent_decisions(Some("api"), 3).len(), 3);
    assert_eq!(s.recent_decisions(Some("workers"), 3).len(), 0);
}

#[test]
fn readiness_needs_a_recent_tick_aws_and_a_known_lease_role() {
    let cfg = cfg();
    let status = Status::new(&cfg, false, at(0));
    let r = status.read().readiness(at(0));
    assert!(!r.ready && !r.recent_tick && r.config_loaded);
    status.record(&report(&cfg, at(0), 2, 50.0, None));
    let r = status.read().readiness(at(0) + Duration::seconds(20));
    assert!(r.ready && r.aws_reachable, "{r:?}");
    assert_eq!(r.lease, "disabled");
    // 3 intervals + 60 s later without a tick: not ready.
    let r = status.read().readiness(at(0) + Duration::seconds(106));
    assert!(!r.ready && !r.recent_tick, "{r:?}");
    // No target could be read: AWS unreachable.
    let mut bad = report(&cfg, at(1), 2, 50.0, None);
    bad.results[0].decision = None;
    bad.results[0].error = bad.results[1].error.clone();
    status.record(&bad);
    assert!(!status.read().readiness(at(1)).aws_reachable);
    // The lease cannot be renewed: role unknown, not ready.
    let mut lease = report(&cfg, at(2), 2, 50.0, None);
    lease.leader = false;
    lease.lease_error = Some(AwsError::new(
        ErrorClass::Transient,
        "dynamodb",
        "UpdateItem",
        "lease",
        "timeout",
    ));
    status.record(&lease);
    let r = status.read().readiness(at(2));
    assert_eq!(r.lease, "unknown");
    assert!(!r.ready);
}

#[test]
fn followers_and_leaders_are_told_apart_with_a_lease() {
    let text = CFG.replace(
        "poll_interval = \"15s\"",
        "poll_interval = \"15s\"\n[global.lease]\nenabled = true",
    );
    let cfg = config::from_str("t.toml", &text).unwrap();
    let status = Status::new(&cfg, false, at(0));
    let mut r = report(&cfg, at(0), 2, 50.0, None);
    r.leader = false;
    status.record(&r);
    assert_eq!(status.read().lease_role(), "follower");
    assert!(status.read().readiness(at(0)).ready);
    r.leader = true;
    status.record(&r);
    assert_eq!(status.read().lease_role(), "leader");
}

#[test]
fn a_reload_keeps_remaining_targets_and_drops_removed_ones() {
    let cfg = cfg();
    let status = Status::new(&cfg, false, at(0));
    status.record(&report(&cfg, at(0), 2, 100.0, None));
    let mut only_api = cfg.clone();
    only_api.targets.truncate(1);
    status.set_config(&only_api, true);
    let s = status.read();
    assert_eq!(s.targets.len(), 1);
    assert_eq!(s.targets[0].decisions.len(), 1, "api keeps its log");
    assert!(
        s.observe_errors.is_empty(),
        "workers' counters went with it"
    );
    assert!(s.dry_run);
}

#[test]
fn the_page_escapes_text_and_shows_every_target() {
    let cfg = cfg();
    let status = Status::new(&cfg, false, at(0));
    let evil = AwsError::new(
        ErrorClass::Invalid,
        "ecs",
        "UpdateService",
        "shop/api",
        "<script>alert(1)</script><img src=x onerror=alert(2)> Signature=0123456789abcdef",
    );
    status.record(&report(
        &cfg,
        at(0),
        2,
        100.0,
        Some(Outcome::Failed { error: evil }),
    ));
    let html = page::render(&status.read(), at(0));
    assert!(
        !html.contains("<script") && !html.contains("<img"),
        "{html}"
    );
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(!html.contains("0123456789abcdef"), "signature redacted");
    for t in &cfg.targets {
        assert!(html.contains(&format!("<h2>{}</h2>", t.name)), "{}", t.name);
    }
    assert!(
        html.contains("<svg") && html.contains("<polyline"),
        "capacity chart"
    );
    assert!(html.contains("out 2 &rarr; 4"), "the decision");
    assert!(
        html.contains("load <b>cpu</b> 100 vs target 50 per unit: <b>200%</b>"),
        "{html}"
    );
    // No external asset: no URL, no src or href attribute, no link or script element.
    for bad in [
        "http://", "https://", " src=\"", "href=", "<link", "<script",
    ] {
        assert!(!html.contains(bad), "{bad}");
    }
    assert_eq!(page::esc("a&b\"'<>"), "a&amp;b&quot;&#39;&lt;&gt;");
}

#[test]
fn v1_output_is_redacted_and_bounded() {
    let cfg = cfg();
    let status = Status::new(&cfg, false, at(0));
    let leak = AwsError::new(
        ErrorClass::AccessDenied,
        "ecs",
        "UpdateService",
        "shop/api",
        "request Authorization: AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20261127/us-east-1/ecs/aws4_request, Signature=abcdef0123456789 X-Amz-Security-Token=FQoGZXIvYXdzEXAMPLETOKEN",
    );
    status.record(&report(
        &cfg,
        at(0),
        2,
        100.0,
        Some(Outcome::Failed { error: leak }),
    ));
    let s = status.read();
    for v in [targets_json(&s, at(0)), decisions_json(&s, None, 10)] {
        let text = v.to_string();
        for secret in [
            "AKIAIOSFODNN7EXAMPLE",
            "abcdef0123456789",
            "FQoGZXIvYXdzEXAMPLETOKEN",
            "AWS4-HMAC",
        ] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        assert!(text.contains("[redacted]"));
    }
    let t = targets_json(&s, at(0));
    assert_eq!(t["targets"][0]["name"], "api");
    assert_eq!(t["targets"][0]["desired"], 4);
    assert_eq!(t["targets"][0]["load"]["ratio"], 2.0);
    assert_eq!(
        t["targets"][1]["error"],
        "ecs:DescribeServices on shop/workers: not found"
    );
    assert_eq!(decisions_json(&s, None, 100_000)["limit"], 500);
}

#[test]
fn applied_outcomes_are_counted() {
    let cfg = cfg();
    let status = Status::new(&cfg, false, at(0));
    let applied = Outcome::Applied {
        applied: Applied {
            requested: 4,
            set: 4,
            notes: vec![],
        },
    };
    status.record(&report(&cfg, at(0), 2, 100.0, Some(applied)));
    let s = status.read();
    assert_eq!(s.outcomes.get(&("api".to_string(), "applied")), Some(&1));
    assert_eq!(s.targets[0].outcome.as_deref(), Some("applied"));
}

#[test]
fn http_listen_off_disables_the_endpoints() {
    let off = config::from_str("t.toml", "[global]\nhttp_listen = \"off\"\n").unwrap();
    assert_eq!(off.global.http_addr(), None);
    let on = config::from_str("t.toml", "[global]\nhttp_listen = \"0.0.0.0:9090\"\n").unwrap();
    assert_eq!(on.global.http_addr(), Some("0.0.0.0:9090"));
    assert_eq!(
        Config {
            global: Default::default(),
            targets: vec![]
        }
        .global
        .http_addr(),
        Some("127.0.0.1:8080")
    );
    let errs =
        config::from_str("t.toml", "[global]\nhttp_listen = \"localhost:80\"\n").unwrap_err();
    assert!(errs[0].to_string().contains("http_listen"), "{}", errs[0]);
}

#[test]
fn a_reused_reading_is_shown_with_how_long_ago_it_was_read() {
    let cfg = cfg();
    let status = Status::new(&cfg, false, at(0));
    let now = at(1);
    let mut r = report(&cfg, now, 2, 50.0, None);
    r.readings[0].reused_read_at = Some(now - Duration::seconds(45));
    status.record(&r);
    let v = targets_json(&status.read(), now);
    let cpu = &v["targets"][0]["metrics"][0];
    assert_eq!(cpu["name"], "cpu");
    assert_eq!(cpu["read_secs_ago"], 45);
    assert_eq!(cpu["age_secs"], 90, "the datapoint's own age");
    assert!(page::render(&status.read(), now).contains("(read 45 s ago)"));
    // Read in the next tick: no longer marked.
    let r = report(&cfg, at(2), 2, 50.0, None);
    status.record(&r);
    let v = targets_json(&status.read(), at(2));
    assert!(v["targets"][0]["metrics"][0]["read_secs_ago"].is_null());
    assert!(!page::render(&status.read(), at(2)).contains("s ago)"));
}

#[tokio::test]
async fn a_predictive_target_without_a_forecast_says_why_in_v1_targets_and_on_the_page() {
    use crate::controller::lease::SoleLeader;
    use crate::controller::state::MemoryStore;
    use crate::controller::{Controller, Options};
    use crate::fake::FakeCloud;
    let cfg = config::from_str(
        "t.toml",
        r#"
[[target]]
name = "web"
kind = "ecs_service"
cluster = "shop"
service = "web"
min = 1
max = 9
[[target.metric]]
name = "requests"
source = "cloudwatch"
namespace = "AWS/ApplicationELB"
metric_name = "RequestCount"
statistic = "Sum"
[[target.metric]]
name = "rps"
source = "expression"
expression = "requests / 60"
[[target.policy]]
type = "predictive"
metric = "rps"
target_per_unit = 100
"#,
    )
    .unwrap();
    let cloud = FakeCloud::new();
    let status = Status::new(&cfg, false, at(0));
    let mut c = Controller::new(
        cfg,
        cloud.clone(),
        cloud,
        MemoryStore::default(),
        SoleLeader,
        Options::default(),
    );
    // No history at all: the first refresh (end of the first tick) finds why.
    c.tick(at(0)).await;
    status.record(&c.tick(at(1)).await);
    let v = targets_json(&status.read(), at(1));
    let f = &v["targets"][0]["forecast"];
    assert_eq!(f["available"], false, "{f}");
    assert_eq!(f["unit"], "requests/s");
    let note = f["note"].as_str().unwrap();
    assert!(
        note.starts_with("no forecast: insufficient history"),
        "{note}"
    );
    let html = page::render(&status.read(), at(1));
    assert!(
        html.contains("forecast <b>none</b> (predictive:rps): no forecast: insufficient history"),
        "{html}"
    );
}
