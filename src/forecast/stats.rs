//! Small robust-statistics helpers shared by the models (no allocation beyond the caller's
//! scratch buffers).

/// Median of `xs`, reordering it in place. `None` when empty. The mean of the two middle
/// values for an even count. `xs` must hold finite values only.
pub(crate) fn median_in_place(xs: &mut [f64]) -> Option<f64> {
    let n = xs.len();
    if n == 0 {
        return None;
    }
    let mid = n / 2;
    let (lower, upper_mid, _) = xs.select_nth_unstable_by(mid, f64::total_cmp);
    let upper = *upper_mid;
    if n % 2 == 1 {
        Some(upper)
    } else {
        let lower_max = lower.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        Some(0.5 * (lower_max + upper))
    }
}

/// Circular moving average of `xs` over a window of `2 * half + 1` values; NaN entries
/// are skipped (a window with no finite value yields NaN).
pub(crate) fn circular_smooth(xs: &[f64], half: usize) -> Vec<f64> {
    let n = xs.len();
    if half == 0 || n < 3 {
        return xs.to_vec();
    }
    let half = half.min((n - 1) / 2);
    // Running sums over a doubled-up index range keep this O(n).
    let mut out = Vec::with_capacity(n);
    let at = |k: isize| xs[k.rem_euclid(n as isize) as usize];
    let mut sum = 0.0;
    let mut cnt = 0usize;
    let h = half as isize;
    for k in -h..=h {
        let v = at(k);
        if v.is_finite() {
            sum += v;
            cnt += 1;
        }
    }
    for i in 0..n as isize {
        out.push(if cnt > 0 { sum / cnt as f64 } else { f64::NAN });
        let leaving = at(i - h);
        if leaving.is_finite() {
            sum -= leaving;
            cnt -= 1;
        }
        let entering = at(i + h + 1);
        if entering.is_finite() {
            sum += entering;
            cnt += 1;
        }
    }
    out
}

/// Replaces NaN entries of a circular series by linear interpolation between the nearest
/// finite neighbours (wrapping around). All-NaN input becomes all `fallback`.
pub(crate) fn fill_circular(xs: &mut [f64], fallback: f64) {
    let n = xs.len();
    let Some(first) = xs.iter().position(|v| v.is_finite()) else {
        xs.iter_mut().for_each(|v| *v = fallback);
        return;
    };
    // Walk once around the circle starting at a finite value.
    let mut last = first;
    for step in 1..=n {
        let k = (first + step) % n;
        if xs[k].is_finite() {
            let gap = (k + n - last) % n;
            let gap = if gap == 0 { n } else { gap };
            if gap > 1 {
                let (a, b) = (xs[last], xs[k]);
                for g in 1..gap {
                    xs[(last + g) % n] = a + (b - a) * g as f64 / gap as f64;
                }
            }
            last = k;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_odd_even_empty() {
        assert_eq!(median_in_place(&mut []), None);
        assert_eq!(median_in_place(&mut [3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median_in_place(&mut [4.0, 1.0, 3.0, 2.0]), Some(2.5));
    }

    #[test]
    fn smoothing_and_filling_wrap_around() {
        let s = circular_smooth(&[3.0, 0.0, 0.0, 0.0, 0.0, 3.0], 1);
        assert!((s[0] - 2.0).abs() < 1e-12 && (s[5] - 2.0).abs() < 1e-12);
        let mut f = [f64::NAN, 2.0, f64::NAN, f64::NAN, 8.0, f64::NAN];
        fill_circular(&mut f, 0.0);
        assert_eq!(f[2], 4.0);
        assert_eq!(f[3], 6.0);
        assert_eq!(f[5], 6.0);
        assert_eq!(f[0], 4.0);
        let mut all_nan = [f64::NAN; 3];
        fill_circular(&mut all_nan, 1.5);
        assert_eq!(all_nan, [1.5; 3]);
    }
}
