//! What the HTTP endpoints serve: a bounded, in-memory picture of the daemon, written by the
//! daemon after every tick from the controller's [`TickReport`] and read by the handlers.
//! Every collection is bounded: capacity samples of the last hour (at most
//! [`CAPACITY_SAMPLES`] per target; a run of equal samples is kept as its first and last),
//! the last [`DECISIONS_PER_TARGET`] decisions per target ([`DECISIONS_IN_ALL`] over the
//! fleet, at least the last one per target: see [`decisions_per_target`])
//! (consecutive equal decisions are folded into one entry with a count), and counters whose
//! labels come from the config or from fixed sets.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, RwLock, RwLockReadGuard};

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::config::{Config, PolicyKind, Resource, Target, TrackingTarget};
use crate::controller::{Outcome, TargetResult, TickReport};
use crate::policy::{Action, Decision, Explanation};
use crate::sources::Reading;
use crate::util::Histogram;

/// Decisions kept per target.
pub const DECISIONS_PER_TARGET: usize = 50;
/// Decision entries kept over the whole fleet (each holds a full explanation, 1-2 KB).
pub const DECISIONS_IN_ALL: usize = 10_000;

/// Decisions kept per target in a fleet of `targets`: [`DECISIONS_PER_TARGET`] up to 200
/// targets, then fewer so that all of them stay within [`DECISIONS_IN_ALL`], but always the
/// last one (at 10,000 targets and more). Fifty entries each at 10,000 targets would be
/// half a million explanations, most of a gigabyte.
pub fn decisions_per_target(targets: usize) -> usize {
    (DECISIONS_IN_ALL / targets.max(1)).clamp(1, DECISIONS_PER_TARGET)
}
/// Most decisions `/v1/decisions` returns in one response.
pub const DECISIONS_MAX: usize = 500;
/// Capacity samples kept per target (an hour at the shortest poll interval, 5 s).
pub const CAPACITY_SAMPLES: usize = 720;
/// How far back capacity samples go.
pub const CAPACITY_WINDOW_SECS: i64 = 3600;

/// Tick duration buckets, in seconds.
pub const TICK_SECONDS: &[f64] = &[0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];

/// The shared status: the daemon writes, the HTTP handlers read.
#[derive(Debug)]
pub struct Status {
    state: RwLock<State>,
}

impl Status {
    pub fn new(cfg: &Config, dry_run: bool, now: DateTime<Utc>) -> Arc<Self> {
        let mut state = State {
            started: now,
            poll_interval_secs: cfg.global.poll_interval_secs,
            lease_enabled: cfg.global.lease.enabled,
            dry_run,
            targets: Vec::new(),
            last_tick: None,
            ticks: 0,
            tick_seconds: Histogram::new(TICK_SECONDS),
            decisions: BTreeMap::new(),
            outcomes: BTreeMap::new(),
            observe_errors: BTreeMap::new(),
        };
        state.set_targets(&cfg.targets);
        Arc::new(Status {
            state: RwLock::new(state),
        })
    }

    /// A read view (held briefly by a handler while it renders).
    pub fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    /// After a reload: the new target list (targets that remain keep what they had) and
    /// dry run.
    pub fn set_config(&self, cfg: &Config, dry_run: bool) {
        let mut s = self.state.write().unwrap_or_else(|e| e.into_inner());
        s.set_targets(&cfg.targets);
        s.dry_run = dry_run;
    }

    /// Records one tick.
    pub fn record(&self, report: &TickReport) {
        let mut s = self.state.write().unwrap_or_else(|e| e.into_inner());
        s.record(report);
    }
}

