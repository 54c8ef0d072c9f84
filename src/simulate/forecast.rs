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
