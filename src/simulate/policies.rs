//! The configured target's own policies as a [`Controller`]: each tick builds an
//! [`Observation`] from the published datapoints and calls the very same
//! [`policy::decide`] and [`History::record`] the daemon runs.

use std::sync::Arc;

use chrono::DateTime;

use crate::config::{PolicyKind, Target};
use crate::policy::{self, ForecastSeries, History, Metrics, Observation, Sample};
use crate::sources::cadence;

use super::engine::{Controller, View};
use super::forecast::Forecaster;
use super::model::MetricPlan;

/// Runs `policy::decide` for one target.
pub struct PolicyController {
    target: Target,
    plans: Vec<MetricPlan>,
    interval_secs: u64,
    history: History,
    forecaster: Option<Box<dyn Forecaster>>,
    refresh_secs: u64,
    next_refresh: i64,
    forecast: Option<Arc<ForecastSeries>>,
    reason: String,
    /// Per plan: the `poll_every` of its metric and the last sample read (when, what), as
    /// the daemon reuses it between reads.
    cadence: Vec<(Option<u64>, Option<Kept>)>,
}

/// A sample read at a tick (Unix seconds), reused until its metric's `poll_every` is due.
type Kept = (i64, Sample);

impl PolicyController {
    /// `forecaster` serves the target's predictive policy, if it has one (asked every
    /// `refresh` of that policy).
    pub fn new(
        target: Target,
        plans: Vec<MetricPlan>,
        interval_secs: u64,
        forecaster: Option<Box<dyn Forecaster>>,
    ) -> Self {
        let refresh_secs = target
            .policies
            .iter()
            .find_map(|p| match &p.kind {
                PolicyKind::Predictive(pp) => Some(pp.refresh_secs),
                _ => None,
            })
            .unwrap_or(3600);
        let has_predictive = target
            .policies
            .iter()
            .any(|p| matches!(p.kind, PolicyKind::Predictive(_)));
        let cadence = plans
            .iter()
            .map(|p| (target.metric(&p.name).and_then(|m| m.poll_every_secs), None))
            .collect();
        PolicyController {
            target,
            plans,
            cadence,
            interval_secs,
            history: History::default(),
            forecaster: forecaster.filter(|_| has_predictive),
            refresh_secs: refresh_secs.max(1),
            next_refresh: i64::MIN,
            forecast: None,
            reason: String::new(),
        }
    }

    /// The horizon a forecaster needs for `target`: a refresh interval plus how far ahead
    /// the predictive policy looks, plus a metric period of slack.
    pub fn forecast_horizon(target: &Target, period_secs: u64) -> u64 {
        target
            .policies
            .iter()
            .find_map(|p| match &p.kind {
                PolicyKind::Predictive(pp) => {
                    Some(pp.refresh_secs + pp.schedule_ahead_secs + period_secs)
                }
                _ => None,
            })
            .unwrap_or(0)
    }

    pub fn history(&self) -> &History {
        &self.history
    }
}

impl Controller for PolicyController {
    fn interval_secs(&self) -> u64 {
        self.interval_secs
    }

    fn tick(&mut self, view: &View<'_>) -> u32 {
        let latest = view.datapoints.last().and_then(|d| d.values);
        let mut metrics = Metrics::default();
        let mut reused = Vec::new();
        let time = |s: i64| DateTime::from_timestamp(s, 0).expect("trace times are in range");
        for (p, (every, kept)) in self.plans.iter().zip(self.cadence.iter_mut()) {
            // A metric with poll_every is read only when due, as the daemon does; a missing
            // read is read again next tick.
            if let (Some(every), Some((read_at, sample))) = (*every, kept.as_ref()) {
                if !cadence::due(time(*read_at), time(view.now), every, self.interval_secs) {
                    metrics.insert(p.name.clone(), Some(*sample));
                    reused.push(format!("{} read {} s ago", p.name, view.now - read_at));
                    continue;
                }
            }
            let sample = latest.as_ref().and_then(|v| p.sample(v));
            *kept = sample.filter(|_| every.is_some()).map(|s| (view.now, s));
            metrics.insert(p.name.clone(), sample);
        }
        if let Some(f) = self.forecaster.as_mut() {
            if view.now >= self.next_refresh {
                self.forecast = f.forecast(view.load, view.now).map(Arc::new);
                self.next_refresh = view.now + self.refresh_secs as i64;
            }
        }
        let at = DateTime::from_timestamp(view.now, 0).expect("trace times are in range");
        let obs = Observation {
            at,
            current: view.current,
            ready: Some(view.ready),
            metrics,
            scale_in_blocked: None,
            forecast: self.forecast.take(),
        };
        // Only the ticks that change capacity are shown with their reason: decide without
        // text, and again with it for those (the same inputs give the same decision).
        let mut d = policy::decide_quiet(&self.target, &obs, &self.history);
        if d.desired != d.current {
            d = policy::decide(&self.target, &obs, &self.history);
        }
        self.history.record(&self.target, &d, true);
        self.forecast = obs.forecast;
        self.reason = if reused.is_empty() {
            d.reason()
        } else {
            format!("{} ({})", d.reason(), reused.join(", "))
        };
        d.desired
    }

    fn reason(&self) -> Option<String> {
        Some(self.reason.clone())
    }
}
