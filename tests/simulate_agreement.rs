//! The replay's simulated AWS and a real one (the emulator) agree: the same load, published
//! as CloudWatch datapoints at each metric's own period, gives the daemon the same
//! readings, the same history at any period, the same forecasts and the same decisions,
//! for an ECS service on ALB `RequestCount` (Sum), an SQS worker on its queue's
//! `NumberOfMessagesSent` (Sum) and an Auto Scaling group on `CPUUtilization` (Average).

mod common;

use aws_sdk_cloudwatch::primitives::DateTime as AwsTime;
use aws_sdk_cloudwatch::types::{Dimension, MetricDatum};
use capstan::config::{self, Config, Target};
use capstan::controller::lease::SoleLeader;
use capstan::controller::state::MemoryStore;
use capstan::controller::{Controller as Daemon, Options};
use capstan::fake::FakeCloud;
use capstan::simulate::engine::SharedSim;
use capstan::simulate::{
    plan_metrics, replay, Bin, Controller, ServiceModel, SimCloud, Trace, View,
};
use capstan::sources::cloudwatch::{floor_to, history_with, read_with, CloudWatchSource};
use capstan::sources::{AwsSources, MetricRequest};
use chrono::{DateTime, Duration, FixedOffset, Utc};

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

[[target]]
name = "workers"
kind = "ecs_service"
cluster = "shop"
service = "workers"
min = 1
max = 200
[[target.metric]]
name = "sent"
source = "cloudwatch"
namespace = "{ns}"
metric_name = "NumberOfMessagesSent"
dimensions = {{ QueueName = "{id}-orders" }}
statistic = "Sum"
period = "60s"
[[target.policy]]
type = "target_tracking"
metric = "sent"
target_per_unit = 3000

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

async fn put(
    cw: &aws_sdk_cloudwatch::Client,
    ns: &str,
    t: &Target,
    points: &[(DateTime<Utc>, f64)],
) {
    let capstan::config::MetricSource::Cloudwatch {
        metric_name,
        dimensions,
        ..
    } = &t.metrics[0].source
    else {
        panic!("a CloudWatch metric");
    };
    for chunk in points.chunks(500) {
        let data: Vec<MetricDatum> = chunk
            .iter()
            .map(|(at, v)| {
                let mut d = MetricDatum::builder()
                    .metric_name(metric_name)
                    .value(*v)
                    .timestamp(AwsTime::from_secs(at.timestamp()));
                for (k, val) in dimensions {
                    d = d.dimensions(Dimension::builder().name(k).value(val).build());
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

fn assert_same(what: &str, a: &[(DateTime<Utc>, f64)], b: &[(DateTime<Utc>, f64)]) {
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
    let sdk = common::sdk().await;
    let cw = aws_sdk_cloudwatch::Client::new(&sdk);
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
    // Publish what the simulated service published, at the metric's own period.
    for (t, cloud) in &clouds {
        let name = &*t.metrics[0].name;
        let points = history_with(cloud, t, name, from, now, 60).await.unwrap();
        assert!(
            points.len() > 2800,
            "{}: {} minutes published",
            t.name,
            points.len()
        );
        put(&cw, &ns, t, &points).await;
    }
    eprintln!("published in {:?}", clock.elapsed());
    for (t, cloud) in &clouds {
        let name = &*t.metrics[0].name;
        // History at the metric's period and at the forecaster's.
        for period in [60, 300, 3600] {
            let simulated = history_with(cloud, t, name, from, now, period)
                .await
                .unwrap();
            let emulated = aws.history(t, name, from, now, period).await.unwrap();
            assert!(!simulated.is_empty());
            assert_same(
                &format!("{} history at {period}s", t.name),
                &simulated,
                &emulated,
            );
        }
        // The tick's reading: the newest complete fresh datapoint, the same one.
        let reqs = vec![MetricRequest {
            target: t,
            metric: &t.metrics[0],
        }];
        let a = read_with(cloud, &reqs, now).await;
        let b = read_with(&aws, &reqs, now).await;
        assert_eq!(a.len(), 1);
        assert!(a[0].sample.is_some(), "{}: {:?}", t.name, a[0].problem);
        assert_eq!(
            (&a[0].sample, a[0].at),
            (&b[0].sample, b[0].at),
            "{}",
            t.name
        );
    }

    eprintln!("compared in {:?}", clock.elapsed());
    // The daemon's decisions, one with each cloud as its metric source and the same
    // capacity on both.
    let decide = |cloud: Option<SimCloud>| {
        let cfg = cfg.clone();
        let sdk = sdk.clone();
        async move {
            let fake = FakeCloud::new();
            for t in &cfg.targets {
                fake.set_capacity_now(&t.name, 30);
            }
            let opts = Options::default();
            let report = match cloud {
                Some(c) => {
                    let mut d = Daemon::new(cfg, c, fake, MemoryStore::default(), SoleLeader, opts);
                    d.tick(now).await
                }
                None => {
                    let mut d = Daemon::new(
                        cfg,
                        AwsSources::new(&sdk),
                        fake,
                        MemoryStore::default(),
                        SoleLeader,
                        opts,
                    );
                    d.tick(now).await
                }
            };
            report
                .results
                .iter()
                .map(|r| (r.target.clone(), r.decision.as_ref().map(|d| d.desired)))
                .collect::<Vec<_>>()
        }
    };
    for (t, cloud) in &clouds {
        let simulated = decide(Some(cloud.clone())).await;
        let emulated = decide(None).await;
        let pick = |v: &[(String, Option<u32>)]| v.iter().find(|r| r.0 == t.name).cloned();
        let (s, e) = (pick(&simulated), pick(&emulated));
        assert!(s.as_ref().is_some_and(|x| x.1.is_some()), "{s:?}");
        assert_eq!(s, e, "{}", t.name);
    }
}
