//! What the decision core is given each tick: observed capacity and metric samples, and an
//! optional load forecast.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};

use super::clock::Stamp;
use serde::{Deserialize, Serialize};

/// One metric sample. SQS metrics carry the three queue counters so the core can apply the
/// KEDA queue-length rule itself; every other metric is a plain value.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Sample {
    Value(f64),
    Queue {
        visible: f64,
        #[serde(default)]
        in_flight: f64,
        #[serde(default)]
        delayed: f64,
    },
}

/// The state of one target at one instant, as the sources and the actuator saw it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Observation {
    /// The instant of the tick; all time in the core comes from here.
    pub at: DateTime<Utc>,
    /// The capacity currently asked for at the resource (desired count).
    pub current: u32,
    /// Capacity that is up and serving (running tasks, InService instances, healthy targets,
    /// available readers). Defaults to `current`.
    #[serde(default)]
    pub ready: Option<u32>,
    /// Metric samples by metric name; `null` (or absent) means the source had no usable data.
    #[serde(default)]
    pub metrics: BTreeMap<String, Option<Sample>>,
    /// Why scale-in must wait, as the actuator reports it (e.g. an ECS deployment in progress).
    #[serde(default)]
    pub scale_in_blocked: Option<String>,
    /// The load forecast of the target's predictive policy, if any (shared, not copied,
    /// from tick to tick).
    #[serde(default)]
    pub forecast: Option<Arc<ForecastSeries>>,
}

impl Observation {
    pub fn new(at: DateTime<Utc>, current: u32) -> Self {
        Observation {
            at,
            current,
            ready: None,
            metrics: BTreeMap::new(),
            scale_in_blocked: None,
            forecast: None,
        }
    }

    pub fn with(mut self, metric: &str, value: f64) -> Self {
        self.metrics
            .insert(metric.to_string(), Some(Sample::Value(value)));
        self
    }

    pub fn with_missing(mut self, metric: &str) -> Self {
        self.metrics.insert(metric.to_string(), None);
        self
    }

    pub fn with_ready(mut self, ready: u32) -> Self {
        self.ready = Some(ready);
        self
    }
}

/// A forecast of the predictive policy's load metric: `values[i]` is the load expected in
/// the bin starting at `start + i * step_secs`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForecastSeries {
    pub start: DateTime<Utc>,
    pub step_secs: u64,
    pub values: Vec<f64>,
}

impl ForecastSeries {
    fn index(&self, start: Stamp, at: Stamp) -> Option<usize> {
        if at < start || self.step_secs == 0 {
            return None;
        }
        let i = (at.secs_since(start) as u64 / self.step_secs) as usize;
        (i < self.values.len()).then_some(i)
    }

    /// The load expected at `at`.
    pub fn value_at(&self, at: impl Into<Stamp>) -> Option<f64> {
        self.value_from(self.start.into(), at.into())
    }

    /// The highest load expected in `[from, to]`.
    pub fn max_between(&self, from: impl Into<Stamp>, to: impl Into<Stamp>) -> Option<f64> {
        self.max_from(self.start.into(), from.into(), to.into())
    }

    /// [`Self::value_at`] with `start` already converted (once per tick, not per call).
    pub(super) fn value_from(&self, start: Stamp, at: Stamp) -> Option<f64> {
        self.index(start, at)
            .map(|i| self.values[i])
            .filter(|v| v.is_finite())
    }

    /// [`Self::max_between`] with `start` already converted.
    pub(super) fn max_from(&self, start: Stamp, from: Stamp, to: Stamp) -> Option<f64> {
        // A forecast starts at the bin boundary after it was made: from then on it covers.
        let first = self.index(start, from.max(start))?;
        if to < start {
            return None;
        }
        let last = self.index(start, to).unwrap_or(self.values.len() - 1);
        self.values[first..=last.max(first)]
            .iter()
            .copied()
            .filter(|v| v.is_finite())
            .reduce(f64::max)
    }

    pub fn end(&self) -> DateTime<Utc> {
        self.start + Duration::seconds((self.step_secs as usize * self.values.len()) as i64)
    }
}
