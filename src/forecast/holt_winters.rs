//! Holt–Winters smoothing with a daily season: a measured alternative to the profile model.

use super::grid::{Grid, DAY};
use super::profile::remove_outage_zeros;

const ALPHAS: [f64; 5] = [0.01, 0.03, 0.1, 0.2, 0.4];
const BETAS: [f64; 3] = [0.0, 0.001, 0.01];
const GAMMAS: [f64; 4] = [0.05, 0.1, 0.2, 0.4];
/// Damping of the trend per step when projecting.
const PHI: f64 = 0.995;

struct State {
    level: f64,
    trend: f64,
    season: Vec<f64>,
    sse: f64,
}

/// Runs the smoother over `y` (NaN = missing: the state coasts on its own forecast).
fn run(y: &[f64], first: usize, m: usize, mul: bool, a: f64, b: f64, g: f64) -> State {
    // Initial state from the first day of data.
    let day: Vec<f64> = y[first..(first + m).min(y.len())].to_vec();
    let obs: Vec<f64> = day.iter().copied().filter(|v| v.is_finite()).collect();
    let level0 = obs.iter().sum::<f64>() / obs.len().max(1) as f64;
    let mut season = vec![if mul { 1.0 } else { 0.0 }; m];
    for (k, v) in day.iter().enumerate() {
        if v.is_finite() {
            season[(first + k) % m] = if mul {
                if level0 > 0.0 {
                    (v / level0).max(0.01)
                } else {
                    1.0
                }
            } else {
                v - level0
            };
        }
    }
    let mut st = State {
        level: level0,
        trend: 0.0,
        season,
        sse: 0.0,
    };
    for (i, &v) in y.iter().enumerate().skip(first + m) {
        let s = st.season[i % m];
        let pred = if mul {
            (st.level + st.trend) * s
        } else {
            st.level + st.trend + s
        };
        if !v.is_finite() {
            st.level += st.trend;
            continue;
        }
        st.sse += (v - pred) * (v - pred);
        let prev = st.level;
        st.level = if mul {
            a * v / s.max(1e-3) + (1.0 - a) * (st.level + st.trend)
        } else {
            a * (v - s) + (1.0 - a) * (st.level + st.trend)
        };
        st.trend = b * (st.level - prev) + (1.0 - b) * st.trend;
        st.season[i % m] = if mul {
            (g * v / st.level.max(1e-9) + (1.0 - g) * s).max(1e-3)
        } else {
            g * (v - st.level) + (1.0 - g) * s
        };
    }
    st
}

pub(crate) fn fit_and_forecast(grid: &Grid, start: i64, horizon: usize, mul: bool) -> Vec<f64> {
    let step = grid.step;
    let m = (DAY / step) as usize;
    let mut y = grid.y.clone();
    remove_outage_zeros(&mut y, m, 7 * m);
    let first = y.iter().position(|v| v.is_finite()).unwrap_or(0);
    // Season index of grid bin i is (i + offset) % m so that it matches time of day.
    let offset = (grid.start.rem_euclid(DAY) / step) as usize;
    let mut shifted = vec![f64::NAN; offset];
    shifted.extend_from_slice(&y);
    let first = first + offset;
    let mut best: Option<State> = None;
    for &a in &ALPHAS {
        for &b in &BETAS {
            for &g in &GAMMAS {
                let st = run(&shifted, first, m, mul, a, b, g);
                if best.as_ref().is_none_or(|bst| st.sse < bst.sse) {
                    best = Some(st);
                }
            }
        }
    }
    let st = best.expect("parameter grid is not empty");
    let end = grid.end();
    let mut damp_sum = 0.0;
    let mut phi_k = 1.0;
    let ahead0 = ((start - end) / step) as usize;
    let mut out = Vec::with_capacity(horizon);
    for h in 0..ahead0 + horizon {
        phi_k *= PHI;
        damp_sum += phi_k;
        if h < ahead0 {
            continue;
        }
        let t = end + h as i64 * step;
        let s = st.season[(t.rem_euclid(DAY) / step) as usize];
        let lvl = st.level + st.trend * damp_sum;
        let v = if mul { lvl * s } else { lvl + s };
        out.push(if v.is_finite() { v.max(0.0) } else { 0.0 });
    }
    out
}
