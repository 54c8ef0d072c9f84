use std::collections::BTreeMap;

use chrono::FixedOffset;

use super::baseline::Baseline;
use super::engine::{replay, Controller, View};
use super::*;
use crate::config::{self, Target};

/// A round start time (a multiple of an hour), so periods and bins line up.
const T0: i64 = 1_699_999_200;

fn target(toml: &str) -> Target {
    let cfg = config::from_str("test.toml", toml).unwrap_or_else(|d| {
        panic!(
            "{}",
            d.iter()
                .map(|x| x.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        )
    });
    cfg.targets.into_iter().next().expect("one target")
}

/// `rates` in requests per second, one bin of `bin` seconds each from T0.
fn trace(rates: &[f64], bin: u64) -> Trace {
    let bins = rates
        .iter()
        .enumerate()
        .map(|(i, r)| Bin {
            start: T0 + (i as u64 * bin) as i64,
            count: r * bin as f64,
        })
        .collect();
    Trace::new(bins, FixedOffset::east_opt(0).unwrap()).unwrap()
}

/// Minute bins: `(minutes, rate)` pieces one after another.
fn steps(pieces: &[(usize, f64)]) -> Trace {
    let rates: Vec<f64> = pieces
        .iter()
        .flat_map(|(n, r)| std::iter::repeat_n(*r, *n))
        .collect();
    trace(&rates, 60)
}

fn service(unit_capacity: f64, startup: u64) -> ServiceModel {
    ServiceModel {
        unit_capacity,
        startup_secs: startup,
        metric_delay_secs: 60,
        metric_period_secs: 60,
        base_latency_secs: 0.1,
    }
}

fn options(s: ServiceModel, baseline: Option<Baseline>) -> Options {
    Options {
        service: s,
        poll_interval_secs: 15,
        global: Default::default(),
        initial: None,
        baseline,
    }
}

fn run(t: &Target, tr: &Trace, opts: &Options) -> Outcome {
    let plans = plan_metrics(t, &BTreeMap::new(), opts.service.metric_period_secs).unwrap();
    simulate(t, &plans, tr, opts, &mut |_| {}).unwrap()
}

/// A CPU target: utilization tracked at 50%, min 1, max 10.
const CPU: &str = r#"
[[target]]
name = "web"
kind = "ecs_service"
cluster = "c"
service = "web"
min = 1
max = 10

[[target.metric]]
name = "cpu"
source = "ecs_cpu"

[[target.policy]]
type = "target_tracking"
metric = "cpu"
target_value = 50
"#;

/// The requests to an ALB per minute (`Sum`) and the rate they make (`requests / 60`).
const REQUESTS: &str = r#"
[[target.metric]]
name = "requests"
source = "cloudwatch"
namespace = "AWS/ApplicationELB"
metric_name = "RequestCount"
dimensions = { LoadBalancer = "app/shop/1" }
statistic = "Sum"
period = "60s"

[[target.metric]]
name = "rps"
source = "expression"
expression = "requests / 60"
"#;

/// A controller that holds a fixed capacity, or follows a script of (tick time, capacity).
struct Script {
    initial: u32,
    at: Vec<(i64, u32)>,
}

impl Controller for Script {
    fn interval_secs(&self) -> u64 {
        15
    }
    fn initial(&self) -> Option<u32> {
        Some(self.initial)
    }
    fn tick(&mut self, v: &View<'_>) -> u32 {
        self.at
            .iter()
            .rev()
            .find(|(t, _)| *t <= v.now)
            .map_or(self.initial, |x| x.1)
    }
}

#[test]
fn under_provisioning_on_a_hand_made_trace() {
    // 1, 2, 3 and 5 requests/s against 2 units of 1 request/s.
    let tr = trace(&[1.0, 2.0, 3.0, 5.0], 60);
    let s = service(1.0, 60);
    let mut ctl = Script {
        initial: 2,
        at: vec![],
    };
    let r = replay(&tr, &s, 2, &mut ctl, &mut |_| {});
    let under: Vec<bool> = r
        .bins
        .iter()
        .map(|b| report::under_provisioned(b, 1.0))
        .collect();
    assert_eq!(under, [false, false, true, true]);
    let needed: Vec<u32> = r.bins.iter().map(|b| b.needed).collect();
    assert_eq!(needed, [1, 2, 3, 5]);
    // 1 request/s over for a minute, then 3 requests/s over for a minute.
    let over: f64 = r.bins.iter().map(|b| b.exceeded).sum();
    assert!((over - 240.0).abs() < 1e-9, "{over}");
    let sum = report::summarize("t", "script", &tr, &s, 15, 2, 1, false, &r);
    assert_eq!(sum.under_provisioned_bins, 2);
    assert!((sum.under_provisioned_share - 0.5).abs() < 1e-12);
    assert!((sum.requests - 660.0).abs() < 1e-9);
    assert!((sum.over_capacity_share - 240.0 / 660.0).abs() < 1e-12);
    // 2 units for 4 minutes.
    assert!((sum.unit_hours - 8.0 / 60.0).abs() < 1e-12);
    assert_eq!(sum.scaling_actions, 0);
}

#[test]
fn oracle_math() {
    // 1, 10, 0 and 2.5 requests/s with 2 requests/s per unit: needs 1, 5, 0, 2; with min 1
    // the oracle pays 1 + 5 + 1 + 2 unit-minutes.
    let tr = trace(&[1.0, 10.0, 0.0, 2.5], 60);
    let t = target(CPU);
    let out = run(
        &t,
        &tr,
        &options(service(2.0, 60), Some(Baseline::StaticPeak)),
    );
    let sum = &out.summary;
    assert!((sum.oracle_unit_hours - 9.0 / 60.0).abs() < 1e-12);
    // Static peak: 5 units all 4 minutes.
    assert!((sum.unit_hours - 20.0 / 60.0).abs() < 1e-12);
    assert!((sum.ratio_to_oracle - 20.0 / 9.0).abs() < 1e-12);
    assert_eq!(sum.peak_needed, 5);
    assert_eq!(sum.under_provisioned_bins, 0);
}

#[test]
fn startup_delay_is_respected_and_scale_down_is_immediate() {
    let tr = trace(&[1.0; 20], 60);
    let s = service(1.0, 120);
    // Ask for 5 at T0+120 (ready at T0+240), cut to 3 at T0+180 (cancels 2 pending), then
    // to 1 at T0+600 (at once).
    let mut ctl = Script {
        initial: 2,
        at: vec![(T0 + 120, 5), (T0 + 180, 3), (T0 + 600, 1)],
    };
    let r = replay(&tr, &s, 2, &mut ctl, &mut |_| {});
    let ready: Vec<u32> = r.bins.iter().map(|b| b.ready).collect();
    let desired: Vec<u32> = r.bins.iter().map(|b| b.desired).collect();
    assert_eq!(&ready[..4], [2, 2, 2, 2]);
    assert_eq!(&ready[4..10], [3, 3, 3, 3, 3, 3]);
    assert_eq!(&ready[10..], [1; 10]);
    // Desired at the end of each bin: the tick at T0+180 belongs to the bin it starts.
    assert_eq!(&desired[..3], [2, 2, 5]);
    assert_eq!(&desired[3..10], [3; 7]);
    assert_eq!(&desired[10..], [1; 10]);
    assert_eq!(r.scale_outs, 1);
    assert_eq!(r.scale_ins, 2);
    // Without a start-up delay the capacity is ready at once.
    let s0 = service(1.0, 0);
    let mut ctl = Script {
        initial: 2,
        at: vec![(T0 + 120, 5)],
    };
    let r = replay(&tr, &s0, 2, &mut ctl, &mut |_| {});
    assert_eq!(r.bins[2].ready, 5);
}

#[test]
fn startup_delay_with_the_policies() {
    // From 5 to 40 requests/s at minute 10 with 10 requests/s per unit, 50% CPU target.
    let tr = steps(&[(10, 5.0), (50, 40.0)]);
    let t = target(CPU);
    for startup in [0u64, 180] {
        let out = run(&t, &tr, &options(service(10.0, startup), None));
        let first = out
            .replay
            .actions
            .iter()
            .find(|a| a.to > a.from)
            .expect("a scale-out")
            .clone();
        for b in &out.replay.bins {
            // Nothing asked for at `first.at` is ready before `first.at + startup`.
            if b.start + 60 <= first.at + startup as i64 {
                assert_eq!(
                    b.ready,
                    1,
                    "bin {} (startup {startup}) {:?}",
                    b.start - T0,
                    out.replay.actions
                );
            }
            if b.start >= first.at + startup as i64 && b.start < first.at + 3600 {
                assert!(
                    b.ready >= first.to,
                    "bin {} (startup {startup})",
                    b.start - T0
                );
            }
        }
    }
}

fn ticks_before(out: &Outcome, end: i64) -> Vec<(i64, u32)> {
    out.replay
        .ticks
        .iter()
        .copied()
        .filter(|(t, _)| *t < end)
        .collect()
}

#[test]
fn appending_future_data_changes_no_past_decision() {
    // Two days of a daily pattern, then a third day with a flash crowd; a predictive policy
    // (the daemon's forecaster) acts on the forecast.
    let toml = format!(
        "{CPU}\n{REQUESTS}\n{}",
        r#"
[[target.policy]]
type = "predictive"
metric = "rps"
target_per_unit = 10
mode = "forecast_and_scale"
schedule_ahead = "10m"
refresh = "30m"
"#
    );
    let t = target(&toml);
    let day: Vec<f64> = (0..1440)
        .map(|m| 20.0 + 15.0 * ((m as f64) / 1440.0 * std::f64::consts::TAU).sin())
        .collect();
    let mut past = day.clone();
    past.extend(&day);
    let mut future = past.clone();
    future.extend(
        day.iter()
            .enumerate()
            .map(|(i, r)| if i > 600 { 90.0 } else { *r }),
    );
    let (a, b) = (trace(&past, 60), trace(&future, 60));
    for baseline in [None, Some(Baseline::Hpa), Some(Baseline::AwsTargetTracking)] {
        let o = options(service(10.0, 60), baseline);
        let (ra, rb) = (run(&t, &a, &o), run(&t, &b, &o));
        assert_eq!(
            ticks_before(&ra, a.end()),
            ticks_before(&rb, a.end()),
            "{baseline:?}"
        );
        assert_eq!(
            ra.replay.bins,
            rb.replay.bins[..ra.replay.bins.len()],
            "{baseline:?}"
        );
        assert!(rb.replay.ticks.len() > ra.replay.ticks.len());
    }
}

#[test]
fn predictive_policy_scales_ahead_of_a_daily_peak() {
    // One busy hour a day; the second day the forecast (the first day) lifts the capacity
    // before the load arrives, which a reactive policy cannot do.
    let toml = format!(
        "{CPU}\n{REQUESTS}\n{}",
        r#"
[[target.policy]]
type = "predictive"
metric = "rps"
target_per_unit = 10
mode = "forecast_and_scale"
schedule_ahead = "10m"
refresh = "5m"
max_error = 10
"#
    );
    let t = target(&toml);
    let day: Vec<f64> = (0..1440)
        .map(|m| if (720..780).contains(&m) { 60.0 } else { 5.0 })
        .collect();
    let mut rates = day.clone();
    rates.extend(&day);
    let tr = trace(&rates, 60);
    let out = run(&t, &tr, &options(service(10.0, 60), None));
    let peak2 = T0 + (1440 + 720) * 60;
    // Before the second day's peak arrives, capacity is already up.
    let before = out
        .replay
        .bins
        .iter()
        .find(|b| b.start == peak2 - 60)
        .unwrap();
    assert!(before.ready >= 6, "ready {} before the peak", before.ready);
    // The first day it was not.
    let peak1 = out
        .replay
        .bins
        .iter()
        .find(|b| b.start == T0 + 719 * 60)
        .unwrap();
    assert_eq!(peak1.ready, 1);
}

#[test]
fn aws_target_tracking_on_a_step() {
    // 50% CPU on 1 unit, then 200% of one unit's capacity from minute 30, then back to 50%
    // from minute 60.
    let tr = steps(&[(30, 5.0), (30, 20.0), (60, 5.0)]);
    let t = target(CPU);
    let out = run(
        &t,
        &tr,
        &options(service(10.0, 60), Some(Baseline::AwsTargetTracking)),
    );
    let acts: Vec<(i64, u32, u32)> = out
        .replay
        .actions
        .iter()
        .map(|a| (a.at - T0, a.from, a.to))
        .collect();
    let up = 30 * 60;
    let down = 60 * 60;
    // The third datapoint above the target (the period [up+120, up+180)) is published at
    // up+240: scale out by the proportion 100/50. The next scale-out waits for the 300 s
    // cooldown, then 2 units are still at 100%: 4. After the drop the fifteenth datapoint
    // below 45% is published 15 minutes + 1 delay later: 4 x 12.5/50 -> 1.
    assert_eq!(
        acts,
        [
            (up + 240, 1, 2),
            (up + 540, 2, 4),
            (down + 15 * 60 + 60, 4, 1)
        ]
    );
}

#[test]
fn hpa_on_a_step() {
    // 50% CPU, then 54% (within the 0.1 tolerance), then 200%, then 50% again.
    let tr = steps(&[(30, 5.0), (30, 5.4), (30, 20.0), (60, 5.0)]);
    let t = target(CPU);
    let out = run(&t, &tr, &options(service(10.0, 60), Some(Baseline::Hpa)));
    let acts = &out.replay.actions;
    let up = T0 + 60 * 60;
    let down = T0 + 90 * 60;
    // Nothing changes before the high datapoint is visible (tolerance holds 54%).
    assert!(acts.iter().all(|a| a.at >= up + 120), "{acts:?}");
    // The first one visible (published up+120) scales out at once, on the 15 s loop.
    assert_eq!(acts[0].at, up + 120);
    assert!(acts[0].to > acts[0].from);
    // Scale-down waits until the last high recommendation (the tick before the first low
    // datapoint is visible, down+105) leaves the 300 s stabilization window.
    let first_in = acts
        .iter()
        .find(|a| a.at >= down && a.to < a.from)
        .expect("a scale-in");
    assert_eq!(first_in.at, down + 105 + 300, "{acts:?}");
    assert_eq!(out.replay.bins.last().unwrap().desired, 1);
    assert!(out.summary.max_desired <= 10);
}

#[test]
fn static_peak_on_a_step() {
    let tr = steps(&[(30, 5.0), (30, 35.0), (30, 5.0)]);
    let t = target(CPU);
    let out = run(
        &t,
        &tr,
        &options(service(10.0, 60), Some(Baseline::StaticPeak)),
    );
    assert!(out
        .replay
        .bins
        .iter()
        .all(|b| b.desired == 4 && b.ready == 4));
    assert_eq!(out.summary.scaling_actions, 0);
    assert_eq!(out.summary.under_provisioned_bins, 0);
}

#[test]
fn metric_models_follow_the_policies() {
    let t = target(&format!(
        "{CPU}\n{}",
        r#"
[[target.metric]]
name = "rpt"
source = "cloudwatch"
namespace = "AWS/ApplicationELB"
metric_name = "RequestCountPerTarget"
statistic = "Sum"

[[target.metric]]
name = "p99"
source = "cloudwatch"
namespace = "AWS/ApplicationELB"
metric_name = "TargetResponseTime"

[[target.metric]]
name = "odd"
source = "cloudwatch"
namespace = "Shop"
metric_name = "Widgets"

[[target.policy]]
type = "target_tracking"
name = "requests"
metric = "rpt"
target_value = 600
"#
    ));
    let plans = plan_metrics(&t, &BTreeMap::new(), 60).unwrap();
    let m: Vec<(&str, MetricModel)> = plans.iter().map(|p| (&*p.name, p.model)).collect();
    assert_eq!(
        m,
        [
            ("cpu", MetricModel::Utilization),
            ("rpt", MetricModel::PerUnitCount),
            ("p99", MetricModel::Latency),
            ("odd", MetricModel::Unmodeled),
        ]
    );
    // 600 requests per unit per minute: 10 requests/s per unit.
    assert_eq!(derive_unit_capacity(&t, &plans).unwrap().0, 10.0);
    let mut o = BTreeMap::new();
    o.insert("odd".to_string(), MetricModel::Rate);
    let plans = plan_metrics(&t, &o, 60).unwrap();
    assert_eq!(plans[3].model, MetricModel::Rate);
    o.insert("nope".to_string(), MetricModel::Rate);
    assert!(plan_metrics(&t, &o, 60).is_err());
}

#[test]
fn sqs_backlog_accumulates_and_drains() {
    let t = target(
        r#"
[[target]]
name = "workers"
kind = "ecs_service"
cluster = "c"
service = "w"
min = 0
max = 10

[[target.metric]]
name = "backlog"
source = "sqs"
queue = "q"

[[target.policy]]
type = "target_tracking"
metric = "backlog"
target_per_unit = 100
"#,
    );
    // 10 messages/s for 10 minutes with 5 per second per worker, then nothing.
    let tr = steps(&[(10, 10.0), (20, 0.0)]);
    let out = run(&t, &tr, &options(service(5.0, 60), None));
    let sum = &out.summary;
    assert!(sum.max_backlog.unwrap() > 0.0);
    assert!(sum.max_desired >= 2);
    // Idle at the end: scaled to zero.
    assert_eq!(out.replay.bins.last().unwrap().desired, 0);
}

#[test]
fn gaps_are_unknown_not_zero() {
    let bins = vec![
        Bin {
            start: T0,
            count: 60.0,
        },
        Bin {
            start: T0 + 60,
            count: 60.0,
        },
        Bin {
            start: T0 + 600,
            count: 60.0,
        },
    ];
    let tr = Trace::new(bins, FixedOffset::east_opt(0).unwrap()).unwrap();
    assert_eq!(tr.bin_secs, 60);
    let s = service(1.0, 0);
    let mut ctl = Script {
        initial: 1,
        at: vec![],
    };
    let r = replay(&tr, &s, 1, &mut ctl, &mut |_| {});
    assert_eq!(r.bins.len(), 3, "one result per trace row");
    let sum = report::summarize("t", "s", &tr, &s, 15, 1, 1, false, &r);
    assert!(
        (sum.unit_hours - 3.0 / 60.0).abs() < 1e-12,
        "gaps are not paid"
    );
}

#[test]
fn trace_parsing() {
    let tr = Trace::parse(
        "t.csv",
        "timestamp,count\n1995-07-01T00:00:00-04:00,42\n1995-07-01T00:01:00-04:00,61\n",
    )
    .unwrap();
    assert_eq!(tr.bin_secs, 60);
    assert_eq!(tr.rate(0), 0.7);
    assert_eq!(tr.format_time(tr.start()), "1995-07-01T00:00:00-04:00");
    let tr = Trace::parse("t.csv", "count,timestamp\n3,100\n4,101\n").unwrap();
    assert_eq!((tr.bin_secs, tr.bins[1].count), (1, 4.0));
    assert_eq!(tr.format_time(100), "1970-01-01T00:01:40Z");
    for bad in [
        "time,n\n1,2\n",
        "timestamp,count\n100,1\n",
        "timestamp,count\n100,1\n100,2\n",
        "timestamp,count\n100,1\n160,-2\n",
        "timestamp,count\nyesterday,1\n160,2\n",
    ] {
        assert!(Trace::parse("t.csv", bad).is_err(), "{bad}");
    }
}

#[test]
fn poll_every_delays_what_the_policies_see_as_in_the_daemon() {
    // The load triples at minute 31. Read every tick, the first datapoint of the step
    // (published at up+120) is acted on at once. Read every 5 minutes, the metric is read
    // first when a datapoint is published (T0+120, the end of the first period plus the
    // delay), then at T0+120+300k: up+60 does not see the step yet, up+360 does.
    let tr = steps(&[(31, 5.0), (30, 15.0)]);
    let up = 31 * 60;
    let first_action = |toml: &str| {
        let out = run(&target(toml), &tr, &options(service(10.0, 60), None));
        let a = out.replay.actions.first().expect("scales out").clone();
        (a.at - T0, a.from, a.to)
    };
    assert_eq!(first_action(CPU).0, up + 120);
    let slow = CPU.replace(
        "source = \"ecs_cpu\"",
        "source = \"ecs_cpu\"\npoll_every = \"5m\"",
    );
    assert_eq!(first_action(&slow).0, up + 360);
    // Between reads the value is reused, and the reason of an action says so.
    let out = run(&target(&slow), &tr, &options(service(10.0, 60), None));
    assert!(
        out.replay
            .actions
            .iter()
            .any(|a| (a.at - T0 - 120) % 300 != 0),
        "an action between reads: {:?}",
        out.replay.actions
    );
    for a in &out.replay.actions {
        let since_read = (a.at - T0 - 120) % 300;
        let reason = a.reason.clone().unwrap_or_default();
        if since_read == 0 {
            assert!(!reason.contains("s ago"), "{a:?}");
        } else {
            assert!(
                reason.contains(&format!("; cpu read {since_read}s ago (poll_every)")),
                "{a:?}"
            );
        }
    }
}

/// A controller that acts on nothing and, at the tick `at`, runs `probe` against the
/// simulated cloud (unlocked, as the daemon's loop reads it).
struct Probe<F: FnMut(&SimCloud, i64)> {
    at: i64,
    cloud: Option<SimCloud>,
    target: Target,
    probe: F,
}

impl<F: FnMut(&SimCloud, i64)> Controller for Probe<F> {
    fn interval_secs(&self) -> u64 {
        60
    }
    fn attach(&mut self, sim: &engine::SharedSim) -> bool {
        let plans = plan_metrics(&self.target, &BTreeMap::new(), 60).unwrap();
        self.cloud = Some(SimCloud::new(sim.clone(), &self.target, &plans));
        true
    }
    fn tick(&mut self, v: &View<'_>) -> u32 {
        if v.now == self.at {
            (self.probe)(self.cloud.as_ref().unwrap(), v.now);
        }
        v.current
    }
}

fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(f)
}

