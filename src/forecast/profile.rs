//! The robust seasonal-profile model: see the parent module's documentation for the
//! formula, `FORECASTING.md` for the measurements behind each choice.
//!
//! Fitting alternates (backfitting) between the daily profile, the weekly modulation and
//! the level per 24 h block, then flags outliers against the fit and repeats without them.
//! While fitting, the level is a trend plus a running weekly median of the block levels:
//! per-day levels would absorb the day-of-week effect the weekly modulation must learn.

use serde::{Deserialize, Serialize};

use super::grid::{Grid, DAY, WEEK};
use super::stats::{circular_smooth, fill_circular, median_in_place};

/// 1970-01-05 00:00 UTC, a Monday: the origin of time-of-week slots.
const MONDAY: i64 = 4 * DAY;

/// Settings of the seasonal-profile model. The defaults are the measured choices (see
/// `FORECASTING.md`); other values exist to measure alternatives.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ProfileParams {
    /// Fit the weekly modulation when the history spans at least a week.
    pub weekly: bool,
    /// Half-width of the moving average applied to the daily profile, seconds.
    pub daily_smooth_secs: i64,
    /// Half-width of the moving average applied to the weekly modulation, seconds.
    pub weekly_smooth_secs: i64,
    /// Shrinkage of the weekly modulation: weight `weeks / (weeks + weekly_shrink)`.
    pub weekly_shrink: f64,
    /// Treat zeros as missing where the same slot is usually non-zero (an outage).
    pub outage_zeros: bool,
    /// Outliers: `|ln(actual / fitted)| > max(outlier_k * robust sd, outlier_min_log)`.
    pub outlier_k: f64,
    /// Floor of the outlier threshold in log units.
    pub outlier_min_log: f64,
    /// Backfitting rounds.
    pub iterations: usize,
    /// How many of the last 24 h blocks the level is the median of.
    pub level_days: usize,
    /// Weight of the last 24 h block in the level against that median, 0..=1.
    pub recent_weight: f64,
    /// Fit and project a linear trend over the 24 h blocks.
    pub trend: bool,
    /// Factor applied to the trend slope when projecting (1 = undamped).
    pub trend_damping: f64,
    /// Largest trend, as a fraction of the level per day, before damping: a step change
    /// in the middle of the history can look like a steep trend.
    pub max_trend_per_day: f64,
    /// Project the trend only when the Mann–Kendall statistic of the block levels has
    /// `|z|` at least this (1.96: significant at 5 %; 0 projects any slope).
    pub trend_min_z: f64,
    /// Window of the short-term correction, seconds (0 disables it).
    pub short_term_secs: i64,
    /// E-folding time of the short-term correction over the horizon, seconds.
    pub short_term_decay_secs: i64,
}

impl Default for ProfileParams {
    fn default() -> Self {
        ProfileParams {
            weekly: true,
            daily_smooth_secs: 1800,
            weekly_smooth_secs: 3600,
            weekly_shrink: 0.25,
            outage_zeros: true,
            outlier_k: 4.0,
            outlier_min_log: 0.4,
            iterations: 3,
            level_days: 7,
            recent_weight: 0.5,
            trend: true,
            trend_damping: 0.5,
            max_trend_per_day: 0.05,
            trend_min_z: 1.96,
            short_term_secs: 3 * 3600,
            short_term_decay_secs: 12 * 3600,
        }
    }
}

/// What [`fit_and_forecast`] returns besides the values.
pub(crate) struct ProfileOutput {
    pub values: Vec<f64>,
    pub weekly_used: bool,
    /// Whether a non-zero trend was projected.
    pub trend_used: bool,
}

/// Marks zero bins as missing when they look like an outage rather than a quiet time: the
/// median of the other observations of the same time-of-week slot (or, when there is
/// none, of the same time-of-day slot) is above zero.
pub(crate) fn remove_outage_zeros(y: &mut [f64], m: usize, wk: usize) {
    let orig = y.to_vec();
    let n = orig.len();
    let mut others = Vec::new();
    let collect = |i: usize, period: usize, others: &mut Vec<f64>| {
        others.clear();
        let mut k = i % period;
        while k < n {
            if k != i && orig[k].is_finite() {
                others.push(orig[k]);
            }
            k += period;
        }
    };
    for i in 0..n {
        if orig[i] != 0.0 {
            continue;
        }
        collect(i, wk, &mut others);
        if others.is_empty() {
            collect(i, m, &mut others);
        }
        if median_in_place(&mut others).is_some_and(|med| med > 0.0) {
            y[i] = f64::NAN;
        }
    }
}

