//! Rolling-origin evaluation of the forecasters on real traces.
//!
//! ```text
//! cargo run --release --example forecast_evaluate -- [options] (--bin SECS TRACE.csv...)...
//!   --bin SECS            bin width for the traces that follow (default 300)
//!   --warmup-days D       first origin D days after the trace start (default 14)
//!   --history-days D      learn from at most D days before each origin (default 14)
//!   --every-hours H       hours between origins (default 24)
//!   --outage START/END    known outage (ISO 8601): bins overlapping it are not scored
//!   --profile K=V,K=V     also score the profile model with these ProfileParams fields
//!                         changed (repeatable), e.g. `--profile trend=false`
//! ```
//!
//! Each CSV has the columns `timestamp,count` (ISO 8601 with a zone). Counts are summed
//! into bins; a bin with fewer source rows than its width holds (a logging gap edge) is
//! dropped, as CloudWatch would have no complete datapoint for it. At each origin every
//! model is fitted on the preceding (up to `--history-days`) bins only, outage zeros
//! included, and forecasts 48 h, scored against the actual bins that exist and are not in
//! a known outage. Prints one markdown table per trace. FORECASTING.md has the runs.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Instant;

use capstan::forecast;

use forecast::{
    forecast, forecast_with, holt_winters, mape, seasonal_naive, wape, Forecast, ForecastConfig,
    ForecastError, Point, ProfileParams,
};

const DAY: i64 = 86_400;

struct Options {
    warmup_days: i64,
    history_days: i64,
    every_hours: i64,
    outages: Vec<(i64, i64)>,
    profiles: Vec<String>,
    traces: Vec<(String, i64)>,
}

fn parse_args() -> Result<Options, String> {
    let mut o = Options {
        warmup_days: 14,
        history_days: 14,
        every_hours: 24,
        outages: Vec::new(),
        profiles: Vec::new(),
        traces: Vec::new(),
    };
    let mut bin = 300;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match a.as_str() {
            "--bin" => bin = value("--bin")?.parse().map_err(|e| format!("--bin: {e}"))?,
            "--warmup-days" => {
                o.warmup_days = value("--warmup-days")?
                    .parse()
                    .map_err(|e| format!("--warmup-days: {e}"))?
            }
            "--history-days" => {
                o.history_days = value("--history-days")?
                    .parse()
                    .map_err(|e| format!("--history-days: {e}"))?
            }
            "--every-hours" => {
                o.every_hours = value("--every-hours")?
                    .parse()
                    .map_err(|e| format!("--every-hours: {e}"))?
            }
            "--outage" => {
                let v = value("--outage")?;
                let (s, e) = v.split_once('/').ok_or("--outage wants START/END")?;
                o.outages.push((parse_iso(s)?, parse_iso(e)?));
            }
            "--profile" => o.profiles.push(value("--profile")?),
            "-h" | "--help" => return Err(String::new()),
            path => o.traces.push((path.to_string(), bin)),
        }
    }
    if o.traces.is_empty() {
        return Err("no trace given".into());
    }
    Ok(o)
}

/// Parses `YYYY-MM-DDTHH:MM:SS` followed by `Z` or `±HH:MM` into unix seconds.
fn parse_iso(s: &str) -> Result<i64, String> {
    let bad = || format!("bad timestamp {s:?}");
    let num = |r: std::ops::Range<usize>| -> Result<i64, String> {
        s.get(r).ok_or_else(bad)?.parse::<i64>().map_err(|_| bad())
    };
    if s.len() < 20 || s.as_bytes()[10] != b'T' {
        return Err(bad());
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, se) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let zone = &s[19..];
    let offset = if zone == "Z" {
        0
    } else {
        let sign = match zone.as_bytes()[0] {
            b'+' => 1,
            b'-' => -1,
            _ => return Err(bad()),
        };
        sign * (num(20..22)? * 3600 + num(23..25)? * 60)
    };
    // Days from civil (Howard Hinnant's algorithm).
    let yy = if mo <= 2 { y - 1 } else { y };
    let era = yy.div_euclid(400);
    let yoe = yy - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Ok(days * DAY + h * 3600 + mi * 60 + se - offset)
}

