//! Unit tests of the public API on synthetic series.

use super::*;

const STEP: i64 = 300;
const HOUR: i64 = 3600;
/// 2023-11-13 00:00 UTC, a Monday.
const T0: i64 = 1_699_833_600;
/// "Now" in most tests: 14 days after `T0`.
const NOW: i64 = T0 + 14 * DAY;

fn cfg() -> ForecastConfig {
    ForecastConfig::default()
}

/// Daily and weekly sines on a level growing 1 % a day (of the level at `T0`).
fn truth(t: i64) -> f64 {
    use std::f64::consts::TAU;
    let days = (t - T0) as f64 / DAY as f64;
    let level = 1000.0 * (1.0 + 0.01 * days);
    let daily = 1.0 + 0.6 * (TAU * (t.rem_euclid(DAY)) as f64 / DAY as f64 - 2.0).sin();
    let weekly = 1.0 + 0.25 * (TAU * (t - T0).rem_euclid(WEEK) as f64 / WEEK as f64).sin();
    level * daily * weekly
}

/// Deterministic noise in `[-amp, amp]` (a small LCG; no dependencies).
fn noise(i: i64, amp: f64) -> f64 {
    let x = (i as u64)
        .wrapping_mul(6_364_136_223_846_793_005)
        .wrapping_add(1_442_695_040_888_963_407);
    let u = (x >> 11) as f64 / (1u64 << 53) as f64;
    amp * (2.0 * u - 1.0)
}

/// `truth` with ±5 % noise on `[from, to)`.
fn history(from: i64, to: i64) -> Vec<Point> {
    (from / STEP..to / STEP)
        .map(|k| {
            let at = k * STEP;
            Point {
                at,
                value: truth(at) * (1.0 + noise(k, 0.05)),
            }
        })
        .collect()
}

/// WAPE of a forecast against `truth`, and the largest relative error of a bin.
fn error_vs_truth(f: &Forecast) -> (f64, f64) {
    let pairs: Vec<(f64, f64)> = f
        .values
        .iter()
        .enumerate()
        .map(|(i, &v)| (v, truth(f.start + i as i64 * f.step_secs)))
        .collect();
    let max_rel = pairs
        .iter()
        .map(|(f, a)| (f - a).abs() / a)
        .fold(0.0, f64::max);
    (wape(&pairs).unwrap(), max_rel)
}

fn assert_sane(f: &Forecast) {
    assert!(!f.values.is_empty());
    for v in &f.values {
        assert!(v.is_finite() && *v >= 0.0, "bad value {v} in {f:?}");
    }
}

#[test]
fn recovers_daily_and_weekly_sines_with_trend() {
    let h = history(NOW - 14 * DAY, NOW);
    let f = forecast(&h, NOW, &cfg()).unwrap();
    assert_sane(&f);
    assert_eq!(f.start, NOW);
    assert_eq!(f.step_secs, STEP);
    assert_eq!(f.values.len(), (2 * DAY / STEP) as usize);
    assert_eq!(f.model, "seasonal-profile(daily+weekly)+trend");
    // The defaults shrink the weekly modulation a little and damp the trend (both pay off
    // on real traces), which costs a few percent on this perfectly regular series.
    let (wape, max_rel) = error_vs_truth(&f);
    assert!(wape < 0.04, "WAPE {wape}");
    assert!(max_rel < 0.06, "max relative error {max_rel}");

    // Without shrinkage and damping the model structure recovers the series almost exactly.
    let exact = ProfileParams {
        weekly_shrink: 0.0,
        trend_damping: 1.0,
        ..ProfileParams::default()
    };
    let f = forecast_with(&h, NOW, &cfg(), &exact).unwrap();
    let (wape, max_rel) = error_vs_truth(&f);
    assert!(wape < 0.005, "WAPE {wape}");
    assert!(max_rel < 0.02, "max relative error {max_rel}");
    // The trend is carried forward: day 2 over day 1 as in truth.
    let day_sum = |d: usize| f.values[d * 288..(d + 1) * 288].iter().sum::<f64>();
    let truth_sum = |d: i64| {
        (0..288)
            .map(|k| truth(NOW + d * DAY + k * STEP))
            .sum::<f64>()
    };
    let (fr, tr) = (day_sum(1) / day_sum(0), truth_sum(1) / truth_sum(0));
    assert!(
        (fr - tr).abs() < 0.005,
        "day-2/day-1 ratio {fr} vs truth {tr}"
    );
}

