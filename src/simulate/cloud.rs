//! The simulated AWS of a replay: the service model behind the very traits the daemon reads
//! and acts through. CloudWatch answers `GetMetricData` calls ([`MetricData`]) as AWS would
//! (statistics over any requested period aligned to the epoch, metric math, datapoints
//! published `metric_delay` after their period ends, buckets holding only what was
//! published), SQS answers the queue's attributes, and the capacity actuator reads and sets
//! the modeled capacity, which becomes ready after the start-up delay.
//!
//! The daemon's own code does everything between these answers and the decision: planning
//! the queries, wiring metric math, choosing the newest fresh datapoint, reading history for
//! the forecaster ([`crate::sources::cloudwatch::read_with`], [`history_with`]).

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};

use super::engine::SharedSim;
use super::model::{MetricModel, MetricPlan, Values};
use crate::actuators::{Actuator, Applied, CapacityState, Conflict};
use crate::aws::{AwsError, ErrorClass};
use crate::config::{MetricSource, Resource, Target};
use crate::sources::cloudwatch::{
    history_with, read_with, MetricData, PlannedCall, Points, QueryKind,
};
use crate::sources::history::Statistic;
use crate::sources::{HistoryReader, MetricRequest, Reading, Source};

/// What a CloudWatch metric of the simulated service measures, per published datapoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Meaning {
    /// Requests that arrived in the datapoint's period (ALB `RequestCount`, SQS
    /// `NumberOfMessagesSent`).
    Count,
    /// The load in requests per second, averaged over the period (a custom rate metric).
    Rate,
    /// CPU-like utilization in percent.
    Utilization,
    /// Requests per ready unit that arrived in the period (`RequestCountPerTarget`).
    PerUnitCount,
    /// Modeled response time in seconds.
    Latency,
    /// Messages waiting at the end of the period (`ApproximateNumberOfMessagesVisible`).
    Backlog,
    /// Messages being worked on at the end of the period.
    InFlight,
}

impl Meaning {
    fn value(self, v: &Values) -> f64 {
        match self {
            Meaning::Count => v.count,
            Meaning::Rate => v.rate,
            Meaning::Utilization => v.utilization,
            Meaning::PerUnitCount => v.per_unit_count,
            Meaning::Latency => v.latency,
            Meaning::Backlog => v.backlog,
            Meaning::InFlight => v.busy,
        }
    }

    /// What an AWS metric measures, by its namespace and name.
    pub fn of_aws(namespace: &str, metric_name: &str) -> Option<Meaning> {
        Some(match (namespace, metric_name) {
            ("AWS/SQS", "NumberOfMessagesSent" | "NumberOfMessagesReceived") => Meaning::Count,
            ("AWS/SQS", "NumberOfMessagesDeleted") => Meaning::Count,
            ("AWS/SQS", "ApproximateNumberOfMessagesVisible") => Meaning::Backlog,
            ("AWS/SQS", "ApproximateNumberOfMessagesNotVisible") => Meaning::InFlight,
            ("AWS/ApplicationELB", "RequestCount") => Meaning::Count,
            ("AWS/ApplicationELB", "RequestCountPerTarget") => Meaning::PerUnitCount,
            ("AWS/ApplicationELB", "TargetResponseTime") => Meaning::Latency,
            (_, "CPUUtilization") => Meaning::Utilization,
            _ => return None,
        })
    }

    /// What a metric modeled as `model` in the replay measures: a rate metric whose name
    /// says it counts (`RequestCount`, `NumberOf...`) is a count per period.
    fn of_model(model: MetricModel, metric_name: &str) -> Option<Meaning> {
        Some(match model {
            MetricModel::Rate
                if metric_name.contains("Count") || metric_name.starts_with("NumberOf") =>
            {
                Meaning::Count
            }
            MetricModel::Rate => Meaning::Rate,
            MetricModel::Utilization => Meaning::Utilization,
            MetricModel::PerUnitCount => Meaning::PerUnitCount,
            MetricModel::Latency => Meaning::Latency,
            MetricModel::Backlog => Meaning::Backlog,
            MetricModel::Unmodeled => return None,
        })
    }
}

