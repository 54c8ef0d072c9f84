//! `capstan demo`: the whole loop on a laptop, no AWS account and no Docker. Starts the
//! local emulator (moto), provisions a small shop (an ECS storefront, SQS order workers, an
//! EC2 Auto Scaling group, an Aurora cluster with one reader), runs capstan's controller on
//! `config/demo.toml` against it, drives a synthetic flash sale (CloudWatch datapoints and
//! queue messages rising and falling) and prints every scaling decision with its reason,
//! with the status page of `capstan run` on `http_listen` while it runs.
//! Everything it started is stopped at the end.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use aws_sdk_cloudwatch::primitives::DateTime as AwsTime;
use aws_sdk_cloudwatch::types::{Dimension, MetricDatum, StandardUnit};
use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, SendMessageBatchRequestEntry};
use chrono::{DateTime, Utc};

use crate::actuators::AwsActuators;
use crate::aws::{sdk_config, AwsSettings};
use crate::config;
use crate::controller::lease::SoleLeader;
use crate::controller::state::LocalStore;
use crate::controller::{Controller, Options, Outcome};
use crate::emulator::{self, Emulator};
use crate::http::{self, Status};
use crate::sources::cloudwatch::floor_to;
use crate::sources::AwsSources;

/// The demo's config, embedded so the demo runs from any directory of the repository.
pub const DEMO_CONFIG: &str = include_str!("../config/demo.toml");

/// The sale's intensity at `t` seconds: 1 (normal), ramping to 6 and back.
pub fn sale(t: f64) -> f64 {
    match t {
        t if t < 15.0 => 1.0,
        t if t < 40.0 => 1.0 + 5.0 * (t - 15.0) / 25.0,
        t if t < 65.0 => 6.0,
        t if t < 90.0 => 6.0 - 5.0 * (t - 65.0) / 25.0,
        _ => 1.0,
    }
}

struct Shop {
    cw: aws_sdk_cloudwatch::Client,
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
}

async fn provision(sdk: &aws_config::SdkConfig) -> Result<Shop, String> {
    emulator::create_ecs_service(sdk, "demo-shop", "storefront", 0).await?;
    emulator::create_ecs_service(sdk, "demo-shop", "order-workers", 0).await?;
    let ecs = aws_sdk_ecs::Client::new(sdk);
    ecs.update_service()
        .cluster("demo-shop")
        .service("storefront")
        .desired_count(2)
        .send()
        .await
        .map_err(|e| format!("UpdateService: {e:?}"))?;
    emulator::create_asg(sdk, "demo-search", (0, 10, 1), &[]).await?;
    emulator::create_aurora_cluster(sdk, "demo-catalog").await?;
    emulator::create_db_instance(sdk, "demo-catalog", "demo-catalog-reader-0", &[]).await?;
    let sqs = aws_sdk_sqs::Client::new(sdk);
    let queue_url = sqs
        .create_queue()
        .queue_name("demo-orders")
        .send()
        .await
        .map_err(|e| format!("CreateQueue: {e:?}"))?
        .queue_url()
        .unwrap_or_default()
        .to_string();
    Ok(Shop {
        cw: aws_sdk_cloudwatch::Client::new(sdk),
        sqs,
        queue_url,
    })
}

impl Shop {
    /// One datapoint in the newest complete 10 s bucket, so the next tick sees it.
    async fn put(
        &self,
        name: &str,
        dim: (&str, &str),
        value: f64,
        now: DateTime<Utc>,
    ) -> Result<(), String> {
        let at = floor_to(now, 10) - chrono::Duration::seconds(5);
        let datum = MetricDatum::builder()
            .metric_name(name)
            .dimensions(Dimension::builder().name(dim.0).value(dim.1).build())
            .value(value)
            .unit(StandardUnit::None)
            .storage_resolution(1)
            .timestamp(AwsTime::from_secs(at.timestamp()))
            .build();
        self.cw
            .put_metric_data()
            .namespace("CapstanDemo")
            .metric_data(datum)
            .send()
            .await
            .map_err(|e| format!("PutMetricData: {e:?}"))?;
        Ok(())
    }

