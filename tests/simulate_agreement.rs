//! The replay's simulated AWS and a real one (the emulator) agree: the same load, published
//! as CloudWatch datapoints at each metric's own period, gives the daemon the same
//! readings, the same history at any period, the same forecasts and the same decisions,
//! for an ECS service on ALB `RequestCount` (Sum), an SQS worker whose forecast reads its
//! queue's `NumberOfMessagesSent` (Sum) and an Auto Scaling group on `CPUUtilization`
//! (Average).

mod common;

use aws_sdk_cloudwatch::primitives::DateTime as AwsTime;
use aws_sdk_cloudwatch::types::{Dimension, MetricDatum};
use capstan::config::{self, Config, MetricSource, Target};
use capstan::controller::lease::SoleLeader;
use capstan::controller::state::MemoryStore;
use capstan::controller::{Controller as Daemon, Options};
use capstan::fake::FakeCloud;
use capstan::simulate::engine::SharedSim;
use capstan::simulate::{
    plan_metrics, replay, Bin, Controller, ServiceModel, SimCloud, Trace, View,
};
use capstan::sources::cloudwatch::{
    floor_to, history_with, CloudWatchSource, MetricData, PlannedCall, PlannedQuery, QueryKind,
};
use capstan::sources::{AwsSources, MetricRequest, Source};
use chrono::{DateTime, Duration, FixedOffset, Utc};
use std::collections::BTreeMap;

fn config(ns: &str, id: &str) -> Config {
    let text = format!(
        r#"
[global]
poll_interval = "60s"

[[target]]
name = "web"
kind = "ecs_service"
cluster = "shop"
service = "web"
min = 1
max = 200
[[target.metric]]
name = "requests"
source = "cloudwatch"
namespace = "{ns}"
metric_name = "RequestCount"
dimensions = {{ LoadBalancer = "app/{id}/1" }}
statistic = "Sum"
period = "60s"
[[target.policy]]
type = "target_tracking"
metric = "requests"
target_per_unit = 6000
[[target.policy]]
type = "predictive"
metric = "requests"
target_per_unit = 6000
mode = "forecast_and_scale"

[[target]]
name = "workers"
kind = "ecs_service"
cluster = "shop"
service = "workers"
min = 1
max = 200
[[target.metric]]
name = "backlog"
source = "sqs"
queue = "{id}-orders"
[[target.policy]]
type = "target_tracking"
metric = "backlog"
target_per_unit = 100
[[target.policy]]
type = "predictive"
metric = "backlog"
target_per_unit = 50
mode = "forecast_and_scale"

[[target]]
name = "search"
kind = "asg"
asg_name = "{id}-search"
min = 1
max = 200
[[target.metric]]
name = "cpu"
source = "cloudwatch"
namespace = "{ns}"
metric_name = "CPUUtilization"
dimensions = {{ AutoScalingGroupName = "{id}-search" }}
statistic = "Average"
period = "60s"
[[target.policy]]
type = "target_tracking"
metric = "cpu"
target_value = 60
"#
    );
    config::from_str("agreement.toml", &text).unwrap_or_else(|d| panic!("{}", d[0]))
}

/// Holds a fixed capacity and keeps the simulated service for the checks afterwards.
struct Fixed {
    units: u32,
    sim: Option<SharedSim>,
}

impl Controller for Fixed {
    fn interval_secs(&self) -> u64 {
        60
    }
    fn attach(&mut self, sim: &SharedSim) -> bool {
        self.sim = Some(sim.clone());
        false
    }
    fn tick(&mut self, _v: &View<'_>) -> u32 {
        self.units
    }
}

/// What the daemon reads of a target in CloudWatch: its metric, or, for an SQS queue, the
/// queue's arrivals (what its forecast reads).
fn identity(t: &Target) -> (String, String, BTreeMap<String, String>, String) {
    match &t.metrics[0].source {
        MetricSource::Cloudwatch {
            namespace,
            metric_name,
            dimensions,
            statistic,
            ..
        } => (
            namespace.clone(),
            metric_name.clone(),
            dimensions.clone(),
            statistic.clone(),
        ),
        MetricSource::Sqs { queue, .. } => (
            "AWS/SQS".into(),
            "NumberOfMessagesSent".into(),
            [("QueueName".to_string(), queue.clone())].into(),
            "Sum".into(),
        ),
        MetricSource::Expression { .. } => panic!("not an expression"),
    }
}

fn call(t: &Target, start: DateTime<Utc>, end: DateTime<Utc>, period: u64) -> PlannedCall {
    let (namespace, metric_name, dimensions, statistic) = identity(t);
    PlannedCall {
        start: floor_to(start, period),
        end: floor_to(end, period),
        period_secs: period,
        queries: vec![PlannedQuery {
            id: "q".into(),
            kind: QueryKind::Stat {
                namespace,
                metric_name,
                dimensions,
                statistic,
                period_secs: period,
            },
            return_data: true,
            answers: Some(0),
        }],
    }
}