#[test]
fn the_simulated_cloudwatch_answers_each_statistic_at_any_period_as_published() {
    use crate::sources::cloudwatch::{MetricData, PlannedCall, PlannedQuery, QueryKind};
    use crate::sources::{MetricRequest, Source};
    let t = target(&format!("{CPU}\n{REQUESTS}"));
    // 10 requests/s for an hour, on 4 units of 5 requests/s: CPU at 50%.
    let tr = steps(&[(60, 10.0)]);
    let now = T0 + 1800;
    let mut seen = false;
    let mut probe = Probe {
        at: now,
        cloud: None,
        target: t.clone(),
        probe: |cloud: &SimCloud, now: i64| {
            let time = |s: i64| chrono::DateTime::from_timestamp(s, 0).unwrap();
            let stat = |statistic: &str, metric: &str, ns: &str, period: u64| PlannedQuery {
                id: format!("{statistic}{period}"),
                kind: QueryKind::Stat {
                    namespace: ns.into(),
                    metric_name: metric.into(),
                    dimensions: [("LoadBalancer".to_string(), "app/shop/1".to_string())].into(),
                    statistic: statistic.into(),
                    period_secs: period,
                },
                return_data: true,
                answers: None,
            };
            let call = |period: u64, q: Vec<PlannedQuery>| PlannedCall {
                start: time(T0),
                end: time(T0 + 3600),
                period_secs: period,
                queries: q,
            };
            let elb = "AWS/ApplicationELB";
            let got = block_on(cloud.get_metric_data(&call(
                300,
                vec![
                    stat("Sum", "RequestCount", elb, 300),
                    stat("Average", "RequestCount", elb, 300),
                    stat("SampleCount", "RequestCount", elb, 300),
                ],
            )))
            .unwrap();
            // Published by now: the minutes that ended a delay (60 s) ago, up to T0+1740.
            // Five-minute buckets hold 5 of them each; the newest (T0+1500) only 4.
            // Newest first, as GetMetricData answers.
            let sums: Vec<f64> = got["Sum300"].iter().rev().map(|p| p.1).collect();
            assert_eq!(sums, [3000.0, 3000.0, 3000.0, 3000.0, 3000.0, 2400.0]);
            assert!(got["Average300"].iter().all(|p| p.1 == 600.0));
            assert_eq!(got["SampleCount300"][0].1, 4.0);
            assert_eq!(got["Sum300"].last().unwrap().0, time(T0));
            // A metric the service does not publish has no datapoints.
            let none = block_on(
                cloud.get_metric_data(&call(60, vec![stat("Sum", "Widgets", "Shop", 60)])),
            )
            .unwrap();
            assert!(none["Sum60"].is_empty());
            // The daemon's read path: a per-minute Sum through `requests / 60` is the rate,
            // CPU the utilization, each from the newest complete fresh datapoint.
            let t = &t;
            let reqs: Vec<MetricRequest<'_>> = t
                .metrics
                .iter()
                .map(|m| MetricRequest {
                    target: t,
                    metric: m,
                })
                .collect();
            let readings = block_on(cloud.read(&reqs, time(now)));
            let value = |name: &str| {
                readings
                    .iter()
                    .find(|r| &*r.metric == name)
                    .and_then(|r| r.sample)
            };
            assert_eq!(value("rps"), Some(crate::policy::Sample::Value(10.0)));
            assert_eq!(value("cpu"), Some(crate::policy::Sample::Value(50.0)));
            seen = true;
        },
    };
    let s = service(5.0, 0);
    replay(&tr, &s, 4, &mut probe, &mut |_| {});
    drop(probe);
    assert!(seen, "the probe ran");
}

