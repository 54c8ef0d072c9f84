//! Metric sources against a real AWS emulator over HTTP (moto, or `AWS_ENDPOINT_URL`).

mod common;

use aws_sdk_cloudwatch::primitives::DateTime as AwsTime;
use aws_sdk_cloudwatch::types::{Dimension, MetricDatum};
use capstan::config::{self, Config, Target};
use capstan::policy::Sample;
use capstan::sources::cloudwatch::{floor_to, CloudWatchSource};
use capstan::sources::sqs::SqsSource;
use capstan::sources::{AwsSources, MetricRequest, Source};
use chrono::{Duration, Utc};

/// Metric names are unique per test as well as namespaces: moto does not always keep
/// namespaces apart when it aggregates.
fn config(ns: &str, queue: &str, latency: &str) -> Config {
    let text = format!(
        r#"
[[target]]
name = "api"
kind = "ecs_service"
cluster = "shop"
service = "api"
min = 1
max = 10
[[target.metric]]
name = "latency"
source = "cloudwatch"
namespace = "{ns}"
metric_name = "{latency}"
dimensions = {{ Service = "api" }}
[[target.metric]]
name = "alias"
source = "expression"
expression = "latency"
[[target.metric]]
name = "old"
source = "cloudwatch"
namespace = "{ns}"
metric_name = "Old"
[[target.metric]]
name = "none"
source = "cloudwatch"
namespace = "{ns}"
metric_name = "Nothing"
[[target.metric]]
name = "backlog"
source = "sqs"
queue = "{queue}"
include_delayed = true
[[target.metric]]
name = "ghost"
source = "sqs"
queue = "{queue}-does-not-exist"
[[target.policy]]
type = "target_tracking"
metric = "latency"
target_value = 1
"#
    );
    config::from_str("test.toml", &text).unwrap_or_else(|d| panic!("{}", d[0]))
}

async fn put(
    cw: &aws_sdk_cloudwatch::Client,
    ns: &str,
    name: &str,
    dims: &[(&str, &str)],
    points: &[(chrono::DateTime<Utc>, f64)],
) {
    for chunk in points.chunks(500) {
        let data: Vec<MetricDatum> = chunk
            .iter()
            .map(|(t, v)| {
                let mut d = MetricDatum::builder()
                    .metric_name(name)
                    .value(*v)
                    .timestamp(AwsTime::from_secs(t.timestamp()));
                for (k, val) in dims {
                    d = d.dimensions(Dimension::builder().name(*k).value(*val).build());
                }
                d.build()
            })
            .collect();
        cw.put_metric_data()
            .namespace(ns)
            .set_metric_data(Some(data))
            .send()
            .await
            .expect("PutMetricData");
    }
}

#[tokio::test]
async fn cloudwatch_newest_complete_point_expression_staleness_and_gaps() {
    let sdk = common::sdk().await;
    let cw = aws_sdk_cloudwatch::Client::new(&sdk);
    let ns = common::unique("Capstan/Test");
    let now = Utc::now();
    let minute = floor_to(now, 60);
    let latency = common::unique("Latency");
    put(
        &cw,
        &ns,
        &latency,
        &[("Service", "api")],
        &[
            (minute - Duration::minutes(3), 10.0),
            (minute - Duration::minutes(2), 20.0),
            (minute - Duration::minutes(1), 30.0),
        ],
    )
    .await;
    put(
        &cw,
        &ns,
        "Old",
        &[],
        &[(minute - Duration::minutes(10), 5.0)],
    )
    .await;
    let cfg = config(&ns, "unused", &latency);
    let t: &Target = &cfg.targets[0];
    let reqs: Vec<MetricRequest> = t
        .metrics
        .iter()
        .filter(|m| !m.name.contains("backlog") && &*m.name != "ghost")
        .map(|m| MetricRequest {
            target: t,
            metric: m,
        })
        .collect();
    let readings = CloudWatchSource::new(&sdk).read(&reqs, now).await;
    let get = |n: &str| {
        readings
            .iter()
            .find(|r| &*r.metric == n)
            .unwrap_or_else(|| panic!("no reading for {n}: {readings:?}"))
    };
    assert_eq!(
        get("latency").sample,
        Some(Sample::Value(30.0)),
        "{:?}",
        get("latency")
    );
    assert_eq!(get("latency").at, Some(minute - Duration::minutes(1)));
    assert_eq!(
        get("alias").sample,
        Some(Sample::Value(30.0)),
        "{:?}",
        get("alias")
    );
    assert!(
        get("old")
            .problem
            .as_deref()
            .unwrap()
            .starts_with("no complete datapoint"),
        "{:?}",
        get("old")
    );
    assert!(get("none").sample.is_none());
    assert_eq!(readings.len(), 4);
}