async fn put(cw: &aws_sdk_cloudwatch::Client, t: &Target, points: &[(DateTime<Utc>, f64)]) {
    let (namespace, metric_name, dimensions, _) = identity(t);
    for chunk in points.chunks(500) {
        let data: Vec<MetricDatum> = chunk
            .iter()
            .map(|(at, v)| {
                let mut d = MetricDatum::builder()
                    .metric_name(&metric_name)
                    .value(*v)
                    .timestamp(AwsTime::from_secs(at.timestamp()));
                for (k, val) in &dimensions {
                    d = d.dimensions(Dimension::builder().name(k).value(val).build());
                }
                d.build()
            })
            .collect();
        cw.put_metric_data()
            .namespace(&namespace)
            .set_metric_data(Some(data))
            .send()
            .await
            .expect("PutMetricData");
    }
}

fn assert_same(what: &str, a: &[(DateTime<Utc>, f64)], b: &[(DateTime<Utc>, f64)]) {
    let (mut a, mut b) = (a.to_vec(), b.to_vec());
    a.sort_by_key(|p| p.0);
    b.sort_by_key(|p| p.0);
    assert_eq!(
        a.len(),
        b.len(),
        "{what}: {} vs {} points",
        a.len(),
        b.len()
    );
    for (x, y) in a.iter().zip(b) {
        assert_eq!(x.0, y.0, "{what}: timestamps");
        assert!(
            (x.1 - y.1).abs() <= 1e-6 * x.1.abs().max(1.0),
            "{what} at {}: {} vs {}",
            x.0,
            x.1,
            y.1
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_simulated_and_the_emulated_cloud_give_the_daemon_the_same_answers() {
    // The emulator reads weeks of minutes slowly on a busy machine: this test is about
    // what the answers say, not how fast they come.
    let sdk = capstan::aws::sdk_config(&capstan::aws::AwsSettings {
        region: Some("us-east-1".into()),
        endpoint_url: Some(common::endpoint().to_string()),
        static_credentials: Some(("test".into(), "test".into())),
        max_attempts: Some(1),
        attempt_timeout: Some(std::time::Duration::from_secs(120)),
        operation_timeout: Some(std::time::Duration::from_secs(120)),
    })
    .await;
    let cw = aws_sdk_cloudwatch::Client::new(&sdk);
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let ns = common::unique("Capstan/Agree");
    let id = common::unique("agree");
    let cfg = config(&ns, &id);

    // Two days of a daily load with noise, per minute, ending two minutes ago.
    let end = floor_to(Utc::now(), 60) - Duration::minutes(2);
    let minutes = 2 * 1440;
    let start = end.timestamp() - minutes * 60;
    let mut rng = common::Rng::new(7);
    let bins: Vec<Bin> = (0..minutes)
        .map(|m| {
            let phase = m as f64 / 1440.0 * std::f64::consts::TAU;
            let noise = rng.below(600) as f64 - 300.0;
            Bin {
                start: start + m * 60,
                count: (3000.0 + 1500.0 * phase.sin() + noise) * 60.0,
            }
        })
        .collect();
    let trace = Trace::new(bins, FixedOffset::east_opt(0).unwrap()).unwrap();
    let model = ServiceModel {
        unit_capacity: 100.0,
        startup_secs: 60,
        metric_delay_secs: 60,
        metric_period_secs: 60,
        base_latency_secs: 0.1,
    };
    let mut fixed = Fixed {
        units: 60,
        sim: None,
    };
    replay(&trace, &model, 60, &mut fixed, &mut |_| {});
    let sim = fixed.sim.expect("attached");
    let now = DateTime::from_timestamp(trace.end(), 0).unwrap();
    let from = now - Duration::days(3);

    let aws = CloudWatchSource::new(&sdk);
    let clouds: Vec<(&Target, SimCloud)> = cfg
        .targets
        .iter()
        .map(|t| {
            let plans = plan_metrics(t, &Default::default(), 60).unwrap();
            (t, SimCloud::new(sim.clone(), t, &plans))
        })
        .collect();
    let clock = std::time::Instant::now();
    // Publish what the simulated service published, at the metric's own period (60 s).
    for (t, cloud) in &clouds {
        let points = cloud
            .get_metric_data(&call(t, from, now, 60))
            .await
            .unwrap()
            .remove("q")
            .unwrap();
        assert!(
            points.len() > 2800,
            "{}: {} minutes published",
            t.name,
            points.len()
        );
        put(&cw, t, &points).await;
    }
    // The queue holds what the simulated one does: messages waiting and messages being
    // worked on (received, not yet deleted).
    let url = sqs
        .create_queue()
        .queue_name(format!("{id}-orders"))
        .send()
        .await
        .expect("CreateQueue")
        .queue_url
        .unwrap();
    let workers = cfg.target("workers").unwrap();
    let queue_now = clouds[1]
        .1
        .read(
            &[MetricRequest {
                target: workers,
                metric: &workers.metrics[0],
            }],
            now,
        )
        .await;
    let Some(capstan::policy::Sample::Queue {
        visible, in_flight, ..
    }) = queue_now[0].sample
    else {
        panic!("a queue sample: {queue_now:?}")
    };
    for _ in 0..(visible + in_flight) as usize {
        sqs.send_message()
            .queue_url(&url)
            .message_body("order")
            .send()
            .await
            .expect("SendMessage");
    }
    let mut received = 0;
    while received < in_flight as i32 {
        let got = sqs
            .receive_message()
            .queue_url(&url)
            .max_number_of_messages((in_flight as i32 - received).min(10))
            .visibility_timeout(3600)
            .send()
            .await
            .expect("ReceiveMessage");
        received += got.messages().len() as i32;
    }
    eprintln!("published in {:?}", clock.elapsed());
    for (t, cloud) in &clouds {
        // CloudWatch's statistics at the metric's period and at longer ones.
        for period in [60, 300, 3600] {
            let c = call(t, from, now, period);
            let simulated = cloud
                .get_metric_data(&c)
                .await
                .unwrap()
                .remove("q")
                .unwrap();
            let emulated = aws.get_metric_data(&c).await.unwrap().remove("q").unwrap();
            assert!(!simulated.is_empty());
            assert_same(&format!("{} at {period}s", t.name), &simulated, &emulated);
        }
        // The forecaster's history, in the policy's units, and the tick's reading.
        let name = &*t.metrics[0].name;
        let simulated = history_with(cloud, t, name, from, now, 300).await.unwrap();
        let emulated = aws.history(t, name, from, now, 300).await.unwrap();
        assert_same(&format!("{} history", t.name), &simulated, &emulated);
        let reqs = vec![MetricRequest {
            target: t,
            metric: &t.metrics[0],
        }];
        let a = cloud.read(&reqs, now).await;
        let b = AwsSources::new(&sdk).read(&reqs, now).await;
        assert_eq!(a.len(), 1);
        assert!(a[0].sample.is_some(), "{}: {:?}", t.name, a[0].problem);
        assert_eq!(a[0].sample, b[0].sample, "{}", t.name);
        if !matches!(t.metrics[0].source, MetricSource::Sqs { .. }) {
            assert_eq!(a[0].at, b[0].at, "{}", t.name);
        }
    }
    eprintln!("compared in {:?}", clock.elapsed());
    // The daemon's decisions, one with each cloud as its metric source and the same
    // capacity on both.
    // Two ticks: the first refreshes the forecasts after acting, the second decides on them.
    let decide = |cloud: Option<SimCloud>| {
        let cfg = cfg.clone();
        let sdk = sdk.clone();
        async move {
            let fake = FakeCloud::new();
            for t in &cfg.targets {
                fake.set_capacity_now(&t.name, 30);
            }
            let opts = Options::default();
            let mut out = Vec::new();
            macro_rules! run {
                ($d:expr) => {{
                    let mut d = $d;
                    d.tick(now).await;
                    let report = d.tick(now).await;
                    for r in &report.results {
                        let f = d
                            .forecast(&r.target)
                            .map(|f| (f.start, f.step_secs, f.values.clone()));
                        out.push((r.target.clone(), r.decision.as_ref().map(|d| d.desired), f));
                    }
                }};
            }
            match cloud {
                Some(c) => run!(Daemon::new(
                    cfg,
                    c.clone(),
                    fake,
                    MemoryStore::default(),
                    SoleLeader,
                    opts
                )),
                None => run!(Daemon::new(
                    cfg,
                    AwsSources::new(&sdk),
                    fake,
                    MemoryStore::default(),
                    SoleLeader,
                    opts
                )),
            }
            out
        }
    };
    let emulated = decide(None).await;
    for (t, cloud) in &clouds {
        let simulated = decide(Some(cloud.clone())).await;
        let pick = |v: &[Decided]| v.iter().find(|r| r.0 == t.name).cloned().unwrap();
        let (s, e) = (pick(&simulated), pick(&emulated));
        assert!(s.1.is_some(), "{s:?}");
        assert_eq!(s.1, e.1, "{}: decisions", t.name);
        let predictive = t
            .policies
            .iter()
            .any(|p| matches!(p.kind, capstan::config::PolicyKind::Predictive(_)));
        assert_eq!(s.2.is_some(), predictive, "{}: a forecast", t.name);
        if let (Some(a), Some(b)) = (&s.2, &e.2) {
            assert_eq!((a.0, a.1), (b.0, b.1), "{}: forecast grid", t.name);
            assert_eq!(a.2.len(), b.2.len());
            for (x, y) in a.2.iter().zip(&b.2) {
                assert!(
                    (x - y).abs() <= 1e-6 * x.abs().max(1.0),
                    "{}: forecast {x} vs {y}",
                    t.name
                );
            }
        }
    }
}

type Decided = (String, Option<u32>, Option<(DateTime<Utc>, u64, Vec<f64>)>);
