//! The fault-injection and crash tests' shop: an ECS service of queue workers scaled on SQS
//! backlog and an EC2 Auto Scaling group scaled on a CloudWatch metric, with helpers to run
//! the `capstan` binary against it through the fault-injecting proxy and to check what
//! the proxy saw.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_cloudwatch::primitives::DateTime as AwsTime;
use aws_sdk_cloudwatch::types::MetricDatum;

use super::proxy::{Entry, Proxy};

/// Poll interval of the scenarios (the config's minimum).
pub const TICK: Duration = Duration::from_secs(5);
/// Messages per worker (the workers' `target_per_unit`).
pub const PER_WORKER: usize = 20;
/// Load per fleet instance (the fleet's `target_per_unit`).
pub const PER_INSTANCE: f64 = 100.0;
pub const WORKERS_BOUNDS: (u32, u32) = (1, 10);
pub const FLEET_BOUNDS: (u32, u32) = (1, 6);

#[derive(Clone, Debug)]
pub struct Shop {
    pub cluster: String,
    pub service: String,
    pub queue: String,
    pub asg: String,
    pub namespace: String,
}

impl Shop {
    pub fn names() -> Shop {
        Shop {
            cluster: super::unique("fshop"),
            service: super::unique("fworkers"),
            queue: super::unique("forders"),
            asg: super::unique("ffleet"),
            namespace: super::unique("Faults"),
        }
    }

    /// Creates the resources: workers at 2 tasks, the fleet at 1 instance, an empty queue,
    /// and (with `table`) the lease table.
    pub async fn create(&self, sdk: &aws_config::SdkConfig, table: Option<&str>) {
        capstan::emulator::create_ecs_service(sdk, &self.cluster, &self.service, 0)
            .await
            .unwrap();
        aws_sdk_ecs::Client::new(sdk)
            .update_service()
            .cluster(&self.cluster)
            .service(&self.service)
            .desired_count(2)
            .send()
            .await
            .unwrap();
        capstan::emulator::create_asg(sdk, &self.asg, (1, 6, 1), &[])
            .await
            .unwrap();
        aws_sdk_sqs::Client::new(sdk)
            .create_queue()
            .queue_name(&self.queue)
            .send()
            .await
            .unwrap();
        if let Some(t) = table {
            capstan::controller::state::create_table(sdk, t)
                .await
                .unwrap();
        }
    }

    pub async fn add_messages(&self, sdk: &aws_config::SdkConfig, n: usize) {
        let sqs = aws_sdk_sqs::Client::new(sdk);
        let url = sqs
            .get_queue_url()
            .queue_name(&self.queue)
            .send()
            .await
            .unwrap()
            .queue_url()
            .unwrap()
            .to_string();
        for i in 0..n {
            sqs.send_message()
                .queue_url(&url)
                .message_body(format!("m{i}"))
                .send()
                .await
                .unwrap();
        }
    }

    pub async fn purge(&self, sdk: &aws_config::SdkConfig) {
        let sqs = aws_sdk_sqs::Client::new(sdk);
        let url = sqs
            .get_queue_url()
            .queue_name(&self.queue)
            .send()
            .await
            .unwrap()
            .queue_url()
            .unwrap()
            .to_string();
        sqs.purge_queue().queue_url(&url).send().await.unwrap();
    }

    /// A target's history as the daemon stored it in the lease table (its lease name is
    /// the workers' service name).
    pub async fn stored_history(
        &self,
        sdk: &aws_config::SdkConfig,
        table: &str,
        target: &str,
    ) -> Option<serde_json::Value> {
        use aws_sdk_dynamodb::types::AttributeValue;
        let item = aws_sdk_dynamodb::Client::new(sdk)
            .get_item()
            .table_name(table)
            .key(
                "pk",
                AttributeValue::S(format!("history#{}#{target}", self.service)),
            )
            .consistent_read(true)
            .send()
            .await
            .unwrap();
        match item.item().and_then(|i| i.get("history")) {
            Some(AttributeValue::S(json)) => serde_json::from_str(json).ok(),
            _ => None,
        }
    }

    /// Puts the fleet's load for every minute from 5 minutes ago to 3 minutes ahead, so
    /// the newest complete datapoint is this value for the whole test.
    pub async fn set_load(&self, sdk: &aws_config::SdkConfig, load: f64) {
        let now = chrono::Utc::now().timestamp() / 60 * 60;
        let data: Vec<MetricDatum> = (-5..=3)
            .map(|m| {
                MetricDatum::builder()
                    .metric_name("Load")
                    .value(load)
                    .timestamp(AwsTime::from_secs(now + m * 60))
                    .build()
            })
            .collect();
        aws_sdk_cloudwatch::Client::new(sdk)
            .put_metric_data()
            .namespace(&self.namespace)
            .set_metric_data(Some(data))
            .send()
            .await
            .unwrap();
    }

