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
    pub metrics: Metrics,
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
            metrics: Metrics::default(),
            scale_in_blocked: None,
            forecast: None,
        }
    }

    pub fn with(mut self, metric: &str, value: f64) -> Self {
        self.metrics.insert(metric, Some(Sample::Value(value)));
        self
    }

    pub fn with_missing(mut self, metric: &str) -> Self {
        self.metrics.insert(metric, None);
        self
    }

    pub fn with_ready(mut self, ready: u32) -> Self {
        self.ready = Some(ready);
        self
    }
}

/// Metric samples by name, a map in meaning (one sample per name; equal whatever the
/// order), kept as a short list in the order of insertion. Whoever builds an observation
/// for a target inserts its samples in the order of the target's metrics, with the
/// metrics' own shared names: the decision core then finds the sample of metric `i` at
/// position `i` by comparing two pointers, without reading any name (at 10,000 targets a
/// map keyed by strings made a tick wait on memory for every key it compared).
/// Serialized as a JSON object.
#[derive(Clone, Debug, Default)]
pub struct Metrics {
    entries: Vec<(Arc<str>, Option<Sample>)>,
}

impl Metrics {
    /// Sets the sample of `name`, replacing an earlier one.
    pub fn insert(&mut self, name: impl Into<Arc<str>>, sample: Option<Sample>) {
        let name = name.into();
        match self.entries.iter_mut().find(|(n, _)| n[..] == name[..]) {
            Some(e) => e.1 = sample,
            None => self.entries.push((name, sample)),
        }
    }

    /// The sample of `name`: `None` if absent, `Some(None)` if present without data.
    pub fn get(&self, name: &str) -> Option<&Option<Sample>> {
        self.entries
            .iter()
            .find(|(n, _)| n[..] == *name)
            .map(|(_, s)| s)
    }

    /// [`Self::get`] for the target's metric `i` named `name`: the entry at `i` if it holds
    /// that very name (the same allocation), else a search by name.
    pub fn get_at(&self, i: usize, name: &Arc<str>) -> Option<&Option<Sample>> {
        match self.entries.get(i) {
            Some((n, s)) if Arc::ptr_eq(n, name) => Some(s),
            _ => self.get(name),
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &Option<Sample>)> {
        self.entries.iter().map(|(n, s)| (&**n, s))
    }
}

impl PartialEq for Metrics {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().all(|(n, s)| other.get(n) == Some(s))
    }
}

impl Serialize for Metrics {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.iter())
    }
}

impl<'de> Deserialize<'de> for Metrics {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let map = BTreeMap::<String, Option<Sample>>::deserialize(d)?;
        Ok(map.into())
    }
}

/// A map's names are unique already: taken over as they are, in linear time (collecting
/// them would look each name up among the ones before it).
impl From<BTreeMap<String, Option<Sample>>> for Metrics {
    fn from(map: BTreeMap<String, Option<Sample>>) -> Self {
        Metrics {
            entries: map.into_iter().map(|(n, s)| (n.into(), s)).collect(),
        }
    }
}

impl<N: Into<Arc<str>>> FromIterator<(N, Option<Sample>)> for Metrics {
    fn from_iter<I: IntoIterator<Item = (N, Option<Sample>)>>(iter: I) -> Self {
        let mut m = Metrics::default();
        for (n, s) in iter {
            m.insert(n, s);
        }
        m
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

    /// The end of the last bin; the latest instant chrono holds when that lies beyond it
    /// (a forecast whose bins reach past the year 262143 ends "never").
    pub fn end(&self) -> DateTime<Utc> {
        let secs = self.step_secs.saturating_mul(self.values.len() as u64);
        i64::try_from(secs)
            .ok()
            .and_then(Duration::try_seconds)
            .and_then(|d| self.start.checked_add_signed(d))
            .unwrap_or(DateTime::<Utc>::MAX_UTC)
    }
}
