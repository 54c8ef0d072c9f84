//! The whole daemon loop at fleet scale: 10,000 targets (ECS web services on CloudWatch
//! metrics, Auto Scaling groups on CPU, SQS-driven ECS workers) driven by the real
//! [`Controller`] against a fake cloud shaped like AWS: the fake answers with 20-80 ms of
//! latency per call and splits every tick into the calls the real sources and actuators
//! make (`GetMetricData` as planned by the CloudWatch source, one `GetQueueAttributes` per
//! queue with the SQS source's concurrency, `DescribeServices` per 10 services of a cluster,
//! `DescribeAutoScalingGroups` per 50 names), each waiting for a token of capstan's own
//! client-side rate limits like the real calls.
//!
//! Part 1 runs ticks back to back on a simulated 15 s clock and prints the process CPU per
//! tick (all threads), the average share of one core at a 15 s interval, peak resident
//! memory, the calls per tick per API and per 1,000 targets, and their monthly cost at
//! AWS list prices. Part 2 runs the real tick loop (`controller::run`, 5 s interval, wall
//! clock) while load steps appear in the metric source at random moments, and prints the
//! time from each step to the capacity call for its target (p50, p99, max).
//!
//! Run: `cargo bench --bench daemon` (release profile). `TARGETS=n` changes the fleet size;
//! `UNLIMITED=1` lifts the client-side rate limits (to see capstan's own share of the
//! reaction time); `TICKS=n` the ticks of part 1; `STEPS=n` the load steps of part 2 (0
//! skips it); `POLL_EVERY_RPS=1m` gives the web services' request metric that
//! `poll_every` (the controller then reads it only when due: fewer metrics requested);
//! `SETTLED_REFRESH=1m` sets `[global] settled_refresh` (a settled target's capacity is
//! read again only that often, and before any change); `TRACE_MEMORY=1` prints part 1's
//! resident memory before each tick, its peak in the tick and to the end of recording the
//! status, and after.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use capstan::actuators::{
    Actuator, Applied, CapacityState, Conflict, ASG_DESCRIBE_BATCH, ECS_DESCRIBE_BATCH,
};
use capstan::aws::AwsError;
use capstan::config::{self, MetricSource, Resource, Target};
use capstan::controller::lease::SoleLeader;
use capstan::controller::state::LocalStore;
use capstan::controller::{self, Controller, Options};
use capstan::fake::FakeCloud;
use capstan::sources::{cloudwatch, sqs, HistoryReader, MetricRequest, Reading, Source};
use capstan::util::join_bounded;
use chrono::{DateTime, Utc};

/// List prices (us-east-1): CloudWatch GetMetricData $0.01 per 1,000 metrics requested;
/// SQS $0.40 per million requests (standard queues, after the free tier). ECS and EC2 Auto
/// Scaling API calls carry no charge.
const GMD_PER_METRIC: f64 = 0.01 / 1000.0;
const SQS_PER_REQUEST: f64 = 0.40 / 1_000_000.0;
const TICKS_PER_MONTH: f64 = 30.0 * 24.0 * 3600.0 / 15.0;