/// Reads a trace and sums it into complete bins of `bin` seconds.
fn load(path: &str, bin: i64) -> Result<Vec<Point>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    let mut rows = Vec::new();
    for (n, line) in text.lines().enumerate().skip(1) {
        let (ts, count) = line
            .split_once(',')
            .ok_or(format!("{path}:{}: no comma", n + 1))?;
        let count: f64 = count
            .trim()
            .parse()
            .map_err(|e| format!("{path}:{}: {e}", n + 1))?;
        rows.push((parse_iso(ts.trim())?, count));
    }
    rows.sort_by_key(|r| r.0);
    let resolution = rows
        .windows(2)
        .map(|w| w[1].0 - w[0].0)
        .filter(|&d| d > 0)
        .min()
        .ok_or(format!("{path}: fewer than two rows"))?;
    if bin % resolution != 0 {
        return Err(format!(
            "{path}: bin {bin} s is not a multiple of the {resolution} s rows"
        ));
    }
    let mut bins: BTreeMap<i64, (f64, i64)> = BTreeMap::new();
    for (t, c) in rows {
        let e = bins.entry(t.div_euclid(bin) * bin).or_insert((0.0, 0));
        e.0 += c;
        e.1 += 1;
    }
    Ok(bins
        .into_iter()
        .filter(|(_, (_, n))| *n == bin / resolution)
        .map(|(at, (value, _))| Point { at, value })
        .collect())
}

/// Parses `key=value,...` into [`ProfileParams`] changed from the default.
fn profile_params(spec: &str) -> Result<ProfileParams, String> {
    let mut p = ProfileParams::default();
    for kv in spec.split(',').filter(|s| !s.is_empty()) {
        let (k, v) = kv.split_once('=').ok_or(format!("{kv}: want key=value"))?;
        let f = || v.parse::<f64>().map_err(|e| format!("{k}: {e}"));
        let i = || v.parse::<i64>().map_err(|e| format!("{k}: {e}"));
        let b = || v.parse::<bool>().map_err(|e| format!("{k}: {e}"));
        match k {
            "weekly" => p.weekly = b()?,
            "daily_smooth_secs" => p.daily_smooth_secs = i()?,
            "weekly_smooth_secs" => p.weekly_smooth_secs = i()?,
            "weekly_shrink" => p.weekly_shrink = f()?,
            "outage_zeros" => p.outage_zeros = b()?,
            "outlier_k" => p.outlier_k = f()?,
            "outlier_min_log" => p.outlier_min_log = f()?,
            "iterations" => p.iterations = i()? as usize,
            "recent_weight" => p.recent_weight = f()?,
            "level_days" => p.level_days = i()? as usize,
            "trend" => p.trend = b()?,
            "trend_damping" => p.trend_damping = f()?,
            "trend_min_z" => p.trend_min_z = f()?,
            "max_trend_per_day" => p.max_trend_per_day = f()?,
            "short_term_secs" => p.short_term_secs = i()?,
            "short_term_decay_secs" => p.short_term_decay_secs = i()?,
            _ => return Err(format!("unknown field {k}")),
        }
    }
    Ok(p)
}

/// The bin-wise mean of two forecasts of the same grid.
fn mean_of(mut a: Forecast, b: &Forecast) -> Forecast {
    for (x, y) in a.values.iter_mut().zip(&b.values) {
        *x = 0.5 * (*x + y);
    }
    a.model = format!("mean({}, {})", a.model, b.model);
    a
}

type Model = Box<dyn Fn(&[Point], i64, &ForecastConfig) -> Result<Forecast, ForecastError>>;

