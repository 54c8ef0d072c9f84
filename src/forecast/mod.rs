//! Load forecasting for predictive scaling.
//!
//! [`forecast`] learns from up to 14 days of a load metric's history (at least 24 h) and
//! forecasts the next 48 h with a robust seasonal-profile model (see `FORECASTING.md` for
//! the measurements behind it):
//!
//! `forecast(t) = level(t) * daily(time of day) * weekly(time of week) * short_term(t)`
//!
//! - `daily`: per time-of-day slot, the median over the days of the history of the load
//!   divided by its level, lightly smoothed;
//! - `weekly`: the day-of-week modulation (the mean ratio to `daily` per time-of-week slot,
//!   smoothed over an hour either side and shrunk a little towards 1), once the history
//!   spans a week;
//! - `level`: per 24 h block, the median ratio of the load to the seasonal shape; the
//!   forecast level blends the median of the last seven blocks with the last one, and
//!   carries on a trend (Theil–Sen slope between blocks whole weeks apart) only when a
//!   seasonal Mann–Kendall test finds it significant, capped and damped;
//! - `short_term`: how far the last 3 h ran above or below the model, fading over 12 h.
//!
//! History may be unsorted and hold gaps, duplicates, NaN, outages and flash crowds:
//! - missing bins are simply not used;
//! - a zero bin where the same slot on other weeks (or days) is usually non-zero is an
//!   outage (the server was down, demand was not zero) and is not used;
//! - bins far from the fit (robust z-score of `ln(actual / fitted)`) get no weight in the
//!   profiles, and levels are medians, so a one-off spike or dip is not reproduced the
//!   next day while a lasting change of level is followed within days.
//!
//! [`seasonal_naive`] is the baseline the model was measured against, [`holt_winters`] a
//! measured alternative, and [`wape`] / [`mape`] score a forecast against actuals.
//!
//! Everything here is a pure function of its arguments: no clock, no I/O, no async.
//! Times are unix seconds; a point's `at` is the start of its bin; history and output use
//! the same bin width ([`ForecastConfig::step_secs`]), which must divide a day. Daily and
//! weekly slots are taken in UTC (a fixed offset such as US Eastern only shifts them).

use std::fmt;

use serde::{Deserialize, Serialize};

mod grid;
mod holt_winters;
mod profile;
mod stats;

pub use profile::ProfileParams;

use grid::{DAY, WEEK};

/// One bin of a load metric: `value` is the load in the bin that starts at `at`
/// (unix seconds), e.g. the CloudWatch `Sum` of requests over one period.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Point {
    /// Start of the bin, unix seconds.
    pub at: i64,
    /// Load in the bin. NaN, infinite and negative values are ignored.
    pub value: f64,
}

/// Bin width, horizon and history window of a forecast.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ForecastConfig {
    /// Bin width of the history and of the output, seconds; must divide a day (e.g. 60,
    /// 300, 3600). Default 300.
    pub step_secs: i64,
    /// How far ahead to forecast, seconds (at most 366 days). Default 48 h.
    pub horizon_secs: i64,
    /// How much history to learn from, seconds before `now` (at most 366 days). Default
    /// 14 days.
    pub max_history_secs: i64,
    /// Least history (seconds of bins holding a value) needed to forecast. Default 24 h.
    pub min_history_secs: i64,
}

impl Default for ForecastConfig {
    fn default() -> Self {
        ForecastConfig {
            step_secs: 300,
            horizon_secs: 2 * DAY,
            max_history_secs: 2 * WEEK,
            min_history_secs: DAY,
        }
    }
}

/// Why no forecast could be made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ForecastError {
    /// Fewer seconds of history than needed: `have_secs` counts the bins that hold a
    /// value (for [`seasonal_naive`], the span back to the oldest such bin when that is
    /// shorter than the season).
    InsufficientHistory { have_secs: i64, need_secs: i64 },
    /// `step_secs` is not positive or does not divide a day.
    InvalidStep(i64),
    /// Another configuration value or argument (`now`, `season_secs`) is out of range.
    InvalidConfig {
        field: &'static str,
        reason: &'static str,
    },
}