/// `rps_poll_every`: a `poll_every` for the web services' request metric (`POLL_EVERY_RPS`);
/// `settled_refresh`: the global setting (`SETTLED_REFRESH`).
fn config_text(n: usize, rps_poll_every: Option<&str>, settled_refresh: Option<&str>) -> String {
    let rps_cadence = rps_poll_every
        .map(|d| format!("poll_every = \"{d}\"\n"))
        .unwrap_or_default();
    let mut text = String::from("[global]\npoll_interval = \"15s\"\nhttp_listen = \"off\"\n");
    if let Some(r) = settled_refresh {
        text.push_str(&format!("settled_refresh = \"{r}\"\n"));
    }
    for i in 0..n {
        let cluster = format!("c{}", i % 20);
        let t = match i % 10 {
            // 40 % web services: CPU and requests per task (CloudWatch).
            0..=3 => format!(
                r#"
[[target]]
name = "web{i}"
kind = "ecs_service"
cluster = "{cluster}"
service = "web{i}"
min = 2
max = 200
[[target.metric]]
name = "cpu"
source = "ecs_cpu"
[[target.metric]]
name = "rps"
source = "cloudwatch"
namespace = "Shop"
metric_name = "Requests"
dimensions = {{ Service = "web{i}" }}
statistic = "Sum"
{rps_cadence}[[target.policy]]
type = "target_tracking"
metric = "cpu"
target_value = 60
[[target.policy]]
type = "target_tracking"
metric = "rps"
target_per_unit = 1000
[target.behavior]
scale_in_cooldown = "5m"
"#
            ),
            // 30 % Auto Scaling groups on CPU.
            4..=6 => format!(
                r#"
[[target]]
name = "asg{i}"
kind = "asg"
asg_name = "asg{i}"
min = 2
max = 100
[[target.metric]]
name = "cpu"
source = "cloudwatch"
namespace = "AWS/EC2"
metric_name = "CPUUtilization"
dimensions = {{ AutoScalingGroupName = "asg{i}" }}
statistic = "Average"
[[target.policy]]
type = "target_tracking"
metric = "cpu"
target_value = 55
"#
            ),
            // 30 % SQS-driven workers.
            _ => format!(
                r#"
[[target]]
name = "worker{i}"
kind = "ecs_service"
cluster = "{cluster}"
service = "worker{i}"
min = 1
max = 100
[[target.metric]]
name = "backlog"
source = "sqs"
queue = "q{i}"
[[target.policy]]
type = "target_tracking"
metric = "backlog"
target_per_unit = 20
"#
            ),
        };
        text.push_str(&t);
    }
    text
}

/// The fake cloud, split into AWS's calls.
#[derive(Clone)]
struct Shaped {
    inner: FakeCloud,
    calls: Arc<Mutex<BTreeMap<&'static str, u64>>>,
    metrics_requested: Arc<AtomicU64>,
    seq: Arc<AtomicU64>,
    /// When each target's capacity call was made (part 2).
    set_at: Arc<Mutex<HashMap<String, Vec<Instant>>>>,
    /// CPU spent inside the in-memory fake's answers (ns): the stand-in's cost, not
    /// capstan's (the real sources and actuators parse AWS's responses instead).
    fake_cpu_ns: Arc<AtomicU64>,
}

impl Shaped {
    fn new(inner: FakeCloud) -> Self {
        Shaped {
            inner,
            calls: Arc::default(),
            metrics_requested: Arc::default(),
            seq: Arc::default(),
            set_at: Arc::default(),
            fake_cpu_ns: Arc::default(),
        }
    }

    /// Runs the fake's answer (synchronous: the fake has no latency of its own; the shaped
    /// calls above model it) and counts its CPU time.
    async fn timed<T>(&self, f: impl std::future::Future<Output = T>) -> T {
        let t0 = thread_cpu_ns();
        let out = f.await;
        self.fake_cpu_ns
            .fetch_add(thread_cpu_ns().saturating_sub(t0), Ordering::Relaxed);
        out
    }

    /// One AWS call: a token of the API's rate limit, then 20-80 ms of latency.
    async fn call(&self, api: &'static str) {
        capstan::ratelimit::acquire(api).await;
        let k = self.seq.fetch_add(1, Ordering::Relaxed);
        let ms = 20 + (k.wrapping_mul(2_654_435_761) >> 7) % 61;
        tokio::time::sleep(Duration::from_millis(ms)).await;
        *self.calls.lock().unwrap().entry(api).or_default() += 1;
    }

    fn take_calls(&self) -> (BTreeMap<&'static str, u64>, u64) {
        let c = std::mem::take(&mut *self.calls.lock().unwrap());
        (c, self.metrics_requested.swap(0, Ordering::Relaxed))
    }
}

impl Actuator for Shaped {
    async fn observe(
        &self,
        targets: &[&Target],
        now: DateTime<Utc>,
    ) -> Vec<Result<CapacityState, AwsError>> {
        let mut ecs: BTreeMap<&str, usize> = BTreeMap::new();
        let mut asgs = 0;
        for t in targets {
            match &t.resource {
                Resource::EcsService { cluster, .. } => *ecs.entry(cluster).or_default() += 1,
                Resource::Asg { .. } => asgs += 1,
                _ => {}
            }
        }
        let mut calls = Vec::new();
        for n in ecs.values() {
            for _ in 0..n.div_ceil(ECS_DESCRIBE_BATCH) {
                calls.push(self.call("DescribeServices"));
            }
        }
        for _ in 0..usize::div_ceil(asgs, ASG_DESCRIBE_BATCH) {
            calls.push(self.call("DescribeAutoScalingGroups"));
        }
        join_bounded(capstan::util::CALL_CONCURRENCY, calls).await;
        self.timed(self.inner.observe(targets, now)).await
    }