#[test]
fn the_replays_forecast_of_the_recommended_policy_is_the_request_rate() {
    // A regular daily load (1,000 to 3,000 requests/s) for three days, replayed through the
    // daemon on config/examples/recommended.toml: the forecast its predictive policy uses
    // at the end must be the request rate, in requests per second, within 10%.
    let cfg = config::from_str(
        "recommended.toml",
        include_str!("../../config/examples/recommended.toml"),
    )
    .unwrap_or_else(|d| panic!("{d:?}"));
    let t = cfg.target("web").unwrap().clone();
    let day = 86_400.0;
    let rate = |at: i64| 2000.0 + 1000.0 * ((at - T0) as f64 / day * std::f64::consts::TAU).sin();
    let rates: Vec<f64> = (0..3 * 1440).map(|m| rate(T0 + m * 60 + 30)).collect();
    let tr = trace(&rates, 60);
    let plans = plan_metrics(&t, &BTreeMap::new(), 60).unwrap();
    let mut scaler = DaemonScaler::new(t, plans, cfg.global.clone()).unwrap();
    replay(&tr, &service(100.0, 60), 20, &mut scaler, &mut |_| {});
    let daemon = scaler.daemon().unwrap();
    let f = daemon
        .forecast("web")
        .unwrap_or_else(|| panic!("no forecast: {:?}", daemon.forecast_note("web")));
    let start = f.start.timestamp();
    let errors: Vec<f64> = f
        .values
        .iter()
        .enumerate()
        .take(24 * 3600 / f.step_secs as usize)
        .map(|(i, v)| {
            let mid = start + (i as u64 * f.step_secs + f.step_secs / 2) as i64;
            (v - rate(mid)).abs() / rate(mid)
        })
        .collect();
    let mean = errors.iter().sum::<f64>() / errors.len() as f64;
    assert!(
        mean < 0.10,
        "mean error {:.1}% of the true rate (first values {:?})",
        mean * 100.0,
        &f.values[..4]
    );
}