#[tokio::test]
async fn cloudwatch_history_reads_days_at_five_minutes() {
    let sdk = common::sdk().await;
    let cw = aws_sdk_cloudwatch::Client::new(&sdk);
    let ns = common::unique("Capstan/History");
    let end = floor_to(Utc::now(), 300);
    let points: Vec<(chrono::DateTime<Utc>, f64)> = (1..=600)
        .map(|i| (end - Duration::minutes(5 * i), i as f64))
        .collect();
    let latency = common::unique("HistoryLatency");
    put(&cw, &ns, &latency, &[("Service", "api")], &points).await;
    let cfg = config(&ns, "unused", &latency);
    let hist = CloudWatchSource::new(&sdk)
        .history(
            &cfg.targets[0],
            "latency",
            end - Duration::days(14),
            end,
            300,
        )
        .await
        .unwrap();
    assert_eq!(hist.len(), 600);
    assert!(hist.windows(2).all(|w| w[0].0 < w[1].0), "sorted");
    assert_eq!(hist.last().unwrap(), &(end - Duration::minutes(5), 1.0));
}

#[tokio::test]
async fn history_of_a_per_minute_sum_over_60_is_the_per_second_rate() {
    // RequestCount, a Sum per minute, published every minute for two days; the policy
    // reads it as `requests / 60`. The history must be the per-second rate (the mean over
    // each 5-minute step), not 5-minute totals divided by 60 (5x). The queue's
    // NumberOfMessagesSent is read the same way for an SQS metric, which has no history.
    let sdk = common::sdk().await;
    let cw = aws_sdk_cloudwatch::Client::new(&sdk);
    let ns = common::unique("Capstan/Alb");
    let requests = common::unique("RequestCount");
    let queue = common::unique("orders");
    let end = floor_to(Utc::now(), 300);
    let minutes = 2 * 1440;
    // 100 to 180 requests/s within each 5 minutes: 140 on average.
    let rate = |i: i64| 100.0 + 20.0 * (i % 5) as f64;
    let counts: Vec<(chrono::DateTime<Utc>, f64)> = (1..=minutes)
        .map(|i| (end - Duration::minutes(i), 60.0 * rate(i)))
        .collect();
    put(
        &cw,
        &ns,
        &requests,
        &[("TargetGroup", "targetgroup/web/1")],
        &counts,
    )
    .await;
    let sent: Vec<(chrono::DateTime<Utc>, f64)> = (1..=minutes)
        .map(|i| (end - Duration::minutes(i), 600.0))
        .collect();
    put(
        &cw,
        "AWS/SQS",
        "NumberOfMessagesSent",
        &[("QueueName", &queue)],
        &sent,
    )
    .await;
    let text = format!(
        r#"
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
namespace = "{ns}"
metric_name = "{requests}"
dimensions = {{ TargetGroup = "targetgroup/web/1" }}
statistic = "Sum"
period = "60s"
[[target.metric]]
name = "rps"
source = "expression"
expression = "requests / 60"
[[target.metric]]
name = "queue"
source = "sqs"
queue = "https://sqs.us-east-1.amazonaws.com/123456789012/{queue}"
[[target.policy]]
type = "predictive"
metric = "rps"
target_per_unit = 100
"#
    );
    let cfg = config::from_str("test.toml", &text).unwrap_or_else(|d| panic!("{}", d[0]));
    let cw = CloudWatchSource::new(&sdk);
    let t = &cfg.targets[0];
    // Two days, as published (14 days at 60 s are 20,160 periods a query: fine for
    // CloudWatch, minutes for the emulator).
    let from = end - Duration::days(2);
    // The Sum itself keeps its own unit, requests per minute: 8,400 on average.
    let per_minute = cw.history(t, "requests", from, end, 300).await.unwrap();
    assert_eq!(per_minute.len(), minutes as usize / 5);
    assert!(
        per_minute.iter().all(|(_, v)| (v - 8400.0).abs() < 1e-6),
        "requests per minute, not per 5 minutes: {:?}",
        &per_minute[..3]
    );
    let hist = cw.history(t, "rps", from, end, 300).await.unwrap();
    assert_eq!(
        hist.len(),
        minutes as usize / 5,
        "one point per 5-minute step"
    );
    assert!(hist.windows(2).all(|w| w[0].0 < w[1].0), "sorted");
    for (at, v) in &hist {
        assert!(
            (v - 140.0).abs() < 1e-6,
            "{at}: {v} requests/s, the rate is 140"
        );
    }
    let arrivals = cw.history(t, "queue", from, end, 300).await.unwrap();
    assert_eq!(arrivals.len(), minutes as usize / 5);
    assert!(
        arrivals.iter().all(|(_, v)| (v - 10.0).abs() < 1e-6),
        "600 messages a minute are 10 messages/s: {:?}",
        &arrivals[..3]
    );
}