/// The whole picture.
#[derive(Debug)]
pub struct State {
    pub started: DateTime<Utc>,
    pub poll_interval_secs: u64,
    pub lease_enabled: bool,
    pub dry_run: bool,
    /// In config order.
    pub targets: Vec<TargetStatus>,
    pub last_tick: Option<TickInfo>,
    pub ticks: u64,
    pub tick_seconds: Histogram,
    /// (target, direction, reason) -> decisions.
    pub decisions: BTreeMap<(String, &'static str, &'static str), u64>,
    /// (target, outcome) -> decisions that wanted a change.
    pub outcomes: BTreeMap<(String, &'static str), u64>,
    /// target -> ticks whose observation of it failed.
    pub observe_errors: BTreeMap<String, u64>,
}

/// The last tick, in short.
#[derive(Clone, Debug, Serialize)]
pub struct TickInfo {
    pub at: DateTime<Utc>,
    pub elapsed_ms: u64,
    pub leader: bool,
    pub lease_error: Option<String>,
    /// Targets whose state was read.
    pub observed: usize,
    /// Targets whose state could not be read.
    pub failed: usize,
    pub store_errors: usize,
}

/// One target.
#[derive(Clone, Debug)]
pub struct TargetStatus {
    pub name: String,
    pub kind: &'static str,
    pub resource: String,
    pub min: u32,
    pub max: u32,
    /// Target-tracking policies: (policy, metric, target).
    tracking: Vec<(Arc<str>, Arc<str>, TrackingTarget)>,
    /// Every policy: (name, kind).
    policies: Vec<(Arc<str>, &'static str)>,
    /// Whether the last tick decided this target (a target AWS already scales, without
    /// `takeover`, is dropped by the controller).
    pub in_last_tick: bool,
    /// How many decision entries this target keeps ([`decisions_per_target`]).
    keep_decisions: usize,
    pub outcome: Option<String>,
    /// Why the last tick could not read the target's state.
    pub error: Option<String>,
    pub load: Option<Load>,
    pub metrics: Vec<MetricStatus>,
    /// The last hour's capacity samples; a run of equal ones is kept as its first and last.
    pub capacity: VecDeque<CapacitySample>,
    pub decisions: VecDeque<DecisionEntry>,
}

/// The load against its target: the winning target-tracking policy's metric (or the first
/// target-tracking policy's when another kind won or nothing proposed).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Load {
    pub policy: Arc<str>,
    pub metric: Arc<str>,
    pub value: Option<f64>,
    /// What the current capacity is meant to carry: the per-unit target for averages, the
    /// per-unit target times current capacity for totals.
    pub target: f64,
    /// `value / target`: above 1 wants more capacity.
    pub ratio: Option<f64>,
    /// "average" (per-unit value) or "total" (divided by `target_per_unit`).
    pub basis: &'static str,
}

#[derive(Clone, Debug, Serialize)]
pub struct MetricStatus {
    pub name: Arc<str>,
    pub value: Option<f64>,
    /// The newest datapoint's time (the start of its period for CloudWatch), kept across
    /// ticks where the metric was missing, so its age keeps growing.
    pub at: Option<DateTime<Utc>>,
    pub missing: bool,
    pub problem: Option<String>,
    /// When the value was read, if the last tick reused it (the metric's `poll_every`).
    pub read_at: Option<DateTime<Utc>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct CapacitySample {
    pub at: DateTime<Utc>,
    pub current: u32,
    pub desired: u32,
    pub min: u32,
    pub max: u32,
}

/// One decision, or a run of equal consecutive ones (same action, capacities and outcome).
/// It is the run's newest decision, shared with the tick report that carried it (read
/// through it: `at`, `current`, `reason()`, `explanation`...), and what the run adds.
#[derive(Clone, Debug)]
pub struct DecisionEntry {
    /// The run's newest decision.
    pub decision: Arc<Decision>,
    /// When the run's first decision was made.
    pub first_at: DateTime<Utc>,
    pub count: u32,
    /// What happened to a wanted change: `applied`, `failed: ...`, `skipped: ...`.
    pub outcome: Option<String>,
}

impl std::ops::Deref for DecisionEntry {
    type Target = Decision;
    fn deref(&self) -> &Decision {
        &self.decision
    }
}

impl Serialize for DecisionEntry {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Entry<'a> {
            target: &'a str,
            at: DateTime<Utc>,
            first_at: DateTime<Utc>,
            count: u32,
            current: u32,
            desired: u32,
            action: Action,
            reason: String,
            outcome: &'a Option<String>,
            explanation: &'a Explanation,
        }
        Entry {
            target: &self.target,
            at: self.at,
            first_at: self.first_at,
            count: self.count,
            current: self.current,
            desired: self.desired,
            action: self.action,
            reason: self.reason(),
            outcome: &self.outcome,
            explanation: &self.explanation,
        }
        .serialize(s)
    }
}

/// Adds a capacity sample and drops what fell out of the last hour. A run of equal samples
/// is kept as its first and its last (the last moves on with each new equal sample), so a
/// steady target keeps two samples, not one per tick: the step lines drawn from them are
/// the same. When the first of a run falls out of the hour while the run goes on, it moves
/// up to the hour's start instead of going.
fn push_sample(samples: &mut VecDeque<CapacitySample>, s: CapacitySample) {
    let n = samples.len();
    if n >= 2 && same_values(&samples[n - 2], &samples[n - 1]) && same_values(&samples[n - 1], &s) {
        samples[n - 1].at = s.at;
    } else {
        samples.push_back(s);
    }
    let oldest = s.at - chrono::Duration::seconds(CAPACITY_WINDOW_SECS);
    while let Some(first) = samples.front() {
        if samples.len() > CAPACITY_SAMPLES {
            samples.pop_front();
            continue;
        }
        if first.at >= oldest {
            break;
        }
        match samples.get(1) {
            Some(next) if same_values(first, next) && next.at > oldest => {
                samples[0].at = oldest;
                break;
            }
            _ => {
                samples.pop_front();
            }
        }
    }
}

