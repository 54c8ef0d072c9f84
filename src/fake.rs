//! An in-memory stand-in for AWS behind the [`Source`] and [`Actuator`] traits: stateful
//! (capacity set is capacity observed), counting every call, with injectable faults and
//! latency. Used by the controller tests, the benchmarks and the local dry runs; it is
//! never used against real resources.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::actuators::{Actuator, Applied, CapacityState, Conflict};
use crate::aws::{AwsError, ErrorClass};
use crate::config::Target;
use crate::policy::Sample;
use crate::sources::{HistoryReader, MetricRequest, Reading, Source};

/// Calls made to the fake, by kind.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Calls {
    pub observe_calls: u64,
    pub observed_targets: u64,
    pub read_calls: u64,
    pub read_requests: u64,
    pub history_calls: u64,
    /// Mutating calls: (target, capacity set).
    pub sets: Vec<(String, u32)>,
    pub take_overs: Vec<String>,
    /// `conflicts` calls, one per target checked.
    pub conflict_checks: u64,
}

#[derive(Debug, Default)]
struct State {
    capacity: HashMap<String, u32>,
    /// Units that are ready; follows `capacity` unless pinned.
    ready: HashMap<String, u32>,
    metrics: HashMap<(String, String), Option<Sample>>,
    blocked: HashMap<String, String>,
    fail_observe: HashSet<String>,
    fail_set: HashSet<String>,
    fail_reads: HashSet<String>,
    /// Capacity changes that are made, but whose answer is lost (or never comes).
    lost_answers: HashMap<String, LostAnswer>,
    conflicts: HashMap<String, Vec<Conflict>>,
    history: HashMap<(String, String), crate::sources::cloudwatch::Points>,
    calls: Calls,
}

/// How the answer of a capacity change that was made goes missing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LostAnswer {
    /// The change is made and the caller gets a transient error (a reset connection, a
    /// truncated answer, a timeout after AWS took the request).
    Error,
    /// The change is made and the call never returns (the caller is killed, or times out).
    Hang,
}

/// The fake cloud. Clones share state.
#[derive(Clone, Debug, Default)]
pub struct FakeCloud {
    state: Arc<Mutex<State>>,
    /// Latency of every call (simulated with a timer).
    pub latency: Duration,
}

impl FakeCloud {
    pub fn new() -> Self {
        FakeCloud::default()
    }

    fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        f(&mut self.state.lock().expect("fake lock"))
    }

    pub fn set_capacity_now(&self, target: &str, capacity: u32) {
        self.with(|s| {
            s.capacity.insert(target.into(), capacity);
            s.ready.remove(target);
        });
    }
    pub fn capacity(&self, target: &str) -> u32 {
        self.with(|s| s.capacity.get(target).copied().unwrap_or(0))
    }
    /// Pins the ready count (e.g. units still starting).
    pub fn set_ready(&self, target: &str, ready: u32) {
        self.with(|s| s.ready.insert(target.into(), ready));
    }
    pub fn set_metric(&self, target: &str, metric: &str, value: Option<f64>) {
        self.with(|s| {
            s.metrics
                .insert((target.into(), metric.into()), value.map(Sample::Value))
        });
    }
    pub fn set_sample(&self, target: &str, metric: &str, sample: Option<Sample>) {
        self.with(|s| s.metrics.insert((target.into(), metric.into()), sample));
    }
    pub fn block_scale_in(&self, target: &str, why: Option<&str>) {
        self.with(|s| match why {
            Some(w) => s.blocked.insert(target.into(), w.into()),
            None => s.blocked.remove(target),
        });
    }
    /// Makes observing, setting or reading the metrics of `target` fail (or succeed again).
    pub fn fail(&self, target: &str, observe: bool, set: bool, reads: bool) {
        self.with(|s| {
            for (on, set_of) in [
                (observe, &mut s.fail_observe),
                (set, &mut s.fail_set),
                (reads, &mut s.fail_reads),
            ] {
                if on {
                    set_of.insert(target.into());
                } else {
                    set_of.remove(target);
                }
            }
        });
    }
    /// Makes capacity changes of `target` happen but lose their answer (`None`: answer
    /// again).
    pub fn lose_answers(&self, target: &str, how: Option<LostAnswer>) {
        self.with(|s| match how {
            Some(h) => s.lost_answers.insert(target.into(), h),
            None => s.lost_answers.remove(target),
        });
    }
    pub fn add_conflict(&self, target: &str, what: &str) {
        self.with(|s| {
            s.conflicts
                .entry(target.into())
                .or_default()
                .push(Conflict {
                    resource: target.into(),
                    what: what.into(),
                })
        });
    }
    /// Raw datapoints of a target's metric as they were published (e.g. one per minute),
    /// which the history reader aggregates to the metric's own period and statistic as
    /// CloudWatch would. For an expression, set its inputs; for an SQS metric, the queue's
    /// messages sent.
    pub fn set_history(&self, target: &str, metric: &str, points: Vec<(DateTime<Utc>, f64)>) {
        self.with(|s| s.history.insert((target.into(), metric.into()), points));
    }
    pub fn calls(&self) -> Calls {
        self.with(|s| s.calls.clone())
    }
    /// Takes the calls recorded so far (the log starts again empty).
    pub fn take_calls(&self) -> Calls {
        self.with(|s| std::mem::take(&mut s.calls))
    }

    async fn delay(&self) {
        if !self.latency.is_zero() {
            tokio::time::sleep(self.latency).await;
        }
    }
}