/// Fits the model on `grid` and forecasts `horizon` bins starting at `start`.
pub(crate) fn fit_and_forecast(
    grid: &Grid,
    start: i64,
    horizon: usize,
    p: &ProfileParams,
) -> ProfileOutput {
    let step = grid.step;
    let n = grid.y.len();
    let m = (DAY / step) as usize;
    let wk = (WEEK / step) as usize;
    let ds0 = (grid.start.rem_euclid(DAY) / step) as usize;
    let ws0 = ((grid.start - MONDAY).rem_euclid(WEEK) / step) as usize;
    let ds = |i: usize| (ds0 + i) % m;
    let ws = |i: usize| (ws0 + i) % wk;
    // Slot indices of the history bins, computed once (the loops below are hot).
    let dsi: Vec<usize> = (0..n).map(ds).collect();
    let wsi: Vec<usize> = (0..n).map(ws).collect();

    let mut y = grid.y.clone();
    if p.outage_zeros {
        remove_outage_zeros(&mut y, m, wk);
    }

    // Data span decides whether weekly modulation can be learned at all.
    let first = y.iter().position(|v| v.is_finite()).unwrap_or(0);
    let span_bins = n - first;
    let weekly_used = p.weekly && span_bins >= wk;

    // 24 h blocks aligned to the end of the grid: block 0 is the last day, centred at
    // x = -0.5 (x: days relative to the end of the history). The level used while fitting
    // is a trend plus a running median of the detrended block levels over a week (see
    // `level_curve`), not the blocks themselves: per-day levels would soak up the
    // day-of-week effect the weekly modulation must learn.
    let nb = n.div_ceil(m);
    let blk: Vec<usize> = (0..n).map(|i| (n - 1 - i) / m).collect();
    let block = |i: usize| blk[i];
    let x_of = |i: usize| (grid.time(i) + step / 2 - grid.end()) as f64 / DAY as f64;
    let level_per_bin = |curve: &[f64]| -> Vec<f64> {
        (0..n).map(|i| interpolate_blocks(curve, x_of(i))).collect()
    };
    let cap = p.max_trend_per_day.max(0.0);

    let mut usable: Vec<bool> = y.iter().map(|v| v.is_finite()).collect();
    let mut daily = vec![1.0; m];
    let mut weekly = vec![1.0; wk];
    let mut blocks = block_levels(&y, &usable, |_| 1.0, block, m, nb);
    // With the weekly modulation on, trends are measured between blocks whole weeks apart:
    // within a single week a day-of-week pattern is indistinguishable from a trend.
    let period = if weekly_used { 7 } else { 1 };
    let mut curve = level_curve(&blocks, period, cap);
    let mut lev = level_per_bin(&curve);

    let d_half = (p.daily_smooth_secs / step).max(0) as usize;
    let w_half = (p.weekly_smooth_secs / step).max(0) as usize;
    let mut scratch = Vec::new();

    for _ in 0..p.iterations.max(1) {
        // Daily profile: median over days of the level- and week-normalised load.
        for (s, d) in daily.iter_mut().enumerate() {
            scratch.clear();
            let mut i = (s + m - ds0 % m) % m;
            while i < n {
                let base = lev[i] * weekly[wsi[i]];
                if usable[i] && base > 0.0 {
                    scratch.push(y[i] / base);
                }
                i += m;
            }
            *d = median_in_place(&mut scratch).unwrap_or(f64::NAN);
        }
        fill_circular(&mut daily, 1.0);
        daily = circular_smooth(&daily, d_half);
        normalise_mean(&mut daily);

        // Weekly modulation: mean ratio to the daily shape per time-of-week slot, averaged
        // over neighbouring slots and shrunk towards 1 by the number of weeks behind it.
        if weekly_used {
            let mut sum = vec![0.0; wk];
            let mut cnt = vec![0.0; wk];
            for i in 0..n {
                let base = lev[i] * daily[dsi[i]];
                if usable[i] && base > 0.0 {
                    sum[wsi[i]] += y[i] / base;
                    cnt[wsi[i]] += 1.0;
                }
            }
            let sum_s = circular_smooth_sums(&sum, w_half);
            let cnt_s = circular_smooth_sums(&cnt, w_half);
            let width = (2 * w_half.min((wk - 1) / 2) + 1) as f64;
            for k in 0..wk {
                weekly[k] = if cnt_s[k] > 0.0 {
                    let weeks = cnt_s[k] / width;
                    let shrink = weeks / (weeks + p.weekly_shrink);
                    1.0 + (sum_s[k] / cnt_s[k] - 1.0) * shrink
                } else {
                    1.0
                };
            }
            // Average 1 over the seven days for every time of day: D keeps the shape.
            for s in 0..m {
                let mean = (0..7).map(|d| weekly[s + d * m]).sum::<f64>() / 7.0;
                if mean > 0.0 {
                    (0..7).for_each(|d| weekly[s + d * m] /= mean);
                }
            }
        }

        // Level: per 24 h block, then their running median.
        blocks = block_levels(
            &y,
            &usable,
            |i| daily[dsi[i]] * weekly[wsi[i]],
            block,
            m,
            nb,
        );
        curve = level_curve(&blocks, period, cap);
        lev = level_per_bin(&curve);

        // Outliers: robust z-score of the log ratio to the fit.
        scratch.clear();
        let mut lr = vec![f64::NAN; n];
        for i in 0..n {
            let f = lev[i] * daily[dsi[i]] * weekly[wsi[i]];
            if y[i].is_finite() && y[i] > 0.0 && f > 0.0 {
                lr[i] = (y[i] / f).ln();
                scratch.push(lr[i]);
            }
        }
        let centre = median_in_place(&mut scratch).unwrap_or(0.0);
        scratch.iter_mut().for_each(|v| *v = (*v - centre).abs());
        let mad = median_in_place(&mut scratch).unwrap_or(0.0);
        let thresh = (p.outlier_k * 1.4826 * mad).max(p.outlier_min_log);
        for i in 0..n {
            usable[i] = y[i].is_finite() && !(lr[i].is_finite() && (lr[i] - centre).abs() > thresh);
        }
    }

    // Level at the end of the history (centre of the last block, x = -0.5), from robust
    // block levels: the median ratio of every observed bin to the seasonal shape, outliers
    // included, so that a one-off spike barely moves it but a lasting shift does. It is
    // the median of the last `level_days` such blocks, each moved to x = -0.5 along the
    // trend, blended with the last block alone.
    let recent = median_block_levels(&y, |i| daily[dsi[i]] * weekly[wsi[i]], block, m, nb);
    let (mut slopes, z) = trend_stats(&blocks, period);
    let mut slope = match median_in_place(&mut slopes) {
        Some(b) if p.trend && z.abs() >= p.trend_min_z => b,
        _ => 0.0,
    };
    let window = |slope: f64| -> Option<f64> {
        let mut w: Vec<f64> = (0..p.level_days.clamp(1, nb))
            .filter(|&j| recent[j].is_finite())
            .map(|j| recent[j] + slope * j as f64)
            .collect();
        median_in_place(&mut w)
    };
    // A step change in the middle of the history can look like a steep trend: cap it.
    let limit = cap * window(0.0).unwrap_or(0.0);
    slope = slope.clamp(-limit, limit);
    let long = window(slope).unwrap_or_else(|| interpolate_blocks(&curve, -0.5));
    let last = if recent[0].is_finite() {
        recent[0]
    } else {
        long
    };
    let base = p.recent_weight * last + (1.0 - p.recent_weight) * long;
    // In the past the trend applies as fitted; ahead it is damped.
    let ahead_slope = slope * p.trend_damping;
    let level_at = |x: f64| (base + slope * (x.min(0.0) + 0.5) + ahead_slope * x.max(0.0)).max(0.0);

    // Short-term correction from the last hours.
    let mut corr = 1.0;
    if p.short_term_secs > 0 {
        let k = ((p.short_term_secs / step) as usize).min(n);
        let (mut sy, mut sf) = (0.0, 0.0);
        for i in n - k..n {
            if usable[i] {
                sy += y[i];
                sf += level_at(x_of(i)) * daily[dsi[i]] * weekly[wsi[i]];
            }
        }
        if sf > 0.0 && sy.is_finite() {
            corr = (sy / sf).clamp(0.5, 2.0);
        }
    }

    let end = grid.end();
    let values = (0..horizon)
        .map(|h| {
            let t = start + h as i64 * step;
            let i = ((t - grid.start) / step) as usize;
            let ahead = (t - end) as f64;
            let c = if p.short_term_secs > 0 {
                1.0 + (corr - 1.0) * (-ahead / p.short_term_decay_secs.max(1) as f64).exp()
            } else {
                1.0
            };
            let v = level_at(x_of(i)) * daily[ds(i)] * weekly[ws(i)] * c;
            if v.is_finite() {
                v.max(0.0)
            } else {
                0.0
            }
        })
        .collect();
    ProfileOutput {
        values,
        weekly_used,
        trend_used: ahead_slope != 0.0,
    }
}

