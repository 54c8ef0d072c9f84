//! The decision and its explanation: every metric, every policy's proposal, the winner, and
//! each rule that moved or held the result. Serializes to JSON; `reason` is one log line.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::history::{ForecastCheck, WindowState};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    ScaleOut,
    ScaleIn,
    None,
}

/// The outcome of one tick for one target. Serializes with its one-line `reason`
/// ([`Decision::reason`]), which is rendered from the explanation when it is read (logged,
/// served) rather than kept: a daemon holds every target's last decision.
#[derive(Clone, Debug)]
pub struct Decision {
    pub at: DateTime<Utc>,
    pub target: String,
    pub current: u32,
    pub desired: u32,
    pub action: Action,
    /// Whether the text of the explanation was rendered ([`super::decide`]) or only its
    /// numbers ([`super::decide_quiet`]).
    pub explained: bool,
    pub explanation: Explanation,
    /// What the history must remember of this tick (applied by `History::record`).
    pub update: Update,
}

impl Serialize for Decision {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Out<'a> {
            at: DateTime<Utc>,
            target: &'a str,
            current: u32,
            desired: u32,
            action: Action,
            reason: String,
            explanation: &'a Explanation,
        }
        Out {
            at: self.at,
            target: &self.target,
            current: self.current,
            desired: self.desired,
            action: self.action,
            reason: self.reason(),
            explanation: &self.explanation,
        }
        .serialize(s)
    }
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Explanation {
    pub metrics: Vec<MetricLine>,
    pub proposals: Vec<ProposalLine>,
    /// The policy whose proposal won (the largest), if any proposed.
    pub winner: Option<Name>,
    /// The largest proposal before behavior rules (what the stabilization window remembers).
    pub recommendation: u32,
    pub bounds: BoundsLine,
    pub forecast: Option<ForecastLine>,
    /// Each rule that changed or held the value, in the order applied.
    pub steps: Vec<StepLine>,
    /// Set when the current capacity was not read this tick but reused (a settled target
    /// under `settled_refresh`): how long ago it was read. The core leaves it empty; the
    /// controller fills it in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capacity_read_secs_ago: Option<u64>,
}

/// A metric's or policy's name in an explanation: the config's own string, shared, or
/// empty in a quiet decision ([`super::decide_quiet`] renders no text). Reads as a `&str`;
/// serializes as one.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Name(Option<Arc<str>>);

impl Name {
    pub fn as_str(&self) -> &str {
        self.0.as_deref().unwrap_or("")
    }
}

impl From<&Arc<str>> for Name {
    fn from(n: &Arc<str>) -> Self {
        Name(Some(Arc::clone(n)))
    }
}

impl std::ops::Deref for Name {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl Serialize for Name {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct MetricLine {
    pub name: Name,
    pub value: Option<f64>,
    /// Why the value is not usable (missing, NaN, negative...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<Problem>,
    /// Set when the value was not read this tick but reused (the metric's `poll_every`):
    /// how long ago it was read. The core leaves it empty; the controller fills it in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub read_secs_ago: Option<u64>,
}

/// Why a metric has no usable value this tick. Serializes as its text.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Problem {
    /// The source had no (fresh) datapoint.
    Missing,
    /// A policy names a metric the observation does not carry at all.
    NotObserved,
    NaN,
    Infinite,
    Negative(f64),
    /// An SQS counter was NaN, infinite or negative.
    QueueUnusable,
    /// Queue counters arrived for a metric whose source is not SQS.
    QueueOnNonSqs,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Problem::Missing => f.write_str("missing"),
            Problem::NotObserved => f.write_str("not observed"),
            Problem::NaN => f.write_str("NaN"),
            Problem::Infinite => f.write_str("infinite"),
            Problem::Negative(v) => write!(f, "negative ({})", num(*v)),
            Problem::QueueUnusable => f.write_str("queue counters not usable"),
            Problem::QueueOnNonSqs => f.write_str("queue counters given for a non-SQS metric"),
        }
    }
}

impl Serialize for Problem {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct ProposalLine {
    pub policy: Name,
    pub metric: Name,
    pub proposal: Option<u32>,
    pub detail: String,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct BoundsLine {
    pub min: u32,
    pub max: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub floor: Option<u32>,
    /// Which schedules, forecast or fallback set them.
    pub sources: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ForecastLine {
    pub policy: Name,
    /// The unit of `predicted_load`, e.g. "requests/s".
    pub unit: Name,
    pub mode: &'static str,
    /// Highest load expected between now and `schedule_ahead` from now.
    pub predicted_load: Option<f64>,
    /// The capacity that load needs (`ceil(load / target_per_unit)`).
    pub capacity: Option<u32>,
    /// Live error (WAPE) over the last day, when there are enough checks.
    pub error: Option<f64>,
    pub applied: bool,
    pub note: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct StepLine {
    pub rule: &'static str,
    pub from: u32,
    pub to: u32,
    pub detail: String,
}

/// History changes that follow from a tick whether or not its action is carried out.
#[derive(Clone, Debug, Default)]
pub struct Update {
    /// The unstabilized recommendation the windows remember; `None` on a tick that only
    /// brought a capacity found outside the bounds to the nearest bound (HPA stores no
    /// recommendation then either).
    pub recommendation: Option<u32>,
    pub consecutive_failures: u32,
    pub active: bool,
    /// Step policy name -> breach start (`None` clears it).
    pub breaches: BTreeMap<String, Option<super::clock::Stamp>>,
    pub forecast_check: Option<ForecastCheck>,
    /// Schedule windows whose state was computed afresh this tick (kept in the cache).
    pub windows: Vec<WindowState>,
}

impl Decision {
    /// The explanation as one line: the action, each proposal (the winner marked), each
    /// rule that moved or held the result, reused metric values and a reused capacity
    /// reading. Empty when the
    /// text was not rendered (`explained` false).
    pub fn reason(&self) -> String {
        use std::fmt::Write;
        if !self.explained {
            return String::new();
        }
        let e = &self.explanation;
        let mut out = match self.action {
            Action::ScaleOut => format!("scale out {} -> {}: ", self.current, self.desired),
            Action::ScaleIn => format!("scale in {} -> {}: ", self.current, self.desired),
            Action::None => format!("hold at {}: ", self.current),
        };
        let mut first = true;
        let mut part = |out: &mut String, text: &str, suffix: &str| {
            if !first {
                out.push_str("; ");
            }
            first = false;
            out.push_str(text);
            out.push_str(suffix);
        };
        for p in &e.proposals {
            let won = e.winner.as_deref() == Some(p.policy.as_str());
            part(&mut out, &p.detail, if won { " (wins)" } else { "" });
        }
        if e.proposals.is_empty() {
            part(&mut out, "no policy proposed a capacity", "");
        }
        for s in &e.steps {
            part(&mut out, &s.detail, "");
        }
        for m in &e.metrics {
            if let Some(age) = m.read_secs_ago {
                let _ = write!(out, "; {} read {age}s ago (poll_every)", m.name.as_str());
            }
        }
        if let Some(age) = e.capacity_read_secs_ago {
            let _ = write!(out, "; capacity {} read {age}s ago (settled)", self.current);
        }
        out
    }

    /// The decision as one JSON object (the log line and `/v1/decisions` format).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("decisions serialize")
    }
}

/// Formats a metric value compactly for explanations.
pub fn num(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else if v.abs() >= 100.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}
