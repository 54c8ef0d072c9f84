//! The `capstan` command line: argument types and the subcommands. `main.rs` only parses
//! and calls [`run`].

use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::path::PathBuf;

use clap::{Parser, Subcommand};
use serde::Deserialize;

use crate::config::{self, Config, Diagnostic};
use crate::policy::{self, ForecastSeries, History, Observation, Sample};

mod ops;
mod simulate;
pub use ops::{AlarmsArgs, CloudFormationArgs, DashboardArgs, HealthcheckArgs, IamPolicyArgs};
pub use simulate::SimulateArgs;

/// Exit code for invalid input (config errors, malformed observations).
pub const EXIT_INVALID: i32 = 2;

#[derive(Debug, Parser)]
#[command(
    name = "capstan",
    version,
    about = "AWS-native autoscaling control plane: target tracking, step, scheduled and predictive policies, with an explanation for every decision"
)]
pub struct Cli {
    /// Log format: `json` (one object per line, for CloudWatch Logs), `text`, or `auto`
    /// (text on a terminal, JSON otherwise). Verbosity comes from CAPSTAN_LOG (e.g. `debug`).
    #[arg(long, global = true, default_value = "auto", value_parser = ["auto", "json", "text"])]
    pub log_format: String,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check config files or directories; print every error with file:line:column and a hint.
    /// Exits 0 when valid, 2 when not.
    Validate {
        /// Config files or directories of .toml files (merged: one [global], unique names).
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Print the JSON Schema of the config file format (for editor completion).
    Schema,
    /// The local demo: start the AWS emulator, provision a small shop, drive a flash sale
    /// and show capstan scaling each target out and back in, with reasons (about two
    /// minutes; needs python3 for the emulator; run from the repository root).
    Demo {
        /// How long the sale lasts, in seconds.
        #[arg(long, default_value_t = 120)]
        seconds: u64,
    },
    /// Run the daemon: every poll interval observe all targets, decide, and act.
    ///
    /// Uses the AWS SDK's standard credential chain and region, and AWS_ENDPOINT_URL when
    /// set. SIGHUP reloads the config (an invalid one is refused and the old one keeps
    /// running); SIGTERM or SIGINT finish the tick, release the lease and exit 0. Serves
    /// /healthz, /readyz, /metrics, /v1/targets, /v1/decisions and a status page at / on
    /// [global] http_listen (default 127.0.0.1:8080, "off" for none).
    Run {
        /// Config file or directory.
        #[arg(long, required = true)]
        config: Vec<PathBuf>,
        /// Decide and log, never call a mutating AWS API (also `dry_run = true` in config).
        #[arg(long)]
        dry_run: bool,
        /// Log every decision, not only changes.
        #[arg(long)]
        log_all: bool,
        /// Stop after this many ticks (for tests).
        #[arg(long, hide = true)]
        ticks: Option<u64>,
    },
    /// Feed observations (JSON Lines) to the decision core and print one decision per line.
    ///
    /// Each input line is like
    /// {"at":"2026-11-27T10:00:00Z","current":3,"ready":3,"metrics":{"cpu":85.0,"backlog":null}}.
    /// History is kept across lines as the daemon keeps it; a line without "current" takes the
    /// previous decision's capacity. Output lines carry at, target, current, desired, action,
    /// reason and the structured explanation.
    Decide {
        /// Config file or directory; the embedded example config when omitted.
        #[arg(long)]
        config: Option<Vec<PathBuf>>,
        /// Target name.
        #[arg(long)]
        target: String,
        /// JSON Lines file of observations; standard input when omitted.
        #[arg(long)]
        input: Option<PathBuf>,
        /// Print only at, current, desired and reason.
        #[arg(long)]
        brief: bool,
    },
    /// Replay a request-rate trace through a target's policies (or a baseline) with a model
    /// of the service; write one CSV row per trace bin and a summary.
    ///
    /// The trace is CSV with the columns timestamp,count (requests per bin). Durations are
    /// written like 90s, 5m or 1h (a bare number is seconds). See docs/simulate.md.
    Simulate(Box<SimulateArgs>),
    /// Print the CloudWatch dashboard of the config's targets (load vs target, capacity,
    /// forecast, decisions), or write it with PutDashboard (--apply).
    Dashboard(DashboardArgs),
    /// Print CloudWatch alarms per target (pinned at max, metrics missing, no data,
    /// actuation failing), or write them with PutMetricAlarm (--apply).
    Alarms(AlarmsArgs),
    /// Print the least-privilege IAM policy of the daemon for exactly the configured
    /// resources.
    IamPolicy(IamPolicyArgs),
    /// Print a CloudFormation template running capstan on ECS Fargate for this config
    /// (replicas sharing the lease, task role, log group, table, dashboard).
    Cloudformation(CloudFormationArgs),
    /// GET /healthz of a running daemon; exit 0 on a 200, 1 otherwise (for container
    /// health checks).
    #[command(hide = true)]
    Healthcheck(HealthcheckArgs),
}

/// Runs a parsed command; returns the process exit code.
pub fn run(cli: Cli) -> i32 {
    match cli.command {
        Command::Validate { paths } => validate(&paths),
        Command::Schema => {
            println!(
                "{}",
                serde_json::to_string_pretty(&config::json_schema()).expect("schema serializes")
            );
            0
        }
        Command::Demo { seconds } => match runtime() {
            Ok(rt) => rt.block_on(crate::demo::run(std::path::Path::new("."), seconds)),
            Err(code) => code,
        },
        Command::Run {
            config,
            dry_run,
            log_all,
            ticks,
        } => {
            let rt = match runtime() {
                Ok(rt) => rt,
                Err(code) => return code,
            };
            rt.block_on(crate::daemon::serve(
                config,
                crate::daemon::RunOptions {
                    dry_run,
                    log_all,
                    max_ticks: ticks,
                },
            ))
        }
        Command::Decide {
            config,
            target,
            input,
            brief,
        } => decide(config.as_deref(), &target, input.as_deref(), brief),
        Command::Simulate(args) => simulate::run(&args),
        Command::Dashboard(a) => ops::dashboard(&a),
        Command::Alarms(a) => ops::alarms(&a),
        Command::IamPolicy(a) => ops::iam_policy(&a),
        Command::Cloudformation(a) => ops::cloudformation(&a),
        Command::Healthcheck(a) => ops::healthcheck(&a),
    }
}

fn print_diags(diags: &[Diagnostic]) {
    let mut err = std::io::stderr().lock();
    for d in diags {
        let _ = writeln!(err, "error: {d}");
    }
    let n = diags.len();
    let _ = writeln!(err, "{n} error{}", if n == 1 { "" } else { "s" });
}

fn validate(paths: &[PathBuf]) -> i32 {
    match config::load(paths) {
        Ok(cfg) => {
            let files = config::expand_paths(paths).map(|f| f.len()).unwrap_or(0);
            println!(
                "ok: {} target{} in {files} file{}",
                cfg.targets.len(),
                if cfg.targets.len() == 1 { "" } else { "s" },
                if files == 1 { "" } else { "s" }
            );
            0
        }
        Err(diags) => {
            print_diags(&diags);
            EXIT_INVALID
        }
    }
}

/// One input line of `capstan decide`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DecideInput {
    at: chrono::DateTime<chrono::Utc>,
    current: Option<u32>,
    #[serde(default)]
    ready: Option<u32>,
    #[serde(default)]
    metrics: std::collections::BTreeMap<String, Option<Sample>>,
    #[serde(default)]
    scale_in_blocked: Option<String>,
    #[serde(default)]
    forecast: Option<ForecastSeries>,
}