#[tokio::test]
async fn sqs_counts_visible_in_flight_and_delayed_and_reports_missing_queues() {
    let sdk = common::sdk().await;
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let name = common::unique("orders");
    let url = sqs
        .create_queue()
        .queue_name(&name)
        .send()
        .await
        .unwrap()
        .queue_url()
        .unwrap()
        .to_string();
    for i in 0..5 {
        sqs.send_message()
            .queue_url(&url)
            .message_body(format!("m{i}"))
            .send()
            .await
            .unwrap();
    }
    for i in 0..3 {
        sqs.send_message()
            .queue_url(&url)
            .message_body(format!("d{i}"))
            .delay_seconds(120)
            .send()
            .await
            .unwrap();
    }
    let got = sqs
        .receive_message()
        .queue_url(&url)
        .max_number_of_messages(2)
        .visibility_timeout(300)
        .send()
        .await
        .unwrap();
    assert_eq!(got.messages().len(), 2);

    let cfg = config("unused", &name, "x");
    let t = &cfg.targets[0];
    let reqs: Vec<MetricRequest> = t
        .metrics
        .iter()
        .filter(|m| &*m.name == "backlog" || &*m.name == "ghost")
        .map(|m| MetricRequest {
            target: t,
            metric: m,
        })
        .collect();
    let readings = SqsSource::new(&sdk)
        .with_concurrency(2)
        .read(&reqs, Utc::now())
        .await;
    let backlog = readings.iter().find(|r| &*r.metric == "backlog").unwrap();
    assert_eq!(
        backlog.sample,
        Some(Sample::Queue {
            visible: 3.0,
            in_flight: 2.0,
            delayed: 3.0
        }),
        "{backlog:?}"
    );
    let ghost = readings.iter().find(|r| &*r.metric == "ghost").unwrap();
    assert!(ghost.sample.is_none());
    assert!(
        ghost
            .problem
            .as_deref()
            .unwrap()
            .contains("sqs:GetQueueUrl"),
        "{ghost:?}"
    );
    assert!(
        ghost.problem.as_deref().unwrap().contains("not found"),
        "{ghost:?}"
    );

    // By URL too, through the combined source, which answers every request once.
    let by_url = config("unused", &url, "x");
    let t = &by_url.targets[0];
    let reqs = MetricRequest::all(&[t]);
    let all = AwsSources::new(&sdk).read(&reqs, Utc::now()).await;
    assert_eq!(all.len(), reqs.len());
    let backlog = all.iter().find(|r| &*r.metric == "backlog").unwrap();
    assert_eq!(
        backlog.sample,
        Some(Sample::Queue {
            visible: 3.0,
            in_flight: 2.0,
            delayed: 3.0
        })
    );
}

