//! Load forecasts for predictive policies. A [`Forecaster`] gets the load history (requests
//! per second, only what had been published by `now`) and returns a [`ForecastSeries`];
//! the replay asks again every `refresh` of the predictive policy.

use chrono::DateTime;

use crate::policy::ForecastSeries;

/// Produces a load forecast from the history seen so far.
pub trait Forecaster {
    /// `history` holds `(bin start in Unix seconds, requests per second)`, oldest first, up
    /// to the latest published bin; `now` is the tick time. `None` when there is not enough
    /// history to forecast.
    fn forecast(&mut self, history: &[(i64, f64)], now: i64) -> Option<ForecastSeries>;
}

const DAY: i64 = 86_400;
const WEEK: i64 = 7 * DAY;

/// Seasonal naive forecast: the load one day earlier, or one week earlier once at least
/// seven days of history exist. Bins with no history (gaps) are unknown (NaN), which the
/// policy skips.
#[derive(Clone, Debug)]
pub struct SeasonalNaive {
    /// How far ahead of `now` the forecast reaches.
    pub horizon_secs: u64,
}

impl SeasonalNaive {
    pub fn new(horizon_secs: u64) -> Self {
        SeasonalNaive { horizon_secs }
    }
}

impl Forecaster for SeasonalNaive {
    fn forecast(&mut self, history: &[(i64, f64)], now: i64) -> Option<ForecastSeries> {
        let (first, last) = (history.first()?.0, history.last()?.0);
        let step = history
            .windows(2)
            .rev()
            .take(16)
            .map(|w| w[1].0 - w[0].0)
            .filter(|d| *d > 0)
            .min()?;
        let span = last + step - first;
        let season = if span >= WEEK {
            WEEK
        } else if span >= DAY {
            DAY
        } else {
            return None;
        };
        // Bins on the history's grid, starting with the one that contains `now`.
        let start = now - (now - first).rem_euclid(step);
        let n = (self.horizon_secs as i64 / step + 2) as usize;
        let values = (0..n)
            .map(|i| {
                let at = start + i as i64 * step - season;
                history
                    .binary_search_by_key(&at, |h| h.0)
                    .map(|j| history[j].1)
                    .unwrap_or(f64::NAN)
            })
            .collect();
        Some(ForecastSeries {
            start: DateTime::from_timestamp(start, 0)?,
            step_secs: step as u64,
            values,
        })
    }
}

/// The daemon's forecaster ([`crate::forecast`]): the history is averaged into 5-minute
/// bins (what the daemon reads from CloudWatch), at most 14 days of it, and forecast 48 h
/// ahead.
#[derive(Clone, Debug, Default)]
pub struct SeasonalProfile;

/// Averages `(bin start, rate)` points into bins of `step` seconds aligned to the epoch.
pub fn rebin(history: &[(i64, f64)], step: i64) -> Vec<crate::forecast::Point> {
    let mut out: Vec<(i64, f64, u32)> = Vec::new();
    for &(at, v) in history {
        if !v.is_finite() {
            continue;
        }
        let b = at - at.rem_euclid(step);
        match out.last_mut() {
            Some(last) if last.0 == b => {
                last.1 += v;
                last.2 += 1;
            }
            _ => out.push((b, v, 1)),
        }
    }
    out.into_iter()
        .map(|(at, sum, n)| crate::forecast::Point {
            at,
            value: sum / n as f64,
        })
        .collect()
}

impl Forecaster for SeasonalProfile {
    fn forecast(&mut self, history: &[(i64, f64)], now: i64) -> Option<ForecastSeries> {
        let cfg = crate::forecast::ForecastConfig::default();
        let from = now - cfg.max_history_secs;
        let first = history.partition_point(|h| h.0 < from);
        let points = rebin(&history[first..], cfg.step_secs);
        let f = crate::forecast::forecast(&points, now, &cfg).ok()?;
        Some(ForecastSeries {
            start: DateTime::from_timestamp(f.start, 0)?,
            step_secs: f.step_secs as u64,
            values: f.values,
        })
    }
}

#[cfg(test)]
mod profile_tests {
    use super::*;

    #[test]
    fn rebins_minutes_into_five_minute_averages() {
        let h: Vec<(i64, f64)> = (0..10).map(|i| (600 + i * 60, i as f64)).collect();
        let p = rebin(&h, 300);
        assert_eq!(p.len(), 2);
        assert_eq!((p[0].at, p[0].value), (600, 2.0));
        assert_eq!((p[1].at, p[1].value), (900, 7.0));
    }

    #[test]
    fn the_profile_forecaster_repeats_a_daily_pattern() {
        // Two days of one-minute history: 100 by night, 1000 from 12:00 to 14:00.
        let day = 86_400;
        let h: Vec<(i64, f64)> = (0..2 * 1440)
            .map(|i| {
                let at = i * 60;
                let hour = (at % day) / 3600;
                (
                    at,
                    if (12..14).contains(&hour) {
                        1000.0
                    } else {
                        100.0
                    },
                )
            })
            .collect();
        let now = 2 * day;
        let f = SeasonalProfile.forecast(&h, now).unwrap();
        let at = |secs: i64| {
            f.value_at(DateTime::from_timestamp(now + secs, 0).unwrap())
                .unwrap()
        };
        assert!(
            at(13 * 3600) > 700.0,
            "midday peak forecast: {}",
            at(13 * 3600)
        );
        assert!(at(3 * 3600) < 200.0, "night forecast: {}", at(3 * 3600));
    }
}