impl fmt::Display for ForecastError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ForecastError::InsufficientHistory {
                have_secs,
                need_secs,
            } => write!(
                f,
                "insufficient history to forecast: have {} of data, need at least {}",
                human_secs(*have_secs),
                human_secs(*need_secs)
            ),
            ForecastError::InvalidStep(step) => write!(
                f,
                "invalid step of {step} s: it must be positive and divide a day (86400 s)"
            ),
            ForecastError::InvalidConfig { field, reason } => {
                write!(f, "invalid forecast setting `{field}`: {reason}")
            }
        }
    }
}

impl std::error::Error for ForecastError {}

/// A forecast: `values[i]` is the expected load in the bin starting at
/// `start + i * step_secs`. Values are finite and non-negative.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Forecast {
    /// Start of the first bin, unix seconds: the first bin boundary at or after `now`.
    pub start: i64,
    /// Bin width, seconds.
    pub step_secs: i64,
    /// Forecast load per bin.
    pub values: Vec<f64>,
    /// Which model produced it, e.g. `seasonal-profile(daily+weekly)+trend`.
    pub model: String,
}

impl Forecast {
    /// Exclusive end of the forecast.
    pub fn end(&self) -> i64 {
        self.start + self.values.len() as i64 * self.step_secs
    }

    /// The forecast for the bin containing `at`, or `None` outside the forecast.
    #[must_use]
    pub fn value_at(&self, at: i64) -> Option<f64> {
        if at < self.start || self.step_secs <= 0 {
            return None;
        }
        let idx = (at - self.start) / self.step_secs;
        self.values.get(usize::try_from(idx).ok()?).copied()
    }

    /// The largest forecast over the bins overlapping `[from, to)`, or `None` when that
    /// interval is empty or outside the forecast.
    #[must_use]
    pub fn max_between(&self, from: i64, to: i64) -> Option<f64> {
        if to <= from || self.step_secs <= 0 || to <= self.start || from >= self.end() {
            return None;
        }
        let lo = (from.max(self.start) - self.start) / self.step_secs;
        let hi = (to.min(self.end()) - self.start + self.step_secs - 1) / self.step_secs;
        self.values[lo as usize..hi as usize]
            .iter()
            .copied()
            .reduce(f64::max)
    }
}

/// Forecasts the load for `cfg.horizon_secs` from the first bin boundary at or after
/// `now`, learning from the bins of `history` that are complete before `now` (at most
/// `cfg.max_history_secs` back). See the module documentation for the model.
///
/// `history` may be unsorted and hold gaps, duplicates (combined by their median), NaN
/// and negative values (ignored). Points at or after `now`, and the bin still filling up
/// at `now`, are never used.
///
/// # Errors
///
/// [`ForecastError::InvalidStep`] or [`ForecastError::InvalidConfig`] for a bad `cfg`;
/// [`ForecastError::InsufficientHistory`] when fewer than `cfg.min_history_secs` seconds of
/// bins (24 h by default) hold a value.
pub fn forecast(
    history: &[Point],
    now: i64,
    cfg: &ForecastConfig,
) -> Result<Forecast, ForecastError> {
    forecast_with(history, now, cfg, &ProfileParams::default())
}

/// [`forecast`] with explicit model settings (used to measure the alternatives).
///
/// # Errors
///
/// As [`forecast`].
pub fn forecast_with(
    history: &[Point],
    now: i64,
    cfg: &ForecastConfig,
    params: &ProfileParams,
) -> Result<Forecast, ForecastError> {
    let horizon = grid::validate(cfg)?;
    let g = grid::build(history, now, cfg)?;
    let start = grid::forecast_start(now, cfg.step_secs);
    let out = profile::fit_and_forecast(&g, start, horizon, params);
    let season = if out.weekly_used {
        "daily+weekly"
    } else {
        "daily"
    };
    let trend = if out.trend_used { "+trend" } else { "" };
    Ok(Forecast {
        start,
        step_secs: cfg.step_secs,
        values: out.values,
        model: format!("seasonal-profile({season}){trend}"),
    })
}

/// Holt–Winters smoothing with a daily season (additive or multiplicative), parameters
/// chosen by in-sample one-step error, on the history with outage zeros removed. A
/// measured alternative, not the default model.
///
/// # Errors
///
/// As [`forecast`].
pub fn holt_winters(
    history: &[Point],
    now: i64,
    cfg: &ForecastConfig,
    multiplicative: bool,
) -> Result<Forecast, ForecastError> {
    let horizon = grid::validate(cfg)?;
    let g = grid::build(history, now, cfg)?;
    let start = grid::forecast_start(now, cfg.step_secs);
    let values = holt_winters::fit_and_forecast(&g, start, horizon, multiplicative);
    let kind = if multiplicative {
        "multiplicative"
    } else {
        "additive"
    };
    Ok(Forecast {
        start,
        step_secs: cfg.step_secs,
        values,
        model: format!("holt-winters({kind},daily)"),
    })
}

