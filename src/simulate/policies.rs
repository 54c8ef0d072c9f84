//! The configured target's own policies as a [`Controller`]: each tick builds an
//! [`Observation`] from the published datapoints and calls the very same
//! [`policy::decide`] and [`History::record`] the daemon runs.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::DateTime;

use crate::config::{PolicyKind, Target};
use crate::policy::{self, ForecastSeries, History, Observation};

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
}

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
        PolicyController {
            target,
            plans,
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
        let mut metrics = BTreeMap::new();
        for p in &self.plans {
            if let Some(sample) = latest.as_ref().and_then(|v| p.sample(v)) {
                metrics.insert(p.name.clone(), Some(sample));
            } else {
                metrics.insert(p.name.clone(), None);
            }
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
        self.reason = d.reason;
        d.desired
    }

    fn reason(&self) -> Option<String> {
        Some(self.reason.clone())
    }
}