    async fn enqueue(&self, n: usize) -> Result<(), String> {
        let mut left = n;
        let mut k = 0;
        while left > 0 {
            let batch: Vec<SendMessageBatchRequestEntry> = (0..left.min(10))
                .map(|i| {
                    SendMessageBatchRequestEntry::builder()
                        .id(format!("m{i}"))
                        .message_body(format!("order {k}-{i}"))
                        .build()
                        .expect("id and body are set")
                })
                .collect();
            left -= batch.len();
            k += 1;
            self.sqs
                .send_message_batch()
                .queue_url(&self.queue_url)
                .set_entries(Some(batch))
                .send()
                .await
                .map_err(|e| format!("SendMessageBatch: {e:?}"))?;
        }
        Ok(())
    }

    /// The workers process up to `n` orders: received and deleted.
    async fn work(&self, n: usize) -> Result<(), String> {
        let mut done = 0;
        while done < n {
            let got = self
                .sqs
                .receive_message()
                .queue_url(&self.queue_url)
                .max_number_of_messages((n - done).min(10) as i32)
                .send()
                .await
                .map_err(|e| format!("ReceiveMessage: {e:?}"))?;
            let msgs = got.messages();
            if msgs.is_empty() {
                break;
            }
            let entries: Vec<DeleteMessageBatchRequestEntry> = msgs
                .iter()
                .enumerate()
                .filter_map(|(i, m)| {
                    DeleteMessageBatchRequestEntry::builder()
                        .id(format!("d{i}"))
                        .set_receipt_handle(m.receipt_handle().map(String::from))
                        .build()
                        .ok()
                })
                .collect();
            done += entries.len();
            self.sqs
                .delete_message_batch()
                .queue_url(&self.queue_url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| format!("DeleteMessageBatch: {e:?}"))?;
        }
        Ok(())
    }
}

/// Runs the demo for `seconds`; returns the exit code.
pub async fn run(root: &Path, seconds: u64) -> i32 {
    match demo(root, seconds).await {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("demo failed: {e}");
            1
        }
    }
}

