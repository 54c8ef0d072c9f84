//! The replay loop: a model of the service (load, ready capacity, start-up delay, a queue,
//! delayed and averaged metrics) driven by a [`Controller`] that sees only what had been
//! published by each tick.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use super::model::{ServiceModel, Values};
use super::trace::Trace;

/// One metric datapoint: the service averaged over one period aligned to the Unix epoch
/// (as CloudWatch aligns them), published `metric_delay` after `end`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Datapoint {
    /// End of the period, Unix seconds.
    pub end: i64,
    /// `None` when no part of the period is covered by the trace (a gap: nothing was
    /// measured).
    pub values: Option<Values>,
}

/// What a controller may look at when it ticks: nothing later than `now` minus the metric
/// delay.
#[derive(Clone, Copy, Debug)]
pub struct View<'a> {
    pub now: i64,
    /// Desired capacity (what was last asked for).
    pub current: u32,
    /// Capacity that is up and serving.
    pub ready: u32,
    /// Every datapoint published by `now`, oldest first.
    pub datapoints: &'a [Datapoint],
    /// `(bin start, requests per second)` of every trace bin that ended by `now` minus the
    /// metric delay, oldest first.
    pub load: &'a [(i64, f64)],
}

/// Decides the desired capacity at each tick.
pub trait Controller {
    /// Seconds between ticks.
    fn interval_secs(&self) -> u64;
    /// The capacity to start with, when the controller imposes one.
    fn initial(&self) -> Option<u32> {
        None
    }
    /// The desired capacity at `view.now`.
    fn tick(&mut self, view: &View<'_>) -> u32;
    /// Why the last tick decided what it did (kept for ticks that changed the capacity).
    fn reason(&self) -> Option<String> {
        None
    }
    /// Hands over the simulated service before the first tick. A controller that acts
    /// through the simulated cloud (the daemon's own loop, [`super::daemon::DaemonScaler`])
    /// keeps it, reads and sets capacity there, and returns `true`: its `tick` is then
    /// called with the service unlocked and an empty view, and what it returns is the
    /// capacity the service was left at.
    fn attach(&mut self, _sim: &SharedSim) -> bool {
        false
    }
}

/// The simulated service, shared between the replay loop and a controller that acts
/// through the simulated cloud.
#[derive(Clone)]
pub struct SharedSim(Arc<Mutex<Sim>>);

impl SharedSim {
    pub(crate) fn lock(&self) -> MutexGuard<'_, Sim> {
        // A panic in a tick already ended the replay; the state is still readable.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A tick that changed the desired capacity.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Action {
    pub at: i64,
    pub from: u32,
    pub to: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The outcome of one trace bin.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BinResult {
    pub start: i64,
    /// Requests per second.
    pub load: f64,
    /// `ceil(load / unit_capacity)`.
    pub needed: u32,
    /// Desired capacity at the end of the bin.
    pub desired: u32,
    /// The least capacity ready at any moment of the bin: the bin is under-provisioned
    /// exactly when `load > ready * unit_capacity`.
    pub ready: u32,
    /// Requests that arrived while the load exceeded the ready capacity (the excess part).
    pub exceeded: f64,
    /// Desired units times seconds over the bin (what is paid for: starting units too).
    pub unit_secs: f64,
}

/// A finished replay.
#[derive(Clone, Debug, PartialEq)]
pub struct Replay {
    pub bins: Vec<BinResult>,
    /// Desired capacity after each tick, with the tick time.
    pub ticks: Vec<(i64, u32)>,
    /// The ticks that changed the desired capacity.
    pub actions: Vec<Action>,
    pub scale_outs: u64,
    pub scale_ins: u64,
    /// Largest backlog of the modeled queue.
    pub max_backlog: f64,
}

/// `ceil` forgiving floating-point noise, at least 0.
pub fn ceil_units(x: f64) -> u32 {
    let c = (x - 1e-9).ceil();
    if c <= 0.0 {
        0
    } else if c >= u32::MAX as f64 {
        u32::MAX
    } else {
        c as u32
    }
}

#[derive(Default)]
struct PeriodAcc {
    known: f64,
    load: f64,
    util: f64,
    per_unit: f64,
    latency: f64,
}

/// The service model's state: load, capacity, launches under way, the queue, and every
/// metric period closed so far.
pub struct Sim {
    trace: Arc<Trace>,
    pub(crate) m: ServiceModel,
    pub(crate) now: i64,
    pub(crate) desired: u32,
    pub(crate) ready: u32,
    /// Launches not yet ready: (ready at, units), oldest first.
    pub(crate) pending: VecDeque<(i64, u32)>,
    pub(crate) queue: f64,
    max_backlog: f64,
    last_rate: f64,
    /// Index of the current bin, or of the next one while in a gap.
    bin: usize,
    in_bin: bool,
    cur: BinResult,
    period_end: i64,
    acc: PeriodAcc,
    pub(crate) datapoints: Vec<Datapoint>,
    out: Vec<BinResult>,
}

impl Sim {
    fn new(trace: Arc<Trace>, m: ServiceModel, initial: u32) -> Self {
        let t0 = trace.start();
        let p = m.metric_period_secs.max(1) as i64;
        let mut s = Sim {
            now: t0,
            desired: initial,
            ready: initial,
            pending: VecDeque::new(),
            queue: 0.0,
            max_backlog: 0.0,
            last_rate: 0.0,
            bin: 0,
            in_bin: false,
            cur: BinResult {
                start: t0,
                load: 0.0,
                needed: 0,
                desired: 0,
                ready: 0,
                exceeded: 0.0,
                unit_secs: 0.0,
            },
            period_end: (t0.div_euclid(p) + 1) * p,
            acc: PeriodAcc::default(),
            datapoints: Vec::with_capacity(
                ((trace.end() - t0) / p + 2).clamp(0, 10_000_000) as usize
            ),
            out: Vec::with_capacity(trace.bins.len()),
            trace,
            m,
        };
        s.enter_bin();
        s
    }

