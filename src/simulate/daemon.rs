//! The daemon's own loop as the replay's scaler: every tick is one
//! [`controller::Controller::tick`](crate::controller::Controller::tick), the very function
//! `capstan run` calls, against the simulated cloud ([`SimCloud`]) instead of AWS. Metric
//! reads, metric math, staleness, `poll_every`, `settled_refresh`, forecast refreshes from
//! history, the decision, the action and the history it records are all the daemon's.
//! Only the cloud differs: one tick function, two clouds.

use std::sync::Arc;
use std::time::Duration;

use chrono::DateTime;

use super::cloud::SimCloud;
use super::engine::{Controller as ReplayController, SharedSim, View};
use super::model::MetricPlan;
use crate::config::{Config, Global, MetricsSink, Target};
use crate::controller::lease::SoleLeader;
use crate::controller::state::LocalStore;
use crate::controller::{self, Options};
use crate::policy::Decision;

type Daemon = controller::Controller<SimCloud, SimCloud, LocalStore, SoleLeader>;

/// Runs the daemon's controller for one target on the simulated cloud.
pub struct DaemonScaler {
    target: Target,
    plans: Vec<MetricPlan>,
    global: Global,
    runtime: tokio::runtime::Runtime,
    daemon: Option<Daemon>,
    sim: Option<SharedSim>,
    last: Option<Arc<Decision>>,
}

impl DaemonScaler {
    /// `global` is the config's own (`poll_interval`, `settled_refresh`); the replay sets
    /// what only makes sense against AWS: no HTTP, no metrics of its own, no lease, no dry
    /// run.
    pub fn new(target: Target, plans: Vec<MetricPlan>, global: Global) -> Result<Self, String> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .map_err(|e| format!("cannot start the replay's runtime: {e}"))?;
        Ok(DaemonScaler {
            target,
            plans,
            global: Global {
                dry_run: false,
                http_listen: "off".into(),
                metrics: MetricsSink::Off,
                shard: None,
                lease: Default::default(),
                ..global
            },
            runtime,
            daemon: None,
            sim: None,
            last: None,
        })
    }

    /// The controller, once the replay has attached the simulated service.
    pub fn daemon(&self) -> Option<&Daemon> {
        self.daemon.as_ref()
    }
}

impl ReplayController for DaemonScaler {
    fn interval_secs(&self) -> u64 {
        self.global.poll_interval_secs.max(1)
    }

    fn attach(&mut self, sim: &SharedSim) -> bool {
        let cloud = SimCloud::new(sim.clone(), &self.target, &self.plans);
        self.sim = Some(sim.clone());
        let config = Config {
            global: self.global.clone(),
            targets: vec![self.target.clone()],
        };
        let options = Options {
            dry_run: false,
            action_timeout: Duration::from_secs(60),
            log_all: false,
        };
        self.daemon = Some(controller::Controller::new(
            config,
            cloud.clone(),
            cloud,
            LocalStore::default(),
            SoleLeader,
            options,
        ));
        true
    }

    fn tick(&mut self, view: &View<'_>) -> u32 {
        let Some(daemon) = self.daemon.as_mut() else {
            return view.current;
        };
        let now = DateTime::from_timestamp(view.now, 0).expect("trace times are in range");
        // The daemon logs its actions; a replay reports them in its own files instead.
        let report = tracing::dispatcher::with_default(&tracing::Dispatch::none(), || {
            self.runtime.block_on(daemon.tick(now))
        });
        if let Some(d) = report.results.into_iter().find_map(|r| r.decision) {
            self.last = Some(d);
        }
        // What the service was left at, as the simulated cloud holds it.
        self.sim
            .as_ref()
            .map_or(view.current, |sim| sim.lock().desired)
    }

    fn reason(&self) -> Option<String> {
        self.last.as_ref().map(|d| d.reason())
    }
}
