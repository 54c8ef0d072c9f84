//! What a replay amounts to: the per-bin CSV and the summary (printed and as JSON).

use std::io::{self, Write};

use serde::Serialize;

use super::engine::{BinResult, Replay};
use super::model::ServiceModel;
use super::trace::Trace;

/// The summary of one replay.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Summary {
    pub target: String,
    /// `policies` (the target's own) or the baseline's name.
    pub scaler: String,
    pub start: String,
    pub end: String,
    pub bins: usize,
    pub bin_secs: u64,
    pub service: ServiceModel,
    /// Seconds between the scaler's ticks.
    pub tick_secs: u64,
    pub initial: u32,
    /// Bins with `load > ready * unit_capacity`.
    pub under_provisioned_bins: usize,
    pub under_provisioned_share: f64,
    pub requests: f64,
    /// Requests that arrived beyond the ready capacity.
    pub requests_over_capacity: f64,
    pub over_capacity_share: f64,
    /// Desired (paid-for) units times hours, over the trace's bins.
    pub unit_hours: f64,
    /// `ceil(load / unit_capacity)`, at least the target's min, each bin, times hours.
    pub oracle_unit_hours: f64,
    pub ratio_to_oracle: f64,
    /// Unit-hours of the clairvoyant (`--baseline clairvoyant`) with the same start-up
    /// delay and tick: the least any scaler can pay without running short.
    pub clairvoyant_unit_hours: f64,
    pub ratio_to_clairvoyant: f64,
    pub scaling_actions: u64,
    pub scale_outs: u64,
    pub scale_ins: u64,
    pub peak_needed: u32,
    pub max_desired: u32,
    /// Largest backlog of the modeled queue, in requests (when a metric is a backlog).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_backlog: Option<f64>,
}

/// Whether a bin had more load than ready capacity.
pub fn under_provisioned(b: &BinResult, unit_capacity: f64) -> bool {
    b.load > b.ready as f64 * unit_capacity * (1.0 + 1e-12) + 1e-12
}

#[allow(clippy::too_many_arguments)]
pub fn summarize(
    target: &str,
    scaler: &str,
    trace: &Trace,
    service: &ServiceModel,
    tick_secs: u64,
    initial: u32,
    min: u32,
    queue_modeled: bool,
    r: &Replay,
) -> Summary {
    let bin_h = trace.bin_secs as f64 / 3600.0;
    let under = r
        .bins
        .iter()
        .filter(|b| under_provisioned(b, service.unit_capacity))
        .count();
    let requests: f64 = r.bins.iter().map(|b| b.load * trace.bin_secs as f64).sum();
    let over: f64 = r.bins.iter().map(|b| b.exceeded).sum();
    let unit_hours = r.bins.iter().map(|b| b.unit_secs).sum::<f64>() / 3600.0;
    let oracle: f64 = r
        .bins
        .iter()
        .map(|b| b.needed.max(min) as f64 * bin_h)
        .sum();
    let share = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
    Summary {
        target: target.into(),
        scaler: scaler.into(),
        start: trace.format_time(trace.start()),
        end: trace.format_time(trace.end()),
        bins: r.bins.len(),
        bin_secs: trace.bin_secs,
        service: service.clone(),
        tick_secs,
        initial,
        under_provisioned_bins: under,
        under_provisioned_share: share(under as f64, r.bins.len() as f64),
        requests,
        requests_over_capacity: over,
        over_capacity_share: share(over, requests),
        unit_hours,
        oracle_unit_hours: oracle,
        ratio_to_oracle: share(unit_hours, oracle),
        clairvoyant_unit_hours: 0.0,
        ratio_to_clairvoyant: 0.0,
        scaling_actions: r.scale_outs + r.scale_ins,
        scale_outs: r.scale_outs,
        scale_ins: r.scale_ins,
        peak_needed: r.bins.iter().map(|b| b.needed).max().unwrap_or(0),
        max_desired: r.bins.iter().map(|b| b.desired).max().unwrap_or(0),
        max_backlog: queue_modeled.then_some(r.max_backlog),
    }
}

impl Summary {
    /// Sets the clairvoyant's unit-hours and this run's ratio to them.
    pub fn set_clairvoyant(&mut self, unit_hours: f64) {
        self.clairvoyant_unit_hours = unit_hours;
        self.ratio_to_clairvoyant = if unit_hours > 0.0 {
            self.unit_hours / unit_hours
        } else {
            0.0
        };
    }

    /// The summary for people, a few aligned lines.
    pub fn human(&self) -> String {
        let pct = |x: f64| format!("{:.2}%", x * 100.0);
        format!(
            "{} ({}) on {} bins of {} s, {} .. {}\n\
             \x20 under-provisioned bins   {} ({} bins)\n\
             \x20 requests over capacity   {} ({:.0} of {:.0})\n\
             \x20 unit-hours               {:.1} (oracle {:.1}, ratio {:.2}; clairvoyant {:.1}, ratio {:.2})\n\
             \x20 scaling actions          {} ({} out, {} in)\n\
             \x20 peak needed, desired    {}, {}\n{}",
            self.target,
            self.scaler,
            self.bins,
            self.bin_secs,
            self.start,
            self.end,
            pct(self.under_provisioned_share),
            self.under_provisioned_bins,
            pct(self.over_capacity_share),
            self.requests_over_capacity,
            self.requests,
            self.unit_hours,
            self.oracle_unit_hours,
            self.ratio_to_oracle,
            self.clairvoyant_unit_hours,
            self.ratio_to_clairvoyant,
            self.scaling_actions,
            self.scale_outs,
            self.scale_ins,
            self.peak_needed,
            self.max_desired,
            self.max_backlog
                .map(|b| format!("  largest backlog          {b:.0}\n"))
                .unwrap_or_default(),
        )
    }
}

/// A number without trailing zeros, at most 4 decimals.
fn short(x: f64) -> String {
    let s = format!("{x:.4}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".into()
    } else {
        s.to_string()
    }
}

/// Writes `timestamp,load,needed,desired,ready`, one row per bin (load in requests per
/// second).
pub fn write_csv(w: &mut dyn Write, trace: &Trace, bins: &[BinResult]) -> io::Result<()> {
    writeln!(w, "timestamp,load,needed,desired,ready")?;
    for b in bins {
        writeln!(
            w,
            "{},{},{},{},{}",
            trace.format_time(b.start),
            short(b.load),
            b.needed,
            b.desired,
            b.ready
        )?;
    }
    Ok(())
}