/// `poll_every = "1m"` on one metric, ticking every 15 s for two minutes through the
/// recording proxy: the slow metric is in 2 `GetMetricData` requests, the other in all 8,
/// and between its reads the slow metric's reading is reused with its own timestamp.
#[tokio::test]
async fn poll_every_requests_a_slow_metric_once_per_cadence_not_every_tick() {
    use capstan::controller::lease::SoleLeader;
    use capstan::controller::state::MemoryStore;
    use capstan::controller::{Controller, Options};
    use capstan::fake::FakeCloud;

    let proxy = common::proxy::start_proxy(common::endpoint());
    let sdk = capstan::aws::sdk_config(&capstan::aws::AwsSettings {
        region: Some(std::env::var("AWS_REGION").unwrap_or_else(|_| "us-east-1".into())),
        endpoint_url: Some(proxy.url.clone()),
        static_credentials: Some(("test".into(), "test".into())),
        ..Default::default()
    })
    .await;
    let cw = aws_sdk_cloudwatch::Client::new(&sdk);
    let ns = common::unique("Capstan/Cadence");
    let fast = common::unique("Fast");
    let slow = common::unique("Slow");
    // Ticks run on a clock 10 minutes back, so every period they read is published.
    let start = floor_to(Utc::now(), 60) - Duration::minutes(10);
    let minutes: Vec<chrono::DateTime<Utc>> =
        (-5..=5).map(|m| start + Duration::minutes(m)).collect();
    let value = |t: &chrono::DateTime<Utc>| ((*t - start).num_minutes() + 100) as f64;
    let pts: Vec<(chrono::DateTime<Utc>, f64)> = minutes.iter().map(|t| (*t, value(t))).collect();
    put(&cw, &ns, &fast, &[], &pts).await;
    put(&cw, &ns, &slow, &[], &pts).await;
    let text = format!(
        r#"
[[target]]
name = "api"
kind = "ecs_service"
cluster = "shop"
service = "api"
min = 1
max = 10
[[target.metric]]
name = "fast"
source = "cloudwatch"
namespace = "{ns}"
metric_name = "{fast}"
[[target.metric]]
name = "slow"
source = "cloudwatch"
namespace = "{ns}"
metric_name = "{slow}"
poll_every = "1m"
[[target.policy]]
type = "target_tracking"
metric = "fast"
target_value = 1000
"#
    );
    let cfg = config::from_str("test.toml", &text).unwrap_or_else(|d| panic!("{}", d[0]));
    let cloud = FakeCloud::new();
    cloud.set_capacity_now("api", 2);
    let mut c = Controller::new(
        cfg,
        AwsSources::new(&sdk),
        cloud.clone(),
        MemoryStore::default(),
        SoleLeader,
        Options {
            dry_run: true,
            ..Options::default()
        },
    );
    let before = proxy.log().len();
    for k in 0..8i64 {
        let now = start + Duration::seconds(5 + 15 * k);
        let r = c.tick(now).await;
        let get = |n: &str| r.readings.iter().find(|x| &*x.metric == n).unwrap().clone();
        // The newest complete period at `now`: the fast metric's, read this tick.
        let newest = floor_to(now, 60) - Duration::minutes(1);
        assert_eq!(
            get("fast").sample,
            Some(Sample::Value(value(&newest))),
            "tick {k}"
        );
        assert_eq!(get("fast").reused_read_at, None);
        // The slow one is read at ticks 0 and 4 and reused at the others, as read.
        let read_tick = k - k % 4;
        let read_at = start + Duration::seconds(5 + 15 * read_tick);
        let read_period = floor_to(read_at, 60) - Duration::minutes(1);
        let slow_reading = get("slow");
        assert_eq!(
            slow_reading.sample,
            Some(Sample::Value(value(&read_period))),
            "tick {k}"
        );
        assert_eq!(slow_reading.at, Some(read_period), "tick {k}");
        assert_eq!(
            slow_reading.reused_read_at,
            (k % 4 != 0).then_some(read_at),
            "tick {k}"
        );
    }
    let calls: Vec<common::proxy::Entry> = proxy.log()[before..]
        .iter()
        .filter(|e| e.operation == "GetMetricData")
        .cloned()
        .collect();
    let with = |name: &str| calls.iter().filter(|e| e.body.contains(name)).count();
    assert_eq!(with(&fast), 8, "the fast metric every tick");
    assert_eq!(with(&slow), 2, "the slow metric once a minute");
}