/// A metric's identity in CloudWatch and what it measures.
type Known = (String, String, BTreeMap<String, String>, Meaning);

/// The simulated AWS of one replayed target. Clones share the service.
#[derive(Clone)]
pub struct SimCloud {
    sim: SharedSim,
    /// The meaning of each CloudWatch metric the target's config reads, by identity.
    meanings: Vec<Known>,
    /// Aurora readers report a change in flight while one is being created or removed.
    aurora: bool,
}

impl SimCloud {
    /// The cloud of `target`, its metrics modeled as `plans` say.
    pub fn new(sim: SharedSim, target: &Target, plans: &[MetricPlan]) -> Self {
        let mut meanings = Vec::new();
        for m in &target.metrics {
            let MetricSource::Cloudwatch {
                namespace,
                metric_name,
                dimensions,
                ..
            } = &m.source
            else {
                continue;
            };
            let model = plans
                .iter()
                .find(|p| p.name == m.name)
                .map_or(MetricModel::Unmodeled, |p| p.model);
            if let Some(meaning) = Meaning::of_model(model, metric_name) {
                meanings.push((
                    namespace.clone(),
                    metric_name.clone(),
                    dimensions.clone(),
                    meaning,
                ));
            }
        }
        SimCloud {
            sim,
            meanings,
            aurora: matches!(target.resource, Resource::AuroraReaders { .. }),
        }
    }

    fn meaning(
        &self,
        namespace: &str,
        metric_name: &str,
        dimensions: &BTreeMap<String, String>,
    ) -> Option<Meaning> {
        self.meanings
            .iter()
            .find(|k| k.0 == namespace && k.1 == metric_name && k.2 == *dimensions)
            .map(|k| k.3)
            .or_else(|| Meaning::of_aws(namespace, metric_name))
    }