fn models(specs: &[String]) -> Vec<(String, Model)> {
    let mut m: Vec<(String, Model)> = vec![
        (
            "seasonal-naive(1d)".into(),
            Box::new(|h, now, c| seasonal_naive(h, now, c, DAY)),
        ),
        (
            "seasonal-naive(7d)".into(),
            Box::new(|h, now, c| seasonal_naive(h, now, c, 7 * DAY)),
        ),
        (
            "holt-winters(additive,daily)".into(),
            Box::new(|h, now, c| holt_winters(h, now, c, false)),
        ),
        (
            "holt-winters(multiplicative,daily)".into(),
            Box::new(|h, now, c| holt_winters(h, now, c, true)),
        ),
    ];
    m.push((
        "blend: mean(profile, naive(7d))".into(),
        Box::new(|h, now, c| {
            let a = forecast_with(h, now, c, &ProfileParams::default())?;
            let b = seasonal_naive(h, now, c, 7 * DAY)?;
            Ok(mean_of(a, &b))
        }),
    ));
    m.push((
        "blend: mean(profile, holt-winters(mult))".into(),
        Box::new(|h, now, c| {
            let a = forecast_with(h, now, c, &ProfileParams::default())?;
            let b = holt_winters(h, now, c, true)?;
            Ok(mean_of(a, &b))
        }),
    ));
    let mut profile = |name: &str, p: ProfileParams| {
        m.push((
            name.to_string(),
            Box::new(move |h, now, c| forecast_with(h, now, c, &p)),
        ));
    };
    profile("**seasonal-profile (default)**", ProfileParams::default());
    for spec in specs {
        match profile_params(spec) {
            Ok(p) => profile(&format!("profile: {spec}"), p),
            Err(e) => eprintln!("ignoring --profile {spec:?}: {e}"),
        }
    }
    m
}

#[derive(Default)]
struct Score {
    pairs: Vec<(f64, f64)>,
    by_day: [Vec<(f64, f64)>; 2],
    /// Pairs with each origin's forecast rescaled to the actual 48 h total: the error
    /// left when the level is known (shape error only).
    oracle_level: Vec<(f64, f64)>,
    /// WAPE of each origin, `None` where the model refused.
    per_origin: Vec<Option<f64>>,
    origins: usize,
    errors: usize,
    secs: Vec<f64>,
}

/// Median absolute percentage error over the pairs with an actual above zero.
fn mdape(pairs: &[(f64, f64)]) -> Option<f64> {
    let mut ape: Vec<f64> = pairs
        .iter()
        .filter(|(_, a)| *a > 0.0)
        .map(|(f, a)| (f - a).abs() / a)
        .collect();
    if ape.is_empty() {
        return None;
    }
    ape.sort_by(f64::total_cmp);
    Some(ape[ape.len() / 2])
}

/// `won/compared` over the origins where both scored.
fn wins(model: &[Option<f64>], reference: &[Option<f64>]) -> String {
    let (mut won, mut compared) = (0, 0);
    for (m, r) in model.iter().zip(reference) {
        if let (Some(m), Some(r)) = (m, r) {
            compared += 1;
            won += usize::from(m < r);
        }
    }
    format!("{won}/{compared}")
}

