//! The whole daemon against the AWS emulator: `capstan run` (the real binary, its real
//! CloudWatch and SQS sources and ECS and Auto Scaling actuators) managing 500 targets that
//! exist in a moto server: ECS web services over several clusters scaled on CPU
//! (`AWS/ECS`) and requests (a custom CloudWatch metric), Auto Scaling groups on CPU
//! (`AWS/EC2`), and ECS workers on their SQS queue's backlog.
//!
//! Metric data is put with `PutMetricData` the way AWS publishes it: each minute's
//! datapoint arrives shortly after the minute ends (a feeder writes every series' value for
//! the minute just completed, 2 s into the next one). Queues hold their backlog as real
//! messages. Every target starts inside its policy's tolerance, so a steady fleet makes no
//! change; load steps then raise some targets' load while the daemon runs: a web service's
//! requests triple, an Auto Scaling group's CPU goes to 100 %, a worker queue gets 60
//! messages per minimum task. A CloudWatch step is written into the newest complete minute
//! (late data for a period that has ended, as CloudWatch receives it), so it is visible at
//! the emulator the moment `PutMetricData` returns; a queue step when its last
//! `SendMessageBatch` returns.
//!
//! The daemon talks to the emulator through the tests' recording proxy
//! (`tests/common/proxy.rs`), which counts its calls per API and sees each capacity call
//! (`UpdateService`, `SetDesiredCapacity`). The bench reads the daemon's `/metrics`
//! (ticks, tick duration, AWS call latency) once per poll interval, like a Prometheus
//! scrape, and the CPU time and peak resident memory of the capstan process (and, apart,
//! the CPU time of the moto process) from `/proc`.
//!
//! Run: `cargo bench --bench emulator`. Environment: `TARGETS` (default 500), `TICKS`
//! measured ticks (default 20, after 2 warm-up ticks), `STEPS` load steps (default 20; 0
//! for none), `POLL` the poll interval in seconds (default 15, at least 5), `SEED`.
//! Starts moto like the tests do (installing it with `localstack/moto.sh install` if
//! needed), or uses `AWS_ENDPOINT_URL` when set.
//!
//! Under `cargo test` (no `--bench` argument) it is a smoke run, part of the test suite
//! (about 25 s): 20 targets, a 5 s interval, one warm-up tick and one measured, 2 load
//! steps; it fails when a check fails (a clean exit on SIGTERM, every step acted on, no
//! change on the steady fleet, no capacity outside the bounds, no failed AWS request).
//! The time targets are reported, not checked.

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_cloudwatch::primitives::DateTime as AwsTime;
use aws_sdk_cloudwatch::types::{Dimension, MetricDatum};
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use capstan::aws::{sdk_config, AwsSettings};
use capstan::util::join_bounded;
use common::daemon::Daemon;
use common::proxy::{Entry, Proxy};
use common::Rng;

/// Concurrent calls of the bench's own set-up.
const SETUP_CONCURRENCY: usize = 8;
/// Datums per `PutMetricData` call (AWS allows 1,000).
const PUT_BATCH: usize = 500;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Web,
    Asg,
    Worker,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Web => "ECS web service (CPU + requests)",
            Kind::Asg => "Auto Scaling group (CPU)",
            Kind::Worker => "SQS-driven ECS worker",
        }
    }
}

/// One target: its resource (and capstan target) name, where it lives and its load.
#[derive(Clone, Debug)]
struct Tgt {
    kind: Kind,
    name: String,
    cluster: String,
    queue: String,
    min: u32,
    max: u32,
    /// Steady load as a fraction of the policy's target (inside the 10 % tolerance).
    level: f64,
}

/// A CloudWatch series the feeder writes every minute.
#[derive(Clone, Debug)]
struct Series {
    target: usize,
    namespace: String,
    metric: String,
    dims: Vec<(String, String)>,
    /// The value of each minute from now on.
    value: f64,
    /// `Sum` (a step adds to the minute) rather than `Average` (a step outweighs it).
    sum: bool,
    /// The newest minute (start, Unix seconds) written.
    written: i64,
}

fn env_num<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(v) => v.parse().unwrap_or_else(|_| {
            eprintln!("error: {name}={v:?} is not a number");
            std::process::exit(2)
        }),
        Err(_) => default,
    }
}

