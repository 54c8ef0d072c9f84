//! `capstan run`: the long-running service. Wires the AWS sources and actuators, the
//! history store and the lease into the controller (which checks for AWS-side scaling on
//! every target at start and after each reload), and handles signals: SIGHUP reloads the config (an invalid one is
//! refused with its errors and the old one keeps running), SIGTERM and SIGINT finish the
//! tick in flight, release the lease, stop the HTTP endpoints and exit 0.
//!
//! The HTTP endpoints ([`crate::http`]) listen on `[global] http_listen` (unless `"off"`);
//! after every tick the daemon records the tick's report in the shared [`Status`] they read.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use crate::actuators::AwsActuators;
use crate::aws::{sdk_config, AwsSettings};
use crate::config::{self, Config, MetricsSink};
use crate::controller::lease::{DynamoLease, Lease, SoleLeader};
use crate::controller::state::{DynamoStore, LocalStore, StateStore};
use crate::controller::{self, Controller, Options, TickReport};
use crate::http::{self, Status};
use crate::sources::AwsSources;
use crate::telemetry::{self, CloudWatchPublisher};

/// Options of `capstan run` beyond the config.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    pub dry_run: bool,
    pub log_all: bool,
    /// Stop after this many ticks (tests and demos); run until a signal when `None`.
    pub max_ticks: Option<u64>,
}

/// Runs the daemon until a signal (or `max_ticks`). Returns the process exit code.
pub async fn serve(paths: Vec<PathBuf>, opts: RunOptions) -> i32 {
    let cfg = match config::load(&paths) {
        Ok(c) => c,
        Err(diags) => {
            for d in &diags {
                eprintln!("error: {d}");
            }
            return crate::cli::EXIT_INVALID;
        }
    };
    // The parser's peak is freed by now; give it back rather than keep it resident.
    crate::util::release_freed_memory();
    // Bind first: a taken port fails the start at once, before any AWS call.
    let listener = match cfg.global.http_addr() {
        None => None,
        Some(addr) => match http::bind(addr).await {
            Ok(l) => Some(l),
            Err(e) => {
                eprintln!("error: cannot serve HTTP on {addr} ([global] http_listen): {e}");
                eprintln!("  hint: choose a free address and port, or set http_listen = \"off\"");
                return 1;
            }
        },
    };
    let status = Status::new(&cfg, opts.dry_run || cfg.global.dry_run, chrono::Utc::now());
    let sdk = sdk_config(&AwsSettings {
        region: cfg.global.region.clone(),
        ..AwsSettings::default()
    })
    .await;
    match crate::aws::check_credentials(&sdk, Duration::from_secs(30)).await {
        Ok(None) => {}
        Ok(Some(warning)) => tracing::warn!("{warning}"),
        Err(e) => {
            eprintln!("error: {}", crate::http::redact::redact(&e));
            eprintln!("  hint: give capstan credentials through one source of the standard AWS chain (for ECS, the task role)");
            return 1;
        }
    }
    let sources = AwsSources::new(&sdk);
    let actuators = AwsActuators::new(&sdk);
    let dry_run = opts.dry_run || cfg.global.dry_run;
    let lease = cfg.global.lease.clone();
    for (api, rate) in &cfg.global.rate_limits {
        crate::ratelimit::configure(api, *rate);
    }
    let shard = cfg
        .global
        .shard
        .map(|s| format!("{} of {}", s.index, s.count))
        .unwrap_or_else(|| "all".into());
    tracing::info!(
        targets = cfg.targets.len(),
        shard = %shard,
        dry_run,
        lease = lease.enabled,
        "capstan starting"
    );
    if lease.enabled {
        let owner = format!("{}-{}", hostname(), std::process::id());
        // Histories are keyed by the unsuffixed name, so a target keeps its history when
        // the shard count changes; each shard's replicas elect their own leader.
        let store = DynamoStore::new(&sdk, &lease.table, &lease.name);
        let l = DynamoLease::new(
            &sdk,
            &lease.table,
            &cfg.global.lease_name(),
            &owner,
            lease.duration_secs,
        );
        let io = Io {
            sources,
            actuators,
            store,
            lease: l,
        };
        drive(&sdk, paths, cfg, io, status, listener, opts).await
    } else {
        let io = Io {
            sources,
            actuators,
            store: LocalStore::default(),
            lease: SoleLeader,
        };
        drive(&sdk, paths, cfg, io, status, listener, opts).await
    }
}

fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "capstan".into())
}

/// Sends each tick's metrics where `[global] metrics` says.
enum Publisher {
    CloudWatch(CloudWatchPublisher),
    Emf(String),
    Off,
}

impl Publisher {
    fn new(sdk: &aws_config::SdkConfig, cfg: &Config) -> Self {
        match cfg.global.metrics {
            MetricsSink::Cloudwatch => {
                Publisher::CloudWatch(CloudWatchPublisher::new(sdk, &cfg.global.metrics_namespace))
            }
            MetricsSink::Emf => Publisher::Emf(cfg.global.metrics_namespace.clone()),
            MetricsSink::Off => Publisher::Off,
        }
    }

    async fn publish(&self, report: &TickReport) {
        // One replica publishes, or decisions would be counted once per replica.
        if !report.leader {
            return;
        }
        let points = telemetry::points(report);
        match self {
            Publisher::CloudWatch(p) => {
                if let Err(e) = p.publish(points).await {
                    tracing::warn!(error = %e, "publishing capstan's metrics");
                }
            }
            Publisher::Emf(ns) => {
                for line in telemetry::emf_lines(ns, points) {
                    println!("{line}");
                }
            }
            Publisher::Off => {}
        }
    }
}

/// The controller's I/O.
struct Io<St, L> {
    sources: AwsSources,
    actuators: AwsActuators,
    store: St,
    lease: L,
}

/// Starts the HTTP endpoints, stopped (gracefully) when `shutdown` turns true.
fn start_http(
    listener: Option<tokio::net::TcpListener>,
    status: &Arc<Status>,
    mut shutdown: watch::Receiver<bool>,
) -> Option<tokio::task::JoinHandle<()>> {
    let listener = listener?;
    match listener.local_addr() {
        Ok(addr) => tracing::info!(addr = %addr, "HTTP endpoints listening"),
        Err(e) => tracing::warn!(error = %e, "HTTP endpoints listening (address unknown)"),
    }
    let status = status.clone();
    Some(tokio::spawn(async move {
        let stop = async move {
            let _ = shutdown.wait_for(|stop| *stop).await;
        };
        if let Err(e) = http::serve(listener, status, stop).await {
            tracing::error!(error = %e, "HTTP endpoints stopped");
        }
    }))
}

/// Signals the HTTP endpoints to stop and waits (briefly) for the requests in flight.
async fn stop_http(shutdown: &watch::Sender<bool>, server: Option<tokio::task::JoinHandle<()>>) {
    let _ = shutdown.send(true);
    if let Some(s) = server {
        if tokio::time::timeout(Duration::from_secs(7), s)
            .await
            .is_err()
        {
            tracing::warn!("HTTP endpoints did not stop within 7 s");
        }
    }
}

