//! Per-metric poll cadence (`poll_every`): a metric that sets it is read at most that often
//! instead of every tick, because `GetMetricData` is charged per metric requested. Between
//! reads the last good reading is reused as is, with the timestamp of its datapoint, so the
//! staleness rule keeps its meaning; a reused reading that has gone stale is not reused but
//! read again at once. A read that fails (no sample) is not kept, so the metric is read
//! again on the next tick. Metrics without `poll_every` are read every tick and nothing is
//! kept for them.
//!
//! Pure bookkeeping on the tick's clock: [`Cadence::split`] before the read, then
//! [`Cadence::record`] with what was read.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use super::cloudwatch::still_fresh;
use super::{MetricRequest, Reading};
use crate::config::MetricSource;

/// Ticks from one read of a metric to the next: `every_secs` rounded up to whole poll
/// intervals (at least one).
pub fn ticks_between(every_secs: u64, interval_secs: u64) -> u64 {
    every_secs.div_ceil(interval_secs.max(1)).max(1)
}

/// Whether a metric read at `read_at` is due again at `now`: once [`ticks_between`] poll
/// intervals have passed, less half an interval so that a tick firing a little early (timer
/// jitter) still counts. A clock that went back makes it due.
pub fn due(
    read_at: DateTime<Utc>,
    now: DateTime<Utc>,
    every_secs: u64,
    interval_secs: u64,
) -> bool {
    let interval_ms = interval_secs.max(1) as i64 * 1000;
    let need_ms = ticks_between(every_secs, interval_secs) as i64 * interval_ms - interval_ms / 2;
    let elapsed_ms = (now - read_at).num_milliseconds();
    elapsed_ms < 0 || elapsed_ms >= need_ms
}

#[derive(Debug)]
struct Kept {
    reading: Reading,
    read_at: DateTime<Utc>,
    /// The metric as it was read: a reload that changes it makes the metric due.
    source: MetricSource,
    every_secs: u64,
}

/// The last good reading of each metric that has a `poll_every`.
#[derive(Debug, Default)]
pub struct Cadence {
    kept: HashMap<(String, String), Kept>,
}

impl Cadence {
    /// Splits a tick's requests into those to read now and the readings reused for the
    /// others (each with [`Reading::reused_read_at`] set). Forgets metrics no longer
    /// requested.
    pub fn split<'a>(
        &mut self,
        requests: Vec<MetricRequest<'a>>,
        now: DateTime<Utc>,
        interval_secs: u64,
    ) -> (Vec<MetricRequest<'a>>, Vec<Reading>) {
        if self.kept.is_empty() {
            return (requests, Vec::new());
        }
        let mut old = std::mem::take(&mut self.kept);
        let mut to_read = Vec::with_capacity(requests.len());
        let mut reused = Vec::new();
        for r in requests {
            let Some(every) = r.metric.poll_every_secs else {
                to_read.push(r);
                continue;
            };
            let key = (r.target.name.clone(), r.metric.name.to_string());
            match old.remove(&key) {
                Some(k)
                    if k.every_secs == every
                        && k.source == r.metric.source
                        && !due(k.read_at, now, every, interval_secs)
                        && fresh(&k, now) =>
                {
                    let mut reading = k.reading.clone();
                    reading.reused_read_at = Some(k.read_at);
                    reused.push(reading);
                    self.kept.insert(key, k);
                }
                _ => to_read.push(r),
            }
        }
        (to_read, reused)
    }

    /// Keeps the good readings of `read` (the requests read at `now`) whose metric has a
    /// `poll_every`; a missing one is not kept, so it is read again next tick.
    pub fn record(&mut self, read: &[MetricRequest<'_>], readings: &[Reading], now: DateTime<Utc>) {
        let with_cadence: HashMap<(&str, &str), &MetricRequest<'_>> = read
            .iter()
            .filter(|r| r.metric.poll_every_secs.is_some())
            .map(|r| ((r.target.name.as_str(), &*r.metric.name), r))
            .collect();
        if with_cadence.is_empty() {
            return;
        }
        for reading in readings.iter().filter(|r| r.sample.is_some()) {
            let Some(req) = with_cadence.get(&(reading.target.as_str(), &*reading.metric)) else {
                continue;
            };
            self.kept.insert(
                (reading.target.clone(), reading.metric.to_string()),
                Kept {
                    reading: reading.clone(),
                    read_at: now,
                    source: req.metric.source.clone(),
                    every_secs: req.metric.poll_every_secs.unwrap_or_default(),
                },
            );
        }
    }

    /// How many metrics have a reading kept.
    pub fn len(&self) -> usize {
        self.kept.len()
    }

    pub fn is_empty(&self) -> bool {
        self.kept.is_empty()
    }
}