/// The level per block used while fitting: the trend (the Theil–Sen slope of the blocks,
/// see [`trend_stats`], capped at `cap` times the median level per day) plus the running
/// median of the detrended block levels over a week (seven blocks; the window is shifted
/// inwards at the ends rather than truncated, so it always spans every day of the week).
/// A running median follows a step change in the level, which a straight line cannot.
fn level_curve(blocks: &[f64], period: usize, cap: f64) -> Vec<f64> {
    let nb = blocks.len();
    let mut scratch: Vec<f64> = blocks.iter().copied().filter(|l| l.is_finite()).collect();
    let limit = cap * median_in_place(&mut scratch).unwrap_or(0.0);
    let (mut slopes, _) = trend_stats(blocks, period);
    let b = median_in_place(&mut slopes)
        .unwrap_or(0.0)
        .clamp(-limit, limit);
    // Block j is centred at x = -(j + 0.5); detrend to x = 0.
    let detrended: Vec<f64> = (0..nb).map(|j| blocks[j] + b * (j as f64 + 0.5)).collect();
    let w = 7.min(nb);
    let mut out: Vec<f64> = (0..nb)
        .map(|j| {
            let lo = j.saturating_sub(w / 2).min(nb - w);
            scratch.clear();
            scratch.extend(
                detrended[lo..lo + w]
                    .iter()
                    .copied()
                    .filter(|l| l.is_finite()),
            );
            median_in_place(&mut scratch).unwrap_or(f64::NAN)
        })
        .collect();
    fill_linear(&mut out);
    for (j, v) in out.iter_mut().enumerate() {
        *v -= b * (j as f64 + 0.5);
    }
    out
}

