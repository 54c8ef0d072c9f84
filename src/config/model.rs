//! The validated configuration: every value checked, defaults filled in, durations in
//! seconds, references resolved. Everything downstream (the decision core, sources,
//! actuators, the simulator) reads these types only.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;

/// A whole validated configuration (one file or a directory of files).
#[derive(Debug, Clone, Serialize)]
pub struct Config {
    pub global: Global,
    pub targets: Vec<Target>,
}

impl Config {
    /// Keeps only the targets of this daemon's shard (all when not sharded).
    pub fn own_shard(mut self) -> Self {
        if let Some(s) = self.global.shard {
            self.targets.retain(|t| s.owns(&t.name));
        }
        // Lists grown by doubling while parsing are a third larger than they need, on
        // average: a daemon keeps this config for its whole life.
        self.targets.shrink_to_fit();
        self
    }

    pub fn target(&self, name: &str) -> Option<&Target> {
        self.targets.iter().find(|t| t.name == name)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Global {
    pub region: Option<String>,
    pub poll_interval_secs: u64,
    pub dry_run: bool,
    pub http_listen: String,
    pub lease: Lease,
    pub metrics: MetricsSink,
    pub metrics_namespace: String,
    /// This daemon's shard of the targets; `None` is all of them.
    pub shard: Option<Shard>,
    /// Client-side rate limits (calls per second) overriding the defaults, by API name.
    pub rate_limits: std::collections::BTreeMap<String, f64>,
    /// How often a settled target's capacity is read again (`settled_refresh`); 0 reads
    /// every target every tick.
    pub settled_refresh_secs: u64,
}

/// One part of the targets, chosen by a stable hash of their names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

impl Shard {
    /// The shard a target name falls in: FNV-1a (64 bit) of the name, mixed by the
    /// MurmurHash3 finalizer (names differing in one character spread too), modulo the
    /// count; the same on every machine and release.
    pub fn of(name: &str, count: u32) -> u32 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in name.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^= h >> 33;
        (h % u64::from(count.max(1))) as u32
    }

    pub fn owns(&self, name: &str) -> bool {
        Shard::of(name, self.count) == self.index
    }
}

/// Where capstan's own metrics go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricsSink {
    Cloudwatch,
    Emf,
    Off,
}

impl Global {
    /// The name of the lease this daemon's replicas elect their leader under: the
    /// configured name, suffixed with the shard when the targets are sharded.
    pub fn lease_name(&self) -> String {
        match &self.shard {
            Some(s) => format!("{}-shard-{}-of-{}", self.lease.name, s.index, s.count),
            None => self.lease.name.clone(),
        }
    }

    /// The address of the HTTP endpoints, `None` when `http_listen = "off"`.
    pub fn http_addr(&self) -> Option<&str> {
        (self.http_listen != "off").then_some(self.http_listen.as_str())
    }
}