#[test]
fn beats_seasonal_naive_on_a_noisy_weekly_series() {
    let h = history(NOW - 14 * DAY, NOW);
    let ours = error_vs_truth(&forecast(&h, NOW, &cfg()).unwrap()).0;
    let daily = error_vs_truth(&seasonal_naive(&h, NOW, &cfg(), DAY).unwrap()).0;
    let weekly = error_vs_truth(&seasonal_naive(&h, NOW, &cfg(), WEEK).unwrap()).0;
    assert!(
        ours < daily && ours < weekly,
        "{ours} vs {daily} / {weekly}"
    );
}

#[test]
fn gaps_and_outage_zeros_do_not_pull_the_forecast_down() {
    let clean = forecast(&history(NOW - 14 * DAY, NOW), NOW, &cfg()).unwrap();
    let mut h = history(NOW - 14 * DAY, NOW);
    // A 12 h logging gap five days ago, a 36 h outage (zeros) three days ago, and the
    // server down for the last two hours.
    h.retain(|p| !(NOW - 5 * DAY <= p.at && p.at < NOW - 5 * DAY + 12 * HOUR));
    for p in &mut h {
        let outage = NOW - 3 * DAY <= p.at && p.at < NOW - 3 * DAY + 36 * HOUR;
        if outage || p.at >= NOW - 2 * HOUR {
            p.value = 0.0;
        }
    }
    let f = forecast(&h, NOW, &cfg()).unwrap();
    assert_sane(&f);
    let (wape, _) = error_vs_truth(&f);
    assert!(wape < 0.04, "WAPE {wape}");
    let ratio = f.values.iter().sum::<f64>() / clean.values.iter().sum::<f64>();
    assert!(
        (ratio - 1.0).abs() < 0.03,
        "outages moved the forecast by {ratio}"
    );
    // The baseline copies the zeros.
    let naive = seasonal_naive(&h, NOW, &cfg(), DAY).unwrap();
    assert_eq!(naive.value_at(NOW + DAY - HOUR), Some(0.0));
}

#[test]
fn zeros_that_recur_are_quiet_times_not_outages() {
    // A service idle from 00:00 to 06:00 every day: those zeros are real.
    let h: Vec<Point> = history(NOW - 14 * DAY, NOW)
        .into_iter()
        .map(|p| Point {
            value: if p.at.rem_euclid(DAY) < 6 * HOUR {
                0.0
            } else {
                p.value
            },
            ..p
        })
        .collect();
    let f = forecast(&h, NOW, &cfg()).unwrap();
    assert_sane(&f);
    let night = f.value_at(NOW + DAY + 3 * HOUR).unwrap();
    let day = f.value_at(NOW + DAY + 15 * HOUR).unwrap();
    assert!(night < 0.02 * day, "night {night} vs day {day}");
}

