//! `capstan simulate`: reads the config and the trace, runs [`crate::simulate`], writes the
//! CSV, the summary, the actions and the plot.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use super::{load_config, print_diags, EXIT_INVALID};
use crate::config::{self, Config};
use crate::policy;

/// Arguments of `capstan simulate`.
#[derive(Debug, clap::Args)]
pub struct SimulateArgs {
    /// Config file or directory; the embedded example config when omitted.
    #[arg(long)]
    pub config: Option<Vec<PathBuf>>,
    /// Target name.
    #[arg(long)]
    pub target: String,
    /// Trace CSV (timestamp,count).
    #[arg(long)]
    pub trace: PathBuf,
    /// Output CSV: timestamp,load,needed,desired,ready per trace bin.
    #[arg(long)]
    pub out: PathBuf,
    /// Also draw the run as an SVG plot.
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// Summary JSON; defaults to the output path with the extension .json.
    #[arg(long)]
    pub summary: Option<PathBuf>,
    /// Also write every scaling action (JSON Lines: at, from, to, reason).
    #[arg(long)]
    pub actions: Option<PathBuf>,
    /// Replay a baseline instead of the target's policies: aws-target-tracking, hpa,
    /// static-peak or clairvoyant (the non-causal limit for the start-up delay; every
    /// summary gives its ratio to it).
    #[arg(long, value_parser = parse_baseline)]
    pub baseline: Option<crate::simulate::Baseline>,
    /// Requests per second one unit serves; derived from the target's predictive or
    /// per-unit policies when omitted.
    #[arg(long)]
    pub unit_capacity: Option<f64>,
    /// Time from a desired increase to ready capacity.
    #[arg(long, default_value = "60s", value_parser = parse_secs)]
    pub startup: u64,
    /// How late the scaler sees the load (metric publication delay).
    #[arg(long, default_value = "60s", value_parser = parse_secs)]
    pub metric_delay: u64,
    /// How often the service publishes a datapoint of each metric (CloudWatch's
    /// resolution); a query at a longer period aggregates several.
    #[arg(long, default_value = "60s", value_parser = parse_secs)]
    pub metric_period: u64,
    /// Time between ticks of the target's policies; the config's global poll_interval when
    /// omitted.
    #[arg(long, value_parser = parse_secs)]
    pub poll_interval: Option<u64>,
    /// Initial capacity (ready at the start); the target's min when omitted.
    #[arg(long)]
    pub initial: Option<u32>,
    /// Multiply the trace's counts by this factor.
    #[arg(long, default_value_t = 1.0)]
    pub load_scale: f64,
    /// Latency at zero load in seconds, for metrics modeled as latency.
    #[arg(long, default_value_t = 0.1)]
    pub base_latency: f64,
    /// Choose how a metric is derived: NAME=MODEL with MODEL one of utilization,
    /// per-unit-count, rate, backlog, latency, none. Repeatable.
    #[arg(long = "metric-model", value_parser = parse_metric_model)]
    pub metric_model: Vec<(String, crate::simulate::MetricModel)>,
}

fn parse_secs(s: &str) -> Result<u64, String> {
    let t = s.trim();
    if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
        return t.parse().map_err(|e| format!("{e}"));
    }
    config::duration::parse_duration(t)
}

fn parse_baseline(s: &str) -> Result<crate::simulate::Baseline, String> {
    s.parse()
}

fn parse_metric_model(s: &str) -> Result<(String, crate::simulate::MetricModel), String> {
    let (name, model) = s
        .split_once('=')
        .ok_or_else(|| format!("`{s}`: write NAME=MODEL, e.g. p99_latency=latency"))?;
    Ok((name.trim().to_string(), model.trim().parse()?))
}