    /// The datapoints of a statistic over `[start, end)` at `period_secs`, newest first:
    /// each bucket aggregates the service's published datapoints that start in it; a bucket
    /// with none is absent, as in CloudWatch.
    fn stat(
        &self,
        meaning: Meaning,
        statistic: &str,
        period_secs: u64,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Result<Points, String> {
        let agg = Statistic::parse(statistic)?;
        let sim = self.sim.lock();
        let res = sim.m.metric_period_secs.max(1) as i64;
        let delay = sim.m.metric_delay_secs as i64;
        let now = sim.now;
        let p = period_secs.max(1) as i64;
        let (start, end) = (start.timestamp(), end.timestamp());
        // Datapoints are in order of their period's end, one per period.
        let dps = &sim.datapoints;
        let lo = dps.partition_point(|d| d.end - res < start);
        let hi = dps.partition_point(|d| d.end - res < end);
        let mut out = Vec::with_capacity((hi - lo) / (p / res).max(1) as usize + 1);
        // The values of the bucket being filled (one buffer, reused).
        let mut xs: Vec<f64> = Vec::new();
        let mut at = i64::MIN;
        for d in &dps[lo..hi] {
            if d.end + delay > now {
                break;
            }
            let Some(v) = &d.values else { continue };
            let b = (d.end - res).div_euclid(p) * p;
            if b != at && !xs.is_empty() {
                out.push((time(at), agg.of(&xs)));
                xs.clear();
            }
            at = b;
            xs.push(meaning.value(v));
        }
        if !xs.is_empty() {
            out.push((time(at), agg.of(&xs)));
        }
        // Newest first, as GetMetricData answers by default (`TimestampDescending`).
        out.reverse();
        Ok(out)
    }
}

fn time(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(secs, 0).unwrap_or_default()
}

fn invalid(op: &'static str, what: &str, why: impl Into<String>) -> AwsError {
    AwsError::new(ErrorClass::Invalid, "simulate", op, what, why)
}

impl MetricData for SimCloud {
    async fn get_metric_data(
        &self,
        call: &PlannedCall,
    ) -> Result<HashMap<String, Points>, AwsError> {
        let mut out: HashMap<String, Points> = HashMap::new();
        for q in &call.queries {
            let points = match &q.kind {
                QueryKind::Stat {
                    namespace,
                    metric_name,
                    dimensions,
                    statistic,
                    period_secs,
                } => {
                    match self.meaning(namespace, metric_name, dimensions) {
                        // A metric the service does not publish: no datapoints, as
                        // CloudWatch answers for a metric that does not exist.
                        None => Vec::new(),
                        Some(m) => self
                            .stat(m, statistic, *period_secs, call.start, call.end)
                            .map_err(|why| invalid("GetMetricData", metric_name, why))?,
                    }
                }
                QueryKind::Expression { expression, .. } => {
                    super::metric_math::evaluate(expression, &out)
                        .map_err(|why| invalid("GetMetricData", expression, why))?
                }
            };
            out.insert(q.id.clone(), points);
        }
        // Hidden inputs are not returned.
        for q in call.queries.iter().filter(|q| !q.return_data) {
            out.remove(&q.id);
        }
        Ok(out)
    }
}

impl Source for SimCloud {
    async fn read(&self, requests: &[MetricRequest<'_>], now: DateTime<Utc>) -> Vec<Reading> {
        let mut readings = read_with(self, requests, now).await;
        if !requests
            .iter()
            .any(|r| matches!(r.metric.source, MetricSource::Sqs { .. }))
        {
            return readings;
        }
        let (queue, busy) = {
            let sim = self.sim.lock();
            (sim.queue, sim.busy())
        };
        // SQS counts messages, and says so in whole numbers.
        let attrs: HashMap<String, String> = [
            ("ApproximateNumberOfMessages", queue),
            ("ApproximateNumberOfMessagesNotVisible", busy),
            ("ApproximateNumberOfMessagesDelayed", 0.0),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), format!("{}", v.round() as u64)))
        .collect();
        let sample = crate::sources::sqs::queue_sample(&attrs);
        readings.extend(requests.iter().filter_map(|r| match &r.metric.source {
            MetricSource::Sqs { .. } => Some(match &sample {
                Ok(s) => Reading::ok(r, *s, now),
                Err(why) => Reading::missing(r, why.clone()),
            }),
            _ => None,
        }));
        readings
    }
}

impl HistoryReader for SimCloud {
    async fn history(
        &self,
        target: &Target,
        metric: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        period_secs: u64,
    ) -> Result<Vec<(DateTime<Utc>, f64)>, AwsError> {
        history_with(self, target, metric, from, to, period_secs).await
    }
}

impl Actuator for SimCloud {
    async fn observe(
        &self,
        targets: &[&Target],
        _now: DateTime<Utc>,
    ) -> Vec<Result<CapacityState, AwsError>> {
        let sim = self.sim.lock();
        let pending = sim.pending_units();
        let state = CapacityState {
            desired: sim.desired,
            ready: sim.ready,
            pending,
            change_in_flight: self.aurora && pending > 0,
            ..CapacityState::default()
        };
        targets.iter().map(|_| Ok(state.clone())).collect()
    }

    async fn set_capacity(
        &self,
        _target: &Target,
        desired: u32,
        _state: &CapacityState,
        _now: DateTime<Utc>,
    ) -> Result<Applied, AwsError> {
        self.sim.lock().apply(desired);
        Ok(Applied {
            requested: desired,
            set: desired,
            notes: Vec::new(),
        })
    }

    async fn conflicts(&self, _target: &Target) -> Result<Vec<Conflict>, AwsError> {
        Ok(Vec::new())
    }

    async fn take_over(&self, _target: &Target) -> Result<Vec<String>, AwsError> {
        Ok(Vec::new())
    }
}