    async fn set_capacity(
        &self,
        target: &Target,
        desired: u32,
        state: &CapacityState,
        now: DateTime<Utc>,
    ) -> Result<Applied, AwsError> {
        self.set_at
            .lock()
            .unwrap()
            .entry(target.name.clone())
            .or_default()
            .push(Instant::now());
        match target.resource {
            Resource::Asg { .. } => self.call("SetDesiredCapacity").await,
            _ => self.call("UpdateService").await,
        }
        self.inner.set_capacity(target, desired, state, now).await
    }

    async fn conflicts(&self, target: &Target) -> Result<Vec<Conflict>, AwsError> {
        self.inner.conflicts(target).await
    }

    async fn take_over(&self, target: &Target) -> Result<Vec<String>, AwsError> {
        self.inner.take_over(target).await
    }
}

impl Source for Shaped {
    async fn read(&self, requests: &[MetricRequest<'_>], now: DateTime<Utc>) -> Vec<Reading> {
        let (planned, _) = cloudwatch::plan(requests, now);
        let mut queues: Vec<&str> = requests
            .iter()
            .filter_map(|r| match &r.metric.source {
                MetricSource::Sqs { queue, .. } => Some(queue.as_str()),
                _ => None,
            })
            .collect();
        queues.sort_unstable();
        queues.dedup();
        let metrics: usize = planned.iter().map(|c| c.queries.len()).sum();
        self.metrics_requested
            .fetch_add(metrics as u64, Ordering::Relaxed);
        let cw: Vec<_> = planned.iter().map(|_| self.call("GetMetricData")).collect();
        let q: Vec<_> = queues
            .iter()
            .map(|_| self.call("GetQueueAttributes"))
            .collect();
        tokio::join!(
            join_bounded(cw.len(), cw),
            join_bounded(sqs::DEFAULT_CONCURRENCY, q)
        );
        self.timed(self.inner.read(requests, now)).await
    }
}

impl HistoryReader for Shaped {
    async fn history(
        &self,
        target: &Target,
        metric: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        period_secs: u64,
    ) -> Result<Vec<(DateTime<Utc>, f64)>, AwsError> {
        self.inner
            .history(target, metric, from, to, period_secs)
            .await
    }
}

/// CPU time of the process (all threads), from /proc/self/task/*/schedstat (ns).
fn cpu_time() -> Duration {
    let mut ns = 0u64;
    if let Ok(dir) = std::fs::read_dir("/proc/self/task") {
        for e in dir.flatten() {
            if let Ok(s) = std::fs::read_to_string(e.path().join("schedstat")) {
                ns += s
                    .split_whitespace()
                    .next()
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0);
            }
        }
    }
    Duration::from_nanos(ns)
}

/// CPU time of the calling thread (ns), from /proc/thread-self/schedstat.
fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

/// A field of /proc/self/status in KiB (VmRSS, VmHWM).
fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// Sets the targets' metrics for a tick. Every target sits within 5 % of its policy's
/// target value (inside the 10 % tolerance: no change); each tick 1 % of the targets see
/// twice that load for one tick (a spike they scale out for, and in again after the
/// scale-in window): a fleet where most services are steady at any moment.
fn set_load(fake: &FakeCloud, cfg: &config::Config, tick: usize) {
    for (i, t) in cfg.targets.iter().enumerate() {
        let spiked = tick > 0 && (i + tick) % 100 == 0;
        let was_spiked = tick > 1 && (i + tick - 1) % 100 == 0;
        if tick > 0 && !spiked && !was_spiked {
            continue;
        }
        let level = (0.95 + (i % 10) as f64 / 100.0) * if spiked { 2.0 } else { 1.0 };
        set_level(fake, t, level);
    }
}