    pub async fn workers(&self, sdk: &aws_config::SdkConfig) -> u32 {
        aws_sdk_ecs::Client::new(sdk)
            .describe_services()
            .cluster(&self.cluster)
            .services(&self.service)
            .send()
            .await
            .unwrap()
            .services()[0]
            .desired_count() as u32
    }

    pub async fn fleet(&self, sdk: &aws_config::SdkConfig) -> u32 {
        aws_sdk_autoscaling::Client::new(sdk)
            .describe_auto_scaling_groups()
            .auto_scaling_group_names(&self.asg)
            .send()
            .await
            .unwrap()
            .auto_scaling_groups()[0]
            .desired_capacity()
            .unwrap_or(0) as u32
    }

    /// The config: `[global]` (poll every 5 s, own metrics off unless `extra_global` says
    /// otherwise), the lease when `table` is given, the two targets, the workers' with
    /// `workers_extra` (e.g. its behavior).
    pub fn config(&self, table: Option<&str>, extra_global: &str, workers_extra: &str) -> PathBuf {
        let lease = match table {
            Some(t) => format!(
                "[global.lease]\nenabled = true\ntable = \"{t}\"\nname = \"{}\"\nduration = \"10s\"\n",
                self.service
            ),
            None => String::new(),
        };
        let metrics = if extra_global.contains("metrics") {
            ""
        } else {
            "metrics = \"off\"\n"
        };
        let text = format!(
            r#"[global]
region = "us-east-1"
poll_interval = "5s"
# Any free port: daemons of these tests run side by side.
http_listen = "127.0.0.1:0"
metrics_namespace = "{ns}-own"
{metrics}{extra_global}
{lease}
[[target]]
name = "workers"
kind = "ecs_service"
cluster = "{cluster}"
service = "{service}"
min = {wmin}
max = {wmax}
[[target.metric]]
name = "backlog"
source = "sqs"
queue = "{queue}"
[[target.policy]]
type = "target_tracking"
metric = "backlog"
target_per_unit = {PER_WORKER}
{workers_extra}

[[target]]
name = "fleet"
kind = "asg"
asg_name = "{asg}"
min = {fmin}
max = {fmax}
[[target.metric]]
name = "load"
source = "cloudwatch"
namespace = "{ns}"
metric_name = "Load"
statistic = "Maximum"
[[target.policy]]
type = "target_tracking"
metric = "load"
target_per_unit = {PER_INSTANCE}
"#,
            ns = self.namespace,
            cluster = self.cluster,
            service = self.service,
            queue = self.queue,
            asg = self.asg,
            wmin = WORKERS_BOUNDS.0,
            wmax = WORKERS_BOUNDS.1,
            fmin = FLEET_BOUNDS.0,
            fmax = FLEET_BOUNDS.1,
        );
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(super::unique("fcfg"));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("capstan.toml");
        std::fs::write(&path, text).unwrap();
        path
    }
}