fn load_config(paths: Option<&[PathBuf]>) -> Result<Config, Vec<Diagnostic>> {
    match paths {
        Some(p) => config::load(p),
        None => config::from_str("<embedded config/example.toml>", config::EMBEDDED_EXAMPLE),
    }
}

fn decide(
    paths: Option<&[PathBuf]>,
    target_name: &str,
    input: Option<&std::path::Path>,
    brief: bool,
) -> i32 {
    let cfg = match load_config(paths) {
        Ok(c) => c,
        Err(d) => {
            print_diags(&d);
            return EXIT_INVALID;
        }
    };
    let Some(target) = cfg.target(target_name) else {
        let names: Vec<&str> = cfg.targets.iter().map(|t| t.name.as_str()).collect();
        let hint = config::diag::closest(target_name, names.iter().copied())
            .map(|c| format!("did you mean `{c}`?"))
            .unwrap_or_else(|| format!("targets: {}", names.join(", ")));
        eprintln!("error: no target `{target_name}` in the config\n  hint: {hint}");
        return EXIT_INVALID;
    };
    let (reader, source): (Box<dyn BufRead>, String) = match input {
        Some(p) => match std::fs::File::open(p) {
            Ok(f) => (Box::new(BufReader::new(f)), p.display().to_string()),
            Err(e) => {
                eprintln!("error: {}: {e}", p.display());
                return EXIT_INVALID;
            }
        },
        None => {
            if std::io::stdin().is_terminal() {
                eprintln!("reading observations (JSON Lines) from standard input; end with Ctrl-D");
            }
            (
                Box::new(BufReader::new(std::io::stdin())),
                "<stdin>".to_string(),
            )
        }
    };
    let mut out = std::io::stdout().lock();
    decide_lines(
        target,
        reader,
        &source,
        brief,
        &mut out,
        &mut std::io::stderr(),
    )
}

