//! The operating commands: `dashboard`, `alarms`, `iam-policy`, `cloudformation` and the
//! hidden `healthcheck`.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::{print_diags, runtime, EXIT_INVALID};
use crate::aws::{sdk_config, AwsSettings};
use crate::config::{self, Config};
use crate::ops::{alarms, cloudformation, dashboard, healthcheck, iam};

#[derive(Debug, Args)]
pub struct DashboardArgs {
    /// Config file or directory.
    #[arg(long, required = true)]
    pub config: Vec<PathBuf>,
    /// Dashboard name.
    #[arg(long, default_value = "capstan")]
    pub name: String,
    /// Region of the metrics; default: the config's `[global] region`, then AWS_REGION.
    #[arg(long)]
    pub region: Option<String>,
    /// Write it with PutDashboard instead of printing it.
    #[arg(long)]
    pub apply: bool,
}

#[derive(Debug, Args)]
pub struct AlarmsArgs {
    /// Config file or directory.
    #[arg(long, required = true)]
    pub config: Vec<PathBuf>,
    /// SNS topic ARN notified on ALARM and OK.
    #[arg(long)]
    pub sns_topic: Option<String>,
    /// Minutes at max capacity before the pinned-at-max alarm fires.
    #[arg(long, default_value_t = 15, value_parser = clap::value_parser!(u32).range(1..=1440))]
    pub pinned_minutes: u32,
    /// Region for --apply; default: the config's, then the SDK's chain.
    #[arg(long)]
    pub region: Option<String>,
    /// Write them with PutMetricAlarm instead of printing them.
    #[arg(long)]
    pub apply: bool,
}

#[derive(Debug, Args)]
pub struct IamPolicyArgs {
    /// Config file or directory.
    #[arg(long, required = true)]
    pub config: Vec<PathBuf>,
    /// AWS account id in the ARNs; `*` (any account) when omitted.
    #[arg(long)]
    pub account: Option<String>,
    /// Region in the ARNs; default: the config's `[global] region`, else `*`.
    #[arg(long)]
    pub region: Option<String>,
    /// ARN partition (aws, aws-cn, aws-us-gov).
    #[arg(long, default_value = "aws")]
    pub partition: String,
}

#[derive(Debug, Args)]
pub struct CloudFormationArgs {
    /// One config file: it is stored in the stack's SSM parameter.
    #[arg(long)]
    pub config: PathBuf,
    /// Replicas of the ECS service; more than one needs `[global.lease] enabled = true`.
    #[arg(long, default_value_t = 2)]
    pub replicas: u32,
}

#[derive(Debug, Args)]
pub struct HealthcheckArgs {
    /// URL to GET; default: /healthz on the config's http_listen, else 127.0.0.1:8080.
    #[arg(long)]
    pub url: Option<String>,
    /// Config file or directory whose `[global] http_listen` to check.
    #[arg(long)]
    pub config: Option<Vec<PathBuf>>,
    /// Timeout in milliseconds.
    #[arg(long, default_value_t = 3000)]
    pub timeout_ms: u64,
}

fn load(paths: &[PathBuf]) -> Result<Config, i32> {
    config::load(paths).map_err(|d| {
        print_diags(&d);
        EXIT_INVALID
    })
}

fn print_json(v: &serde_json::Value) -> i32 {
    println!(
        "{}",
        serde_json::to_string_pretty(v).expect("JSON serializes")
    );
    0
}

fn warn_if_off(cfg: &Config) {
    if cfg.global.metrics == config::MetricsSink::Off {
        eprintln!(
            "warning: [global] metrics = \"off\": capstan publishes no metrics, so these widgets and alarms get no data"
        );
    }
}

async fn sdk(region: Option<String>) -> aws_config::SdkConfig {
    sdk_config(&AwsSettings {
        region,
        ..AwsSettings::default()
    })
    .await
}

fn env_region() -> Option<String> {
    ["AWS_REGION", "AWS_DEFAULT_REGION"]
        .iter()
        .find_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
}