fn fleet(n: usize, prefix: &str) -> Vec<Tgt> {
    let clusters = (n / 50).max(1);
    (0..n)
        .map(|i| {
            let (kind, name, min, max) = match i % 10 {
                0..=3 => (Kind::Web, format!("{prefix}-web{i}"), 2, 200),
                4..=6 => (Kind::Asg, format!("{prefix}-asg{i}"), 2, 100),
                _ => (Kind::Worker, format!("{prefix}-worker{i}"), 1, 100),
            };
            Tgt {
                kind,
                name,
                cluster: format!("{prefix}-c{}", i % clusters),
                queue: format!("{prefix}-q{i}"),
                min,
                max,
                level: 0.95 + (i % 10) as f64 / 100.0,
            }
        })
        .collect()
}

fn series(targets: &[Tgt], shop_ns: &str) -> Vec<Series> {
    let mut out = Vec::new();
    let s = |target, ns: &str, metric: &str, dims: Vec<(&str, &str)>, value, sum| Series {
        target,
        namespace: ns.into(),
        metric: metric.into(),
        dims: dims
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        value,
        sum,
        written: i64::MIN,
    };
    for (i, t) in targets.iter().enumerate() {
        match t.kind {
            Kind::Web => {
                out.push(s(
                    i,
                    "AWS/ECS",
                    "CPUUtilization",
                    vec![("ClusterName", &t.cluster), ("ServiceName", &t.name)],
                    60.0 * t.level,
                    false,
                ));
                out.push(s(
                    i,
                    shop_ns,
                    "Requests",
                    vec![("Service", &t.name)],
                    1000.0 * f64::from(t.min) * t.level,
                    true,
                ));
            }
            Kind::Asg => out.push(s(
                i,
                "AWS/EC2",
                "CPUUtilization",
                vec![("AutoScalingGroupName", &t.name)],
                55.0 * t.level,
                false,
            )),
            Kind::Worker => {}
        }
    }
    out
}