/// The `decide` loop: one decision per JSON Lines observation, the history kept across
/// lines. Each decision is written to `out`; the first bad line is reported to `err` with
/// its line (and column), a hint, and exit code 2. Returns the exit code.
pub fn decide_lines(
    target: &config::Target,
    reader: impl BufRead,
    source: &str,
    brief: bool,
    out: &mut impl Write,
    err: &mut impl Write,
) -> i32 {
    let mut history = History::default();
    let mut last: Option<u32> = None;
    let mut last_at: Option<chrono::DateTime<chrono::Utc>> = None;
    let mut reader = reader;
    let mut bytes = Vec::new();
    for i in 0.. {
        // One line at a time, at most MAX_LINE_BYTES of it: input that never ends a line
        // (`--input /dev/zero`) is refused instead of read until memory runs out.
        bytes.clear();
        let read =
            std::io::Read::take(&mut reader, MAX_LINE_BYTES + 1).read_until(b'\n', &mut bytes);
        match read {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                let _ = writeln!(err, "error: {source}:{}: {e}", i + 1);
                return EXIT_INVALID;
            }
        }
        if bytes.len() as u64 > MAX_LINE_BYTES {
            let _ = writeln!(
                err,
                "error: {source}:{}: the line is longer than {} MiB\n  hint: one JSON object per line",
                i + 1,
                MAX_LINE_BYTES >> 20
            );
            return EXIT_INVALID;
        }
        let line = match std::str::from_utf8(&bytes) {
            Ok(l) => l,
            Err(e) => {
                let _ = writeln!(
                    err,
                    "error: {source}:{}:{}: the line is not UTF-8 text\n  hint: JSON Lines are UTF-8",
                    i + 1,
                    bytes[..e.valid_up_to()].iter().filter(|b| (**b & 0xc0) != 0x80).count() + 1
                );
                return EXIT_INVALID;
            }
        };
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let parsed: DecideInput = match serde_json::from_str(trimmed) {
            Ok(p) => p,
            Err(e) => {
                let _ = writeln!(err, "error: {source}:{}:{}: {e}", i + 1, e.column());
                let _ = writeln!(err, "  hint: one JSON object per line, e.g. {{\"at\":\"2026-11-27T10:00:00Z\",\"current\":3,\"metrics\":{{\"cpu\":85.0}}}}");
                return EXIT_INVALID;
            }
        };
        let Some(current) = parsed.current.or(last) else {
            let _ = writeln!(
                err,
                "error: {source}:{}: the first observation needs \"current\"",
                i + 1
            );
            return EXIT_INVALID;
        };
        let too_big = [Some(current), parsed.ready]
            .into_iter()
            .flatten()
            .find(|c| *c as i64 > config::validate::MAX_CAPACITY);
        if let Some(c) = too_big {
            let _ = writeln!(
                err,
                "error: {source}:{}: capacity {c} is larger than {}",
                i + 1,
                config::validate::MAX_CAPACITY
            );
            return EXIT_INVALID;
        }
        if let Err(e) = input_limits(&parsed) {
            let _ = writeln!(err, "error: {source}:{}: {e}", i + 1);
            return EXIT_INVALID;
        }
        if let Some(prev) = last_at.filter(|prev| parsed.at < *prev) {
            let _ = writeln!(
                err,
                "error: {source}:{}: time {} is before the previous line's {prev}",
                i + 1,
                parsed.at.to_rfc3339()
            );
            let _ = writeln!(err, "  hint: observations must come in time order");
            return EXIT_INVALID;
        }
        last_at = Some(parsed.at);
        let obs = Observation {
            at: parsed.at,
            current,
            ready: parsed.ready,
            metrics: parsed.metrics.into(),
            scale_in_blocked: parsed.scale_in_blocked,
            forecast: parsed.forecast.map(std::sync::Arc::new),
        };
        let d = policy::decide(target, &obs, &history);
        history.record(target, &d, true);
        last = Some(d.desired);
        let json = if brief {
            serde_json::json!({"at": d.at, "current": d.current, "desired": d.desired, "reason": d.reason()})
        } else {
            d.to_json()
        };
        if writeln!(out, "{json}").is_err() {
            return 0; // Output closed (e.g. piped into head).
        }
    }
    0
}