/// The named target of `cfg`, or an error with a hint printed.
fn find_target<'a>(cfg: &'a Config, target_name: &str) -> Option<&'a config::Target> {
    let t = cfg.target(target_name);
    if t.is_none() {
        let names: Vec<&str> = cfg.targets.iter().map(|t| t.name.as_str()).collect();
        let hint = config::diag::closest(target_name, names.iter().copied())
            .map(|c| format!("did you mean `{c}`?"))
            .unwrap_or_else(|| format!("targets: {}", names.join(", ")));
        eprintln!("error: no target `{target_name}` in the config\n  hint: {hint}");
    }
    t
}

/// A progress bar on standard error, drawn only when it is a terminal.
struct Progress {
    on: bool,
    last: i64,
}

impl Progress {
    fn new() -> Self {
        Progress {
            on: std::io::stderr().is_terminal(),
            last: -1,
        }
    }

    fn update(&mut self, done: f64) {
        if !self.on {
            return;
        }
        let pct = (done.clamp(0.0, 1.0) * 100.0).floor() as i64;
        if pct == self.last {
            return;
        }
        self.last = pct;
        let width = 40usize;
        let filled = (pct as usize * width) / 100;
        let mut err = std::io::stderr().lock();
        let _ = write!(
            err,
            "\rsimulating [{}{}] {pct:>3}%",
            "#".repeat(filled),
            " ".repeat(width - filled)
        );
        let _ = err.flush();
    }

    fn finish(&mut self) {
        if self.on && self.last >= 0 {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r{}\r", " ".repeat(60));
            let _ = err.flush();
        }
    }
}

