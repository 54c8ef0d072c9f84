//! The configuration exactly as written in TOML: serde types with `deny_unknown_fields`.
//!
//! Nothing here is checked beyond types; `super::validate` turns these into the validated
//! model. Field docs become descriptions in `capstan schema`.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Deserialize;

/// One config file: an optional `[global]` table and any number of `[[target]]` tables.
/// The loader reads each table on its own (so one broken target does not hide the errors of
/// the next); this type describes the whole file for `capstan schema`.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawFile {
    /// Settings of the daemon itself. At most one file of a config directory may have it.
    pub global: Option<RawGlobal>,
    /// The scalable targets.
    #[serde(default)]
    pub target: Vec<RawTarget>,
}

/// `[global]`: settings of the daemon.
#[derive(Debug, Default, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawGlobal {
    /// AWS region; defaults to the SDK's region chain (AWS_REGION, profile).
    pub region: Option<String>,
    /// How often targets are observed and decided, e.g. "15s" (5s to 1h). Default 15s.
    pub poll_interval: Option<String>,
    /// Decide and log, never call a mutating AWS API. Default false.
    pub dry_run: Option<bool>,
    /// Address of the HTTP endpoints (health, readiness, metrics, status page), e.g.
    /// "0.0.0.0:8080", or "off". Default "127.0.0.1:8080".
    pub http_listen: Option<String>,
    /// Leader election lease (DynamoDB).
    pub lease: Option<RawLease>,
    /// Where capstan's own metrics go: "cloudwatch" (PutMetricData), "emf" (Embedded
    /// Metric Format lines on standard output) or "off". Default "cloudwatch".
    pub metrics: Option<String>,
    /// Namespace of capstan's own metrics. Default "Capstan".
    pub metrics_namespace: Option<String>,
    /// This daemon's part of the targets when several daemons share them, e.g.
    /// `{ index = 0, count = 4 }`: it manages only the targets whose name hashes to its
    /// index, and its replicas elect their leader under the lease name suffixed with the
    /// shard. Default: one shard (all targets).
    pub shard: Option<RawShard>,
    /// Client-side rate limits in calls per second by AWS API name, e.g.
    /// `{ DescribeServices = 10 }`, overriding the defaults.
    pub rate_limits: Option<std::collections::BTreeMap<String, f64>>,
    /// How often the capacity of a settled target (running what it is asked to run,
    /// nothing starting, nothing blocked, no change in flight) is read again, e.g. "1m"
    /// (the poll interval to 1h): until then its last reading is reused, and a target
    /// whose decision would change its capacity is read again before anything is done.
    /// For large fleets, whose describe calls would not fit in a tick under AWS's rate
    /// limits. Default "off": every target is read every tick.
    pub settled_refresh: Option<String>,
}

/// `[global.shard]`: which part of the targets this daemon manages.
#[derive(Debug, Default, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawShard {
    /// This daemon's shard, from 0 to count - 1.
    pub index: Option<u32>,
    /// How many shards the targets are split into (1 to 1024).
    pub count: Option<u32>,
}

/// `[global.lease]`: the DynamoDB lease that elects one acting replica.
#[derive(Debug, Default, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawLease {
    /// Enable leader election. Default false (a single replica always acts).
    pub enabled: Option<bool>,
    /// DynamoDB table holding the lease and the decision history. Default "capstan".
    pub table: Option<String>,
    /// Lease name; replicas sharing a name elect one leader. Default "default".
    pub name: Option<String>,
    /// How long a lease lives without renewal, e.g. "30s"; at least two poll intervals
    /// (the leader renews every tick). Default 30s.
    pub duration: Option<String>,
}

/// `[[target]]`: one scalable resource and how to scale it.
#[derive(Debug, Default, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawTarget {
    /// Unique name, used in logs, metrics and `--target`.
    pub name: Option<String>,
    /// "ecs_service", "asg" or "aurora_readers".
    pub kind: Option<String>,
    /// ECS cluster name or ARN (kind = "ecs_service").
    pub cluster: Option<String>,
    /// ECS service name (kind = "ecs_service").
    pub service: Option<String>,
    /// Auto Scaling group name (kind = "asg").
    pub asg_name: Option<String>,
    /// Aurora DB cluster identifier (kind = "aurora_readers").
    pub db_cluster: Option<String>,
    /// Name prefix of readers capstan creates: `<prefix>-<n>` (kind = "aurora_readers").
    pub reader_prefix: Option<String>,
    /// Instance class of new readers; defaults to the writer's (kind = "aurora_readers").
    pub reader_instance_class: Option<String>,
    /// ALB target group ARN whose healthy targets are this target's ready capacity and
    /// which drains instances before an ASG scale-in.
    pub alb_target_group: Option<String>,
    /// Lowest capacity capstan ever sets (0 allows scale to zero).
    pub min: Option<i64>,
    /// Highest capacity capstan ever sets.
    pub max: Option<i64>,
    /// Suspend AWS's own scaling on this resource and manage it anyway. Default false.
    pub takeover: Option<bool>,
    /// Metrics this target reads, referenced by name from policies.
    #[serde(default)]
    pub metric: Vec<RawMetric>,
    /// Scaling policies; several may apply, the largest proposal wins.
    #[serde(default)]
    pub policy: Vec<RawPolicy>,
    /// Scheduled windows that change min, max or set a floor.
    #[serde(default)]
    pub schedule: Vec<RawSchedule>,
    /// How fast and how eagerly capacity may move.
    pub behavior: Option<RawBehavior>,
    /// Capacity to hold after consecutive metric failures (never lowers capacity).
    pub fallback: Option<RawFallback>,
}