/// The longest input line `capstan decide` reads (a line of 80,000 metrics is about 1 MiB).
pub const MAX_LINE_BYTES: u64 = 64 << 20;

/// The longest forecast bin `capstan decide` accepts (a day; the forecaster's are minutes).
pub const MAX_FORECAST_STEP_SECS: u64 = 86_400;

/// Times and forecast bins the core can work with: an error and its hint otherwise.
fn input_limits(p: &DecideInput) -> Result<(), String> {
    let hint = "\n  hint: times are RFC 3339 instants between 1678 and 2261, e.g. \"2026-11-27T10:00:00Z\"";
    policy::check_time(p.at).map_err(|e| format!("\"at\": {e}{hint}"))?;
    if let Some(f) = &p.forecast {
        policy::check_time(f.start).map_err(|e| format!("\"forecast.start\": {e}{hint}"))?;
        if !(1..=MAX_FORECAST_STEP_SECS).contains(&f.step_secs) {
            return Err(format!(
                "\"forecast.step_secs\" is {}, not between 1 and {MAX_FORECAST_STEP_SECS}\n  hint: the length of one forecast bin in seconds, e.g. 300",
                f.step_secs
            ));
        }
    }
    Ok(())
}

fn runtime() -> Result<tokio::runtime::Runtime, i32> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("error: cannot start the async runtime: {e}");
            1
        })
}

impl Cli {
    /// The log level when CAPSTAN_LOG is not set: the daemon logs its decisions (info);
    /// the one-shot commands print their own output and log only problems.
    pub fn default_log_level(&self) -> &'static str {
        match self.command {
            Command::Run { .. } => "info",
            _ => "warn",
        }
    }
}

/// SDK log targets that print credentials: the profile provider logs the resolved
/// credentials (their access key id; the secret and session token are redacted) at info,
/// and these targets print credentials and signing parameters at debug and trace.
const SDK_CREDENTIAL_TARGETS: &[&str] = &[
    "aws_smithy_runtime",
    "aws_sigv4",
    "aws_credential_types",
    "aws_config",
    "aws_runtime",
];

/// Whether an event is kept: below warn, nothing of [`SDK_CREDENTIAL_TARGETS`], whatever
/// `CAPSTAN_LOG` asks (a directive naming a module of theirs included).
pub fn log_event_allowed(target: &str, level: &tracing::Level) -> bool {
    *level <= tracing::Level::WARN
        || !SDK_CREDENTIAL_TARGETS.iter().any(|t| {
            target
                .strip_prefix(t)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with("::"))
        })
}

/// Starts logging to standard error: JSON lines or readable text. Every line passes
/// [`crate::http::redact::redact`] on its way out, as a safety net for credentials that
/// other code might log.
pub fn init_logging(format: &str, default_level: &str) {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    use tracing_subscriber::Layer as _;

    let filter = tracing_subscriber::EnvFilter::try_from_env("CAPSTAN_LOG")
        .unwrap_or_else(|_| default_level.into());
    let quiet_sdk =
        tracing_subscriber::filter::filter_fn(|m| log_event_allowed(m.target(), m.level()));
    let json = match format {
        "json" => true,
        "text" => false,
        _ => !std::io::stderr().is_terminal(),
    };
    let writer = || crate::http::redact::Redacting(std::io::stderr());
    let layer = tracing_subscriber::fmt::layer().with_writer(writer);
    let registry = tracing_subscriber::registry().with(filter);
    if json {
        let layer = layer
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_filter(quiet_sdk);
        registry.with(layer).init();
    } else {
        registry.with(layer.with_filter(quiet_sdk)).init();
    }
}