/// Seasonal-naive baseline: each bin gets the value observed `season_secs` earlier (or a
/// whole number of seasons earlier, the most recent observed one before `now`). Bins with
/// no such observation get the median of the history. Outage zeros are copied as they are.
///
/// # Errors
///
/// As [`forecast`]; also [`ForecastError::InvalidConfig`] when `season_secs` is not a
/// positive multiple of the step no longer than `cfg.max_history_secs`, and
/// [`ForecastError::InsufficientHistory`] when the history does not reach back a season.
pub fn seasonal_naive(
    history: &[Point],
    now: i64,
    cfg: &ForecastConfig,
    season_secs: i64,
) -> Result<Forecast, ForecastError> {
    let horizon = grid::validate(cfg)?;
    let step = cfg.step_secs;
    if season_secs <= 0 || season_secs % step != 0 {
        return Err(ForecastError::InvalidConfig {
            field: "season_secs",
            reason: "must be a positive multiple of step_secs",
        });
    }
    if season_secs > cfg.max_history_secs {
        return Err(ForecastError::InvalidConfig {
            field: "season_secs",
            reason: "must not exceed max_history_secs",
        });
    }
    let g = grid::build(history, now, cfg)?;
    let end = g.end();
    let span =
        g.y.iter()
            .position(|v| v.is_finite())
            .map_or(0, |first| end - g.time(first));
    if span < season_secs {
        return Err(ForecastError::InsufficientHistory {
            have_secs: span,
            need_secs: season_secs,
        });
    }
    let mut observed: Vec<f64> = g.y.iter().copied().filter(|v| v.is_finite()).collect();
    let fallback = stats::median_in_place(&mut observed).unwrap_or(0.0);
    let start = grid::forecast_start(now, step);
    let values = (0..horizon)
        .map(|h| {
            let t = start + h as i64 * step;
            let mut k = (t - end).div_euclid(season_secs) + 1;
            loop {
                let past = t - k * season_secs;
                if past < g.start {
                    break fallback;
                }
                let v = g.y[((past - g.start) / step) as usize];
                if v.is_finite() {
                    break v;
                }
                k += 1;
            }
        })
        .collect();
    Ok(Forecast {
        start,
        step_secs: step,
        values,
        model: format!("seasonal-naive({})", human_secs(season_secs)),
    })
}

/// Weighted absolute percentage error, `sum |forecast - actual| / sum |actual|`, over the
/// `(forecast, actual)` pairs with finite values. `None` when the actuals sum to zero.
#[must_use]
pub fn wape(pairs: &[(f64, f64)]) -> Option<f64> {
    let (err, act) = pairs
        .iter()
        .filter(|(f, a)| f.is_finite() && a.is_finite())
        .fold((0.0, 0.0), |(e, s), (f, a)| {
            (e + (f - a).abs(), s + a.abs())
        });
    (act > 0.0).then(|| err / act)
}

/// Mean absolute percentage error, `mean |forecast - actual| / actual`, over the
/// `(forecast, actual)` pairs with a finite forecast and an actual above zero. `None` when
/// there is no such pair.
#[must_use]
pub fn mape(pairs: &[(f64, f64)]) -> Option<f64> {
    let (sum, n) = pairs
        .iter()
        .filter(|(f, a)| f.is_finite() && a.is_finite() && *a > 0.0)
        .fold((0.0, 0usize), |(s, n), (f, a)| {
            (s + (f - a).abs() / a, n + 1)
        });
    (n > 0).then(|| sum / n as f64)
}

/// `86400` -> `1d`, `90000` -> `1d1h`, `3437` -> `57m17s`, `0` -> `0s`.
fn human_secs(secs: i64) -> String {
    if secs <= 0 {
        return format!("{secs}s");
    }
    let mut out = String::new();
    let mut rest = secs;
    for (unit, name) in [(DAY, "d"), (3600, "h"), (60, "m"), (1, "s")] {
        if rest >= unit {
            out.push_str(&format!("{}{name}", rest / unit));
            rest %= unit;
        }
    }
    out
}

#[cfg(test)]
mod tests;