/// A kept reading may be reused only while its datapoint is fresh by the metric's own rule.
fn fresh(k: &Kept, now: DateTime<Utc>) -> bool {
    match k.reading.at {
        Some(at) => still_fresh(&k.source, at, now).unwrap_or(true),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{self, Target};
    use crate::policy::Sample;
    use crate::sources::cloudwatch::{floor_to, plan, MAX_QUERIES_PER_CALL};

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn secs(n: i64) -> chrono::Duration {
        chrono::Duration::seconds(n)
    }

    /// `n` ECS services, each with `cpu` (every tick) and `orders` (with `extra` lines).
    fn cfg(n: usize, extra: &str) -> config::Config {
        let mut text = String::new();
        for i in 0..n {
            text.push_str(&format!(
                r#"
[[target]]
name = "s{i}"
kind = "ecs_service"
cluster = "c"
service = "s{i}"
min = 1
max = 9
[[target.metric]]
name = "cpu"
source = "ecs_cpu"
[[target.metric]]
name = "orders"
source = "cloudwatch"
namespace = "Shop"
metric_name = "Orders"
{extra}
[[target.policy]]
type = "target_tracking"
metric = "cpu"
target_value = 50
"#
            ));
        }
        config::from_str("t.toml", &text).unwrap_or_else(|d| panic!("{}", d[0]))
    }

    /// A CloudWatch that has every period published as soon as it completes: the newest
    /// complete period's datapoint, valued by the minute it starts.
    fn read_all(reqs: &[MetricRequest<'_>], now: DateTime<Utc>) -> Vec<Reading> {
        let at = floor_to(now, 60) - secs(60);
        reqs.iter()
            .map(|r| Reading::ok(r, Sample::Value((at.timestamp() / 60) as f64), at))
            .collect()
    }

    /// Ticks every 15 s from `start` for `ticks` ticks (each `jitter_ms` early), reading
    /// through the cadence with `source`; returns per tick the names read and the readings.
    fn run(
        targets: &[&Target],
        start: DateTime<Utc>,
        ticks: usize,
        jitter_ms: i64,
        mut source: impl FnMut(&[MetricRequest<'_>], DateTime<Utc>) -> Vec<Reading>,
    ) -> Vec<(Vec<String>, Vec<Reading>)> {
        let mut cadence = Cadence::default();
        let mut out = Vec::new();
        for k in 0..ticks {
            let now = start + secs(15 * k as i64) - chrono::Duration::milliseconds(jitter_ms);
            let (due, reused) = cadence.split(MetricRequest::all(targets), now, 15);
            let read = source(&due, now);
            cadence.record(&due, &read, now);
            let names = due
                .iter()
                .map(|r| format!("{}.{}", r.target.name, r.metric.name))
                .collect();
            let mut all = read;
            all.extend(reused);
            out.push((names, all));
        }
        out
    }

    #[test]
    fn a_metric_with_poll_every_is_read_once_per_cadence_and_reused_in_between() {
        let c = cfg(1, "poll_every = \"1m\"");
        let targets: Vec<&Target> = c.targets.iter().collect();
        let start = t("2026-11-27T10:00:05Z");
        // 20 ticks of 15 s = 5 minutes; ticks fire up to 300 ms early.
        for jitter in [0, 300] {
            let ticks = run(&targets, start, 20, jitter, read_all);
            let reads_of = |m: &str| {
                ticks
                    .iter()
                    .filter(|(n, _)| n.contains(&m.to_string()))
                    .count()
            };
            assert_eq!(reads_of("s0.cpu"), 20, "cpu every tick");
            assert_eq!(
                reads_of("s0.orders"),
                5,
                "orders once a minute (jitter {jitter} ms)"
            );
            for (k, (names, readings)) in ticks.iter().enumerate() {
                assert_eq!(
                    names.contains(&"s0.orders".to_string()),
                    k % 4 == 0,
                    "tick {k}"
                );
                let orders = readings.iter().find(|r| &*r.metric == "orders").unwrap();
                let read_tick = k - k % 4;
                let read_at =
                    start + secs(15 * read_tick as i64) - chrono::Duration::milliseconds(jitter);
                // Reused as read: the datapoint of the read, with its own timestamp.
                assert_eq!(
                    orders.at,
                    Some(floor_to(read_at, 60) - secs(60)),
                    "tick {k}"
                );
                assert_eq!(
                    orders.reused_read_at,
                    (k % 4 != 0).then_some(read_at),
                    "tick {k}"
                );
                let cpu = readings.iter().find(|r| &*r.metric == "cpu").unwrap();
                assert_eq!(cpu.reused_read_at, None);
            }
        }
    }

    #[test]
    fn poll_every_is_rounded_up_to_whole_poll_intervals() {
        assert_eq!(ticks_between(60, 15), 4);
        assert_eq!(ticks_between(50, 15), 4);
        assert_eq!(ticks_between(15, 15), 1);
        assert_eq!(ticks_between(20, 15), 2);
        let c = cfg(1, "poll_every = \"50s\"");
        let targets: Vec<&Target> = c.targets.iter().collect();
        let ticks = run(&targets, t("2026-11-27T10:00:05Z"), 12, 0, read_all);
        let read: Vec<usize> = (0..12)
            .filter(|k| ticks[*k].0.contains(&"s0.orders".to_string()))
            .collect();
        assert_eq!(read, vec![0, 4, 8]);
    }

    #[test]
    fn a_failed_read_is_retried_on_the_next_tick() {
        let c = cfg(1, "poll_every = \"5m\"");
        let targets: Vec<&Target> = c.targets.iter().collect();
        // The first two reads of orders fail; then CloudWatch answers.
        let mut failures = 2;
        let ticks = run(&targets, t("2026-11-27T10:00:05Z"), 8, 0, |reqs, now| {
            let mut out = read_all(reqs, now);
            for r in out.iter_mut().filter(|r| &*r.metric == "orders") {
                if failures > 0 {
                    failures -= 1;
                    *r = Reading {
                        sample: None,
                        at: None,
                        problem: Some("throttled".into()),
                        ..r.clone()
                    };
                }
            }
            out
        });
        let read: Vec<usize> = (0..8)
            .filter(|k| ticks[*k].0.contains(&"s0.orders".to_string()))
            .collect();
        assert_eq!(read, vec![0, 1, 2], "retried every tick until it succeeds");
        let orders = |k: usize| {
            ticks[k]
                .1
                .iter()
                .find(|r| &*r.metric == "orders")
                .unwrap()
                .clone()
        };
        assert_eq!(
            orders(1).sample,
            None,
            "a failure is missing, not an older value"
        );
        assert_eq!(orders(3).reused_read_at, Some(t("2026-11-27T10:00:35Z")));
    }

    #[test]
    fn a_reused_reading_never_outlives_its_staleness() {
        // stale_after 6m, poll_every 5m: but CloudWatch stops publishing at the first read,
        // so the kept datapoint (09:59) ages. It is reused while fresh; once it would be
        // stale the metric is due at once, and the read reports it missing.
        let c = cfg(1, "poll_every = \"5m\"\nstale_after = \"6m\"");
        let targets: Vec<&Target> = c.targets.iter().collect();
        let frozen = t("2026-11-27T09:59:00Z");
        let ticks = run(&targets, t("2026-11-27T10:00:05Z"), 40, 0, |reqs, now| {
            reqs.iter()
                .map(|r| {
                    let age = (now - (frozen + secs(60))).num_seconds();
                    if age > 360 {
                        Reading::missing(r, format!("stale: newest datapoint ended {age}s ago"))
                    } else {
                        Reading::ok(r, Sample::Value(1.0), frozen)
                    }
                })
                .collect()
        });
        for (k, (names, readings)) in ticks.iter().enumerate() {
            let now = t("2026-11-27T10:00:05Z") + secs(15 * k as i64);
            let orders = readings.iter().find(|r| &*r.metric == "orders").unwrap();
            let age = (now - (frozen + secs(60))).num_seconds();
            if age > 360 {
                assert_eq!(orders.sample, None, "tick {k}: stale is missing");
                assert!(
                    names.contains(&"s0.orders".to_string()),
                    "tick {k}: read again"
                );
            } else {
                assert!(orders.sample.is_some(), "tick {k}");
            }
        }
        // Read at 10:00:05, then reused until the datapoint went stale at 10:06:00: the
        // tick of 10:05:05 is the poll_every read, 10:06:05 the first stale one.
        let read: Vec<usize> = (0..26)
            .filter(|k| ticks[*k].0.contains(&"s0.orders".to_string()))
            .collect();
        assert_eq!(read, vec![0, 20, 24, 25]);
    }

    #[test]
    fn without_poll_every_everything_is_read_every_tick_and_nothing_kept() {
        let c = cfg(3, "");
        let targets: Vec<&Target> = c.targets.iter().collect();
        let mut cadence = Cadence::default();
        for k in 0..4 {
            let now = t("2026-11-27T10:00:05Z") + secs(15 * k);
            let (due, reused) = cadence.split(MetricRequest::all(&targets), now, 15);
            assert_eq!(due.len(), 6);
            assert!(reused.is_empty());
            let read = read_all(&due, now);
            cadence.record(&due, &read, now);
            assert!(cadence.is_empty());
        }
    }

    #[test]
    fn a_changed_metric_or_a_removed_target_is_not_reused() {
        let c = cfg(2, "poll_every = \"5m\"");
        let targets: Vec<&Target> = c.targets.iter().collect();
        let mut cadence = Cadence::default();
        let now = t("2026-11-27T10:00:05Z");
        let (due, _) = cadence.split(MetricRequest::all(&targets), now, 15);
        let read = read_all(&due, now);
        cadence.record(&due, &read, now);
        assert_eq!(cadence.len(), 2);
        // A reload changed s0's orders metric and dropped s1.
        let c2 = cfg(1, "poll_every = \"5m\"\nstatistic = \"Sum\"");
        let targets2: Vec<&Target> = c2.targets.iter().collect();
        let (due, reused) = cadence.split(MetricRequest::all(&targets2), now + secs(15), 15);
        assert_eq!(due.len(), 2, "cpu and the changed orders");
        assert!(reused.is_empty());
        assert!(cadence.is_empty(), "s1 forgotten");
    }

    #[test]
    fn the_planner_packs_only_the_metrics_due_this_tick() {
        // 600 targets: cpu every tick, orders every minute. On a tick where orders are
        // due the planner packs 1,200 queries (two windows: orders' stale_after is longer,
        // 3 periods plus poll_every) into calls of at most 500; between, cpu's 600 only.
        let c = cfg(600, "poll_every = \"1m\"");
        let targets: Vec<&Target> = c.targets.iter().collect();
        let mut cadence = Cadence::default();
        let mut sizes = Vec::new();
        for k in 0..5 {
            let now = t("2026-11-27T10:00:05Z") + secs(15 * k);
            let (due, reused) = cadence.split(MetricRequest::all(&targets), now, 15);
            let (calls, bad) = plan(&due, now);
            assert!(bad.is_empty());
            assert!(calls
                .iter()
                .all(|c| c.queries.len() <= MAX_QUERIES_PER_CALL));
            sizes.push((
                calls.iter().map(|c| c.queries.len()).collect::<Vec<_>>(),
                reused.len(),
            ));
            let read = read_all(&due, now);
            cadence.record(&due, &read, now);
        }
        assert_eq!(
            sizes,
            vec![
                (vec![500, 100, 500, 100], 0),
                (vec![500, 100], 600),
                (vec![500, 100], 600),
                (vec![500, 100], 600),
                (vec![500, 100, 500, 100], 0),
            ]
        );
    }
}