    fn enter_bin(&mut self) {
        let load = self.trace.rate(self.bin);
        self.in_bin = true;
        self.cur = BinResult {
            start: self.trace.bins[self.bin].start,
            load,
            needed: ceil_units(load / self.m.unit_capacity),
            desired: self.desired,
            // The least ready capacity over the bin's time, set as time passes.
            ready: u32::MAX,
            exceeded: 0.0,
            unit_secs: 0.0,
        };
    }

    fn bin_end(&self) -> i64 {
        self.trace.bins[self.bin].start + self.trace.bin_secs as i64
    }

    /// Runs the service model up to `to`.
    fn advance(&mut self, to: i64) {
        let n = self.trace.bins.len();
        while self.now < to {
            let boundary = if self.bin >= n {
                i64::MAX
            } else if self.in_bin {
                self.bin_end()
            } else {
                self.trace.bins[self.bin].start
            };
            let next_ready = self.pending.front().map_or(i64::MAX, |p| p.0);
            let next = to.min(boundary).min(next_ready).min(self.period_end);
            if next > self.now {
                let rate = if self.in_bin { self.cur.load } else { 0.0 };
                self.integrate((next - self.now) as f64, rate, self.in_bin);
                self.now = next;
            }
            while self.pending.front().is_some_and(|p| p.0 <= self.now) {
                let (_, units) = self.pending.pop_front().expect("checked");
                self.ready += units;
            }
            if self.now == self.period_end {
                self.close_period();
            }
            if self.bin < n {
                if self.in_bin && self.now == boundary {
                    self.cur.desired = self.desired;
                    if self.cur.ready == u32::MAX {
                        self.cur.ready = self.ready;
                    }
                    self.out.push(self.cur);
                    self.bin += 1;
                    self.in_bin = false;
                }
                if !self.in_bin && self.bin < n && self.now == self.trace.bins[self.bin].start {
                    self.enter_bin();
                }
            }
        }
    }

    /// Units asked for and not ready yet.
    pub(crate) fn pending_units(&self) -> u32 {
        self.pending.iter().map(|p| p.1).sum()
    }

    /// Units busy now: all ready ones while a backlog waits, else what the load needs.
    pub(crate) fn busy(&self) -> f64 {
        if self.queue > 0.0 {
            self.ready as f64
        } else {
            (self.last_rate / self.m.unit_capacity).min(self.ready as f64)
        }
    }

    fn integrate(&mut self, dt: f64, rate: f64, known: bool) {
        let capacity = self.ready as f64 * self.m.unit_capacity;
        if known {
            self.cur.ready = self.cur.ready.min(self.ready);
            self.cur.exceeded += (rate - capacity).max(0.0) * dt;
            self.cur.unit_secs += self.desired as f64 * dt;
            let util = if capacity > 0.0 {
                (100.0 * rate / capacity).min(100.0)
            } else if rate > 0.0 {
                100.0
            } else {
                0.0
            };
            let rho = if capacity > 0.0 {
                rate / capacity
            } else if rate > 0.0 {
                f64::INFINITY
            } else {
                0.0
            };
            let a = &mut self.acc;
            a.known += dt;
            a.load += rate * dt;
            a.util += util * dt;
            a.per_unit += rate / self.ready.max(1) as f64 * dt;
            a.latency += self.m.base_latency_secs / (1.0 - rho.min(0.99)) * dt;
        }
        self.queue = (self.queue + (rate - capacity) * dt).max(0.0);
        self.max_backlog = self.max_backlog.max(self.queue);
        self.last_rate = rate;
    }

