//! `capstan run`: the long-running service. Wires the AWS sources and actuators, the
//! history store and the lease into the controller, checks for AWS-side scaling on every
//! target at start-up, and handles signals: SIGHUP reloads the config (an invalid one is
//! refused with its errors and the old one keeps running), SIGTERM and SIGINT finish the
//! tick in flight, release the lease and exit 0.

use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use crate::actuators::{Actuator, AwsActuators};
use crate::aws::{sdk_config, AwsSettings};
use crate::config::{self, Config, MetricsSink};
use crate::controller::lease::{DynamoLease, Lease, SoleLeader};
use crate::controller::state::{DynamoStore, MemoryStore, StateStore};
use crate::controller::{self, Controller, Options, TickReport};
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

/// Drops targets whose resource AWS already scales, unless `takeover = true`, in which case
/// AWS's own scaling is suspended first. Returns the config to run.
pub async fn resolve_conflicts<A: Actuator>(
    actuator: &A,
    mut cfg: Config,
    dry_run: bool,
) -> Config {
    let mut keep = Vec::new();
    for t in cfg.targets.drain(..) {
        match actuator.conflicts(&t).await {
            Ok(found) if found.is_empty() => keep.push(t),
            Ok(found) => {
                let what: Vec<String> = found.iter().map(|c| c.what.clone()).collect();
                if !t.takeover {
                    tracing::error!(target_name = %t.name, conflicts = ?what, "AWS already scales this resource: not managing it (set takeover = true to suspend AWS's scaling and manage it)");
                    continue;
                }
                if dry_run {
                    tracing::warn!(target_name = %t.name, conflicts = ?what, "dry run: would suspend AWS's scaling and take over");
                    keep.push(t);
                    continue;
                }
                match actuator.take_over(&t).await {
                    Ok(done) => {
                        tracing::warn!(target_name = %t.name, done = ?done, "took over from AWS's own scaling");
                        keep.push(t);
                    }
                    Err(e) => {
                        tracing::error!(target_name = %t.name, error = %e, "could not suspend AWS's scaling: not managing this target")
                    }
                }
            }
            Err(e) => {
                // Unknown: manage it, but say so; the next start checks again.
                tracing::warn!(target_name = %t.name, error = %e, "could not check for AWS-side scaling");
                keep.push(t);
            }
        }
    }
    cfg.targets = keep;
    cfg
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
    let sdk = sdk_config(&AwsSettings {
        region: cfg.global.region.clone(),
        ..AwsSettings::default()
    })
    .await;
    let sources = AwsSources::new(&sdk);
    let actuators = AwsActuators::new(&sdk);
    let dry_run = opts.dry_run || cfg.global.dry_run;
    let cfg = resolve_conflicts(&actuators, cfg, dry_run).await;
    let lease = cfg.global.lease.clone();
    tracing::info!(
        targets = cfg.targets.len(),
        dry_run,
        lease = lease.enabled,
        "capstan starting"
    );
    if lease.enabled {
        let owner = format!("{}-{}", hostname(), std::process::id());
        let store = DynamoStore::new(&sdk, &lease.table, &lease.name);
        let l = DynamoLease::new(&sdk, &lease.table, &lease.name, &owner, lease.duration_secs);
        drive(&sdk, paths, cfg, sources, actuators, store, l, opts).await
    } else {
        drive(
            &sdk,
            paths,
            cfg,
            sources,
            actuators,
            MemoryStore::default(),
            SoleLeader,
            opts,
        )
        .await
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
        let points = telemetry::points(report);
        match self {
            Publisher::CloudWatch(p) => {
                if let Err(e) = p.publish(&points).await {
                    tracing::warn!(error = %e, "publishing capstan's metrics");
                }
            }
            Publisher::Emf(ns) => {
                for line in telemetry::emf_lines(ns, &points) {
                    println!("{line}");
                }
            }
            Publisher::Off => {}
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn drive<St: StateStore + 'static, L: Lease + 'static>(
    sdk: &aws_config::SdkConfig,
    paths: Vec<PathBuf>,
    cfg: Config,
    sources: AwsSources,
    actuators: AwsActuators,
    store: St,
    lease: L,
    opts: RunOptions,
) -> i32 {
    let interval = Duration::from_secs(cfg.global.poll_interval_secs);
    let publisher = Publisher::new(sdk, &cfg);
    let options = Options {
        dry_run: opts.dry_run,
        log_all: opts.log_all,
        ..Options::default()
    };
    let mut controller = Controller::new(cfg, sources, actuators, store, lease, options);
    if let Some(n) = opts.max_ticks {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        for _ in 0..n {
            ticker.tick().await;
            let report = controller.tick(chrono::Utc::now()).await;
            publisher.publish(&report).await;
        }
        let _ = controller.release().await;
        return 0;
    }
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let (reload_tx, reload_rx) = mpsc::channel(4);
    tokio::spawn(signals(paths, shutdown_tx, reload_tx));
    let (reports_tx, mut reports_rx) = watch::channel(None);
    tokio::spawn(async move {
        while reports_rx.changed().await.is_ok() {
            let report = reports_rx.borrow_and_update().clone();
            if let Some(r) = report {
                publisher.publish(&r).await;
            }
        }
    });
    controller::run(
        controller,
        interval,
        shutdown_rx,
        reload_rx,
        Some(reports_tx),
    )
    .await;
    tracing::info!("capstan stopped");
    0
}

/// SIGHUP: validate and send a new config; SIGTERM/SIGINT: shut down.
async fn signals(paths: Vec<PathBuf>, shutdown: watch::Sender<bool>, reload: mpsc::Sender<Config>) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut hup), Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::hangup()),
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers");
        return;
    };
    loop {
        tokio::select! {
            _ = hup.recv() => match config::load(&paths) {
                Ok(cfg) => {
                    let _ = reload.send(cfg).await;
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