async fn demo(root: &Path, seconds: u64) -> Result<(), String> {
    let cfg = config::from_str("config/demo.toml", DEMO_CONFIG).map_err(|d| {
        d.iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    })?;
    let (endpoint, _emulator) = match std::env::var("AWS_ENDPOINT_URL") {
        Ok(url) => (url, None),
        Err(_) => {
            println!("starting the local AWS emulator (moto; the first run installs it, about a minute)...");
            let emu = Emulator::start(root).map_err(|e| format!("{e}\n  hint: run the demo from the repository root (it uses localstack/moto.sh)"))?;
            (emu.endpoint.clone(), Some(emu))
        }
    };
    let sdk = sdk_config(&AwsSettings {
        region: Some("us-east-1".into()),
        endpoint_url: Some(endpoint.clone()),
        static_credentials: Some(("demo".into(), "demo".into())),
        ..AwsSettings::default()
    })
    .await;
    println!("emulator at {endpoint}; provisioning the shop...");
    let shop = provision(&sdk).await?;
    let interval = Duration::from_secs(cfg.global.poll_interval_secs);
    // The status page and endpoints of `capstan run`, for as long as the demo runs; a taken
    // port only costs the page.
    let status = Status::new(&cfg, false, Utc::now());
    let server = match cfg.global.http_addr() {
        Some(addr) => match http::bind(addr).await {
            Ok(l) => {
                println!(
                    "status page: http://{}/",
                    l.local_addr().map_err(|e| e.to_string())?
                );
                Some(tokio::spawn(http::serve(
                    l,
                    status.clone(),
                    std::future::pending(),
                )))
            }
            Err(e) => {
                println!("no status page: cannot listen on {addr}: {e}");
                None
            }
        },
        None => None,
    };
    let mut controller = Controller::new(
        cfg,
        AwsSources::new(&sdk),
        AwsActuators::new(&sdk),
        LocalStore::default(),
        SoleLeader,
        Options::default(),
    );
    println!("flash sale for {seconds}s, a tick every {}s: storefront at 50 rps per task, workers at 20 queued orders each,\nsearch nodes at 60% CPU, catalog readers at 70% CPU\n", interval.as_secs());

    let start = Utc::now();
    let mut capacity: BTreeMap<String, u32> = [
        ("storefront", 2),
        ("order-workers", 0),
        ("search", 1),
        ("catalog-readers", 1),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), *v))
    .collect();
    let mut peak = capacity.clone();
    let mut actions: BTreeMap<String, u32> = BTreeMap::new();
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        ticker.tick().await;
        let now = Utc::now();
        let t = (now - start).num_milliseconds() as f64 / 1000.0;
        if t > seconds as f64 {
            break;
        }
        let f = sale(t * 120.0 / seconds as f64);
        // The load the shop sees, given the capacity it has now.
        let cap = |n: &str| capacity.get(n).copied().unwrap_or(0).max(1) as f64;
        shop.put(
            "RequestsPerSecond",
            ("Service", "storefront"),
            60.0 * f,
            now,
        )
        .await?;
        shop.put(
            "CPUUtilization",
            ("AutoScalingGroupName", "demo-search"),
            (100.0 * 0.5 * f / cap("search")).min(100.0),
            now,
        )
        .await?;
        shop.put(
            "ReaderCPU",
            ("DBClusterIdentifier", "demo-catalog"),
            (100.0 * 0.6 * f / cap("catalog-readers")).min(100.0),
            now,
        )
        .await?;
        if t < seconds as f64 * 0.75 {
            shop.enqueue((40.0 * f) as usize).await?;
        }
        shop.work(40 * capacity.get("order-workers").copied().unwrap_or(0) as usize)
            .await?;

        let report = controller.tick(now).await;
        status.record(&report);
        for r in &report.results {
            if let Some(e) = &r.error {
                println!("[{t:>5.1}s] {:<16} cannot observe: {e}", r.target);
            }
            let (Some(d), Some(outcome)) = (&r.decision, &r.outcome) else {
                continue;
            };
            match outcome {
                Outcome::Applied { .. } => {
                    capacity.insert(r.target.clone(), d.desired);
                    let p = peak.entry(r.target.clone()).or_default();
                    *p = (*p).max(d.desired);
                    *actions.entry(r.target.clone()).or_default() += 1;
                    println!(
                        "[{t:>5.1}s] {:<16} {:>2} -> {:<2} {}",
                        r.target,
                        d.current,
                        d.desired,
                        d.reason()
                    );
                }
                Outcome::Failed { error } => println!(
                    "[{t:>5.1}s] {:<16} {:>2} -> {:<2} failed: {error}",
                    r.target, d.current, d.desired
                ),
                Outcome::Skipped { why } => println!(
                    "[{t:>5.1}s] {:<16} {:>2} -> {:<2} skipped: {why}",
                    r.target, d.current, d.desired
                ),
            }
        }
    }
    println!(
        "\n{:<16} {:>5} {:>5} {:>5} {:>8}",
        "target", "start", "peak", "end", "actions"
    );
    for (name, start_cap) in [
        ("storefront", 2),
        ("order-workers", 0),
        ("search", 1),
        ("catalog-readers", 1),
    ] {
        println!(
            "{:<16} {:>5} {:>5} {:>5} {:>8}",
            name,
            start_cap,
            peak.get(name).copied().unwrap_or(0),
            capacity.get(name).copied().unwrap_or(0),
            actions.get(name).copied().unwrap_or(0)
        );
    }
    if let Some(server) = server {
        server.abort();
    }
    println!("\nstopping the emulator; done.");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sale_rises_holds_and_falls() {
        assert_eq!(sale(0.0), 1.0);
        assert!(sale(30.0) > 3.0 && sale(30.0) < 6.0);
        assert_eq!(sale(50.0), 6.0);
        assert!(sale(80.0) < 6.0);
        assert_eq!(sale(110.0), 1.0);
    }

    #[test]
    fn the_demo_config_is_valid() {
        let cfg = config::from_str("demo.toml", DEMO_CONFIG).unwrap();
        assert_eq!(cfg.targets.len(), 4);
        assert_eq!(cfg.global.poll_interval_secs, 5);
    }
}