/// `capstan run --config <cfg> --log-format json` against `endpoint` with test credentials.
/// `CAPSTAN_TEST_BIN` runs another build instead (e.g. an older one, to see a test fail).
pub fn capstan(endpoint: &str, cfg: &std::path::Path, args: &[&str]) -> Command {
    let bin = std::env::var("CAPSTAN_TEST_BIN").unwrap_or(env!("CARGO_BIN_EXE_capstan").into());
    let mut c = Command::new(bin);
    c.args(["run", "--config", cfg.to_str().unwrap()])
        .args(args)
        .args(["--log-format", "json"])
        .env("AWS_ENDPOINT_URL", endpoint)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env_remove("AWS_SESSION_TOKEN")
        .env("AWS_REGION", "us-east-1")
        .env_remove("CAPSTAN_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

/// A running daemon whose standard error (and output) lines are collected.
pub struct Daemon {
    pub child: Child,
    pub lines: Arc<Mutex<Vec<String>>>,
}

impl Daemon {
    pub fn spawn(mut cmd: Command) -> Daemon {
        let mut child = cmd.spawn().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        for stream in [
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let l2 = lines.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    l2.lock().unwrap().push(line);
                }
            });
        }
        Daemon { child, lines }
    }

    pub fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    pub fn text(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    /// SIGKILL, then reap.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM; returns whether it exited 0 within 20 s.
    pub fn stop(&mut self) -> bool {
        let _ = Command::new("kill")
            .args(["-s", "TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s.success();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        self.kill9();
        false
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.alive() {
            self.kill9();
        }
    }
}

/// Waits until `f` is true or `secs` pass; returns the time it took, if it became true.
pub async fn until<F, Fut>(secs: u64, mut f: F) -> Option<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(secs) {
        if f().await {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    None
}

/// A capacity change that reached the emulator (status 200): (ms, target kind, value).
#[derive(Clone, Debug, PartialEq)]
pub struct Change {
    pub ms: u64,
    pub operation: String,
    pub resource: String,
    pub value: u32,
}

fn number_after(body: &str, key: &str) -> Option<u32> {
    let i = body.find(key)? + key.len();
    let digits: String = body[i..]
        .chars()
        .skip_while(|c| !c.is_ascii_digit())
        .take_while(|c| c.is_ascii_digit())
        .collect();
    digits.parse().ok()
}

/// Every `UpdateService` / `SetDesiredCapacity` the emulator accepted, with its value.
pub fn changes(log: &[Entry]) -> Vec<Change> {
    log.iter()
        .filter(|e| e.status == 200 && e.fault.is_none())
        .filter_map(|e| match e.operation.as_str() {
            "UpdateService" => Some(Change {
                ms: e.ms,
                operation: e.operation.clone(),
                resource: "workers".into(),
                value: number_after(&e.body, "\"desiredCount\"")?,
            }),
            "SetDesiredCapacity" => Some(Change {
                ms: e.ms,
                operation: e.operation.clone(),
                resource: "fleet".into(),
                value: number_after(&e.body, "DesiredCapacity=")?,
            }),
            _ => None,
        })
        .collect()
}

/// The checks every scenario makes on the proxy log. Returns (requests, faults injected,
/// the largest number of attempts of one call).
pub fn check_log(log: &[Entry]) -> (usize, usize, u32) {
    // Retries stay within the SDK's budget: at most 3 attempts per call.
    let mut attempts: HashMap<&str, u32> = HashMap::new();
    for e in log.iter().filter(|e| !e.invocation.is_empty()) {
        let a = attempts.entry(e.invocation.as_str()).or_default();
        *a += 1;
    }
    let worst = attempts.values().copied().max().unwrap_or(0);
    assert!(worst <= 3, "a call was attempted {worst} times");
    assert!(
        log.iter().all(|e| e.attempt <= 3),
        "attempt numbers above 3"
    );
    // No change outside the bounds.
    for c in changes(log) {
        let (lo, hi) = if c.resource == "workers" {
            WORKERS_BOUNDS
        } else {
            FLEET_BOUNDS
        };
        assert!(
            (lo..=hi).contains(&c.value),
            "out of bounds: {c:?} not in {lo}..={hi}"
        );
    }
    let faults = log.iter().filter(|e| e.fault.is_some()).count();
    (log.len(), faults, worst)
}

/// Faults injected, by kind.
pub fn faults_by_kind(log: &[Entry]) -> Vec<(String, usize)> {
    let mut m: HashMap<String, usize> = HashMap::new();
    for e in log {
        if let Some(f) = &e.fault {
            *m.entry(f.clone()).or_default() += 1;
        }
    }
    let mut v: Vec<_> = m.into_iter().collect();
    v.sort();
    v
}

/// Distinct calls (invocation ids, not attempts) in a time range, of one operation or all.
fn distinct(log: &[Entry], op: Option<&str>, from_ms: u64, to_ms: u64) -> usize {
    let mut ids: Vec<&str> = log
        .iter()
        .filter(|e| op.is_none_or(|o| e.operation == o) && e.ms >= from_ms && e.ms < to_ms)
        .map(|e| e.invocation.as_str())
        .collect();
    ids.sort();
    ids.dedup();
    ids.len()
}

/// Ticks seen by the proxy: distinct `DescribeServices` calls (one per tick).
pub fn ticks(log: &[Entry], from_ms: u64, to_ms: u64) -> usize {
    distinct(log, Some("DescribeServices"), from_ms, to_ms)
}

/// Calls (invocations, not attempts) in a time range.
pub fn calls(log: &[Entry], from_ms: u64, to_ms: u64) -> usize {
    distinct(log, None, from_ms, to_ms)
}

/// Requests (attempts) in a time range.
pub fn requests(log: &[Entry], from_ms: u64, to_ms: u64) -> usize {
    log.iter()
        .filter(|e| e.ms >= from_ms && e.ms < to_ms)
        .count()
}

/// A proxy in front of the shared emulator.
pub fn proxy() -> Proxy {
    super::proxy::start_proxy(super::endpoint())
}