/// Level at `x` days relative to the end of the history, interpolated between the block
/// centres (block `j` at `x = -(j + 0.5)`) and held flat beyond them.
fn interpolate_blocks(curve: &[f64], x: f64) -> f64 {
    let pos = (-x - 0.5).clamp(0.0, (curve.len() - 1) as f64);
    let j = pos.floor() as usize;
    let frac = pos - j as f64;
    let v = match curve.get(j + 1) {
        Some(next) if frac > 0.0 => curve[j] + (next - curve[j]) * frac,
        _ => curve[j],
    };
    v.max(0.0)
}

/// Fills NaN entries by linear interpolation between finite neighbours, holding the end
/// values flat; all-NaN input is left as it is.
fn fill_linear(xs: &mut [f64]) {
    let known: Vec<usize> = (0..xs.len()).filter(|&k| xs[k].is_finite()).collect();
    let (Some(&first), Some(&last)) = (known.first(), known.last()) else {
        return;
    };
    let (head, tail) = (xs[first], xs[last]);
    xs[..first].iter_mut().for_each(|v| *v = head);
    xs[last + 1..].iter_mut().for_each(|v| *v = tail);
    for w in known.windows(2) {
        let (l, r) = (w[0], w[1]);
        for k in l + 1..r {
            xs[k] = xs[l] + (xs[r] - xs[l]) * (k - l) as f64 / (r - l) as f64;
        }
    }
}