impl Default for Global {
    fn default() -> Self {
        Global {
            region: None,
            poll_interval_secs: 15,
            dry_run: false,
            http_listen: "127.0.0.1:8080".into(),
            lease: Lease::default(),
            metrics: MetricsSink::Cloudwatch,
            metrics_namespace: "Capstan".into(),
            shard: None,
            rate_limits: std::collections::BTreeMap::new(),
            settled_refresh_secs: 0,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Lease {
    pub enabled: bool,
    pub table: String,
    pub name: String,
    pub duration_secs: u64,
}

impl Default for Lease {
    fn default() -> Self {
        Lease {
            enabled: false,
            table: "capstan".into(),
            name: "default".into(),
            duration_secs: 30,
        }
    }
}

/// One scalable target.
#[derive(Debug, Clone, Serialize)]
pub struct Target {
    pub name: String,
    pub resource: Resource,
    pub alb_target_group: Option<String>,
    pub min: u32,
    pub max: u32,
    pub takeover: bool,
    pub metrics: Vec<Metric>,
    pub policies: Vec<Policy>,
    pub schedules: Vec<Schedule>,
    pub behavior: Behavior,
    pub fallback: Option<Fallback>,
}

impl Target {
    pub fn metric(&self, name: &str) -> Option<&Metric> {
        self.metrics.iter().find(|m| *m.name == *name)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Resource {
    EcsService {
        cluster: String,
        service: String,
    },
    Asg {
        name: String,
    },
    AuroraReaders {
        db_cluster: String,
        reader_prefix: String,
        instance_class: Option<String>,
    },
}

impl Resource {
    pub fn kind(&self) -> &'static str {
        match self {
            Resource::EcsService { .. } => "ecs_service",
            Resource::Asg { .. } => "asg",
            Resource::AuroraReaders { .. } => "aurora_readers",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Metric {
    /// Shared with the observations built for this target, so the decision core matches a
    /// sample to its metric by pointer (see [`crate::policy::Metrics`]).
    pub name: Arc<str>,
    pub source: MetricSource,
    /// Above this value the target counts as active (KEDA activation).
    pub activation: f64,
    /// Read at most this often (`poll_every`); `None`: every tick.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub poll_every_secs: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "source", rename_all = "snake_case")]
pub enum MetricSource {
    /// A CloudWatch metric: custom, or expanded from a built-in shortcut.
    Cloudwatch {
        namespace: String,
        metric_name: String,
        dimensions: BTreeMap<String, String>,
        statistic: String,
        period_secs: u64,
        stale_after_secs: u64,
        /// Datapoints newer than this are not used yet (metrics that arrive late).
        end_offset_secs: u64,
    },
    /// A metric-math expression over other metrics of the same target.
    Expression {
        expression: String,
        /// Names of the metrics the expression reads.
        inputs: Vec<String>,
        period_secs: u64,
        stale_after_secs: u64,
        end_offset_secs: u64,
    },
    /// An SQS queue's backlog.
    Sqs {
        queue: String,
        include_in_flight: bool,
        include_delayed: bool,
    },
}

#[derive(Debug, Clone, Serialize)]
pub struct Policy {
    /// Shared (as `metric` is with the target's metric) with every explanation that names it.
    pub name: Arc<str>,
    pub metric: Arc<str>,
    /// Where `metric` is in the target's `metrics`, set by validation; the core reads the
    /// metric by this index (by name when the index is out of range or points at a metric
    /// whose name has another length, as in a target built by hand).
    #[serde(skip)]
    pub metric_index: usize,
    pub kind: PolicyKind,
}

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum PolicyKind {
    TargetTracking {
        target: TrackingTarget,
        tolerance_up: f64,
        tolerance_down: f64,
    },
    Step(StepPolicy),
    Predictive(PredictivePolicy),
}

/// How a target-tracking metric relates to capacity.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TrackingTarget {
    /// The metric is a per-unit average (CPU %, requests per target):
    /// desired = ceil(current * value / target).
    Average(f64),
    /// The metric is a total (queue backlog, requests/s): desired = ceil(total / per_unit).
    PerUnit(f64),
}

#[derive(Debug, Clone, Serialize)]
pub struct StepPolicy {
    pub threshold: f64,
    pub comparison: Comparison,
    pub breach_for_secs: u64,
    pub adjustment: AdjustmentType,
    pub min_adjustment_magnitude: Option<u32>,
    pub steps: Vec<Step>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Comparison {
    #[serde(rename = ">=")]
    Ge,
    #[serde(rename = ">")]
    Gt,
    #[serde(rename = "<=")]
    Le,
    #[serde(rename = "<")]
    Lt,
}

impl Comparison {
    pub fn breached(self, value: f64, threshold: f64) -> bool {
        match self {
            Comparison::Ge => value >= threshold,
            Comparison::Gt => value > threshold,
            Comparison::Le => value <= threshold,
            Comparison::Lt => value < threshold,
        }
    }
    /// Whether the alarm fires above the threshold (a scale-out alarm, usually).
    pub fn is_upper(self) -> bool {
        matches!(self, Comparison::Ge | Comparison::Gt)
    }
    pub fn symbol(self) -> &'static str {
        match self {
            Comparison::Ge => ">=",
            Comparison::Gt => ">",
            Comparison::Le => "<=",
            Comparison::Lt => "<",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AdjustmentType {
    ChangeInCapacity,
    PercentChangeInCapacity,
    ExactCapacity,
}

/// Bounds relative to the threshold; `None` is infinite.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Step {
    pub lower: Option<f64>,
    pub upper: Option<f64>,
    pub adjustment: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct PredictivePolicy {
    /// The load one unit serves, in the forecast's unit.
    pub per_unit: f64,
    /// The unit of the forecast (and of `per_unit`), e.g. "requests/s", stated in the
    /// explanation and on the dashboard.
    pub unit: Arc<str>,
    pub mode: PredictiveMode,
    pub schedule_ahead_secs: u64,
    pub breach: MaxCapacityBreach,
    pub refresh_secs: u64,
    pub max_error: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PredictiveMode {
    ForecastOnly,
    ForecastAndScale,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MaxCapacityBreach {
    Honor,
    IncreaseByPercent(f64),
}

#[derive(Debug, Clone, Serialize)]
pub struct Schedule {
    pub name: String,
    pub when: ScheduleWhen,
    pub min: Option<u32>,
    pub max: Option<u32>,
    pub floor: Option<u32>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ScheduleWhen {
    Once {
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    },
    Cron {
        expression: String,
        #[serde(serialize_with = "ser_tz")]
        timezone: chrono_tz::Tz,
        duration_secs: u64,
        #[serde(skip)]
        cron: Box<croner::Cron>,
        /// Identifies the window (expression, zone, duration) for the core's cache of
        /// window states; equal windows share a key.
        #[serde(skip)]
        key: u64,
    },
}

impl ScheduleWhen {
    /// A recurring window: its expression, zone and duration.
    pub fn cron(
        expression: &str,
        timezone: chrono_tz::Tz,
        duration_secs: u64,
        cron: croner::Cron,
    ) -> Self {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (expression, timezone.name(), duration_secs).hash(&mut h);
        ScheduleWhen::Cron {
            expression: expression.to_string(),
            timezone,
            duration_secs,
            cron: Box::new(cron),
            key: h.finish(),
        }
    }

    /// The cache key of a recurring window; `None` for a one-off window.
    pub fn key(&self) -> Option<u64> {
        match self {
            ScheduleWhen::Cron { key, .. } => Some(*key),
            ScheduleWhen::Once { .. } => None,
        }
    }
}

fn ser_tz<S: serde::Serializer>(tz: &chrono_tz::Tz, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(tz.name())
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Behavior {
    pub scale_up: Rules,
    pub scale_down: Rules,
    pub scale_out_cooldown_secs: u64,
    pub scale_in_cooldown_secs: u64,
    pub warmup_secs: u64,
    pub disable_scale_in: bool,
    pub paused: bool,
    pub scale_to_zero_after_secs: u64,
}

impl Default for Behavior {
    /// Kubernetes HPA's default behavior, no cooldowns, no warm-up.
    fn default() -> Self {
        Behavior {
            scale_up: Rules::default_up(),
            scale_down: Rules::default_down(),
            scale_out_cooldown_secs: 0,
            scale_in_cooldown_secs: 0,
            warmup_secs: 0,
            disable_scale_in: false,
            paused: false,
            scale_to_zero_after_secs: 300,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rules {
    pub stabilization_window_secs: u64,
    pub select: Select,
    pub policies: Vec<RatePolicy>,
}

impl Rules {
    /// HPA: scale up by at most max(4 pods, 100%) per 15 s, no stabilization.
    pub fn default_up() -> Self {
        Rules {
            stabilization_window_secs: 0,
            select: Select::Max,
            policies: vec![
                RatePolicy {
                    kind: RateKind::Pods,
                    value: 4,
                    period_secs: 15,
                },
                RatePolicy {
                    kind: RateKind::Percent,
                    value: 100,
                    period_secs: 15,
                },
            ],
        }
    }
    /// HPA: scale down by at most 100% per 15 s, 300 s stabilization.
    pub fn default_down() -> Self {
        Rules {
            stabilization_window_secs: 300,
            select: Select::Max,
            policies: vec![RatePolicy {
                kind: RateKind::Percent,
                value: 100,
                period_secs: 15,
            }],
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Select {
    Max,
    Min,
    Disabled,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct RatePolicy {
    pub kind: RateKind,
    pub value: u32,
    pub period_secs: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RateKind {
    Pods,
    Percent,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Fallback {
    pub after_failures: u32,
    pub capacity: u32,
}

#[cfg(test)]
mod shard_tests {
    use super::*;

    #[test]
    fn shards_partition_the_targets_evenly() {
        let names: Vec<String> = (0..10_000).map(|i| format!("svc-{i}")).collect();
        for count in [1u32, 2, 3, 7, 16] {
            let shards: Vec<Shard> = (0..count).map(|index| Shard { index, count }).collect();
            let mut sizes = vec![0usize; count as usize];
            for n in &names {
                let owners: Vec<&Shard> = shards.iter().filter(|s| s.owns(n)).collect();
                assert_eq!(owners.len(), 1, "{n} in exactly one of {count} shards");
                sizes[owners[0].index as usize] += 1;
            }
            let mean = names.len() as f64 / f64::from(count);
            for s in sizes {
                assert!(
                    (s as f64 - mean).abs() <= mean * 0.1,
                    "{count} shards: a shard of {s} (mean {mean})"
                );
            }
        }
    }

    const PINNED: [u32; 5] = [387, 348, 691, 213, 268];

    #[test]
    fn the_hash_is_stable_and_the_lease_name_carries_the_shard() {
        // Pinned: a target keeps its shard across releases.
        let pinned: Vec<u32> = ["api", "svc1", "svc2", "svc3", "orders-worker"]
            .iter()
            .map(|n| Shard::of(n, 1000))
            .collect();
        assert_eq!(pinned, PINNED);
        let mut g = Global::default();
        assert_eq!(g.lease_name(), "default");
        g.shard = Some(Shard { index: 2, count: 4 });
        assert_eq!(g.lease_name(), "default-shard-2-of-4");
    }
}