fn same_values(a: &CapacitySample, b: &CapacitySample) -> bool {
    (a.current, a.desired, a.min, a.max) == (b.current, b.desired, b.min, b.max)
}

/// The samples where a value changed, with the first and the last: the same step lines
/// with far fewer points (capacity rarely changes every tick).
pub fn capacity_changes(samples: &VecDeque<CapacitySample>) -> Vec<CapacitySample> {
    let same = same_values;
    let mut out: Vec<CapacitySample> = Vec::new();
    for (i, s) in samples.iter().enumerate() {
        let last = i + 1 == samples.len();
        if last || out.last().is_none_or(|p| !same(p, s)) {
            out.push(*s);
        }
    }
    out
}

/// `scale_out`, `scale_in` or `hold`.
pub fn direction(a: Action) -> &'static str {
    match a {
        Action::ScaleOut => "scale_out",
        Action::ScaleIn => "scale_in",
        Action::None => "hold",
    }
}

/// A bounded label for why a decision came out as it did: the last rule that moved or held
/// the value (`stabilization`, `rate_limit`, `bounds`, `cooldown`...), else the kind of the
/// winning policy (`target_tracking`, `step`, `predictive`), else `no_proposal`.
/// `policies` maps the target's policy names to their kinds.
pub fn reason_label(policies: &[(Arc<str>, &'static str)], d: &Decision) -> &'static str {
    if let Some(s) = d.explanation.steps.last() {
        return s.rule;
    }
    let Some(w) = &d.explanation.winner else {
        return "no_proposal";
    };
    policies
        .iter()
        .find(|(name, _)| **name == **w)
        .map_or("policy", |(_, kind)| kind)
}

fn policy_kind(k: &PolicyKind) -> &'static str {
    match k {
        PolicyKind::TargetTracking { .. } => "target_tracking",
        PolicyKind::Step(_) => "step",
        PolicyKind::Predictive(_) => "predictive",
    }
}

fn outcome_text(o: &Outcome) -> String {
    match o {
        Outcome::Applied { applied } if applied.set != applied.requested => {
            format!("applied {} (asked {})", applied.set, applied.requested)
        }
        Outcome::Applied { .. } => "applied".into(),
        Outcome::Failed { error } => format!("failed: {error}"),
        Outcome::Skipped { why } => format!("skipped: {why}"),
    }
}

fn outcome_label(o: &Outcome) -> &'static str {
    match o {
        Outcome::Applied { .. } => "applied",
        Outcome::Failed { .. } => "failed",
        Outcome::Skipped { .. } => "skipped",
    }
}

fn resource_text(r: &Resource) -> String {
    match r {
        Resource::EcsService { cluster, service } => format!("ECS service {cluster}/{service}"),
        Resource::Asg { name } => format!("Auto Scaling group {name}"),
        Resource::AuroraReaders { db_cluster, .. } => format!("Aurora readers of {db_cluster}"),
    }
}

impl TargetStatus {
    fn new(t: &Target) -> Self {
        TargetStatus {
            name: t.name.clone(),
            kind: t.resource.kind(),
            resource: resource_text(&t.resource),
            min: t.min,
            max: t.max,
            tracking: Vec::new(),
            policies: Vec::new(),
            in_last_tick: false,
            keep_decisions: DECISIONS_PER_TARGET,
            outcome: None,
            error: None,
            load: None,
            metrics: t
                .metrics
                .iter()
                .map(|m| MetricStatus {
                    name: Arc::clone(&m.name),
                    value: None,
                    at: None,
                    missing: true,
                    problem: Some("not read yet".into()),
                    read_at: None,
                })
                .collect(),
            capacity: VecDeque::new(),
            decisions: VecDeque::new(),
        }
    }

    /// Takes the config's view of the target (bounds, tracking policies, metrics).
    fn configure(&mut self, t: &Target) {
        self.kind = t.resource.kind();
        self.resource = resource_text(&t.resource);
        self.min = t.min;
        self.max = t.max;
        self.tracking = t
            .policies
            .iter()
            .filter_map(|p| match p.kind {
                PolicyKind::TargetTracking { target, .. } => {
                    Some((p.name.clone(), p.metric.clone(), target))
                }
                _ => None,
            })
            .collect();
        self.policies = t
            .policies
            .iter()
            .map(|p| (p.name.clone(), policy_kind(&p.kind)))
            .collect();
        let old = std::mem::take(&mut self.metrics);
        self.metrics = TargetStatus::new(t).metrics;
        for m in &mut self.metrics {
            if let Some(o) = old.iter().find(|o| o.name == m.name) {
                *m = o.clone();
            }
        }
    }

    fn load(&self, d: &Decision) -> Option<Load> {
        let (policy, metric, target) = self
            .tracking
            .iter()
            .find(|(p, ..)| d.explanation.winner.as_deref() == Some(&**p))
            .or_else(|| self.tracking.first())?;
        let value = d
            .explanation
            .metrics
            .iter()
            .find(|m| *m.name == **metric)
            .and_then(|m| m.value);
        let (target, basis) = match *target {
            TrackingTarget::Average(v) => (v, "average"),
            TrackingTarget::PerUnit(v) => (v * d.current.max(1) as f64, "total"),
        };
        Some(Load {
            policy: Arc::clone(policy),
            metric: Arc::clone(metric),
            value,
            target,
            ratio: value.filter(|_| target > 0.0).map(|v| v / target),
            basis,
        })
    }

    /// Records the target's result; `readings` are the tick's readings by (target, metric).
    fn record(&mut self, r: &TargetResult, readings: &HashMap<(&str, &str), &Reading>) {
        self.in_last_tick = true;
        self.error = r.error.as_ref().map(|e| e.to_string());
        for m in &mut self.metrics {
            let Some(reading) = readings.get(&(self.name.as_str(), &*m.name)) else {
                continue;
            };
            m.missing = reading.sample.is_none();
            m.problem = reading.problem.clone();
            m.read_at = reading.reused_read_at;
            if reading.at.is_some() {
                m.at = reading.at;
            }
        }
        let Some(d) = &r.decision else {
            return;
        };
        for line in &d.explanation.metrics {
            if let Some(m) = self.metrics.iter_mut().find(|m| *m.name == *line.name) {
                m.value = line.value;
                if line.value.is_none() && m.problem.is_none() {
                    m.problem = line.problem.map(|p| p.to_string());
                }
            }
        }
        self.load = self.load(d);
        self.outcome = r.outcome.as_ref().map(outcome_text);
        push_sample(
            &mut self.capacity,
            CapacitySample {
                at: d.at,
                current: d.current,
                desired: d.desired,
                min: d.explanation.bounds.min,
                max: d.explanation.bounds.max,
            },
        );
        let outcome = self.outcome.clone();
        match self.decisions.back_mut() {
            Some(prev)
                if prev.action == d.action
                    && prev.current == d.current
                    && prev.desired == d.desired
                    && prev.outcome == outcome =>
            {
                prev.count += 1;
                prev.decision = Arc::clone(d);
            }
            _ => {
                while self.decisions.len() >= self.keep_decisions {
                    self.decisions.pop_front();
                }
                self.decisions.push_back(DecisionEntry {
                    decision: Arc::clone(d),
                    first_at: d.at,
                    count: 1,
                    outcome,
                });
            }
        }
    }

    /// The last decision: the newest entry of [`Self::decisions`] (a folded run takes the
    /// time, reason and explanation of its newest decision), so no second copy is kept.
    pub fn last(&self) -> Option<&DecisionEntry> {
        self.decisions.back()
    }
}

impl State {
    fn set_targets(&mut self, targets: &[Target]) {
        // By name, so a reload of a large fleet is not a scan of it per target.
        let mut old: HashMap<String, TargetStatus> = std::mem::take(&mut self.targets)
            .into_iter()
            .map(|o| (o.name.clone(), o))
            .collect();
        self.targets = targets
            .iter()
            .map(|t| {
                let mut s = old.remove(&t.name).unwrap_or_else(|| TargetStatus::new(t));
                s.configure(t);
                s.keep_decisions = decisions_per_target(targets.len());
                let drop = s.decisions.len().saturating_sub(s.keep_decisions);
                s.decisions.drain(..drop);
                // Exactly what is kept: a deque grown one entry at a time reserves four,
                // and an entry is a few hundred bytes before its text.
                s.decisions.shrink_to(s.keep_decisions);
                s.decisions
                    .reserve_exact(s.keep_decisions - s.decisions.len());
                s
            })
            .collect();
        // Counters of removed targets go, so label sets stay bounded across reloads.
        let names: std::collections::HashSet<&str> =
            targets.iter().map(|t| t.name.as_str()).collect();
        let keep = |n: &String| names.contains(n.as_str());
        self.decisions.retain(|(t, ..), _| keep(t));
        self.outcomes.retain(|(t, _), _| keep(t));
        self.observe_errors.retain(|t, _| keep(t));
    }

    fn record(&mut self, report: &TickReport) {
        self.ticks += 1;
        self.tick_seconds.observe(report.elapsed_ms as f64 / 1000.0);
        self.dry_run = report.dry_run;
        self.last_tick = Some(TickInfo {
            at: report.at,
            elapsed_ms: report.elapsed_ms,
            leader: report.leader,
            lease_error: report.lease_error.as_ref().map(|e| e.to_string()),
            observed: report.results.iter().filter(|r| r.error.is_none()).count(),
            failed: report.results.iter().filter(|r| r.error.is_some()).count(),
            store_errors: report.store_errors.len(),
        });
        for t in &mut self.targets {
            t.in_last_tick = false;
        }
        // Indexes built once per tick: a lookup per target, not a scan of the fleet (the
        // first of equal names wins, as a scan would find it).
        let slots: Vec<Option<usize>> = {
            let mut index: HashMap<&str, usize> = HashMap::with_capacity(self.targets.len());
            for (i, t) in self.targets.iter().enumerate() {
                index.entry(t.name.as_str()).or_insert(i);
            }
            report
                .results
                .iter()
                .map(|r| index.get(r.target.as_str()).copied())
                .collect()
        };
        let mut readings: HashMap<(&str, &str), &Reading> =
            HashMap::with_capacity(report.readings.len());
        for x in &report.readings {
            readings.entry((x.target.as_str(), &*x.metric)).or_insert(x);
        }
        for (r, slot) in report.results.iter().zip(slots) {
            let Some(i) = slot else {
                continue;
            };
            self.targets[i].record(r, &readings);
            if r.error.is_some() {
                *self.observe_errors.entry(r.target.clone()).or_default() += 1;
            }
            if let Some(d) = &r.decision {
                let label = reason_label(&self.targets[i].policies, d);
                *self
                    .decisions
                    .entry((r.target.clone(), direction(d.action), label))
                    .or_default() += 1;
            }
            if let Some(o) = &r.outcome {
                *self
                    .outcomes
                    .entry((r.target.clone(), outcome_label(o)))
                    .or_default() += 1;
            }
        }
    }

    /// `leader`, `follower`, `disabled` (no lease: this replica always acts), or `unknown`
    /// (no tick yet, or the lease could not be read or renewed).
    pub fn lease_role(&self) -> &'static str {
        match &self.last_tick {
            Some(t) if t.lease_error.is_none() && !self.lease_enabled => "disabled",
            Some(t) if t.lease_error.is_none() && t.leader => "leader",
            Some(t) if t.lease_error.is_none() => "follower",
            _ => "unknown",
        }
    }

    /// Readiness: the config is loaded (always, once serving), a tick finished recently,
    /// AWS answered it (at least one target's state was read, or there are no targets), and
    /// the lease role is known.
    pub fn readiness(&self, now: DateTime<Utc>) -> Readiness {
        let max_age = 3 * self.poll_interval_secs as i64 + 60;
        let (ticked, age, aws) = match &self.last_tick {
            None => (false, None, false),
            Some(t) => {
                let age = (now - t.at).num_seconds();
                (
                    age <= max_age,
                    Some(age),
                    t.observed > 0 || (t.failed == 0 && self.targets.is_empty()),
                )
            }
        };
        let lease = self.lease_role();
        Readiness {
            ready: ticked && aws && lease != "unknown",
            config_loaded: true,
            recent_tick: ticked,
            last_tick_age_secs: age,
            max_tick_age_secs: max_age,
            aws_reachable: aws,
            lease,
        }
    }

    /// The most recent decision entries of all targets (or one), newest first.
    pub fn recent_decisions(&self, target: Option<&str>, limit: usize) -> Vec<&DecisionEntry> {
        let mut all: Vec<&DecisionEntry> = self
            .targets
            .iter()
            .filter(|t| target.is_none_or(|n| n == t.name))
            .flat_map(|t| t.decisions.iter())
            .collect();
        all.sort_by(|a, b| b.at.cmp(&a.at).then_with(|| a.target.cmp(&b.target)));
        all.truncate(limit.min(DECISIONS_MAX));
        all
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Readiness {
    pub ready: bool,
    pub config_loaded: bool,
    pub recent_tick: bool,
    pub last_tick_age_secs: Option<i64>,
    pub max_tick_age_secs: i64,
    pub aws_reachable: bool,
    pub lease: &'static str,
}