fn config_text(targets: &[Tgt], shop_ns: &str, poll: u64) -> String {
    let mut text = format!(
        "[global]\nregion = \"us-east-1\"\npoll_interval = \"{poll}s\"\nhttp_listen = \"127.0.0.1:0\"\n# Own metrics off: the bench reads /metrics; PutMetricData would load the emulator.\nmetrics = \"off\"\n"
    );
    for t in targets {
        let (name, cluster, min, max) = (&t.name, &t.cluster, t.min, t.max);
        text.push_str(&match t.kind {
            Kind::Web => format!(
                r#"
[[target]]
name = "{name}"
kind = "ecs_service"
cluster = "{cluster}"
service = "{name}"
min = {min}
max = {max}
[[target.metric]]
name = "cpu"
source = "ecs_cpu"
[[target.metric]]
name = "rps"
source = "cloudwatch"
namespace = "{shop_ns}"
metric_name = "Requests"
dimensions = {{ Service = "{name}" }}
statistic = "Sum"
[[target.policy]]
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
            Kind::Asg => format!(
                r#"
[[target]]
name = "{name}"
kind = "asg"
asg_name = "{name}"
min = {min}
max = {max}
[[target.metric]]
name = "cpu"
source = "cloudwatch"
namespace = "AWS/EC2"
metric_name = "CPUUtilization"
dimensions = {{ AutoScalingGroupName = "{name}" }}
statistic = "Average"
[[target.policy]]
type = "target_tracking"
metric = "cpu"
target_value = 55
"#
            ),
            Kind::Worker => format!(
                r#"
[[target]]
name = "{name}"
kind = "ecs_service"
cluster = "{cluster}"
service = "{name}"
min = {min}
max = {max}
[[target.metric]]
name = "backlog"
source = "sqs"
queue = "{}"
[[target.policy]]
type = "target_tracking"
metric = "backlog"
target_per_unit = 20
"#,
                t.queue
            ),
        });
    }
    text
}

/// Creates a target's resources at its minimum capacity, and (workers) its queue holding
/// its steady backlog.
async fn create(sdk: &aws_config::SdkConfig, t: &Tgt) -> Result<(), String> {
    match t.kind {
        Kind::Web | Kind::Worker => {
            capstan::emulator::create_ecs_service(sdk, &t.cluster, &t.name, 0).await?;
            aws_sdk_ecs::Client::new(sdk)
                .update_service()
                .cluster(&t.cluster)
                .service(&t.name)
                .desired_count(t.min as i32)
                .send()
                .await
                .map_err(|e| format!("UpdateService {}: {e:?}", t.name))?;
        }
        Kind::Asg => {
            capstan::emulator::create_asg(
                sdk,
                &t.name,
                (t.min as i32, t.max as i32, t.min as i32),
                &[],
            )
            .await?
        }
    }
    if t.kind == Kind::Worker {
        aws_sdk_sqs::Client::new(sdk)
            .create_queue()
            .queue_name(&t.queue)
            .send()
            .await
            .map_err(|e| format!("CreateQueue {}: {e:?}", t.queue))?;
        let backlog = (20.0 * f64::from(t.min) * t.level).round() as usize;
        send_messages(sdk, &t.queue, backlog).await?;
    }
    Ok(())
}

async fn send_messages(sdk: &aws_config::SdkConfig, queue: &str, n: usize) -> Result<(), String> {
    let sqs = aws_sdk_sqs::Client::new(sdk);
    let url = sqs
        .get_queue_url()
        .queue_name(queue)
        .send()
        .await
        .map_err(|e| format!("GetQueueUrl {queue}: {e:?}"))?
        .queue_url()
        .unwrap_or_default()
        .to_string();
    let ids: Vec<usize> = (0..n).collect();
    for chunk in ids.chunks(10) {
        let entries = chunk
            .iter()
            .map(|i| {
                SendMessageBatchRequestEntry::builder()
                    .id(format!("m{i}"))
                    .message_body(format!("order {i}"))
                    .build()
                    .map_err(|e| e.to_string())
            })
            .collect::<Result<Vec<_>, _>>()?;
        let out = sqs
            .send_message_batch()
            .queue_url(&url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| format!("SendMessageBatch {queue}: {e:?}"))?;
        if !out.failed().is_empty() {
            return Err(format!("SendMessageBatch {queue}: {:?}", out.failed()));
        }
    }
    Ok(())
}

fn datum(s: &Series, minute: i64, value: f64, count: f64) -> MetricDatum {
    let mut d = MetricDatum::builder()
        .metric_name(&s.metric)
        .timestamp(AwsTime::from_secs(minute + 30));
    for (k, v) in &s.dims {
        d = d.dimensions(Dimension::builder().name(k).value(v).build());
    }
    if count > 1.0 {
        d.values(value).counts(count).build()
    } else {
        d.value(value).build()
    }
}

/// Puts datums, grouped by namespace, in calls of up to [`PUT_BATCH`].
async fn put(sdk: &aws_config::SdkConfig, data: Vec<(String, MetricDatum)>) -> Result<(), String> {
    let cw = aws_sdk_cloudwatch::Client::new(sdk);
    let mut by_ns: BTreeMap<String, Vec<MetricDatum>> = BTreeMap::new();
    for (ns, d) in data {
        by_ns.entry(ns).or_default().push(d);
    }
    let mut calls = Vec::new();
    for (ns, data) in &by_ns {
        for chunk in data.chunks(PUT_BATCH) {
            let cw = cw.clone();
            calls.push(async move {
                cw.put_metric_data()
                    .namespace(ns)
                    .set_metric_data(Some(chunk.to_vec()))
                    .send()
                    .await
                    .map_err(|e| format!("PutMetricData {ns}: {e:?}"))
            });
        }
    }
    join_bounded(SETUP_CONCURRENCY, calls)
        .await
        .into_iter()
        .collect::<Result<Vec<_>, _>>()?;
    Ok(())
}

/// Writes every series' value for `minute` (its start, Unix seconds) unless written.
async fn publish_minute(
    sdk: &aws_config::SdkConfig,
    feed: &tokio::sync::Mutex<Vec<Series>>,
    minute: i64,
) -> Result<(), String> {
    let mut feed = feed.lock().await;
    let mut data = Vec::new();
    for s in feed.iter_mut().filter(|s| s.written < minute) {
        data.push((s.namespace.clone(), datum(s, minute, s.value, 1.0)));
        s.written = minute;
    }
    put(sdk, data).await
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// Every minute, 2 s after it ends, writes the minute's datapoint of every series.
async fn feeder(sdk: aws_config::SdkConfig, feed: Arc<tokio::sync::Mutex<Vec<Series>>>) {
    loop {
        let now = unix_now();
        let next = ((now / 60.0).floor() + 1.0) * 60.0 + 2.0;
        tokio::time::sleep(Duration::from_secs_f64(next - now)).await;
        let minute = next as i64 - 2 - 60;
        if let Err(e) = publish_minute(&sdk, &feed, minute).await {
            eprintln!("feeder: {e}");
        }
    }
}

/// A load step applied to one target; `visible_ms` on the proxy's clock.
#[derive(Debug)]
struct Step {
    target: usize,
    started_ms: u64,
    visible_ms: u64,
}

async fn step(
    sdk: &aws_config::SdkConfig,
    feed: &tokio::sync::Mutex<Vec<Series>>,
    t: &Tgt,
    idx: usize,
    clock: &Proxy,
) -> Result<Step, String> {
    let started_ms = clock.now_ms();
    match t.kind {
        Kind::Worker => send_messages(sdk, &t.queue, 60 * t.min as usize).await?,
        Kind::Web | Kind::Asg => {
            let mut feed = feed.lock().await;
            let minute = (unix_now() / 60.0).floor() as i64 * 60 - 60;
            let s = feed
                .iter_mut()
                .find(|s| s.target == idx && (t.kind == Kind::Asg || s.sum))
                .ok_or("no series to step")?;
            let new = if s.sum { 3.0 * s.value } else { 100.0 };
            // The newest complete minute: written already (add to it) or not yet.
            let d = if s.written >= minute {
                if s.sum {
                    datum(s, minute, new - s.value, 1.0)
                } else {
                    // Three samples at 100 % outweigh the minute's one steady sample.
                    datum(s, minute, new, 3.0)
                }
            } else {
                s.written = minute;
                datum(s, minute, new, 1.0)
            };
            s.value = new;
            put(sdk, vec![(s.namespace.clone(), d)]).await?;
        }
    }
    Ok(Step {
        target: idx,
        started_ms,
        visible_ms: clock.now_ms(),
    })
}

/// (utime + stime) of a process in seconds, all its threads, living and ended.
fn cpu_secs(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Some(ticks / hz)
}

/// A field of /proc/PID/status in KiB (VmRSS, VmHWM).
fn status_kib(pid: u32, field: &str) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// The moto server process serving `port`, found by its command line.
fn moto_pid(port: &str) -> Option<u32> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let cmd = std::fs::read(e.path().join("cmdline")).ok()?;
        let args: Vec<String> = cmd
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).to_string())
            .collect();
        let is_moto = args.iter().any(|a| a.ends_with("moto_server"))
            && !args.iter().any(|a| a == "-c")
            && args.windows(2).any(|w| w[0] == "-p" && w[1] == port);
        is_moto.then_some(pid)
    })
}