fn injected(target: &str, op: &'static str) -> AwsError {
    AwsError::new(
        ErrorClass::Transient,
        "fake",
        op,
        target,
        "injected failure",
    )
}

impl Actuator for FakeCloud {
    async fn observe(
        &self,
        targets: &[&Target],
        _now: DateTime<Utc>,
    ) -> Vec<Result<CapacityState, AwsError>> {
        self.delay().await;
        self.with(|s| {
            s.calls.observe_calls += 1;
            s.calls.observed_targets += targets.len() as u64;
            targets
                .iter()
                .map(|t| {
                    if s.fail_observe.contains(&t.name) {
                        return Err(injected(&t.name, "Observe"));
                    }
                    let desired = *s.capacity.entry(t.name.clone()).or_insert(t.min);
                    let ready = s.ready.get(&t.name).copied().unwrap_or(desired);
                    Ok(CapacityState {
                        desired,
                        ready,
                        pending: desired.saturating_sub(ready),
                        scale_in_blocked: s.blocked.get(&t.name).cloned(),
                        ..CapacityState::default()
                    })
                })
                .collect()
        })
    }

    async fn set_capacity(
        &self,
        target: &Target,
        desired: u32,
        _state: &CapacityState,
        _now: DateTime<Utc>,
    ) -> Result<Applied, AwsError> {
        self.delay().await;
        let (result, lost) = self.with(|s| {
            if s.fail_set.contains(&target.name) {
                return (Err(injected(&target.name, "SetCapacity")), None);
            }
            s.calls.sets.push((target.name.clone(), desired));
            s.capacity.insert(target.name.clone(), desired);
            s.ready.remove(&target.name);
            let applied = Applied {
                requested: desired,
                set: desired,
                notes: Vec::new(),
            };
            (Ok(applied), s.lost_answers.get(&target.name).copied())
        });
        match lost {
            None => result,
            Some(LostAnswer::Error) => Err(AwsError::new(
                ErrorClass::Transient,
                "fake",
                "SetCapacity",
                &target.name,
                "connection reset after the request was sent",
            )),
            Some(LostAnswer::Hang) => std::future::pending().await,
        }
    }

    async fn conflicts(&self, target: &Target) -> Result<Vec<Conflict>, AwsError> {
        Ok(self.with(|s| {
            s.calls.conflict_checks += 1;
            s.conflicts.get(&target.name).cloned().unwrap_or_default()
        }))
    }

    async fn take_over(&self, target: &Target) -> Result<Vec<String>, AwsError> {
        self.with(|s| {
            s.calls.take_overs.push(target.name.clone());
            s.conflicts.remove(&target.name);
        });
        Ok(vec![format!(
            "suspended the fake scaling of {}",
            target.name
        )])
    }
}

impl Source for FakeCloud {
    async fn read(&self, requests: &[MetricRequest<'_>], now: DateTime<Utc>) -> Vec<Reading> {
        self.delay().await;
        self.with(|s| {
            s.calls.read_calls += 1;
            s.calls.read_requests += requests.len() as u64;
            requests
                .iter()
                .map(|r| {
                    if s.fail_reads.contains(&r.target.name) {
                        return Reading::missing(r, "injected failure");
                    }
                    match s
                        .metrics
                        .get(&(r.target.name.clone(), r.metric.name.to_string()))
                    {
                        Some(Some(sample)) => Reading::ok(r, *sample, now),
                        _ => Reading::missing(r, "no data"),
                    }
                })
                .collect()
        })
    }
}

impl HistoryReader for FakeCloud {
    /// As [`crate::sources::cloudwatch::CloudWatchSource::history`]: each input aggregated
    /// from the raw datapoints to the metric's own period and statistic, the expression
    /// evaluated, the values averaged into steps of `step_secs`.
    async fn history(
        &self,
        target: &Target,
        metric: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        step_secs: u64,
    ) -> Result<Vec<(DateTime<Utc>, f64)>, AwsError> {
        use crate::sources::cloudwatch::floor_to;
        use crate::sources::history;
        self.delay().await;
        let invalid =
            |why: String| AwsError::new(ErrorClass::Invalid, "fake", "GetMetricData", metric, why);
        let plan = history::plan(&target.metrics, metric).map_err(|e| invalid(e.to_string()))?;
        let (start, end) = (
            floor_to(from, plan.period_secs),
            floor_to(to, plan.period_secs),
        );
        let series = self.with(|s| {
            s.calls.history_calls += 1;
            plan.leaves
                .iter()
                .map(|l| {
                    let raw = s
                        .history
                        .get(&(target.name.clone(), l.name.clone()))
                        .map_or(&[][..], Vec::as_slice);
                    history::aggregate(raw, &l.statistic, l.period_secs, start, end).ok_or_else(
                        || invalid(format!("the fake has no statistic {}", l.statistic)),
                    )
                })
                .collect::<Result<Vec<_>, _>>()
        })?;
        Ok(plan.finish(&series, step_secs))
    }
}