/// Sets a target's metrics to `level` times its policies' target values at its minimum.
fn set_level(fake: &FakeCloud, t: &Target, level: f64) {
    for m in &t.metrics {
        match &m.source {
            MetricSource::Sqs { .. } => fake.set_sample(
                &t.name,
                &m.name,
                Some(capstan::policy::Sample::Queue {
                    visible: 20.0 * f64::from(t.min) * level,
                    in_flight: 0.0,
                    delayed: 0.0,
                }),
            ),
            _ if &*m.name == "rps" => {
                fake.set_metric(&t.name, &m.name, Some(1000.0 * f64::from(t.min) * level))
            }
            _ if t.name.starts_with("asg") => fake.set_metric(&t.name, &m.name, Some(55.0 * level)),
            _ => fake.set_metric(&t.name, &m.name, Some(60.0 * level)),
        }
    }
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn main() {
    let n: usize = std::env::var("TARGETS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let steps: usize = std::env::var("STEPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let unlimited = std::env::var("UNLIMITED").is_ok_and(|v| v == "1");
    if unlimited {
        for (api, ..) in capstan::ratelimit::DEFAULTS {
            capstan::ratelimit::configure(api, 1e9);
        }
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let rss_start = status_kib("VmRSS");
    let rps_poll_every = std::env::var("POLL_EVERY_RPS").ok();
    let settled_refresh = std::env::var("SETTLED_REFRESH").ok();
    let cfg = config::from_str(
        "bench.toml",
        &config_text(n, rps_poll_every.as_deref(), settled_refresh.as_deref()),
    )
    .unwrap_or_else(|d| panic!("bench config: {}", d[0]));
    // As the daemon does after loading its config.
    let hwm_parse = status_kib("VmHWM");
    capstan::util::release_freed_memory();
    let rss_config = status_kib("VmRSS");
    // Linux: "5" resets the peak resident size, so the peak read after the ticks is theirs,
    // not the config parse's (if the kernel refuses, the peak printed is the whole run's).
    let hwm_reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
    let kinds = cfg.targets.iter().fold([0usize; 3], |mut k, t| {
        match (&t.resource, t.metrics.first().map(|m| &m.source)) {
            (Resource::Asg { .. }, _) => k[1] += 1,
            (_, Some(MetricSource::Sqs { .. })) => k[2] += 1,
            _ => k[0] += 1,
        }
        k
    });
    println!(
        "daemon bench: {n} targets ({} ECS web services, {} ASGs, {} SQS workers), 20-80 ms per call, rate limits {}, request metric poll_every {}, settled_refresh {}",
        kinds[0],
        kinds[1],
        kinds[2],
        if unlimited { "lifted" } else { "on (defaults)" },
        rps_poll_every.as_deref().unwrap_or("none (every tick)"),
        settled_refresh.as_deref().unwrap_or("off (every target every tick)")
    );

    // Part 1: ticks back to back on a simulated 15 s clock.
    let fake = FakeCloud::new();
    let shaped = Shaped::new(fake.clone());
    let mut ctl = Controller::new(
        // The daemon holds its config once: in the controller.
        cfg,
        shaped.clone(),
        shaped.clone(),
        LocalStore::default(),
        SoleLeader,
        Options::default(),
    );
    let t0: DateTime<Utc> = "2026-11-27T10:00:00Z".parse().unwrap();
    const WARM: usize = 3;
    let ticks: usize = std::env::var("TICKS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    // What the daemon does with each report besides the tick: the HTTP status and the
    // points of capstan's own metrics (their publication is a call, not modeled).
    let status = capstan::http::Status::new(ctl.config(), false, t0);
    let mut cpu_per_tick = Vec::new();
    let mut after_per_tick = Vec::new();
    let mut fake_per_tick = Vec::new();
    let mut wall_per_tick = Vec::new();
    let mut applied = 0;
    let mut calls: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut metrics = 0;
    let trace_memory = std::env::var("TRACE_MEMORY").is_ok_and(|v| v == "1");
    // The peak over all ticks when the trace resets it each tick.
    let mut hwm_ticks = 0;
    for k in 0..WARM + ticks {
        set_load(&fake, ctl.config(), k);
        let rss_before = if trace_memory { status_kib("VmRSS") } else { 0 };
        if trace_memory {
            hwm_ticks = hwm_ticks.max(status_kib("VmHWM"));
            let _ = std::fs::write("/proc/self/clear_refs", "5");
        }
        let now = t0 + chrono::Duration::seconds(15 * k as i64);
        let cpu0 = cpu_time();
        let wall0 = Instant::now();
        let report = rt.block_on(ctl.tick(now));
        let wall = wall0.elapsed();
        let cpu1 = cpu_time();
        let hwm_tick = status_kib("VmHWM");
        status.record(&report);
        // As the metrics task does: the points a `PutMetricData` call's worth at a time
        // (the call itself is not modeled).
        for call in capstan::telemetry::per_call(capstan::telemetry::points(&report)) {
            std::hint::black_box(&call);
        }
        let applied_now = report.applied();
        drop(report);
        // As the daemon's status task does after recording a tick.
        capstan::util::release_freed_memory();
        let after = cpu_time() - cpu1;
        if trace_memory {
            println!(
                "tick {}: resident before {:.1} MiB, peak in the tick {:.1} MiB, peak to the end of the status {:.1} MiB, resident after {:.1} MiB",
                k + 1,
                rss_before as f64 / 1024.0,
                hwm_tick as f64 / 1024.0,
                status_kib("VmHWM") as f64 / 1024.0,
                status_kib("VmRSS") as f64 / 1024.0
            );
        }
        let cpu = cpu1 - cpu0;
        // The fake cloud logs every capacity call; a daemon keeps no such log.
        drop(fake.take_calls());
        let fake_ns = shaped.fake_cpu_ns.swap(0, Ordering::Relaxed);
        let (c, m) = shaped.take_calls();
        if k >= WARM {
            cpu_per_tick.push((cpu + after).as_secs_f64() * 1000.0);
            after_per_tick.push(after.as_secs_f64() * 1000.0);
            fake_per_tick.push(fake_ns as f64 / 1e6);
            wall_per_tick.push(wall.as_secs_f64());
            applied += applied_now;
            for (api, v) in c {
                *calls.entry(api).or_default() += v;
            }
            metrics += m;
        }
        // Long runs: how resident memory grows as the status fills its hour of history.
        if ticks > 40 && (k + 1) % 40 == 0 {
            println!(
                "after tick {}: resident {:.1} MiB",
                k + 1,
                status_kib("VmRSS") as f64 / 1024.0
            );
        }
    }
    let hwm = status_kib("VmHWM").max(hwm_ticks);
    let rss = status_kib("VmRSS");
    cpu_per_tick.sort_by(f64::total_cmp);
    wall_per_tick.sort_by(f64::total_cmp);
    let mean = |v: &[f64]| v.iter().sum::<f64>() / ticks as f64;
    let cpu_mean = mean(&cpu_per_tick);
    let fake_mean = mean(&fake_per_tick);
    println!("\n## Part 1: {ticks} ticks after {WARM} warm-up ticks");
    println!(
        "CPU per tick (all threads, tick + status + own metrics): mean {cpu_mean:.0} ms, median {:.0} ms, max {:.0} ms",
        pct(&cpu_per_tick, 0.5),
        pct(&cpu_per_tick, 1.0)
    );
    println!(
        "  of which recording the HTTP status and building capstan's own metric points: mean {:.0} ms",
        mean(&after_per_tick)
    );
    println!(
        "  of which the in-memory fake's answers (the stand-in's cost, not capstan's): mean {fake_mean:.0} ms",
    );
    println!(
        "average load at a 15 s interval: {:.2} % of one core ({:.2} % without the fake's answers)",
        cpu_mean / 15_000.0 * 100.0,
        (cpu_mean - fake_mean) / 15_000.0 * 100.0
    );
    println!(
        "tick wall time: median {:.2} s, max {:.2} s",
        pct(&wall_per_tick, 0.5),
        pct(&wall_per_tick, 1.0)
    );
    println!(
        "memory: peak resident {} {:.1} MiB (parsing the config: {:.1} MiB), resident after the config {:.1} MiB, after the ticks {:.1} MiB (at start {:.1} MiB)",
        if hwm_reset {
            "during the ticks"
        } else {
            "(whole run)"
        },
        hwm as f64 / 1024.0,
        hwm_parse as f64 / 1024.0,
        rss_config as f64 / 1024.0,
        rss as f64 / 1024.0,
        rss_start as f64 / 1024.0
    );
    println!(
        "capacity changes applied: {:.1} per tick",
        applied as f64 / ticks as f64
    );
    println!("\n| API | calls per tick | per 1,000 targets | USD per month |");
    println!("|---|---:|---:|---:|");
    let per_k = 1000.0 / n as f64;
    let mut total_cost = 0.0;
    for (api, v) in &calls {
        let per_tick = *v as f64 / ticks as f64;
        let cost = match *api {
            "GetMetricData" => metrics as f64 / ticks as f64 * GMD_PER_METRIC * TICKS_PER_MONTH,
            "GetQueueAttributes" => per_tick * SQS_PER_REQUEST * TICKS_PER_MONTH,
            _ => 0.0,
        };
        total_cost += cost;
        println!(
            "| {api} | {per_tick:.1} | {:.2} | {cost:.2} |",
            per_tick * per_k
        );
    }
    let metrics_per_tick = metrics as f64 / ticks as f64;
    println!(
        "GetMetricData metrics requested per tick: {metrics_per_tick:.0} ({:.0} per 1,000 targets)",
        metrics_per_tick * per_k
    );
    println!(
        "total: {total_cost:.2} USD per month ({:.2} per 1,000 targets)",
        total_cost * per_k
    );

    if steps == 0 {
        // Without freeing anything: under a heap profiler (`heaptrack`), what the daemon
        // holds after the ticks then shows as "leaked", by allocation site.
        std::process::exit(0);
    }
    // Part 2: the real loop, load steps at random moments.
    let mut cfg = ctl.config().clone();
    let interval = Duration::from_secs(5);
    // The loop's interval (settled_refresh reads its share of the fleet per interval).
    cfg.global.poll_interval_secs = interval.as_secs();
    let fake2 = FakeCloud::new();
    set_load(&fake2, &cfg, 0);
    let shaped2 = Shaped::new(fake2.clone());
    let ctl2 = Controller::new(
        cfg.clone(),
        shaped2.clone(),
        shaped2.clone(),
        LocalStore::default(),
        SoleLeader,
        Options::default(),
    );
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let (_reload_tx, reload_rx) = tokio::sync::mpsc::channel(1);
    let stepped: Vec<(String, Instant)> = rt.block_on(async {
        let (report_tx, mut report_rx) = capstan::util::latest();
        let run = tokio::spawn(controller::run(
            ctl2,
            interval,
            stop_rx,
            reload_rx,
            vec![report_tx],
        ));
        // Two ticks to settle (first-tick conflict checks and history loads).
        for _ in 0..2 {
            let _ = report_rx.recv().await;
        }
        let mut stepped = Vec::new();
        let span = interval.as_secs_f64() * 3.0;
        let start = Instant::now();
        for k in 0..steps {
            let at = span * k as f64 / steps as f64;
            let due = start + Duration::from_secs_f64(at);
            tokio::time::sleep_until(due.into()).await;
            // A target not stepped before, spread over the fleet.
            let t = &cfg.targets[(k * 7919) % cfg.targets.len()];
            set_level(&fake2, t, 4.0);
            stepped.push((t.name.clone(), Instant::now()));
        }
        // Long enough for the last step to be acted on.
        tokio::time::sleep(interval * 3).await;
        let _ = stop_tx.send(true);
        let _ = run.await;
        stepped
    });
    let set_at = shaped2.set_at.lock().unwrap().clone();
    let mut lat: Vec<f64> = Vec::new();
    let mut missed = 0;
    for (name, at) in &stepped {
        match set_at.get(name).and_then(|v| v.iter().find(|s| **s >= *at)) {
            Some(s) => lat.push(s.duration_since(*at).as_secs_f64()),
            None => missed += 1,
        }
    }
    lat.sort_by(f64::total_cmp);
    println!("\n## Part 2: reaction time, real tick loop, interval {interval:?}");
    println!(
        "{} load steps: step visible -> capacity call: p50 {:.2} s, p99 {:.2} s, max {:.2} s; not acted on: {missed}",
        stepped.len(),
        pct(&lat, 0.5),
        pct(&lat, 0.99),
        pct(&lat, 1.0)
    );
    println!(
        "target: p99 under interval + 1 s = {:.1} s: {}",
        interval.as_secs_f64() + 1.0,
        if missed == 0 && pct(&lat, 0.99) < interval.as_secs_f64() + 1.0 {
            "met"
        } else {
            "NOT met"
        }
    );
}
