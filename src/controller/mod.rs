//! The control loop: every tick, observe all targets with batched calls, decide each with
//! the pure core, and act where capacity must change — only as the leader, never in dry
//! run, at most one change in flight per target, a failing target never delaying the
//! others. Actions are absolute (set desired = N), so a retry never doubles a step, and
//! written ahead: a change is stored as pending before its call and counts for the rate
//! limits until its answer, or a fresh read of the resource, settles it, so neither a lost
//! answer nor a restart between the call and its record repeats it.
//!
//! [`Controller::tick`] does one round and returns what it did as a value; [`run`] drives
//! ticks on an interval until shutdown, skipping late ticks rather than queueing them.

pub mod lease;
pub mod state;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::{mpsc, watch};

use crate::actuators::{Actuator, Applied, CapacityState};
use crate::aws::AwsError;
use crate::config::PolicyKind;
use crate::config::{Config, Target};
use crate::forecast;
use crate::policy::{
    self, ChangeAnswer, Decision, ForecastSeries, History, Observation, Reconciled,
};
use crate::sources::cadence::Cadence;
use crate::sources::{HistoryReader, MetricRequest, Reading, Source};
use crate::util::join_all;
use lease::{Lease, LeaseState};
use state::StateStore;

/// Time before its lease expires after which a leader no longer starts actions.
pub const LEASE_MARGIN: Duration = Duration::from_secs(2);

/// Decisions kept for `/v1/decisions` and the status page.
pub const DECISION_LOG_LEN: usize = 1000;

/// What happened to a decision that wanted a change.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum Outcome {
    Applied { applied: Applied },
    Failed { error: AwsError },
    Skipped { why: String },
}

/// One target's result of a tick.
#[derive(Clone, Debug, Serialize)]
pub struct TargetResult {
    pub target: String,
    /// Shared with the HTTP status, which keeps the last decision of each target.
    pub decision: Option<Arc<Decision>>,
    /// Set when the capacity was to change.
    pub outcome: Option<Outcome>,
    /// Why the target could not be decided this tick (its state could not be read).
    pub error: Option<AwsError>,
}

/// What a tick did.
#[derive(Clone, Debug, Serialize)]
pub struct TickReport {
    pub at: DateTime<Utc>,
    pub leader: bool,
    pub dry_run: bool,
    pub results: Vec<TargetResult>,
    /// Every metric read this tick, with its datapoint's time (for staleness) or its problem.
    pub readings: Vec<Reading>,
    pub lease_error: Option<AwsError>,
    pub store_errors: Vec<AwsError>,
    pub elapsed_ms: u64,
}

impl TickReport {
    pub fn result(&self, target: &str) -> Option<&TargetResult> {
        self.results.iter().find(|r| r.target == target)
    }
    /// Capacity changes carried out this tick.
    pub fn applied(&self) -> usize {
        self.results
            .iter()
            .filter(|r| matches!(r.outcome, Some(Outcome::Applied { .. })))
            .count()
    }
}

/// Knobs of the loop that are not part of the target config.
#[derive(Clone, Debug)]
pub struct Options {
    pub dry_run: bool,
    /// Time allowed for one capacity change.
    pub action_timeout: Duration,
    /// Log every decision, not only changes.
    pub log_all: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            dry_run: false,
            action_timeout: Duration::from_secs(60),
            log_all: false,
        }
    }
}

/// The controller: config, I/O behind traits, and the per-target histories.
pub struct Controller<S, A, St, L> {
    config: Config,
    source: S,
    actuator: A,
    store: St,
    lease: L,
    options: Options,
    histories: HashMap<String, History>,
    loaded: bool,
    forecasts: HashMap<String, Arc<ForecastSeries>>,
    /// When each predictive target's forecast is next refreshed, and what the last
    /// refresh said (the model used, or why there is none).
    forecast_due: HashMap<String, (DateTime<Utc>, String)>,
    log: VecDeque<Arc<Decision>>,
    last_lease: Option<LeaseState>,
    /// Whether the previous tick was the leader's (a new leader reloads the histories).
    was_leader: bool,
    /// The command line's dry run; the config's is added on every (re)load.
    cli_dry_run: bool,
    /// AWS-side scaling must be checked again (at start, after a reload, for targets whose
    /// check failed, and to take over once leader).
    conflicts_pending: bool,
    /// Targets whose AWS-side scaling could not be checked: decided, never acted on.
    unverified: HashMap<String, String>,
    /// The last good reading of each metric with a `poll_every`, reused between its reads.
    cadence: Cadence,
    /// With `settled_refresh`: the last capacity reading of each settled target, reused
    /// until it is due to be read again.
    settled: HashMap<String, SettledReading>,
}