fn evaluate(path: &str, bin: i64, o: &Options) -> Result<(), String> {
    let points = load(path, bin)?;
    if points.is_empty() {
        return Err(format!("{path}: no complete {bin} s bin"));
    }
    let cfg = ForecastConfig {
        step_secs: bin,
        max_history_secs: o.history_days * DAY,
        ..ForecastConfig::default()
    };
    let actual: BTreeMap<i64, f64> = points.iter().map(|p| (p.at, p.value)).collect();
    let in_outage = |t: i64| o.outages.iter().any(|&(s, e)| t < e && t + bin > s);
    let first = points[0].at;
    let last_end = points[points.len() - 1].at + bin;
    let models = models(&o.profiles);
    let mut scores: Vec<Score> = models.iter().map(|_| Score::default()).collect();
    let (mut n_origins, mut excluded, mut missing) = (0usize, 0usize, 0usize);
    let mut origin = first + o.warmup_days * DAY;
    while origin + cfg.horizon_secs <= last_end {
        n_origins += 1;
        let past = &points[..points.partition_point(|p| p.at < origin)];
        let history = &past[past.partition_point(|p| p.at < origin - cfg.max_history_secs)..];
        let targets: Vec<(i64, Option<f64>)> = (0..cfg.horizon_secs / bin)
            .map(|k| {
                let t = origin + k * bin;
                (t, actual.get(&t).copied().filter(|_| !in_outage(t)))
            })
            .collect();
        for (t, a) in &targets {
            if a.is_none() {
                if actual.contains_key(t) {
                    excluded += 1;
                } else {
                    missing += 1;
                }
            }
        }
        for ((_, model), score) in models.iter().zip(scores.iter_mut()) {
            let started = Instant::now();
            let result = model(history, origin, &cfg);
            score.secs.push(started.elapsed().as_secs_f64());
            let Ok(fc) = result else {
                score.errors += 1;
                score.per_origin.push(None);
                continue;
            };
            score.origins += 1;
            let first_pair = score.pairs.len();
            for &(t, a) in &targets {
                if let (Some(a), Some(f)) = (a, fc.value_at(t)) {
                    score.pairs.push((f, a));
                    score.by_day[((t - origin) / DAY).min(1) as usize].push((f, a));
                }
            }
            let new = &score.pairs[first_pair..];
            let (sf, sa) = new.iter().fold((0.0, 0.0), |(x, y), p| (x + p.0, y + p.1));
            let k = if sf > 0.0 { sa / sf } else { 1.0 };
            let rescaled: Vec<(f64, f64)> = new.iter().map(|&(f, a)| (f * k, a)).collect();
            score.oracle_level.extend(rescaled);
            score.per_origin.push(wape(new));
        }
        origin += o.every_hours * 3600;
    }
    let pct = |v: Option<f64>| v.map_or("n/a".into(), |v| format!("{:.2}%", 100.0 * v));
    println!("### {path} ({bin} s bins)\n");
    if n_origins == 0 {
        // Too short to evaluate: show what the forecaster says about the whole trace.
        let outcome = match forecast(&points, last_end, &cfg) {
            Ok(f) => format!("a forecast by {}", f.model),
            Err(e) => format!("error: {e}"),
        };
        println!(
            "No origin: the trace spans {:.1} h of complete bins, fewer than {} days of warm-up plus the 48 h horizon. \
             Forecasting from the whole trace gives {outcome}.\n",
            (last_end - first) as f64 / 3600.0,
            o.warmup_days
        );
        return Ok(());
    }
    println!(
        "{n_origins} origins every {} h from {} days after the start; 48 h horizon; up to {} days of history \
         (outage zeros included: the models see them).",
        o.every_hours, o.warmup_days, o.history_days
    );
    println!(
        "Not scored: {excluded} target bins in a known outage, {missing} target bins absent or incomplete in the trace.\n"
    );
    println!(
        "| model | MAPE (actual>0) | WAPE | origins | scored bins | MdAPE | WAPE 0-24 h | WAPE 24-48 h | WAPE if level known | origins better than naive(7d) | fit time mean / max |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let reference = &scores[1].per_origin;
    for ((name, _), s) in models.iter().zip(&scores) {
        let mean_ms = 1e3 * s.secs.iter().sum::<f64>() / s.secs.len().max(1) as f64;
        let max_ms = 1e3 * s.secs.iter().copied().fold(0.0, f64::max);
        let refused = if s.errors > 0 {
            format!(" ({} refused)", s.errors)
        } else {
            String::new()
        };
        println!(
            "| {name} | {} | {} | {}{refused} | {} | {} | {} | {} | {} | {} | {mean_ms:.2} / {max_ms:.2} ms |",
            pct(mape(&s.pairs)),
            pct(wape(&s.pairs)),
            s.origins,
            s.pairs.len(),
            pct(mdape(&s.pairs)),
            pct(wape(&s.by_day[0])),
            pct(wape(&s.by_day[1])),
            pct(wape(&s.oracle_level)),
            wins(&s.per_origin, reference),
        );
    }
    println!();
    Ok(())
}

fn main() -> ExitCode {
    let o = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("error: {e}");
            }
            eprintln!("usage: evaluate [--warmup-days D] [--history-days D] [--every-hours H] [--outage START/END]... [--profile K=V,...]... (--bin SECS TRACE.csv...)...");
            return ExitCode::from(2);
        }
    };
    for (path, bin) in &o.traces {
        if let Err(e) = evaluate(path, *bin, &o) {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}