/// The samples of a `/metrics` page: series (name with labels) -> value.
fn prom(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}

/// One scrape of the daemon and of /proc.
#[derive(Clone, Debug)]
struct Sample {
    at: Instant,
    proxy_ms: u64,
    metrics: HashMap<String, f64>,
    capstan_cpu: f64,
    moto_cpu: Option<f64>,
}

impl Sample {
    fn ticks(&self) -> f64 {
        self.metrics
            .get("capstan_ticks_total")
            .copied()
            .unwrap_or(0.0)
    }
    fn get(&self, k: &str) -> f64 {
        self.metrics.get(k).copied().unwrap_or(0.0)
    }
}

async fn scrape(addr: SocketAddr, pid: u32, moto: Option<u32>, clock: &Proxy) -> Sample {
    let body = tokio::task::spawn_blocking(move || common::http::get(addr, "/metrics").body)
        .await
        .unwrap_or_default();
    Sample {
        at: Instant::now(),
        proxy_ms: clock.now_ms(),
        metrics: prom(&body),
        capstan_cpu: cpu_secs(pid).unwrap_or(f64::NAN),
        moto_cpu: moto.and_then(cpu_secs),
    }
}

/// A capacity call the emulator accepted: (proxy ms, resource, value).
fn capacity_calls(log: &[Entry]) -> Vec<(u64, String, i64)> {
    log.iter()
        .filter(|e| e.status == 200)
        .filter_map(|e| match e.operation.as_str() {
            "UpdateService" => {
                let v: serde_json::Value = serde_json::from_str(&e.body).ok()?;
                Some((
                    e.ms,
                    v["service"].as_str()?.to_string(),
                    v["desiredCount"].as_i64()?,
                ))
            }
            "SetDesiredCapacity" => {
                let field = |k: &str| {
                    e.body
                        .split('&')
                        .find_map(|p| p.strip_prefix(k))
                        .map(str::to_string)
                };
                Some((
                    e.ms,
                    field("AutoScalingGroupName=")?,
                    field("DesiredCapacity=")?.parse().ok()?,
                ))
            }
            _ => None,
        })
        .collect()
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn main() {
    // `cargo bench` passes `--bench`; without it (`cargo test`) this is a smoke run: a
    // small fleet, and a failed check fails the run.
    let smoke = !std::env::args().any(|a| a == "--bench");
    let n: usize = env_num("TARGETS", if smoke { 20 } else { 500 });
    let ticks: u64 = env_num("TICKS", if smoke { 1 } else { 20 });
    let steps: usize = env_num("STEPS", if smoke { 2 } else { 20 });
    let poll: u64 = env_num("POLL", if smoke { 5 } else { 15 });
    // Warm-up ticks: the first checks every target for AWS's own scaling.
    let warm: u64 = if smoke { 1 } else { 2 };
    let seed: u64 = env_num("SEED", 8);
    if n == 0 || ticks == 0 || poll < 5 {
        eprintln!("error: TARGETS and TICKS must be at least 1 and POLL at least 5 (seconds)");
        std::process::exit(2);
    }
    // A private copy of the capstan binary built with this bench: a build of another
    // checkout sharing the target directory may replace the original while this runs.
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("emulator-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("bench dir");
    let capstan_bin = dir.join("capstan");
    std::fs::copy(env!("CARGO_BIN_EXE_capstan"), &capstan_bin).expect("copy the capstan binary");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");

    // The emulator, as the tests get it.
    let mut _emulator = None;
    let endpoint = match std::env::var("AWS_ENDPOINT_URL") {
        Ok(url) => url,
        Err(_) => match capstan::emulator::Emulator::start(Path::new(env!("CARGO_MANIFEST_DIR"))) {
            Ok(emu) => {
                let url = emu.endpoint.clone();
                _emulator = Some(emu);
                url
            }
            Err(e) => {
                println!("SKIPPED the emulator bench: the moto emulator could not be started: {e}");
                println!("  it needs python3 with venv and pip (or network access to PyPI once): run `localstack/moto.sh install`,");
                println!("  or point AWS_ENDPOINT_URL at a running emulator");
                return;
            }
        },
    };
    let moto = endpoint
        .rsplit(':')
        .next()
        .map(|p| p.trim_end_matches('/').to_string())
        .and_then(|port| moto_pid(&port));
    let sdk = rt.block_on(sdk_config(&AwsSettings {
        region: Some("us-east-1".into()),
        endpoint_url: Some(endpoint.clone()),
        static_credentials: Some(("test".into(), "test".into())),
        attempt_timeout: Some(Duration::from_secs(60)),
        operation_timeout: Some(Duration::from_secs(180)),
        ..AwsSettings::default()
    }));

    let prefix = format!("e{}", std::process::id() % 100_000);
    let shop_ns = format!("{prefix}-Shop");
    let targets = fleet(n, &prefix);
    let count = |k: Kind| targets.iter().filter(|t| t.kind == k).count();
    let clusters = (n / 50).max(1);
    println!(
        "emulator bench: {n} targets ({} ECS web services on CPU and requests, {} Auto Scaling groups on CPU, {} SQS-driven ECS workers, services over {clusters} clusters), poll interval {poll} s, {ticks} ticks after {warm} warm-up, {steps} load steps",
        count(Kind::Web),
        count(Kind::Asg),
        count(Kind::Worker),
    );
    println!(
        "emulator: {endpoint} ({})",
        match moto {
            Some(pid) => format!("moto server, pid {pid}"),
            None => "process not found: its CPU is not measured".into(),
        }
    );

    // Set-up: resources, the steady backlog, five minutes of metric history.
    let t0 = Instant::now();
    let feed = Arc::new(tokio::sync::Mutex::new(series(&targets, &shop_ns)));
    let setup: Result<(), String> = rt.block_on(async {
        join_bounded(
            SETUP_CONCURRENCY,
            targets.iter().map(|t| create(&sdk, t)).collect(),
        )
        .await
        .into_iter()
        .collect::<Result<Vec<_>, _>>()?;
        let minute = (unix_now() / 60.0).floor() as i64 * 60;
        for m in (1..=5).rev() {
            publish_minute(&sdk, &feed, minute - 60 * m).await?;
        }
        Ok(())
    });
    if let Err(e) = setup {
        eprintln!("error: creating the fleet in the emulator: {e}");
        std::process::exit(1);
    }
    let series_n = rt.block_on(feed.lock()).len();
    println!(
        "set-up: {n} targets, {series_n} CloudWatch series, queues with their backlog, in {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    let feeder_task = rt.spawn(feeder(sdk.clone(), feed.clone()));

    let cfg = dir.join("capstan.toml");
    std::fs::write(&cfg, config_text(&targets, &shop_ns, poll)).expect("write config");

    // The daemon, through the recording proxy.
    let proxy = common::proxy::start_proxy(&endpoint);
    let mut cmd = Command::new(&capstan_bin);
    cmd.args(["run", "--config", &cfg.display().to_string()])
        .args(["--log-format", "json"])
        .env("AWS_ENDPOINT_URL", &proxy.url)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env_remove("AWS_SESSION_TOKEN")
        .env("AWS_REGION", "us-east-1")
        .env_remove("CAPSTAN_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut daemon = Daemon::spawn(cmd);
    let pid = daemon.child.id();
    let addr: SocketAddr = {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let line = daemon
                .lines
                .lock()
                .unwrap()
                .iter()
                .find(|l| l.contains("HTTP endpoints listening"))
                .cloned();
            if let Some(l) = line {
                let v: serde_json::Value = serde_json::from_str(&l).expect("json log line");
                break v["addr"]
                    .as_str()
                    .expect("addr")
                    .parse()
                    .expect("socket address");
            }
            if Instant::now() > deadline || !daemon.alive() {
                eprintln!("error: capstan did not start:\n{}", daemon.text());
                std::process::exit(1);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let started = Instant::now();

    let (samples, stepped, first_tick) = rt.block_on(async {
        // Warm-up: the first tick checks every target for AWS's own scaling.
        let mut first_tick = None;
        let mut s = scrape(addr, pid, moto, &proxy).await;
        let warm_deadline = Instant::now() + Duration::from_secs(poll * (warm + 10) + 300);
        while s.ticks() < warm as f64 {
            if Instant::now() > warm_deadline || !daemon.alive() {
                eprintln!(
                    "error: the daemon did not complete {warm} ticks:\n{}",
                    daemon.text()
                );
                std::process::exit(1);
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
            s = scrape(addr, pid, moto, &proxy).await;
            if first_tick.is_none() && s.ticks() >= 1.0 {
                first_tick = Some(s.get("capstan_tick_duration_seconds_sum"));
            }
        }
        // The window starts half an interval after a tick ends, so that each scrape one
        // interval apart sees one tick end in between.
        tokio::time::sleep(Duration::from_millis(poll * 500)).await;
        let s = scrape(addr, pid, moto, &proxy).await;
        let window = Duration::from_secs(poll * ticks);
        let mut samples = vec![s];
        // The load steps at random moments, spread over the window but leaving three
        // intervals at its end to act on the last ones.
        let mut rng = Rng::new(seed);
        let span = window
            .saturating_sub(Duration::from_secs(3 * poll))
            .max(window / 2);
        let mut at: Vec<Duration> = (0..steps)
            .map(|_| Duration::from_millis(rng.below(span.as_millis() as u64)))
            .collect();
        at.sort();
        let mut order: Vec<usize> = (0..targets.len()).collect();
        for i in (1..order.len()).rev() {
            order.swap(i, rng.below(i as u64 + 1) as usize);
        }
        let kinds = [Kind::Web, Kind::Asg, Kind::Worker];
        let mut chosen = Vec::new();
        for k in 0..steps {
            let kind = kinds[k % 3];
            if let Some(p) = order
                .iter()
                .position(|i| targets[*i].kind == kind && !chosen.contains(i))
                .or_else(|| order.iter().position(|i| !chosen.contains(i)))
            {
                chosen.push(order[p]);
            }
        }
        let w0 = Instant::now();
        let mut tasks = Vec::new();
        for (when, idx) in at.into_iter().zip(chosen) {
            let (sdk, feed, t, clock) = (
                sdk.clone(),
                feed.clone(),
                targets[idx].clone(),
                proxy.clone(),
            );
            tasks.push(tokio::spawn(async move {
                tokio::time::sleep_until((w0 + when).into()).await;
                step(&sdk, &feed, &t, idx, &clock).await
            }));
        }
        // One scrape per interval, like Prometheus, until the ticks are done.
        let start_ticks = samples[0].ticks();
        let deadline = w0 + window * 3 + Duration::from_secs(120);
        while samples.last().unwrap().ticks() < start_ticks + ticks as f64 {
            let next = samples.last().unwrap().at + Duration::from_secs(poll);
            tokio::time::sleep_until(next.into()).await;
            if Instant::now() > deadline || !daemon.alive() {
                eprintln!("warning: the daemon did not complete {ticks} ticks in time");
                break;
            }
            samples.push(scrape(addr, pid, moto, &proxy).await);
        }
        let mut stepped = Vec::new();
        for t in tasks {
            match t.await {
                Ok(Ok(s)) => stepped.push(s),
                Ok(Err(e)) => eprintln!("warning: a load step failed: {e}"),
                Err(e) => eprintln!("warning: a load step task failed: {e}"),
            }
        }
        // Steps not acted on yet get up to three more intervals (the ticks after the
        // window are not counted in its figures).
        let grace = Instant::now() + Duration::from_secs(3 * poll);
        while Instant::now() < grace && daemon.alive() {
            let changes = capacity_calls(&proxy.log());
            let pending = stepped.iter().any(|s: &Step| {
                !changes
                    .iter()
                    .any(|c| c.1 == targets[s.target].name && c.0 >= s.started_ms)
            });
            if !pending {
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        (samples, stepped, first_tick)
    });
    let hwm = status_kib(pid, "VmHWM").unwrap_or(0);
    let rss = status_kib(pid, "VmRSS").unwrap_or(0);
    let clean_exit = daemon.stop();
    let _ = std::fs::remove_dir_all(&dir);
    feeder_task.abort();
    let log = proxy.log();
    let (a, b) = (samples.first().unwrap(), samples.last().unwrap());
    let done = b.ticks() - a.ticks();
    let wall = b.at.duration_since(a.at).as_secs_f64();

    println!(
        "\n## {done:.0} ticks measured ({:.0} s after capstan started; window {wall:.0} s)",
        a.at.duration_since(started).as_secs_f64()
    );
    if let Some(f) = first_tick {
        println!("first tick (checks every target for AWS's own scaling): {f:.2} s");
    }
    // Per tick, from the scrapes one interval apart that saw exactly one tick.
    let mut tick_wall = Vec::new();
    let mut tick_cpu = Vec::new();
    for w in samples.windows(2) {
        if w[1].ticks() - w[0].ticks() == 1.0 {
            tick_wall.push(
                w[1].get("capstan_tick_duration_seconds_sum")
                    - w[0].get("capstan_tick_duration_seconds_sum"),
            );
            tick_cpu.push((w[1].capstan_cpu - w[0].capstan_cpu) * 1000.0);
        }
    }
    tick_wall.sort_by(f64::total_cmp);
    tick_cpu.sort_by(f64::total_cmp);
    let sum_wall =
        b.get("capstan_tick_duration_seconds_sum") - a.get("capstan_tick_duration_seconds_sum");
    println!(
        "tick wall time (the daemon's capstan_tick_duration_seconds): mean {:.2} s, median {:.2} s, max {:.2} s",
        sum_wall / done.max(1.0),
        pct(&tick_wall, 0.5),
        pct(&tick_wall, 1.0)
    );
    let cpu = b.capstan_cpu - a.capstan_cpu;
    println!(
        "capstan CPU per tick (all threads, one /metrics scrape per tick included): mean {:.0} ms, median {:.0} ms, max {:.0} ms",
        cpu / done.max(1.0) * 1000.0,
        pct(&tick_cpu, 0.5),
        pct(&tick_cpu, 1.0)
    );
    println!(
        "capstan average load: {:.2} % of one core at a {poll} s interval ({:.1} s of CPU over {wall:.0} s)",
        cpu / wall * 100.0,
        cpu
    );
    println!(
        "capstan memory: peak resident {:.1} MiB, resident at the end {:.1} MiB",
        hwm as f64 / 1024.0,
        rss as f64 / 1024.0
    );
    if let (Some(m0), Some(m1)) = (a.moto_cpu, b.moto_cpu) {
        println!(
            "moto (the emulator, one Python process): {:.0} ms of CPU per tick, {:.1} % of one core over the window (feeder and load steps included)",
            (m1 - m0) / done.max(1.0) * 1000.0,
            (m1 - m0) / wall * 100.0
        );
    }
    println!("capstan exited cleanly on SIGTERM: {clean_exit}");
    let problems = |needle: &str| {
        daemon
            .lines
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(needle))
            .count()
    };
    println!(
        "daemon warnings over the run: {} `metric not read`, {} `cannot observe target`",
        problems("metric not read"),
        problems("cannot observe target")
    );
    // What they say, most frequent first (digits and names blurred to group them).
    let mut why: BTreeMap<String, usize> = BTreeMap::new();
    for l in daemon.lines.lock().unwrap().iter() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(l) else {
            continue;
        };
        let Some(text) = v["problem"].as_str().or(v["error"].as_str()) else {
            continue;
        };
        let blurred: String = text
            .replace(&prefix, "")
            .chars()
            .map(|c| if c.is_ascii_digit() { '#' } else { c })
            .take(140)
            .collect();
        *why.entry(format!(
            "{}: {blurred}",
            v["message"].as_str().unwrap_or("?")
        ))
        .or_default() += 1;
    }
    let mut why: Vec<_> = why.into_iter().collect();
    why.sort_by_key(|w| std::cmp::Reverse(w.1));
    for (text, count) in why.iter().take(5) {
        println!("  {count} x {text}");
    }

    // Calls per tick, seen by the proxy in the window.
    let in_window: Vec<&Entry> = log
        .iter()
        .filter(|e| e.ms >= a.proxy_ms && e.ms < b.proxy_ms)
        .collect();
    let mut per_api: BTreeMap<&str, (std::collections::HashSet<&str>, usize, usize)> =
        BTreeMap::new();
    for e in &in_window {
        let x = per_api.entry(e.operation.as_str()).or_default();
        x.0.insert(e.invocation.as_str());
        x.1 += 1;
        if e.status != 200 {
            x.2 += 1;
        }
    }
    println!("\n| API | calls per tick | per 1,000 targets | requests with an error | mean latency seen by capstan |");
    println!("|---|---:|---:|---:|---:|");
    for (api, (calls, _requests, errors)) in &per_api {
        let lat = b.metrics.iter().find_map(|(k, v)| {
            (k.starts_with("capstan_aws_call_duration_seconds_sum{")
                && k.contains(&format!("operation=\"{api}\"")))
            .then(|| {
                let count_key = k.replace("_sum{", "_count{");
                let c = b.get(&count_key) - a.get(&count_key);
                let s = v - a.get(k);
                if c > 0.0 {
                    format!("{:.0} ms", s / c * 1000.0)
                } else {
                    "-".into()
                }
            })
        });
        let per_tick = calls.len() as f64 / done.max(1.0);
        println!(
            "| {api} | {per_tick:.1} | {:.1} | {errors} | {} |",
            per_tick * 1000.0 / n as f64,
            lat.unwrap_or_else(|| "-".into())
        );
    }

    // Reaction: step visible -> the capacity call for its target.
    let changes = capacity_calls(&log);
    let mut lat = Vec::new();
    let mut by_kind: BTreeMap<Kind, Vec<f64>> = BTreeMap::new();
    let mut missed = Vec::new();
    for s in &stepped {
        let t = &targets[s.target];
        match changes
            .iter()
            .find(|c| c.1 == t.name && c.0 >= s.started_ms)
        {
            Some(c) => {
                let secs = c.0.saturating_sub(s.visible_ms) as f64 / 1000.0;
                lat.push(secs);
                by_kind.entry(t.kind).or_default().push(secs);
            }
            None => missed.push(t.name.clone()),
        }
    }
    let stepped_names: Vec<&str> = stepped
        .iter()
        .map(|s| targets[s.target].name.as_str())
        .collect();
    let others = changes
        .iter()
        .filter(|c| c.0 >= a.proxy_ms && !stepped_names.contains(&c.1.as_str()))
        .count();
    lat.sort_by(f64::total_cmp);
    println!(
        "\n## Reaction: {} load steps, step visible at the emulator -> capacity call at the emulator",
        stepped.len()
    );
    println!(
        "p50 {:.2} s, p99 {:.2} s, max {:.2} s; not acted on: {} {missed:?}",
        pct(&lat, 0.5),
        pct(&lat, 0.99),
        pct(&lat, 1.0),
        missed.len()
    );
    for (k, v) in &mut by_kind {
        v.sort_by(f64::total_cmp);
        println!(
            "  {}: {} steps, median {:.2} s, max {:.2} s",
            k.name(),
            v.len(),
            pct(v, 0.5),
            pct(v, 1.0)
        );
    }
    println!(
        "target: p99 under interval + 1 s = {} s: {}",
        poll + 1,
        if missed.is_empty() && pct(&lat, 0.99) < poll as f64 + 1.0 {
            "met"
        } else {
            "NOT met"
        }
    );
    println!("capacity calls for targets without a step during the window: {others} (a steady fleet: expected 0)");

    // Checks that hold on any machine (the time targets above do not).
    let out_of_bounds: Vec<_> = changes
        .iter()
        .filter(|c| {
            targets
                .iter()
                .find(|t| t.name == c.1)
                .is_none_or(|t| c.2 < i64::from(t.min) || c.2 > i64::from(t.max))
        })
        .collect();
    let errors: usize = per_api.values().map(|x| x.2).sum();
    let mut failed = Vec::new();
    if !clean_exit {
        failed.push("capstan did not exit 0 on SIGTERM".to_string());
    }
    if done < ticks as f64 {
        failed.push(format!("{done} of {ticks} ticks completed"));
    }
    if !missed.is_empty() || stepped.len() < steps {
        failed.push(format!(
            "{} of {steps} load steps applied and acted on",
            stepped.len() - missed.len()
        ));
    }
    if others > 0 {
        failed.push(format!("{others} capacity calls on a steady fleet"));
    }
    if !out_of_bounds.is_empty() {
        failed.push(format!("capacity outside the bounds: {out_of_bounds:?}"));
    }
    if errors > 0 || problems("metric not read") + problems("cannot observe target") > 0 {
        failed.push(format!(
            "{errors} failed AWS requests, {} warnings",
            problems("metric not read") + problems("cannot observe target")
        ));
    }
    if failed.is_empty() {
        println!("checks: all passed");
    } else {
        println!("checks FAILED: {}", failed.join("; "));
        if smoke {
            eprintln!("daemon output:\n{}", daemon.text());
            std::process::exit(1);
        }
    }
}
