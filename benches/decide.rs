//! One tick of the decision core for 10,000 targets with every kind of policy on:
//! target tracking (average and per-unit), step, predictive floor, schedules, full
//! behavior. Prints the CPU time per tick (the thread's CPU time, median and p99 of the
//! runs) and per target.
//!
//! Run: `cargo bench --bench decide` (release profile).

use std::hint::black_box;

use capstan::config;
use capstan::policy::{decide, decide_quiet, ForecastSeries, History, Observation, Sample};
use chrono::{Duration, Utc};

/// How many targets and timed ticks: 10,000 and 60, or `CAPSTAN_BENCH_TARGETS` and
/// `CAPSTAN_BENCH_RUNS` (smaller runs for an instruction-count profile under callgrind).
fn size(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(default)
}

static TARGETS: std::sync::LazyLock<usize> =
    std::sync::LazyLock::new(|| size("CAPSTAN_BENCH_TARGETS", 10_000));
static RUNS: std::sync::LazyLock<usize> =
    std::sync::LazyLock::new(|| size("CAPSTAN_BENCH_RUNS", 60));

fn config_text() -> String {
    let mut text = String::new();
    for i in 0..*TARGETS {
        text.push_str(&format!(
            r#"
[[target]]
name = "t{i}"
kind = "ecs_service"
cluster = "shop"
service = "s{i}"
min = 2
max = 200
[[target.metric]]
name = "cpu"
source = "ecs_cpu"
[[target.metric]]
name = "backlog"
source = "sqs"
queue = "q{i}"
[[target.metric]]
name = "rps"
source = "cloudwatch"
namespace = "Shop"
metric_name = "Requests"
statistic = "Sum"
[[target.policy]]
type = "target_tracking"
metric = "cpu"
target_value = 60
[[target.policy]]
type = "target_tracking"
metric = "backlog"
target_per_unit = 20
[[target.policy]]
type = "step"
metric = "cpu"
threshold = 90
comparison = ">="
breach_for = "1m"
adjustment_type = "percent_change_in_capacity"
min_adjustment_magnitude = 2
steps = [{{ lower = 0, upper = 5, adjustment = 20 }}, {{ lower = 5, adjustment = 50 }}]
[[target.policy]]
type = "predictive"
metric = "rps"
target_per_unit = 100
mode = "forecast_and_scale"
[[target.schedule]]
name = "business"
cron = "0 8 * * MON-FRI"
timezone = "America/New_York"
duration = "10h"
floor = 4
[[target.schedule]]
name = "sale"
start = "2026-11-27T00:00:00-05:00"
end = "2026-12-01T00:00:00-05:00"
min = 10
[target.behavior]
scale_in_cooldown = "1m"
warmup = "30s"
[target.fallback]
after_failures = 3
capacity = 6
"#
        ));
    }
    text
}

fn main() {
    let cfg = config::from_str("bench.toml", &config_text()).expect("bench config is valid");
    let now = Utc::now();
    let forecast = ForecastSeries {
        start: now - Duration::minutes(1),
        step_secs: 300,
        values: (0..576).map(|i| 1000.0 + (i % 288) as f64 * 10.0).collect(),
    };
    // Histories as after an hour of 15 s ticks.
    let mut histories = vec![History::default(); *TARGETS];
    // Built as the controller builds them: in the order of the target's metrics, keyed by
    // the metrics' own shared names.
    let obs: Vec<Observation> = cfg
        .targets
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let mut o = Observation::new(now, 10 + (i % 50) as u32);
            o.ready = Some(o.current);
            for m in &t.metrics {
                let sample = match &*m.name {
                    "cpu" => Sample::Value(30.0 + (i % 70) as f64),
                    "backlog" => Sample::Queue {
                        visible: (i % 500) as f64,
                        in_flight: 10.0,
                        delayed: 0.0,
                    },
                    _ => Sample::Value(900.0 + (i % 300) as f64),
                };
                o.metrics.insert(m.name.clone(), Some(sample));
            }
            o.forecast = Some(std::sync::Arc::new(forecast.clone()));
            o
        })
        .collect();
    for step in 0..240 {
        let at = now - Duration::seconds(15 * (240 - step));
        for (i, t) in cfg.targets.iter().enumerate() {
            let mut o = obs[i].clone();
            o.at = at;
            let d = decide(t, &o, &histories[i]);
            histories[i].record(t, &d, true);
        }
    }
    println!(
        "decide: {} targets, all policies on, {} runs (one thread)",
        *TARGETS, *RUNS
    );
    let quiet = time_ticks(|| {
        let mut changed = 0;
        for (i, t) in cfg.targets.iter().enumerate() {
            let d = decide_quiet(black_box(t), black_box(&obs[i]), black_box(&histories[i]));
            changed += (d.desired != d.current) as usize;
            black_box(d);
        }
        changed
    });
    report("decide_quiet (decision, no explanation text)", quiet);
    let full = time_ticks(|| {
        let mut changed = 0;
        for (i, t) in cfg.targets.iter().enumerate() {
            let d = decide(black_box(t), black_box(&obs[i]), black_box(&histories[i]));
            changed += (d.desired != d.current) as usize;
            black_box(d);
        }
        changed
    });
    report("decide (with the full explanation text)", full);
    // A daemon tick also records each decision; the histories evolve from run to run.
    let mut hs = histories.clone();
    let mut tick = 0;
    let recorded = time_ticks(|| {
        tick += 1;
        let mut changed = 0;
        for (i, t) in cfg.targets.iter().enumerate() {
            let mut o = obs[i].clone();
            o.at = now + Duration::seconds(15 * tick);
            let d = decide_quiet(black_box(t), &o, &hs[i]);
            changed += (d.desired != d.current) as usize;
            hs[i].record(t, &d, true);
        }
        changed
    });
    report(
        "decide_quiet + History::record, 15 s apart (incl. cloning each observation)",
        recorded,
    );
}

/// CPU time of this thread (what a tick costs, whatever else the machine runs).
fn thread_cpu() -> std::time::Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec through a valid pointer.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    std::time::Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Times `RUNS` ticks in thread CPU time; returns the sorted durations and the decisions
/// that changed capacity per tick.
fn time_ticks(mut tick: impl FnMut() -> usize) -> (Vec<std::time::Duration>, usize) {
    let mut times = Vec::with_capacity(*RUNS);
    let mut changed = 0;
    for _ in 0..*RUNS {
        let started = thread_cpu();
        changed += tick();
        times.push(thread_cpu() - started);
    }
    times.sort();
    (times, changed / *RUNS)
}

fn report(what: &str, (times, changed): (Vec<std::time::Duration>, usize)) {
    let median = times[*RUNS / 2];
    let p99 = times[(*RUNS * 99 / 100).min(*RUNS - 1)];
    println!("{what}:");
    println!(
        "  per tick: median {:.2} ms, p99 {:.2} ms; per target {:.2} us; {changed} decisions changed capacity",
        median.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3,
        median.as_secs_f64() * 1e6 / *TARGETS as f64
    );
}