/// Pairwise slopes (per day) and the Mann–Kendall `z` of the observed block levels
/// (stored newest first). Only blocks a multiple of `period` apart are paired: with
/// `period = 7` this is the seasonal Kendall test, blind to day-of-week differences;
/// with `period = 1` the plain test. `z` is 0 when nothing can be compared.
fn trend_stats(blocks: &[f64], period: usize) -> (Vec<f64>, f64) {
    let period = period.max(1);
    let mut slopes = Vec::new();
    let (mut s, mut var) = (0.0, 0.0);
    for season in 0..period.min(blocks.len()) {
        let idx: Vec<usize> = (season..blocks.len())
            .step_by(period)
            .filter(|&j| blocks[j].is_finite())
            .collect();
        let n = idx.len() as f64;
        var += n * (n - 1.0) * (2.0 * n + 5.0) / 18.0;
        for (k, &newer) in idx.iter().enumerate() {
            for &older in &idx[k + 1..] {
                let diff = blocks[newer] - blocks[older];
                slopes.push(diff / (older - newer) as f64);
                if diff != 0.0 {
                    s += diff.signum();
                }
            }
        }
    }
    // Continuity-corrected; note `0.0_f64.signum()` is 1, hence the explicit check.
    let z = if var > 0.0 && s != 0.0 {
        (s - s.signum()) / var.sqrt()
    } else {
        0.0
    };
    (slopes, z)
}

/// Per-block ratio of the sums of usable load and `shape`; NaN for blocks with too few
/// usable bins (see [`min_block_count`]).
fn block_levels(
    y: &[f64],
    usable: &[bool],
    shape: impl Fn(usize) -> f64,
    block: impl Fn(usize) -> usize,
    m: usize,
    nb: usize,
) -> Vec<f64> {
    let mut sy = vec![0.0; nb];
    let mut sf = vec![0.0; nb];
    let mut cnt = vec![0usize; nb];
    for i in 0..y.len() {
        if usable[i] {
            let b = block(i);
            sy[b] += y[i];
            sf[b] += shape(i);
            cnt[b] += 1;
        }
    }
    let need = min_block_count(&cnt, m);
    (0..nb)
        .map(|b| {
            if cnt[b] >= need && sf[b] > 0.0 {
                sy[b] / sf[b]
            } else {
                f64::NAN
            }
        })
        .collect()
}

/// Per-block median of `y / shape` over the observed bins; NaN for blocks with too few
/// of them (see [`min_block_count`]).
fn median_block_levels(
    y: &[f64],
    shape: impl Fn(usize) -> f64,
    block: impl Fn(usize) -> usize,
    m: usize,
    nb: usize,
) -> Vec<f64> {
    let mut ratios: Vec<Vec<f64>> = vec![Vec::new(); nb];
    for (i, &v) in y.iter().enumerate() {
        let f = shape(i);
        if v.is_finite() && f > 0.0 {
            ratios[block(i)].push(v / f);
        }
    }
    let cnt: Vec<usize> = ratios.iter().map(Vec::len).collect();
    let need = min_block_count(&cnt, m);
    ratios
        .iter_mut()
        .map(|r| {
            if r.len() >= need {
                median_in_place(r).unwrap_or(f64::NAN)
            } else {
                f64::NAN
            }
        })
        .collect()
}

/// Bins a block needs to get a level: a quarter of a day, or, when no block has that
/// many (sparse history), one.
fn min_block_count(counts: &[usize], m: usize) -> usize {
    let quarter = m.div_ceil(4);
    if counts.iter().any(|&c| c >= quarter) {
        quarter
    } else {
        1
    }
}

fn normalise_mean(xs: &mut [f64]) {
    let mean = xs.iter().sum::<f64>() / xs.len() as f64;
    if mean > 0.0 && mean.is_finite() {
        xs.iter_mut().for_each(|v| *v /= mean);
    } else {
        xs.iter_mut().for_each(|v| *v = 1.0);
    }
}

/// Circular moving sum over `2 * half + 1` entries.
fn circular_smooth_sums(xs: &[f64], half: usize) -> Vec<f64> {
    let width = (2 * half.min((xs.len().max(1) - 1) / 2) + 1) as f64;
    circular_smooth(xs, half)
        .into_iter()
        .map(|v| v * width)
        .collect()
}
