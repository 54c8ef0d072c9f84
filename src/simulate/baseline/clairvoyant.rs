//! The clairvoyant: the non-causal limit of any scaler for a given start-up delay. It knows
//! the whole trace and, at every tick, asks for exactly the capacity the busiest bin needs
//! until a capacity it asks for next could be ready: `ceil(load / unit_capacity)` at its
//! peak over `[now, now + startup + interval)`, at least the target's min. Units it no
//! longer needs go at once (scale-in is immediate in the model); units it will need are
//! asked for one start-up delay ahead. No causal scaler can keep less capacity without
//! running short where it does not; the summary of every replay reports its ratio to this
//! one.

use super::super::engine::{ceil_units, Controller, View};
use super::super::model::ServiceModel;
use super::super::trace::Trace;

/// The clairvoyant baseline.
pub struct Clairvoyant {
    /// `(bin start, bin end, units needed)`, in time order.
    needed: Vec<(i64, i64, u32)>,
    min: u32,
    interval_secs: u64,
    /// How far ahead each tick must cover: the start-up delay plus the tick interval.
    reach_secs: i64,
    initial: u32,
}

impl Clairvoyant {
    /// Ticking every `interval_secs` (the scaler it is compared with ticks as often).
    pub fn new(trace: &Trace, m: &ServiceModel, min: u32, interval_secs: u64) -> Self {
        let needed: Vec<(i64, i64, u32)> = trace
            .bins
            .iter()
            .enumerate()
            .map(|(i, b)| {
                (
                    b.start,
                    b.start + trace.bin_secs as i64,
                    ceil_units(trace.rate(i) / m.unit_capacity),
                )
            })
            .collect();
        let interval_secs = interval_secs.max(1);
        let reach_secs = (m.startup_secs + interval_secs) as i64;
        let mut c = Clairvoyant {
            needed,
            min,
            interval_secs,
            reach_secs,
            initial: min,
        };
        // Ready from the start for what comes before its first tick could act (the replay
        // starts ticking once a first datapoint is published).
        let t0 = trace.start();
        let p = m.metric_period_secs.max(1) as i64;
        let first_tick = t0.max((t0.div_euclid(p) + 1) * p + m.metric_delay_secs as i64);
        c.initial = c.peak(t0, first_tick + reach_secs);
        c
    }

    /// The most units any bin overlapping `[from, to)` needs, at least min.
    fn peak(&self, from: i64, to: i64) -> u32 {
        let first = self.needed.partition_point(|b| b.1 <= from);
        self.needed[first..]
            .iter()
            .take_while(|b| b.0 < to)
            .map(|b| b.2)
            .max()
            .unwrap_or(0)
            .max(self.min)
    }
}

impl Controller for Clairvoyant {
    fn interval_secs(&self) -> u64 {
        self.interval_secs
    }

    fn initial(&self) -> Option<u32> {
        Some(self.initial)
    }

    fn tick(&mut self, view: &View<'_>) -> u32 {
        self.peak(view.now, view.now + self.reach_secs)
    }
}