#[test]
fn one_off_spike_is_not_reproduced_the_next_day() {
    let clean = forecast(&history(NOW - 14 * DAY, NOW), NOW, &cfg()).unwrap();
    let mut h = history(NOW - 14 * DAY, NOW);
    // Flash crowds at 4x: two hours yesterday, and three hours six days ago, at the same
    // time of week as tomorrow morning.
    let spikes = [
        (NOW - 18 * HOUR, NOW - 16 * HOUR),
        (NOW - 6 * DAY + 10 * HOUR, NOW - 6 * DAY + 13 * HOUR),
    ];
    for p in &mut h {
        if spikes.iter().any(|&(a, b)| a <= p.at && p.at < b) {
            p.value *= 4.0;
        }
    }
    let f = forecast(&h, NOW, &cfg()).unwrap();
    assert_sane(&f);
    // Every forecast bin at the time of day of a spike: as without the spikes.
    let mut checked = 0;
    for (k, (&got, &want)) in f.values.iter().zip(&clean.values).enumerate() {
        let t = f.start + k as i64 * STEP;
        if spikes.iter().any(|&(a, b)| (t - a).rem_euclid(DAY) < b - a) {
            assert!(
                (got / want - 1.0).abs() < 0.05,
                "at {t}: {got} vs {want} without spikes"
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 2 * (24 + 36));
    assert!(error_vs_truth(&f).0 < 0.04);
}

#[test]
fn a_lasting_level_shift_is_followed() {
    // Load triples for the last four days (a migration, a launch): not an outlier.
    let mut h = history(NOW - 14 * DAY, NOW);
    for p in &mut h {
        if p.at >= NOW - 4 * DAY {
            p.value *= 3.0;
        }
    }
    let f = forecast(&h, NOW, &cfg()).unwrap();
    let ratio = f.values.iter().sum::<f64>()
        / (0..f.values.len() as i64)
            .map(|k| truth(NOW + k * STEP))
            .sum::<f64>();
    assert!(
        (ratio - 3.0).abs() < 0.3,
        "forecast at {ratio}x the old level"
    );
}

#[test]
fn history_that_stopped_a_while_ago_still_forecasts() {
    // The metric stopped arriving 30 h before now (a broken exporter): the last blocks
    // are empty, the level comes from the ones before.
    let f = forecast(&history(NOW - 14 * DAY, NOW - 30 * HOUR), NOW, &cfg()).unwrap();
    assert_sane(&f);
    assert!(error_vs_truth(&f).0 < 0.05);
}

#[test]
fn insufficient_history_is_a_clear_error() {
    let h = history(NOW - 23 * HOUR, NOW);
    let err = forecast(&h, NOW, &cfg()).unwrap_err();
    assert_eq!(
        err,
        ForecastError::InsufficientHistory {
            have_secs: 23 * HOUR,
            need_secs: DAY
        }
    );
    let msg = err.to_string();
    assert!(msg.contains("23h") && msg.contains("1d"), "{msg}");
    // Coverage counts, not span: 48 h with every other hour missing is 24 h of data
    // (enough); with two in three hours missing it is 16 h (not enough).
    let sparse = |keep: i64| -> Vec<Point> {
        history(NOW - 2 * DAY, NOW)
            .into_iter()
            .filter(|p| (p.at / HOUR) % keep == 0)
            .collect()
    };
    assert!(forecast(&sparse(2), NOW, &cfg()).is_ok());
    assert!(matches!(
        forecast(&sparse(3), NOW, &cfg()),
        Err(ForecastError::InsufficientHistory { have_secs, .. }) if have_secs == 16 * HOUR
    ));
    assert!(matches!(
        forecast(&[], NOW, &cfg()),
        Err(ForecastError::InsufficientHistory { have_secs: 0, .. })
    ));
    // Exactly 24 h is enough; the model is then daily only.
    let f = forecast(&history(NOW - DAY, NOW), NOW, &cfg()).unwrap();
    assert!(
        f.model.starts_with("seasonal-profile(daily)"),
        "{}",
        f.model
    );
    assert_sane(&f);
}

#[test]
fn invalid_settings_are_errors() {
    let h = history(NOW - 2 * DAY, NOW);
    for step in [0, -300, 7, 2 * DAY] {
        let c = ForecastConfig {
            step_secs: step,
            ..cfg()
        };
        assert_eq!(forecast(&h, NOW, &c), Err(ForecastError::InvalidStep(step)));
    }
    let bad = [
        ForecastConfig {
            horizon_secs: 0,
            ..cfg()
        },
        ForecastConfig {
            max_history_secs: HOUR,
            ..cfg()
        },
        ForecastConfig {
            max_history_secs: 100,
            ..cfg()
        },
        ForecastConfig {
            max_history_secs: i64::MAX,
            ..cfg()
        },
        ForecastConfig {
            horizon_secs: 400 * DAY,
            ..cfg()
        },
    ];
    for c in bad {
        assert!(matches!(
            forecast(&h, NOW, &c),
            Err(ForecastError::InvalidConfig { .. })
        ));
    }
    assert!(matches!(
        seasonal_naive(&h, NOW, &cfg(), 1000),
        Err(ForecastError::InvalidConfig {
            field: "season_secs",
            ..
        })
    ));
    assert!(ForecastError::InvalidStep(7)
        .to_string()
        .contains("divide a day"));
}

#[test]
fn only_the_past_is_used() {
    // `now` in the middle of a bin: the bin still filling up and everything after `now`
    // must not matter.
    let now = NOW + 120;
    let past = history(NOW - 14 * DAY, NOW);
    let base = forecast(&past, now, &cfg()).unwrap();
    assert_eq!(base.start, NOW + STEP);
    let mut with_future = past.clone();
    with_future.extend((0..600).map(|k| Point {
        at: NOW + k * 60,
        value: 1e9,
    }));
    with_future.push(Point {
        at: now,
        value: -1.0,
    });
    assert_eq!(forecast(&with_future, now, &cfg()).unwrap(), base);
    assert_eq!(
        seasonal_naive(&with_future, now, &cfg(), DAY).unwrap(),
        seasonal_naive(&past, now, &cfg(), DAY).unwrap()
    );
}

#[test]
fn messy_input_order_duplicates_and_bad_values_are_handled() {
    let clean = history(NOW - 14 * DAY, NOW);
    let base = forecast(&clean, NOW, &cfg()).unwrap();
    // Reversed, every point twice, plus NaN, infinite and negative values.
    let mut messy: Vec<Point> = clean.iter().rev().flat_map(|&p| [p, p]).collect();
    for (k, v) in [f64::NAN, f64::INFINITY, -5.0, f64::NEG_INFINITY]
        .iter()
        .enumerate()
    {
        messy.push(Point {
            at: NOW - (k as i64 + 1) * DAY,
            value: *v,
        });
    }
    assert_eq!(forecast(&messy, NOW, &cfg()).unwrap(), base);
    // A bad duplicate is outvoted: two good copies and one bad, the median is good.
    let mut dup = clean.clone();
    dup.push(Point {
        at: NOW - STEP,
        value: 1e7,
    });
    dup.push(clean[clean.len() - 1]);
    assert_eq!(forecast(&dup, NOW, &cfg()).unwrap(), base);
}

#[test]
fn outputs_are_finite_and_non_negative() {
    // A steep decline that a trend would carry below zero, with bad values mixed in.
    let h: Vec<Point> = (0..14 * DAY / STEP)
        .map(|k| {
            let at = NOW - 14 * DAY + k * STEP;
            let v = 1000.0 - 70.0 * k as f64 * STEP as f64 / DAY as f64;
            Point {
                at,
                value: if k % 97 == 0 {
                    f64::NAN
                } else {
                    v.max(0.0) * (1.0 + noise(k, 0.3))
                },
            }
        })
        .collect();
    let f = forecast(&h, NOW, &cfg()).unwrap();
    assert_sane(&f);
    // All-zero and constant histories.
    let flat = |v: f64| -> Vec<Point> {
        (0..3 * DAY / STEP)
            .map(|k| Point {
                at: NOW - 3 * DAY + k * STEP,
                value: v,
            })
            .collect()
    };
    let zero = forecast(&flat(0.0), NOW, &cfg()).unwrap();
    assert!(zero.values.iter().all(|&v| v == 0.0));
    let seven = forecast(&flat(7.0), NOW, &cfg()).unwrap();
    assert!(
        seven.values.iter().all(|&v| (v - 7.0).abs() < 1e-9),
        "{seven:?}"
    );
    // Huge values do not overflow into NaN.
    let huge: Vec<Point> = history(NOW - 14 * DAY, NOW)
        .into_iter()
        .map(|p| Point {
            value: p.value * 1e290,
            ..p
        })
        .collect();
    assert_sane(&forecast(&huge, NOW, &cfg()).unwrap());
}

#[test]
fn hourly_bins_work_too() {
    let c = ForecastConfig {
        step_secs: HOUR,
        ..cfg()
    };
    let h: Vec<Point> = (0..14 * 24)
        .map(|k| {
            let at = NOW - 14 * DAY + k * HOUR;
            Point {
                at,
                value: truth(at),
            }
        })
        .collect();
    let f = forecast(&h, NOW, &c).unwrap();
    assert_eq!(f.values.len(), 48);
    let (wape, _) = error_vs_truth(&f);
    assert!(wape < 0.03, "WAPE {wape}");
}

#[test]
fn seasonal_naive_copies_the_last_season() {
    let h = history(NOW - 14 * DAY, NOW);
    let value = |at: i64| h.iter().find(|p| p.at == at).unwrap().value;
    let d = seasonal_naive(&h, NOW, &cfg(), DAY).unwrap();
    assert_eq!(d.model, "seasonal-naive(1d)");
    assert_eq!(d.value_at(NOW), Some(value(NOW - DAY)));
    // The second day repeats the last observed day too.
    assert_eq!(d.value_at(NOW + DAY + HOUR), Some(value(NOW + HOUR - DAY)));
    let w = seasonal_naive(&h, NOW, &cfg(), WEEK).unwrap();
    assert_eq!(w.model, "seasonal-naive(7d)");
    assert_eq!(w.value_at(NOW + DAY), Some(value(NOW + DAY - WEEK)));
    // A missing value is taken one more season back.
    let holed: Vec<Point> = h.iter().copied().filter(|p| p.at != NOW - DAY).collect();
    let d = seasonal_naive(&holed, NOW, &cfg(), DAY).unwrap();
    assert_eq!(d.value_at(NOW), Some(value(NOW - 2 * DAY)));
    // A week-long season needs a week of history.
    assert_eq!(
        seasonal_naive(&history(NOW - 3 * DAY, NOW), NOW, &cfg(), WEEK),
        Err(ForecastError::InsufficientHistory {
            have_secs: 3 * DAY,
            need_secs: WEEK
        })
    );
}

#[test]
fn value_at_and_max_between() {
    let f = Forecast {
        start: 1000,
        step_secs: 100,
        values: vec![1.0, 5.0, 2.0, 4.0],
        model: "test".into(),
    };
    assert_eq!(f.end(), 1400);
    assert_eq!(f.value_at(999), None);
    assert_eq!(f.value_at(1000), Some(1.0));
    assert_eq!(f.value_at(1199), Some(5.0));
    assert_eq!(f.value_at(1399), Some(4.0));
    assert_eq!(f.value_at(1400), None);
    assert_eq!(f.max_between(0, 5000), Some(5.0));
    assert_eq!(f.max_between(1200, 1400), Some(4.0));
    // Bins that overlap the interval at all count; an empty interval has no max.
    assert_eq!(f.max_between(1150, 1201), Some(5.0));
    assert_eq!(f.max_between(1250, 1250), None);
    assert_eq!(f.max_between(1300, 1200), None);
    assert_eq!(f.max_between(0, 1000), None);
    assert_eq!(f.max_between(1400, 2000), None);
}

#[test]
fn accuracy_metrics() {
    assert_eq!(wape(&[]), None);
    assert_eq!(wape(&[(1.0, 0.0)]), None);
    let w = wape(&[(110.0, 100.0), (90.0, 100.0), (5.0, 0.0)]).unwrap();
    assert!((w - 0.125).abs() < 1e-12, "{w}");
    assert_eq!(mape(&[(1.0, 0.0)]), None);
    let m = mape(&[(110.0, 100.0), (30.0, 10.0), (5.0, 0.0), (f64::NAN, 1.0)]).unwrap();
    assert!((m - 1.05).abs() < 1e-12, "{m}");
}

#[test]
fn serde_derives_are_present() {
    fn assert_serde<T: Serialize + for<'de> Deserialize<'de>>() {}
    assert_serde::<Point>();
    assert_serde::<ForecastConfig>();
    assert_serde::<Forecast>();
    assert_serde::<ProfileParams>();
}