#[test]
fn the_clairvoyant_never_runs_short_and_no_scaler_pays_less_without_running_short() {
    let t = target(CPU);
    // Quiet, a burst that needs 8 units, a dip, a ramp.
    let tr = steps(&[(20, 5.0), (3, 40.0), (10, 5.0), (15, 20.0), (20, 30.0)]);
    let s = service(5.0, 120);
    let best = run(&t, &tr, &options(s.clone(), Some(Baseline::Clairvoyant)));
    assert_eq!(best.summary.requests_over_capacity, 0.0);
    assert!((best.summary.ratio_to_clairvoyant - 1.0).abs() < 1e-12);
    // Capacity for the burst is asked for one start-up delay (plus a tick) ahead of it.
    let burst = T0 + 20 * 60;
    let asked = best
        .replay
        .ticks
        .iter()
        .find(|(_, units)| *units >= 8)
        .unwrap();
    assert!(
        asked.0 <= burst - 120 && asked.0 > burst - 120 - 30,
        "{asked:?}"
    );
    for baseline in [None, Some(Baseline::StaticPeak), Some(Baseline::Hpa)] {
        let other = run(&t, &tr, &options(s.clone(), baseline));
        assert_eq!(
            other.summary.clairvoyant_unit_hours, best.summary.unit_hours,
            "{baseline:?}"
        );
        if other.summary.requests_over_capacity == 0.0 {
            assert!(other.summary.ratio_to_clairvoyant >= 1.0, "{baseline:?}");
        }
    }
}