    fn close_period(&mut self) {
        let a = std::mem::take(&mut self.acc);
        let values = (a.known > 0.0).then(|| {
            let busy = self.busy();
            Values {
                utilization: a.util / a.known,
                per_unit_rate: a.per_unit / a.known,
                count: a.load,
                per_unit_count: a.per_unit,
                rate: a.load / a.known,
                backlog: self.queue,
                busy,
                latency: a.latency / a.known,
            }
        });
        self.datapoints.push(Datapoint {
            end: self.period_end,
            values,
        });
        self.period_end += self.m.metric_period_secs.max(1) as i64;
    }

    /// Sets the desired capacity at `now`: increases become ready after the start-up
    /// delay; decreases cancel pending launches (newest first), then stop ready units.
    pub(crate) fn apply(&mut self, desired: u32) -> std::cmp::Ordering {
        let ord = desired.cmp(&self.desired);
        match ord {
            std::cmp::Ordering::Greater => {
                let n = desired - self.desired;
                if self.m.startup_secs == 0 {
                    self.ready += n;
                } else {
                    self.pending
                        .push_back((self.now + self.m.startup_secs as i64, n));
                }
            }
            std::cmp::Ordering::Less => {
                let mut remove = self.desired - desired;
                while remove > 0 {
                    let Some(back) = self.pending.back_mut() else {
                        break;
                    };
                    let k = back.1.min(remove);
                    back.1 -= k;
                    remove -= k;
                    if back.1 == 0 {
                        self.pending.pop_back();
                    }
                }
                self.ready = self.ready.saturating_sub(remove);
            }
            std::cmp::Ordering::Equal => {}
        }
        self.desired = desired;
        ord
    }
}

/// Replays `trace` through `ctl` with the service model `m`, starting at `initial` ready
/// units (or the controller's own initial capacity). `progress` is called now and then with
/// the share done (0..=1).
pub fn replay(
    trace: &Trace,
    m: &ServiceModel,
    initial: u32,
    ctl: &mut dyn Controller,
    progress: &mut dyn FnMut(f64),
) -> Replay {
    let initial = ctl.initial().unwrap_or(initial);
    let shared = SharedSim(Arc::new(Mutex::new(Sim::new(
        Arc::new(trace.clone()),
        m.clone(),
        initial,
    ))));
    let on_cloud = ctl.attach(&shared);
    let rates = trace.rates();
    let bin = trace.bin_secs as i64;
    let delay = m.metric_delay_secs as i64;
    let (t0, t_end) = (trace.start(), trace.end());
    let interval = ctl.interval_secs().max(1) as i64;
    let total_ticks = ((t_end - t0) / interval + 1).max(1) as usize;
    let report_every = (total_ticks / 200).max(1);
    let mut ticks = Vec::with_capacity(total_ticks);
    let (mut published, mut known_bins) = (0usize, 0usize);
    let (mut outs, mut ins) = (0u64, 0u64);
    let mut actions = Vec::new();
    // The scaler starts with its first datapoint: before that it would see nothing at all,
    // which is not how a running scaler meets its load.
    let mut t = t0.max(shared.lock().period_end + delay);
    while t < t_end {
        let (from, want) = {
            let mut sim = shared.lock();
            sim.advance(t);
            while published < sim.datapoints.len() && sim.datapoints[published].end + delay <= t {
                published += 1;
            }
            while known_bins < rates.len() && rates[known_bins].0 + bin + delay <= t {
                known_bins += 1;
            }
            let from = sim.desired;
            if on_cloud {
                (from, None)
            } else {
                let view = View {
                    now: t,
                    current: sim.desired,
                    ready: sim.ready,
                    datapoints: &sim.datapoints[..published],
                    load: &rates[..known_bins],
                };
                (from, Some(ctl.tick(&view)))
            }
        };
        let want = match want {
            Some(w) => {
                shared.lock().apply(w);
                w
            }
            // The daemon's loop reads and sets the capacity through the simulated cloud.
            None => ctl.tick(&View {
                now: t,
                current: from,
                ready: 0,
                datapoints: &[],
                load: &[],
            }),
        };
        match want.cmp(&from) {
            std::cmp::Ordering::Greater => outs += 1,
            std::cmp::Ordering::Less => ins += 1,
            std::cmp::Ordering::Equal => {}
        }
        if want != from {
            actions.push(Action {
                at: t,
                from,
                to: want,
                reason: ctl.reason(),
            });
        }
        ticks.push((t, want));
        if ticks.len() % report_every == 0 {
            progress(ticks.len() as f64 / total_ticks as f64);
        }
        t += interval;
    }
    let mut sim = shared.lock();
    sim.advance(t_end);
    progress(1.0);
    Replay {
        bins: std::mem::take(&mut sim.out),
        ticks,
        actions,
        scale_outs: outs,
        scale_ins: ins,
        max_backlog: sim.max_backlog,
    }
}