pub fn dashboard(a: &DashboardArgs) -> i32 {
    let cfg = match load(&a.config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    warn_if_off(&cfg);
    let Some(region) = a
        .region
        .clone()
        .or_else(|| cfg.global.region.clone())
        .or_else(env_region)
    else {
        eprintln!("error: no region for the dashboard's metrics\n  hint: set [global] region in the config, AWS_REGION, or pass --region");
        return EXIT_INVALID;
    };
    let body = dashboard::body(&cfg, &region);
    if !a.apply {
        return print_json(&body);
    }
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    rt.block_on(async {
        let client = aws_sdk_cloudwatch::Client::new(&sdk(Some(region)).await);
        match crate::ops::apply_dashboard(&client, &a.name, &body).await {
            Ok(messages) => {
                for m in &messages {
                    eprintln!("warning: dashboard {}: {m}", a.name);
                }
                println!(
                    "dashboard {} written ({} widgets)",
                    a.name,
                    body["widgets"].as_array().map_or(0, Vec::len)
                );
                0
            }
            Err(e) => {
                eprintln!("error: {e}");
                1
            }
        }
    })
}

pub fn alarms(a: &AlarmsArgs) -> i32 {
    let cfg = match load(&a.config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    warn_if_off(&cfg);
    if let Some(t) = &a.sns_topic {
        if !t.starts_with("arn:") || !t.contains(":sns:") {
            eprintln!("error: --sns-topic `{t}` is not an SNS topic ARN\n  hint: arn:aws:sns:REGION:ACCOUNT:TOPIC");
            return EXIT_INVALID;
        }
    }
    let list = alarms::alarms(
        &cfg,
        &alarms::AlarmOptions {
            pinned_minutes: a.pinned_minutes,
            sns_topic: a.sns_topic.clone(),
        },
    );
    if !a.apply {
        return print_json(&serde_json::Value::Array(list));
    }
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    rt.block_on(async {
        let region = a.region.clone().or_else(|| cfg.global.region.clone());
        let client = aws_sdk_cloudwatch::Client::new(&sdk(region).await);
        let mut failed = 0;
        for alarm in &list {
            let name = alarm["AlarmName"].as_str().unwrap_or_default();
            match crate::ops::apply_alarm(&client, alarm).await {
                Ok(()) => println!("alarm {name} written"),
                Err(e) => {
                    failed += 1;
                    eprintln!("error: {e}");
                }
            }
        }
        i32::from(failed > 0)
    })
}

pub fn iam_policy(a: &IamPolicyArgs) -> i32 {
    let cfg = match load(&a.config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    if let Some(acct) = &a.account {
        if acct.len() != 12 || !acct.bytes().all(|b| b.is_ascii_digit()) {
            eprintln!("error: --account `{acct}` is not a 12-digit AWS account id");
            return EXIT_INVALID;
        }
    } else {
        eprintln!("note: no --account: ARNs match any account (`*`); pass --account to pin them");
    }
    let scope = iam::ArnScope {
        partition: a.partition.clone(),
        region: a
            .region
            .clone()
            .or_else(|| cfg.global.region.clone())
            .unwrap_or_else(|| "*".into()),
        account: a.account.clone().unwrap_or_else(|| "*".into()),
    };
    print_json(&iam::policy(&cfg, &scope))
}

pub fn cloudformation(a: &CloudFormationArgs) -> i32 {
    let text = match crate::config::read_file(&a.config) {
        Ok(t) => t,
        Err(d) => {
            eprintln!("error: {d}");
            if a.config.is_dir() {
                eprintln!("  hint: pass one TOML file (the stack stores it in an SSM parameter)");
            }
            return EXIT_INVALID;
        }
    };
    let cfg = match load(std::slice::from_ref(&a.config)) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let source = a
        .config
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    match cloudformation::template(
        &cfg,
        &cloudformation::TemplateOptions {
            replicas: a.replicas,
            config_text: text,
            source,
        },
    ) {
        Ok(t) => print_json(&t),
        Err(e) => {
            eprintln!("error: {}: {e}", a.config.display());
            EXIT_INVALID
        }
    }
}

pub fn healthcheck(a: &HealthcheckArgs) -> i32 {
    let url = match (&a.url, &a.config) {
        (Some(u), _) => u.clone(),
        (None, Some(paths)) => match load(paths) {
            Ok(cfg) => healthcheck::url_for_listen(&cfg.global.http_listen),
            Err(code) => return code,
        },
        (None, None) => "http://127.0.0.1:8080/healthz".into(),
    };
    match healthcheck::check(&url, Duration::from_millis(a.timeout_ms)) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("unhealthy: {e}");
            1
        }
    }
}
