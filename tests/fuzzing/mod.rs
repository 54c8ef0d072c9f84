//! What the fuzz targets (`fuzz/`) check, shared with `tests/fuzz_regressions.rs`, which
//! replays the kept inputs under `tests/fuzz-inputs/<target>/` on every `cargo test`.
//!
//! - `config`: any text through the config loader: no panic; a valid config has
//!   `min <= max` on every target; every error has a place (`file:line:column`) inside the
//!   text, except the one about a config without targets.
//! - `decide_lines`: any bytes through `capstan decide`'s JSON Lines loop (the embedded
//!   example config, the target picked by the first byte): no panic, exit 0 or 2, an error
//!   message for 2.
//! - `decide`: a sequence of observations decoded from the bytes (capacities, NaN,
//!   infinite, negative, 1e12 and missing values, time steps) through `policy::decide` with
//!   the history kept: no panic, the desired capacity inside the effective bounds, and no
//!   scale-in below the current capacity while a reactive policy's metric is missing
//!   (unless above max).
#![allow(dead_code)]

use std::sync::OnceLock;

use capstan::config::{self, Config, PolicyKind};
use capstan::policy::{self, History, Observation, Sample};

pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match config::from_str("fuzz.toml", text) {
        Ok(cfg) => {
            for t in &cfg.targets {
                assert!(t.min <= t.max, "{}: min {} > max {}", t.name, t.min, t.max);
            }
        }
        Err(diags) => {
            assert!(!diags.is_empty(), "an error without a diagnostic");
            let lines = text.lines().count().max(1) + 1;
            for d in &diags {
                let placed = d.line >= 1 && d.line <= lines && d.column >= 1;
                assert!(
                    placed || d.message.contains("no [[target]]"),
                    "no place in the file: {d}"
                );
                assert_eq!(d.file, "fuzz.toml");
            }
        }
    }
}

fn example() -> &'static Config {
    static CFG: OnceLock<Config> = OnceLock::new();
    CFG.get_or_init(|| {
        config::from_str("example.toml", config::EMBEDDED_EXAMPLE).expect("the example is valid")
    })
}

pub fn decide_lines(data: &[u8]) {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let cfg = example();
    let target = &cfg.targets[pick as usize % cfg.targets.len()];
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code =
        capstan::cli::decide_lines(target, rest, "fuzz", pick & 0x80 != 0, &mut out, &mut err);
    assert!(code == 0 || code == 2, "exit code {code}");
    if code == 2 {
        assert!(String::from_utf8_lossy(&err).starts_with("error: fuzz"));
    }
}

/// Bytes, read in order; zeros once exhausted.
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn u8(&mut self) -> u8 {
        let Some((&b, rest)) = self.0.split_first() else {
            return 0;
        };
        self.0 = rest;
        b
    }
    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }
    /// A metric value: often a special one.
    fn value(&mut self) -> Option<f64> {
        Some(match self.u8() % 12 {
            0 => return None,
            1 => f64::NAN,
            2 => f64::INFINITY,
            3 => f64::NEG_INFINITY,
            4 => -(self.u16() as f64),
            5 => 1e12,
            6 => 0.0,
            7 => f64::MAX,
            8 => f64::MIN_POSITIVE,
            _ => self.u16() as f64 / 8.0,
        })
    }
    fn empty(&self) -> bool {
        self.0.is_empty()
    }
}

pub fn decide(data: &[u8]) {
    let cfg = example();
    let mut b = Bytes(data);
    let target = &cfg.targets[b.u8() as usize % cfg.targets.len()];
    let mut history = History::default();
    let mut at: chrono::DateTime<chrono::Utc> = "2026-11-27T09:00:00Z".parse().unwrap();
    let mut current = u32::from(b.u16() % 300);
    let mut steps = 0;
    while !b.empty() && steps < 200 {
        steps += 1;
        at += chrono::Duration::seconds(i64::from(b.u8()) * 5);
        if b.u8() % 4 == 0 {
            current = u32::from(b.u16() % 300); // changed outside capstan
        }
        let ready = match b.u8() % 3 {
            0 => None,
            _ => Some(u32::from(b.u16() % 300)),
        };
        let mut metrics = capstan::policy::Metrics::default();
        for m in &target.metrics {
            let sample = if b.u8() % 2 == 0 {
                b.value().map(Sample::Value)
            } else {
                match (b.value(), b.value(), b.value()) {
                    (Some(v), Some(i), Some(d)) => Some(Sample::Queue {
                        visible: v,
                        in_flight: i,
                        delayed: d,
                    }),
                    _ => None,
                }
            };
            metrics.insert(m.name.clone(), sample);
        }
        // The core's rule: a metric of a reactive policy that is missing holds scale-in
        // (a predictive policy's metric feeds the forecast, not this tick's decision).
        let held_by: Vec<&str> = target
            .policies
            .iter()
            .filter(|p| !matches!(p.kind, PolicyKind::Predictive(_)))
            .map(|p| &*p.metric)
            .collect();
        let missing = metrics
            .iter()
            .filter(|(name, _)| held_by.contains(name))
            .any(|(_, s)| match s {
                None => true,
                Some(Sample::Value(v)) => !v.is_finite() || *v < 0.0,
                Some(Sample::Queue {
                    visible,
                    in_flight,
                    delayed,
                }) => [visible, in_flight, delayed]
                    .iter()
                    .any(|v| !v.is_finite() || **v < 0.0),
            });
        let obs = Observation {
            at,
            current,
            ready,
            metrics,
            scale_in_blocked: (b.u8() % 8 == 0).then(|| "fuzz".to_string()),
            forecast: None,
        };
        let d = policy::decide(target, &obs, &history);
        let bounds = &d.explanation.bounds;
        assert!(
            bounds.min <= d.desired && d.desired <= bounds.max,
            "{}: desired {} outside {}..={}: {}",
            target.name,
            d.desired,
            bounds.min,
            bounds.max,
            d.reason()
        );
        if missing && current <= bounds.max {
            assert!(
                d.desired >= current,
                "{}: scaled in {current} -> {} on missing data: {}",
                target.name,
                d.desired,
                d.reason()
            );
        }
        history.record(target, &d, true);
        current = d.desired;
    }
}