async fn drive<St: StateStore + 'static, L: Lease + 'static>(
    sdk: &aws_config::SdkConfig,
    paths: Vec<PathBuf>,
    cfg: Config,
    io: Io<St, L>,
    status: Arc<Status>,
    listener: Option<tokio::net::TcpListener>,
    opts: RunOptions,
) -> i32 {
    let interval = Duration::from_secs(cfg.global.poll_interval_secs);
    let publisher = Publisher::new(sdk, &cfg);
    let running_global = cfg.global.clone();
    let options = Options {
        dry_run: opts.dry_run,
        log_all: opts.log_all,
        ..Options::default()
    };
    let mut controller =
        Controller::new(cfg, io.sources, io.actuators, io.store, io.lease, options);
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let server = start_http(listener, &status, shutdown_rx.clone());
    if let Some(n) = opts.max_ticks {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut was_leader = None;
        for _ in 0..n {
            ticker.tick().await;
            let report = controller.tick(chrono::Utc::now()).await;
            controller::log_role_change(&mut was_leader, &report);
            status.record(&report);
            publisher.publish(&report).await;
        }
        let _ = controller.release().await;
        stop_http(&shutdown_tx, server).await;
        return 0;
    }
    let (reload_tx, reload_rx) = mpsc::channel(4);
    // The status is recorded by its own task, so a slow metrics publication never makes it
    // miss a tick (ticks are at least 5 s apart; recording 10,000 targets takes ~0.1 s).
    // Each task takes the report from its mailbox: once both are done with it, nothing
    // holds it until the next tick.
    let (status_tx, mut status_rx) = crate::util::latest::<Arc<TickReport>>();
    let (publish_tx, mut publish_rx) = crate::util::latest::<Arc<TickReport>>();
    let recorder = status.clone();
    tokio::spawn(async move {
        while let Some(r) = status_rx.recv().await {
            recorder.record(&r);
            drop(r);
            // A tick's transient memory (readings, explanations, observations) is freed
            // by now, or once the publisher is done: give it back rather than keep the peak.
            crate::util::release_freed_memory();
        }
    });
    let signals_tx = shutdown_tx.clone();
    tokio::spawn(signals(
        paths,
        running_global,
        signals_tx,
        reload_tx,
        status.clone(),
        opts.dry_run,
    ));
    tokio::spawn(async move {
        while let Some(r) = publish_rx.recv().await {
            publisher.publish(&r).await;
        }
    });
    controller::run(
        controller,
        interval,
        shutdown_rx,
        reload_rx,
        vec![status_tx, publish_tx],
    )
    .await;
    stop_http(&shutdown_tx, server).await;
    tracing::info!("capstan stopped");
    0
}

/// SIGHUP: validate and send a new config; SIGTERM/SIGINT: shut down.
/// The `[global]` settings a reload cannot change (they shape the running process): all but
/// `dry_run`. Returns the names of those that differ.
pub fn fixed_global_changes(old: &config::Global, new: &config::Global) -> Vec<String> {
    let (Ok(serde_json::Value::Object(a)), Ok(serde_json::Value::Object(b))) =
        (serde_json::to_value(old), serde_json::to_value(new))
    else {
        return vec!["global".into()];
    };
    a.iter()
        .filter(|(k, v)| k.as_str() != "dry_run" && b.get(k.as_str()) != Some(v))
        .map(|(k, _)| k.clone())
        .collect()
}

async fn signals(
    paths: Vec<PathBuf>,
    running: config::Global,
    shutdown: watch::Sender<bool>,
    reload: mpsc::Sender<Config>,
    status: Arc<Status>,
    cli_dry_run: bool,
) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut hup), Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::hangup()),
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers: SIGHUP and SIGTERM will not be handled");
        // Keep the shutdown channel open so the loop keeps its interval.
        std::future::pending::<()>().await;
        return;
    };
    loop {
        tokio::select! {
            _ = hup.recv() => match config::load(&paths) {
                Ok(cfg) => {
                    crate::util::release_freed_memory();
                    let changed = fixed_global_changes(&running, &cfg.global);
                    if changed.is_empty() {
                        status.set_config(&cfg, cli_dry_run || cfg.global.dry_run);
                        let _ = reload.send(cfg).await;
                    } else {
                        tracing::error!(changed = ?changed, "reload refused: these [global] settings need a restart; the running config stays");
                    }
                }
                Err(diags) => {
                    for d in &diags {
                        tracing::error!(error = %d, "reload refused: the running config stays");
                    }
                }
            },
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    let _ = shutdown.send(true);
}
