//! Turns raw, possibly messy history into a regular grid of bins ending at `now`.

use super::stats::median_in_place;
use super::{ForecastConfig, ForecastError, Point};

/// Seconds in a day and in a week.
pub(crate) const DAY: i64 = 86_400;
pub(crate) const WEEK: i64 = 7 * DAY;
/// Longest history window or horizon accepted (keeps allocations bounded).
const MAX_SPAN: i64 = 366 * DAY;
/// `now` must lie within this many seconds of the epoch (so no time arithmetic
/// overflows): about ±290 million years.
const MAX_ABS_NOW: i64 = i64::MAX / 1024;

/// History on a regular grid: bin `i` starts at `start + i * step`; missing bins are NaN.
/// The grid ends with the last bin that is complete at `now`.
#[derive(Debug, Clone)]
pub(crate) struct Grid {
    pub start: i64,
    pub step: i64,
    pub y: Vec<f64>,
}

impl Grid {
    /// Number of bins that hold a value.
    pub fn observed(&self) -> usize {
        self.y.iter().filter(|v| v.is_finite()).count()
    }

    /// Start time of bin `i`.
    pub fn time(&self, i: usize) -> i64 {
        self.start + i as i64 * self.step
    }

    /// Exclusive end of the grid (start of the first bin after it).
    pub fn end(&self) -> i64 {
        self.time(self.y.len())
    }
}

/// Checks `cfg`; returns the number of bins in the horizon.
pub(crate) fn validate(cfg: &ForecastConfig) -> Result<usize, ForecastError> {
    let step = cfg.step_secs;
    if step <= 0 || DAY % step != 0 {
        return Err(ForecastError::InvalidStep(step));
    }
    if cfg.horizon_secs <= 0 || cfg.horizon_secs > MAX_SPAN {
        return Err(ForecastError::InvalidConfig {
            field: "horizon_secs",
            reason: "must be positive and at most 366 days",
        });
    }
    if cfg.max_history_secs < step || cfg.max_history_secs > MAX_SPAN {
        return Err(ForecastError::InvalidConfig {
            field: "max_history_secs",
            reason: "must be at least one step and at most 366 days",
        });
    }
    if cfg.min_history_secs > cfg.max_history_secs {
        return Err(ForecastError::InvalidConfig {
            field: "min_history_secs",
            reason: "must not exceed max_history_secs",
        });
    }
    Ok(((cfg.horizon_secs + step - 1) / step) as usize)
}

/// First bin boundary at or after `now`: where a forecast starts.
pub(crate) fn forecast_start(now: i64, step: i64) -> i64 {
    let floor = now.div_euclid(step) * step;
    if floor == now {
        now
    } else {
        floor + step
    }
}

/// Builds the history grid. Only points whose whole bin lies before `now`
/// (`bin_start + step <= now`) are used, so the result is strictly causal and a bin that is
/// still filling up at `now` is ignored. Non-finite and negative values are dropped; points
/// falling in the same bin (duplicates) are combined by their median.
///
/// Fails with [`ForecastError::InsufficientHistory`] when fewer than
/// `max(cfg.min_history_secs, step)` seconds of bins hold a value.
pub(crate) fn build(
    history: &[Point],
    now: i64,
    cfg: &ForecastConfig,
) -> Result<Grid, ForecastError> {
    if !(-MAX_ABS_NOW..=MAX_ABS_NOW).contains(&now) {
        return Err(ForecastError::InvalidConfig {
            field: "now",
            reason: "out of range",
        });
    }
    let step = cfg.step_secs;
    let end = now.div_euclid(step) * step;
    let n = (cfg.max_history_secs / step) as usize;
    let start = end - n as i64 * step;

    let mut binned: Vec<(usize, f64)> = history
        .iter()
        .filter(|p| p.value.is_finite() && p.value >= 0.0 && p.at >= start && p.at < end)
        .map(|p| (((p.at - start) / step) as usize, p.value))
        .collect();
    binned.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)));

    let mut y = vec![f64::NAN; n];
    let mut scratch = Vec::new();
    let mut k = 0;
    while k < binned.len() {
        let idx = binned[k].0;
        scratch.clear();
        while k < binned.len() && binned[k].0 == idx {
            scratch.push(binned[k].1);
            k += 1;
        }
        y[idx] = median_in_place(&mut scratch).unwrap_or(f64::NAN);
    }

    let grid = Grid { start, step, y };
    let have_secs = grid.observed() as i64 * step;
    let need_secs = cfg.min_history_secs.max(step);
    if have_secs < need_secs {
        return Err(ForecastError::InsufficientHistory {
            have_secs,
            need_secs,
        });
    }
    Ok(grid)
}