fn write_file(
    path: &std::path::Path,
    what: &str,
    f: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> bool {
    let res = std::fs::File::create(path).and_then(|file| {
        let mut w = std::io::BufWriter::new(file);
        f(&mut w)?;
        w.flush()
    });
    match res {
        Ok(()) => true,
        Err(e) => {
            eprintln!("error: cannot write the {what} {}: {e}", path.display());
            false
        }
    }
}

/// Runs `capstan simulate`; returns the exit code.
pub fn run(a: &SimulateArgs) -> i32 {
    use crate::simulate::{self as sim, Options, ServiceModel, Trace};

    let cfg = match load_config(a.config.as_deref()) {
        Ok(c) => c,
        Err(d) => {
            print_diags(&d);
            return EXIT_INVALID;
        }
    };
    let Some(target) = find_target(&cfg, &a.target) else {
        return EXIT_INVALID;
    };
    let invalid = |msg: String| {
        eprintln!("error: {msg}");
        EXIT_INVALID
    };
    if !(a.load_scale.is_finite() && a.load_scale >= 0.0) {
        return invalid(format!(
            "--load-scale must be a non-negative number, not {}",
            a.load_scale
        ));
    }
    if !(a.base_latency.is_finite() && a.base_latency >= 0.0) {
        return invalid(format!(
            "--base-latency must be a non-negative number, not {}",
            a.base_latency
        ));
    }
    if a.metric_period == 0 {
        return invalid("--metric-period must be at least 1s".into());
    }
    if a.poll_interval == Some(0) {
        return invalid("--poll-interval must be at least 1s".into());
    }
    let text = match read_trace(&a.trace) {
        Ok(t) => t,
        Err(e) => return invalid(format!("{}: {e}", a.trace.display())),
    };
    let trace = match Trace::parse(&a.trace.display().to_string(), &text) {
        Ok(t) => t.scaled(a.load_scale),
        Err(e) => return invalid(e),
    };
    let overrides = a.metric_model.iter().cloned().collect();
    let plans = match sim::plan_metrics(target, &overrides, a.metric_period) {
        Ok(p) => p,
        Err(e) => return invalid(e),
    };
    let unit_capacity = match a.unit_capacity {
        Some(c) if c.is_finite() && c > 0.0 => c,
        Some(c) => return invalid(format!("--unit-capacity must be a positive number, not {c}")),
        None => match sim::derive_unit_capacity(target, &plans) {
            Some((c, why)) => {
                eprintln!("unit capacity: {} requests/s per unit ({why})", policy::num(c));
                c
            }
            None => {
                return invalid(format!(
                    "--unit-capacity is required: no policy of target `{}` says how many requests per second one unit serves",
                    target.name
                ))
            }
        },
    };
    for p in &plans {
        let used = target.policies.iter().any(|q| *q.metric == *p.name);
        if used && p.model == sim::MetricModel::Unmodeled {
            eprintln!(
                "warning: metric `{}` is reported missing: {}",
                p.name, p.why
            );
        }
    }
    let opts = Options {
        service: ServiceModel {
            unit_capacity,
            startup_secs: a.startup,
            metric_delay_secs: a.metric_delay,
            metric_period_secs: a.metric_period,
            base_latency_secs: a.base_latency,
        },
        poll_interval_secs: a.poll_interval.unwrap_or(cfg.global.poll_interval_secs),
        global: cfg.global.clone(),
        initial: a.initial,
        baseline: a.baseline,
    };
    let mut bar = Progress::new();
    let outcome = sim::simulate(target, &plans, &trace, &opts, &mut |d| bar.update(d));
    bar.finish();
    let outcome = match outcome {
        Ok(o) => o,
        Err(e) => return invalid(e),
    };
    let mut ok = write_file(&a.out, "output", |w| {
        sim::report::write_csv(w, &trace, &outcome.replay.bins)
    });
    let summary_path = a.summary.clone().unwrap_or_else(|| {
        let p = a.out.with_extension("json");
        if p == a.out {
            PathBuf::from(format!("{}.summary.json", a.out.display()))
        } else {
            p
        }
    });
    let mut json = serde_json::to_value(&outcome.summary).expect("summaries serialize");
    json["metrics"] = serde_json::to_value(&plans).expect("plans serialize");
    ok &= write_file(&summary_path, "summary", |w| {
        serde_json::to_writer_pretty(&mut *w, &json)?;
        writeln!(w)
    });
    if let Some(p) = &a.actions {
        ok &= write_file(p, "actions", |w| {
            for act in &outcome.replay.actions {
                let line = serde_json::json!({
                    "at": trace.format_time(act.at),
                    "from": act.from,
                    "to": act.to,
                    "reason": act.reason,
                });
                writeln!(w, "{line}")?;
            }
            Ok(())
        });
    }
    if let Some(p) = &a.plot {
        let title = format!(
            "{} ({}) on {}",
            target.name,
            outcome.summary.scaler,
            a.trace
                .file_name()
                .map(|f| f.to_string_lossy())
                .unwrap_or_default()
        );
        let svg = sim::plot::svg(&trace, &outcome.replay.bins, &title);
        ok &= write_file(p, "plot", |w| w.write_all(svg.as_bytes()));
    }
    print!("{}", outcome.summary.human());
    if ok {
        0
    } else {
        1
    }
}

/// The largest trace read: 512 MiB, more rows than a replay of [`crate::simulate::MAX_TICKS`] ticks
/// uses at one row per tick.
pub const MAX_TRACE_BYTES: u64 = 512 << 20;

/// Reads a trace file, at most [`MAX_TRACE_BYTES`] (a device such as `/dev/zero` never
/// ends), as UTF-8 text.
fn read_trace(p: &std::path::Path) -> Result<String, String> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::fs::File::open(p)
        .and_then(|f| f.take(MAX_TRACE_BYTES + 1).read_to_end(&mut bytes))
        .map_err(|e| e.to_string())?;
    if bytes.len() as u64 > MAX_TRACE_BYTES {
        return Err(format!(
            "the trace is larger than {} MiB\n  hint: replay a shorter part of it",
            MAX_TRACE_BYTES >> 20
        ));
    }
    String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        let line = e.as_bytes()[..at].iter().filter(|b| **b == b'\n').count() + 1;
        format!("line {line}: the trace is not UTF-8 text\n  hint: a trace is a CSV file of `timestamp,count` rows")
    })
}