/// `[[target.metric]]`: a metric read from CloudWatch or SQS.
#[derive(Debug, Default, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawMetric {
    /// Name referenced by policies and metric-math expressions; lowercase letters, digits
    /// and `_`, starting with a letter.
    pub name: Option<String>,
    /// "ecs_cpu", "ecs_memory", "alb_requests_per_target", "aurora_reader_cpu",
    /// "aurora_reader_connections", "cloudwatch", "expression" or "sqs".
    pub source: Option<String>,
    /// CloudWatch namespace (source = "cloudwatch").
    pub namespace: Option<String>,
    /// CloudWatch metric name (source = "cloudwatch").
    pub metric_name: Option<String>,
    /// CloudWatch dimensions (source = "cloudwatch").
    pub dimensions: Option<BTreeMap<String, String>>,
    /// CloudWatch statistic: Average, Sum, Maximum, Minimum, SampleCount. Default Average
    /// (Sum for alb_requests_per_target).
    pub statistic: Option<String>,
    /// CloudWatch metric-math expression over other metrics of this target, by name
    /// (source = "expression").
    pub expression: Option<String>,
    /// Period of the CloudWatch datapoints: "10s" (high resolution), "30s" or a multiple of
    /// "60s". Default 60s.
    pub period: Option<String>,
    /// A datapoint older than this counts as missing. Default 3 periods (plus `poll_every`
    /// when that is set).
    pub stale_after: Option<String>,
    /// Use only datapoints that ended at least this long ago, for metrics that arrive late
    /// (a Sum whose newest period is still filling would look like falling load), e.g.
    /// "1m". Default 0s.
    pub end_offset: Option<String>,
    /// Read this metric at most this often, e.g. "1m", instead of every poll interval;
    /// between reads the last reading is reused as is (with its own timestamp, so
    /// `stale_after` still applies). For slow-moving metrics: `GetMetricData` is charged per
    /// metric requested. At least the global `poll_interval` (rounded up to a whole number
    /// of poll intervals), at most 1h; not for source = "sqs". Default: every poll interval.
    pub poll_every: Option<String>,
    /// SQS queue name or URL (source = "sqs").
    pub queue: Option<String>,
    /// Count in-flight (not visible) messages in the backlog. Default true (KEDA).
    pub include_in_flight: Option<bool>,
    /// Count delayed messages in the backlog. Default false (KEDA).
    pub include_delayed: Option<bool>,
    /// Above this value the target is active (KEDA activation): needed to scale from zero.
    /// Default 0.
    pub activation: Option<f64>,
}

/// `[[target.policy]]`: target tracking, step or predictive.
#[derive(Debug, Default, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawPolicy {
    /// "target_tracking", "step" or "predictive".
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// Name shown in explanations. Default `<type>:<metric>`.
    pub name: Option<String>,
    /// The metric this policy reads.
    pub metric: Option<String>,
    /// target_tracking: target of a per-unit average such as CPU % or requests per target:
    /// desired = ceil(current * value / target_value).
    pub target_value: Option<f64>,
    /// target_tracking, predictive: what one unit handles of a total such as queue backlog or
    /// requests/s: desired = ceil(total / target_per_unit).
    pub target_per_unit: Option<f64>,
    /// target_tracking: dead band around the target in both directions. Default 0.1.
    pub tolerance: Option<f64>,
    /// target_tracking: dead band above the target (overrides `tolerance`).
    pub tolerance_up: Option<f64>,
    /// target_tracking: dead band below the target (overrides `tolerance`).
    pub tolerance_down: Option<f64>,
    /// step: the alarm threshold the step bounds are relative to.
    pub threshold: Option<f64>,
    /// step: ">=", ">", "<=" or "<": how the metric is compared with the threshold.
    pub comparison: Option<String>,
    /// step: the breach must last this long before the policy acts. Default 0s.
    pub breach_for: Option<String>,
    /// step: "change_in_capacity", "percent_change_in_capacity" or "exact_capacity".
    pub adjustment_type: Option<String>,
    /// step, percent_change_in_capacity: the least number of units a step changes.
    pub min_adjustment_magnitude: Option<i64>,
    /// step: the steps, bounds relative to the threshold.
    pub steps: Option<Vec<RawStep>>,
    /// predictive: "forecast_and_scale" or "forecast_only". Default forecast_only, as AWS.
    pub mode: Option<String>,
    /// predictive: how far ahead of the forecast peak capacity is raised (launch-to-ready
    /// time). Default 5m.
    pub schedule_ahead: Option<String>,
    /// predictive: "honor", or { increase_by_percent = N } to let the forecast raise max.
    pub max_capacity_breach: Option<RawBreach>,
    /// predictive: how often the forecast is recomputed. Default 1h.
    pub refresh: Option<String>,
    /// predictive: when the live forecast error (WAPE over the last day) exceeds this, the
    /// policy stands down. Default 0.3.
    pub max_error: Option<f64>,
}

