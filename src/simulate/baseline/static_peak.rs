//! Static provisioning for the peak: the capacity the busiest bin of the whole trace needs
//! (`ceil(load / unit_capacity)`, at least the target's min), ready from the start and never
//! changed. It never under-provisions and is the usual answer without autoscaling; it is
//! not causal (it knows the peak in advance).

use super::super::engine::{ceil_units, Controller, View};
use super::super::trace::Trace;

/// The static-peak baseline.
pub struct StaticPeak {
    capacity: u32,
}

impl StaticPeak {
    pub fn new(trace: &Trace, unit_capacity: f64, min: u32) -> Self {
        let peak = (0..trace.bins.len())
            .map(|i| ceil_units(trace.rate(i) / unit_capacity))
            .max()
            .unwrap_or(0);
        StaticPeak {
            capacity: peak.max(min),
        }
    }

    pub fn capacity(&self) -> u32 {
        self.capacity
    }
}

impl Controller for StaticPeak {
    fn interval_secs(&self) -> u64 {
        // It never changes its mind; tick rarely.
        3600
    }

    fn initial(&self) -> Option<u32> {
        Some(self.capacity)
    }

    fn tick(&mut self, _view: &View<'_>) -> u32 {
        self.capacity
    }
}