/// A settled target's last capacity reading (`settled_refresh`).
#[derive(Clone, Debug)]
struct SettledReading {
    state: CapacityState,
    read_at: DateTime<Utc>,
    /// When it is read again: `settled_refresh` after the read, or, for a target cached for
    /// the first time, at a point spread over that span by a hash of its name, so that
    /// targets read together (at start, after a reload) do not all fall due together.
    due: DateTime<Utc>,
}

impl<S: Source + HistoryReader, A: Actuator, St: StateStore, L: Lease> Controller<S, A, St, L> {
    pub fn new(
        config: Config,
        source: S,
        actuator: A,
        store: St,
        lease: L,
        options: Options,
    ) -> Self {
        let dry_run = options.dry_run || config.global.dry_run;
        Controller {
            config,
            source,
            actuator,
            store,
            lease,
            options: Options { dry_run, ..options },
            histories: HashMap::new(),
            loaded: false,
            forecasts: HashMap::new(),
            forecast_due: HashMap::new(),
            log: VecDeque::new(),
            last_lease: None,
            was_leader: false,
            cli_dry_run: options.dry_run,
            conflicts_pending: true,
            unverified: HashMap::new(),
            cadence: Cadence::default(),
            settled: HashMap::new(),
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn dry_run(&self) -> bool {
        self.options.dry_run
    }

    /// The recent decisions, oldest first.
    pub fn decisions(&self) -> impl Iterator<Item = &Decision> {
        self.log.iter().map(|d| &**d)
    }

    pub fn history(&self, target: &str) -> Option<&History> {
        self.histories.get(target)
    }

    pub fn lease_state(&self) -> Option<&LeaseState> {
        self.last_lease.as_ref()
    }

    /// Supplies the forecast a target's predictive policy uses from now on.
    pub fn set_forecast(&mut self, target: &str, forecast: ForecastSeries) {
        self.forecasts
            .insert(target.to_string(), Arc::new(forecast));
    }

    /// What the last forecast refresh of a target said (model used, or why none).
    pub fn forecast_note(&self, target: &str) -> Option<&str> {
        self.forecast_due.get(target).map(|(_, note)| note.as_str())
    }

    /// The forecast a target's predictive policy uses now.
    pub fn forecast(&self, target: &str) -> Option<&ForecastSeries> {
        self.forecasts.get(target).map(|f| &**f)
    }

    /// Refreshes the forecasts that are due: 14 days of 5-minute history in, 48 hours out.
    /// A failure is retried after at most 15 minutes; the old forecast stays until then.
    pub async fn refresh_forecasts(&mut self, now: DateTime<Utc>) {
        let due: Vec<(String, Arc<str>, u64)> = self
            .config
            .targets
            .iter()
            .filter_map(|t| {
                t.policies.iter().find_map(|p| match &p.kind {
                    PolicyKind::Predictive(pp) => {
                        Some((t.name.clone(), p.metric.clone(), pp.refresh_secs))
                    }
                    _ => None,
                })
            })
            .filter(|(name, _, _)| self.forecast_due.get(name).is_none_or(|(at, _)| *at <= now))
            .collect();
        let cfg = forecast::ForecastConfig::default();
        for (name, metric, refresh) in due {
            let Some(t) = self.config.target(&name) else {
                continue;
            };
            let from = now - chrono::Duration::seconds(cfg.max_history_secs);
            let result = self
                .source
                .history(t, &metric, from, now, cfg.step_secs as u64)
                .await;
            let (next, note) = match result {
                Ok(points) => {
                    let pts: Vec<forecast::Point> = points
                        .iter()
                        .map(|(at, v)| forecast::Point {
                            at: at.timestamp(),
                            value: *v,
                        })
                        .collect();
                    match forecast::forecast(&pts, now.timestamp(), &cfg) {
                        Ok(f) => {
                            let series = ForecastSeries {
                                start: DateTime::from_timestamp(f.start, 0).unwrap_or(now),
                                step_secs: f.step_secs as u64,
                                values: f.values,
                            };
                            self.forecasts.insert(name.clone(), Arc::new(series));
                            (refresh, f.model)
                        }
                        Err(e) => (refresh.min(900), e.to_string()),
                    }
                }
                Err(e) => {
                    tracing::warn!(target_name = %name, error = %e, "forecast history not read");
                    (refresh.min(900), e.to_string())
                }
            };
            self.forecast_due
                .insert(name, (now + chrono::Duration::seconds(next as i64), note));
        }
    }

    /// Swaps in a new, already validated config. Histories of targets that remain are kept;
    /// those of removed targets go to the store ([`StateStore::retire`]).
    pub fn reload(&mut self, config: Config) {
        self.options.dry_run = self.cli_dry_run || config.global.dry_run;
        self.conflicts_pending = true;
        self.unverified.clear();
        // A target's resource may be another one now: read every target afresh.
        self.settled.clear();
        let names: std::collections::HashSet<&str> =
            config.targets.iter().map(|t| t.name.as_str()).collect();
        let removed: Vec<String> = self
            .histories
            .keys()
            .filter(|name| !names.contains(name.as_str()))
            .cloned()
            .collect();
        for name in removed {
            if let Some(h) = self.histories.remove(&name) {
                self.store.retire(&name, h);
            }
        }
        self.forecasts
            .retain(|name, _| names.contains(name.as_str()));
        self.forecast_due.clear();
        // New targets' histories come from the store on the next tick.
        self.loaded = false;
        self.config = config;
    }

    /// Looks for AWS's own scaling on every target. A target with conflicts is dropped
    /// unless `takeover = true`; then AWS's scaling is suspended, but only by an acting
    /// replica (leader, not dry run); a replica that may not act checks again on promotion or
    /// reload. A target whose check or take-over failed is decided but not acted on, and
    /// checked again on the next tick.
    async fn check_conflicts(&mut self, acting: bool) {
        let mut keep = Vec::with_capacity(self.config.targets.len());
        let mut pending = false;
        self.unverified.clear();
        for t in std::mem::take(&mut self.config.targets) {
            match self.actuator.conflicts(&t).await {
                Ok(found) if found.is_empty() => keep.push(t),
                Ok(found) => {
                    let what: Vec<String> = found.iter().map(|c| c.what.clone()).collect();
                    if !t.takeover {
                        tracing::error!(target_name = %t.name, conflicts = ?what, "AWS already scales this resource: not managing it (set takeover = true to suspend AWS's scaling and manage it)");
                        continue;
                    }
                    if !acting {
                        tracing::warn!(target_name = %t.name, conflicts = ?what, "AWS's own scaling would be suspended by the acting leader");
                        // Checked again on promotion or reload, not every tick.
                        self.unverified
                            .insert(t.name.clone(), "AWS's own scaling is still active".into());
                        keep.push(t);
                        continue;
                    }
                    match self.actuator.take_over(&t).await {
                        Ok(done) => {
                            tracing::warn!(target_name = %t.name, done = ?done, "took over from AWS's own scaling")
                        }
                        Err(e) => {
                            tracing::error!(target_name = %t.name, error = %e, "could not suspend AWS's scaling");
                            self.unverified.insert(t.name.clone(), e.to_string());
                            pending = true;
                        }
                    }
                    keep.push(t);
                }
                Err(e) => {
                    tracing::warn!(target_name = %t.name, error = %e, "could not check for AWS-side scaling: not acting on it until a check succeeds");
                    self.unverified.insert(t.name.clone(), e.to_string());
                    pending = true;
                    keep.push(t);
                }
            }
        }
        self.config.targets = keep;
        self.conflicts_pending = pending;
    }

    /// Releases the lease (on shutdown).
    pub async fn release(&self) -> Result<(), AwsError> {
        self.lease.release().await
    }

    async fn load_histories(&mut self) -> Option<AwsError> {
        let missing: Vec<String> = self
            .config
            .targets
            .iter()
            .map(|t| t.name.clone())
            .filter(|n| !self.histories.contains_key(n))
            .collect();
        if missing.is_empty() {
            self.loaded = true;
            return None;
        }
        match self.store.load(&missing).await {
            Ok(found) => {
                self.histories.extend(found);
                self.loaded = true;
                None
            }
            Err(e) => Some(e),
        }
    }

    /// One round: lease, observe, decide, act, record.
    pub async fn tick(&mut self, now: DateTime<Utc>) -> TickReport {
        let started = Instant::now();
        let mut store_errors = Vec::new();
        // A leader that cannot renew its lease stops acting at once; one that renewed acts
        // only until shortly before the lease it holds would expire (on its own monotonic
        // clock). A dry run never takes or writes the lease: it only reads who holds it (and
        // lets go of a lease it held before a reload turned the dry run on).
        let lease = if self.options.dry_run {
            if self.was_leader {
                if let Err(e) = self.lease.release().await {
                    tracing::warn!(error = %e, "releasing the lease for the dry run");
                }
            }
            self.lease.peek().await
        } else {
            self.lease.acquire_or_renew(now).await
        };
        let (leader, lease_error) = match lease {
            Ok(s) => {
                let l = s.leader;
                self.last_lease = Some(s);
                (l, None)
            }
            Err(e) => {
                self.last_lease = None;
                (false, Some(e))
            }
        };
        let act_until: Option<Instant> = self
            .last_lease
            .as_ref()
            .and_then(|l| l.valid_until)
            .map(|until| until.checked_sub(LEASE_MARGIN).unwrap_or(started));
        let fencing = self.last_lease.as_ref().map_or(0, |l| l.fencing);
        // A dry run is never the acting leader: what it records stays in its memory.
        let leader_acting = leader && !self.options.dry_run;
        if leader_acting && !self.was_leader {
            // What the previous leader recorded is in the store, not in this replica's memory.
            self.histories.clear();
            self.loaded = false;
            self.conflicts_pending = true;
            self.settled.clear();
        }
        self.was_leader = leader_acting;
        let acting = leader_acting;
        self.actuator.set_acting(acting);
        if self.conflicts_pending {
            self.check_conflicts(acting).await;
        }
        if !self.loaded {
            // Without the stored history the core treats targets as new, which holds
            // scale-in for a window: safe, so the tick goes on.
            store_errors.extend(self.load_histories().await);
        }

        let targets: Vec<&Target> = self.config.targets.iter().collect();
        // Metrics whose poll_every has not elapsed are not read: their last reading is
        // reused (while fresh).
        let (requests, reused) = self.cadence.split(
            MetricRequest::all(&targets),
            now,
            self.config.global.poll_interval_secs,
        );
        // With `settled_refresh`, a settled target's last capacity reading is reused until
        // it is due; the others (all of them without it) are read now, while the metrics
        // are.
        let refresh = self.config.global.settled_refresh_secs;
        let n = targets.len();
        // Due readings are read again, the longest due first, at most the share of the fleet
        // that reads each target about once per settled_refresh: after a start, a reload or
        // a long tick the backlog drains at that pace instead of filling one tick with
        // describes (the calls a load step's read-again must not queue behind).
        let mut first: Vec<usize> = Vec::new();
        let mut due: Vec<(DateTime<Utc>, usize)> = Vec::new();
        for (i, t) in targets.iter().enumerate() {
            match self.settled.get(&t.name) {
                None => first.push(i),
                Some(s) if s.due <= now => due.push((s.due, i)),
                Some(_) => {}
            }
        }
        if !due.is_empty() {
            let interval = self.config.global.poll_interval_secs.max(1);
            // Readings are cached only with a refresh set, so it is not 0 here.
            let share = (n as u64 * interval).div_ceil(refresh) as usize;
            due.sort_unstable();
            due.truncate(share.max(1));
            first.extend(due.iter().map(|(_, i)| *i));
            first.sort_unstable();
        }
        let first_targets: Vec<&Target> = first.iter().map(|&i| targets[i]).collect();
        let (fresh, mut readings) = tokio::join!(
            self.actuator.observe(&first_targets, now),
            self.source.read(&requests, now)
        );
        self.cadence.record(&requests, &readings, now);
        readings.extend(reused);
        let mut by_metric: HashMap<(&str, &str), &Reading> = HashMap::new();
        for r in &readings {
            by_metric.insert((r.target.as_str(), &*r.metric), r);
        }
        let mut states: Vec<Option<Result<CapacityState, AwsError>>> =
            (0..n).map(|_| None).collect();
        // How long ago a reused capacity was read; `None` when read this tick.
        let mut state_age: Vec<Option<u64>> = vec![None; n];
        for (&i, s) in first.iter().zip(fresh) {
            states[i] = Some(s);
        }
        for i in 0..n {
            if states[i].is_none() {
                if let Some(s) = self.settled.get(&targets[i].name) {
                    states[i] = Some(Ok(s.state.clone()));
                    state_age[i] = Some((now - s.read_at).num_seconds().max(0) as u64);
                }
            }
        }

        // A change written ahead and not yet confirmed (its answer was lost, or the process
        // that made it stopped before recording the answer) is settled by what the resource
        // runs now, read this tick with no change in flight, before anything is decided.
        for (i, t) in targets.iter().enumerate() {
            let Some(Ok(state)) = &states[i] else {
                continue;
            };
            if state_age[i].is_some() || state.change_in_flight {
                continue;
            }
            if let Some(h) = self.histories.get_mut(&t.name) {
                log_reconciled(&t.name, h.reconcile(state.desired));
            }
        }

        // Decide every target.
        let no_history = History::default();
        let forecasts = &self.forecasts;
        let forecast_due = &self.forecast_due;
        let histories = &self.histories;
        let decide_one = |t: &Target, state: &CapacityState, state_age: Option<u64>| {
            let mut obs = Observation::new(now, state.desired);
            obs.ready = Some(state.ready);
            obs.scale_in_blocked = state.scale_in_blocked.clone();
            for m in &t.metrics {
                let sample = by_metric
                    .get(&(t.name.as_str(), &*m.name))
                    .and_then(|r| r.sample);
                obs.metrics.insert(m.name.clone(), sample);
            }
            obs.forecast = forecasts.get(&t.name).cloned();
            let mut d = policy::decide(t, &obs, histories.get(&t.name).unwrap_or(&no_history));
            if obs.forecast.is_none() {
                explain_missing_forecast(&mut d, forecast_due.get(&t.name).map(|(_, n)| &**n));
            }
            // The explanation says which values were reused, and when they were read.
            for (m, line) in t.metrics.iter().zip(d.explanation.metrics.iter_mut()) {
                if let Some(read_at) = by_metric
                    .get(&(t.name.as_str(), &*m.name))
                    .and_then(|r| r.reused_read_at)
                {
                    line.read_secs_ago = Some((now - read_at).num_seconds().max(0) as u64);
                }
            }
            // A capacity reused from an earlier tick, and its age (the reason says so too).
            d.explanation.capacity_read_secs_ago = state_age;
            Arc::new(d)
        };
        let mut decisions: Vec<Option<Arc<Decision>>> = (0..n)
            .map(|i| match &states[i] {
                Some(Ok(state)) => Some(decide_one(targets[i], state, state_age[i])),
                _ => None,
            })
            .collect();
        // A reused capacity is never acted on: a target whose decision would change it is
        // read again and decided on what it runs now.
        let recheck: Vec<usize> = (0..n)
            .filter(|&i| {
                state_age[i].is_some()
                    && decisions[i]
                        .as_ref()
                        .is_some_and(|d| d.desired != d.current)
            })
            .collect();
        if !recheck.is_empty() {
            let again: Vec<&Target> = recheck.iter().map(|&i| targets[i]).collect();
            let again = self.actuator.observe(&again, now).await;
            for (&i, s) in recheck.iter().zip(again) {
                state_age[i] = None;
                decisions[i] = s.as_ref().ok().map(|st| decide_one(targets[i], st, None));
                states[i] = Some(s);
            }
        }

        let mut results = Vec::with_capacity(n);
        let mut to_act: Vec<(usize, &Target, u32, CapacityState)> = Vec::new();
        for (i, t) in targets.iter().enumerate() {
            // Every target read without error was decided above; one the actuator gave no
            // answer for has no state.
            let (state, d) = match (states[i].take(), decisions[i].take()) {
                (Some(Ok(s)), Some(d)) => (s, d),
                (read, _) => {
                    self.settled.remove(&t.name);
                    let error = match read {
                        Some(Err(e)) => e,
                        _ => AwsError::new(
                            crate::aws::ErrorClass::Transient,
                            "capstan",
                            "Observe",
                            &t.name,
                            "no capacity reading",
                        ),
                    };
                    results.push(TargetResult {
                        target: t.name.clone(),
                        decision: None,
                        outcome: None,
                        error: Some(error),
                    });
                    continue;
                }
            };
            if refresh > 0 && state_age[i].is_none() {
                // Read this tick: reused later only while it stays settled.
                if is_settled(&state) {
                    let due = if self.settled.contains_key(&t.name) {
                        now + chrono::Duration::seconds(refresh as i64)
                    } else {
                        now + chrono::Duration::seconds(first_refresh_in(&t.name, refresh) as i64)
                    };
                    let reading = SettledReading {
                        state: state.clone(),
                        read_at: now,
                        due,
                    };
                    self.settled.insert(t.name.clone(), reading);
                } else {
                    self.settled.remove(&t.name);
                }
            }
            let outcome = if d.desired == d.current {
                None
            } else if self.options.dry_run {
                Some(Outcome::Skipped {
                    why: "dry run".into(),
                })
            } else if !leader {
                Some(Outcome::Skipped {
                    why: "follower: the leader acts".into(),
                })
            } else if state.change_in_flight {
                Some(Outcome::Skipped {
                    why: "a change is still in flight".into(),
                })
            } else if let Some(why) = self.unverified.get(&t.name) {
                Some(Outcome::Skipped {
                    why: format!("AWS-side scaling not checked: {why}"),
                })
            } else if !self.loaded {
                // A change the last leader made may be in the store, not in memory: it
                // must count before anything is changed again.
                Some(Outcome::Skipped {
                    why: "history not loaded from the store: not acting until it is".into(),
                })
            } else if act_until.is_some_and(|until| Instant::now() >= until) {
                Some(Outcome::Skipped {
                    why: "the lease is about to expire: not acting".into(),
                })
            } else if state_age[i].is_some() {
                // Not reached: such a target was read again above. Never act on it.
                Some(Outcome::Skipped {
                    why: "capacity not read this tick".into(),
                })
            } else {
                // In transition from now on: read again next tick.
                self.settled.remove(&t.name);
                to_act.push((results.len(), t, d.desired, state));
                None
            };
            results.push(TargetResult {
                target: t.name.clone(),
                decision: Some(d),
                outcome,
                error: None,
            });
        }

        // Write ahead: each change is recorded (from, to, fencing token) and stored before
        // its call, and counts for every rate limit and cooldown from then on; a change
        // whose record could not be stored is not made.
        let mut intended = vec![false; n];
        for (i, t, _, _) in &to_act {
            if let Some(d) = &results[*i].decision {
                self.histories
                    .entry(t.name.clone())
                    .or_default()
                    .intend(t, d, fencing);
                intended[*i] = true;
            }
        }
        let written = {
            let store = &self.store;
            let histories = &self.histories;
            join_all(to_act.iter().map(|(_, t, ..)| async move {
                store.save(&t.name, &histories[t.name.as_str()]).await
            }))
            .await
        };
        let mut ready = Vec::with_capacity(to_act.len());
        for (act, w) in to_act.into_iter().zip(written) {
            match w {
                Ok(()) => ready.push(act),
                Err(e) => {
                    let (i, t, ..) = act;
                    if let Some(h) = self.histories.get_mut(t.name.as_str()) {
                        h.answer(ChangeAnswer::NotApplied);
                    }
                    results[i].outcome = Some(Outcome::Skipped {
                        why: format!("the change could not be recorded before it is made: {e}"),
                    });
                    store_errors.push(e);
                }
            }
        }
        let to_act = ready;

        // Act on all targets that need it, concurrently, each with its own timeout (cut to
        // what is left of the lease).
        let mut timeout = self.options.action_timeout;
        if let Some(until) = act_until {
            timeout = timeout.min(until.saturating_duration_since(Instant::now()));
        }
        let actuator = &self.actuator;
        let outcomes = join_all(to_act.iter().map(|(_, t, desired, state)| async move {
            match tokio::time::timeout(timeout, actuator.set_capacity(t, *desired, state, now))
                .await
            {
                Ok(Ok(applied)) => Outcome::Applied { applied },
                Ok(Err(error)) => Outcome::Failed { error },
                Err(_) => Outcome::Failed {
                    error: AwsError::new(
                        crate::aws::ErrorClass::Transient,
                        "capstan",
                        "SetCapacity",
                        &t.name,
                        format!("no answer within {timeout:?}"),
                    ),
                },
            }
        }))
        .await;
        for ((i, ..), outcome) in to_act.iter().zip(outcomes) {
            results[*i].outcome = Some(outcome);
        }

        // Record and persist histories; log. `results` are in the order of `targets`.
        let mut changed: Vec<&str> = Vec::new();
        for ((t, r), intended) in targets.iter().zip(&results).zip(intended) {
            let Some(d) = &r.decision else { continue };
            let acted = matches!(r.outcome, Some(Outcome::Applied { .. }));
            let h = match self.histories.get_mut(t.name.as_str()) {
                Some(h) => h,
                None => self.histories.entry(t.name.clone()).or_default(),
            };
            if intended {
                // Recorded before the call: the answer settles it. One that may have been
                // applied keeps counting until a fresh read of the resource says otherwise.
                // (One whose record could not be stored was settled as not made already.)
                match &r.outcome {
                    Some(Outcome::Applied { .. }) => h.answer(ChangeAnswer::Applied),
                    Some(Outcome::Failed { error }) if error.may_have_applied() => {
                        h.answer(ChangeAnswer::Ambiguous)
                    }
                    Some(Outcome::Failed { .. }) => h.answer(ChangeAnswer::NotApplied),
                    Some(Outcome::Skipped { .. }) | None => {}
                }
            } else {
                h.record(t, d, acted);
            }
            changed.push(&t.name);
            log_decision(d, r.outcome.as_ref(), self.options.log_all);
        }
        // The decision log keeps the newest DECISION_LOG_LEN (shared with the report).
        let decided: Vec<&Arc<Decision>> =
            results.iter().filter_map(|r| r.decision.as_ref()).collect();
        for d in &decided[decided.len().saturating_sub(DECISION_LOG_LEN)..] {
            if self.log.len() == DECISION_LOG_LEN {
                self.log.pop_front();
            }
            self.log.push_back(Arc::clone(d));
        }
        for r in &results {
            if let Some(e) = &r.error {
                tracing::warn!(target: "capstan::tick", target_name = %r.target, error = %e, "cannot observe target");
            }
        }
        for r in &readings {
            if let Some(p) = &r.problem {
                tracing::warn!(target: "capstan::tick", target_name = %r.target, metric = %r.metric, problem = %p, "metric not read");
            }
        }
        // Only the leader writes histories: followers never record actions, and their
        // copies must not overwrite the leader's. Nor does a dry run.
        if !leader_acting {
            changed.clear();
        }
        let store = &self.store;
        let histories = &self.histories;
        let saves = join_all(
            changed
                .iter()
                .map(|name| async move { store.save(name, &histories[*name]).await }),
        )
        .await;
        store_errors.extend(saves.into_iter().filter_map(Result::err));
        // After acting, so a slow history read never delays a reaction.
        self.refresh_forecasts(now).await;

        TickReport {
            at: now,
            leader,
            dry_run: self.options.dry_run,
            results,
            readings,
            lease_error,
            store_errors,
            elapsed_ms: started.elapsed().as_millis() as u64,
        }
    }
}

/// A decision whose predictive policy has no forecast says why: what the last refresh of
/// the forecast found (none before the first refresh: "no forecast yet").
fn explain_missing_forecast(d: &mut Decision, why: Option<&str>) {
    let (Some(why), true) = (why, d.explained) else {
        return;
    };
    let Some(f) = d.explanation.forecast.as_mut() else {
        return;
    };
    f.note = format!("no forecast: {why}");
    let policy = f.policy.clone();
    if let Some(p) = d
        .explanation
        .proposals
        .iter_mut()
        .find(|p| p.policy.as_str() == policy.as_str())
    {
        p.detail = format!("{}: {}", policy.as_str(), f.note);
    }
}

/// Seconds until a target cached for the first time is read again: from 1 to `refresh`,
/// by a stable hash of its name.
fn first_refresh_in(name: &str, refresh: u64) -> u64 {
    let span = u32::try_from(refresh).unwrap_or(u32::MAX).max(1);
    1 + u64::from(crate::config::Shard::of(name, span))
}

/// Whether a resource runs what it is asked to, with nothing starting, blocked or in
/// flight: only such a reading is reused (`settled_refresh`).
pub fn is_settled(s: &CapacityState) -> bool {
    s.ready == s.desired && s.pending == 0 && s.scale_in_blocked.is_none() && !s.change_in_flight
}

fn log_decision(d: &Decision, outcome: Option<&Outcome>, all: bool) {
    let outcome_text = match outcome {
        None => "none".to_string(),
        Some(Outcome::Applied { applied }) if applied.set != applied.requested => {
            format!("applied {} (asked {})", applied.set, applied.requested)
        }
        Some(Outcome::Applied { .. }) => "applied".into(),
        Some(Outcome::Failed { error }) if error.may_have_applied() => format!(
            "failed: {error} (it may have been made: counted as made until the resource is read back)"
        ),
        Some(Outcome::Failed { error }) => format!("failed: {error}"),
        Some(Outcome::Skipped { why }) => format!("skipped: {why}"),
    };
    if matches!(outcome, Some(Outcome::Failed { .. })) {
        // A change that could not be made is a problem to see, not routine.
        tracing::warn!(target: "capstan::decision", target_name = %d.target, current = d.current, desired = d.desired, outcome = %outcome_text, reason = %d.reason(), "decision");
    } else if outcome.is_some() {
        tracing::info!(target: "capstan::decision", target_name = %d.target, current = d.current, desired = d.desired, outcome = %outcome_text, reason = %d.reason(), "decision");
    } else if all {
        // `--log-all` asks for every decision at the default level (info), not only when
        // debug logging is on.
        tracing::info!(target: "capstan::decision", target_name = %d.target, current = d.current, desired = d.desired, outcome = %outcome_text, reason = %d.reason(), "decision");
    }
}

/// Logs how a change written ahead was settled by reading the resource.
fn log_reconciled(target: &str, r: Option<Reconciled>) {
    match r {
        Some(Reconciled::Dropped(p)) => {
            tracing::warn!(target: "capstan::decision", target_name = %target, from = p.from, to = p.to, fencing = p.fencing, state = ?p.state, "a change whose outcome was unknown was not made (the resource still runs its old capacity): no longer counted")
        }
        Some(Reconciled::Confirmed(p)) => {
            tracing::info!(target: "capstan::decision", target_name = %target, from = p.from, to = p.to, fencing = p.fencing, state = ?p.state, "a change whose outcome was unknown is in place: counted as made")
        }
        None => {}
    }
}

/// Logs when this replica starts or stops acting (the first tick always logs its role).
pub fn log_role_change(was_leader: &mut Option<bool>, report: &TickReport) {
    if *was_leader != Some(report.leader) {
        if report.leader {
            tracing::info!("leading: this replica acts");
        } else {
            tracing::info!("following: another replica holds the lease, or it is not renewed");
        }
        *was_leader = Some(report.leader);
    }
}

/// A delay in `[0, min(interval / 2, 5 s))`, different for each process.
pub fn start_jitter(interval: Duration) -> Duration {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    let span = (interval / 2)
        .min(Duration::from_secs(5))
        .as_millis()
        .max(1) as u64;
    Duration::from_millis(h.finish() % span)
}

/// Drives ticks every `interval` until `shutdown` turns true; new configs arriving on
/// `reload` are swapped in between ticks. Late ticks are skipped, never queued. Each report
/// is handed to every mailbox in `reports` (the HTTP status and the metrics publisher read
/// them), shared, not copied, and held by nobody once its readers are done with it. On
/// shutdown the lease is released.
pub async fn run<S: Source + HistoryReader, A: Actuator, St: StateStore, L: Lease>(
    mut controller: Controller<S, A, St, L>,
    interval: Duration,
    mut shutdown: watch::Receiver<bool>,
    mut reload: mpsc::Receiver<Config>,
    reports: Vec<crate::util::LatestSender<Arc<TickReport>>>,
) -> Controller<S, A, St, L> {
    // Jitter the first tick so replicas and shards started together spread their calls.
    let start = tokio::time::Instant::now() + start_jitter(interval);
    let mut ticker = tokio::time::interval_at(start, interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut was_leader = None;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            Some(cfg) = reload.recv() => {
                tracing::info!(targets = cfg.targets.len(), "config reloaded");
                controller.reload(cfg);
                continue;
            }
            _ = shutdown.changed() => {}
        }
        if *shutdown.borrow() {
            break;
        }
        let report = controller.tick(Utc::now()).await;
        log_role_change(&mut was_leader, &report);
        if let Some(e) = &report.lease_error {
            tracing::warn!(error = %e, "lease not renewed: not acting this tick");
        }
        for e in &report.store_errors {
            tracing::warn!(error = %e, "history store");
        }
        if !reports.is_empty() {
            let report = Arc::new(report);
            for tx in &reports {
                tx.send(report.clone());
            }
        }
    }
    if let Err(e) = controller.release().await {
        tracing::warn!(error = %e, "releasing the lease");
    }
    controller
}