/// `max_capacity_breach`: "honor" or `{ increase_by_percent = N }`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum RawBreach {
    /// "honor": never above max.
    Word(String),
    /// Allow the forecast to raise max by up to N percent.
    Increase {
        /// Percent of max the forecast may add, e.g. 20.
        increase_by_percent: f64,
    },
}

/// One step of a step policy; bounds are relative to the threshold, a missing bound is
/// infinite.
#[derive(Debug, Default, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawStep {
    /// Lower bound (metric - threshold), or none for minus infinity.
    pub lower: Option<f64>,
    /// Upper bound (metric - threshold), or none for plus infinity.
    pub upper: Option<f64>,
    /// Units, percent or exact capacity, per the policy's adjustment_type.
    pub adjustment: Option<i64>,
}

/// `[[target.schedule]]`: a one-off window or a recurring cron window.
#[derive(Debug, Default, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawSchedule {
    /// Name shown in explanations.
    pub name: Option<String>,
    /// One-off window start, RFC 3339 with offset, e.g. "2026-11-27T00:00:00-05:00".
    pub start: Option<RawTime>,
    /// One-off window end (exclusive).
    pub end: Option<RawTime>,
    /// Recurring start: a 5-field cron expression ("0 8 * * MON-FRI").
    pub cron: Option<String>,
    /// IANA time zone of `cron`, e.g. "America/New_York". Default UTC.
    pub timezone: Option<String>,
    /// How long each cron window lasts, e.g. "10h".
    pub duration: Option<String>,
    /// Minimum capacity while the window is active.
    pub min: Option<i64>,
    /// Maximum capacity while the window is active.
    pub max: Option<i64>,
    /// Capacity held at least while the window is active (within max).
    pub floor: Option<i64>,
}

/// A time as a TOML datetime or an RFC 3339 string.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum RawTime {
    /// RFC 3339 text.
    Text(String),
    /// TOML offset datetime.
    Toml(#[schemars(with = "String")] toml::value::Datetime),
}

impl RawTime {
    pub fn as_text(&self) -> String {
        match self {
            RawTime::Text(s) => s.clone(),
            RawTime::Toml(d) => d.to_string(),
        }
    }
}

/// `[target.behavior]`: HPA-style behavior plus AWS-style cooldowns and warm-up.
#[derive(Debug, Default, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawBehavior {
    /// Scale-up rules. Default: no stabilization, 4 units or 100% per 15s, whichever is more.
    pub scale_up: Option<RawRules>,
    /// Scale-down rules. Default: 300s stabilization, 100% per 15s.
    pub scale_down: Option<RawRules>,
    /// After a scale-out, no further scale-out for this long. Default 0s.
    pub scale_out_cooldown: Option<String>,
    /// After any scaling, no scale-in for this long. Default 0s.
    pub scale_in_cooldown: Option<String>,
    /// New capacity is warming up for this long: no scale-in while any is. Default 0s.
    pub warmup: Option<String>,
    /// Never scale in. Default false.
    pub disable_scale_in: Option<bool>,
    /// Decide and explain, but hold capacity where it is. Default false.
    pub paused: Option<bool>,
    /// With min = 0: inactive this long before scaling to zero (KEDA cooldownPeriod).
    /// Default 5m.
    pub scale_to_zero_after: Option<String>,
}

/// Scale-up or scale-down rules.
#[derive(Debug, Default, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawRules {
    /// Recommendations of this window are considered: up takes their minimum, down their
    /// maximum.
    pub stabilization_window: Option<String>,
    /// "max", "min" or "disabled": which rate policy applies when several do.
    pub select: Option<String>,
    /// Rate limits.
    pub policies: Option<Vec<RawRate>>,
}

/// A rate limit: at most `value` units or percent per `period`.
#[derive(Debug, Default, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawRate {
    /// "pods" (units) or "percent".
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// Units or percent.
    pub value: Option<i64>,
    /// The period, e.g. "15s".
    pub period: Option<String>,
}

/// `[target.fallback]`: KEDA's fallback, but it only ever raises capacity.
#[derive(Debug, Default, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawFallback {
    /// Consecutive ticks with missing metrics before the fallback applies.
    pub after_failures: Option<i64>,
    /// Capacity held at least while the metrics are missing.
    pub capacity: Option<i64>,
}
