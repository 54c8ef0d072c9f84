//! Request-rate traces: CSV files with the columns `timestamp,count`, the number of
//! requests that arrived in the bin starting at `timestamp`.

use chrono::{DateTime, FixedOffset};

/// One bin of a trace.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Bin {
    /// Start of the bin, Unix seconds.
    pub start: i64,
    /// Requests that arrived in the bin.
    pub count: f64,
}

/// A parsed trace: bins of `bin_secs`, strictly increasing. Missing rows are gaps (the load
/// there is unknown), not zero load.
#[derive(Clone, Debug, PartialEq)]
pub struct Trace {
    pub bin_secs: u64,
    pub bins: Vec<Bin>,
    /// The zone offset of the first timestamp, to write timestamps back as they came.
    pub offset: FixedOffset,
}

impl Trace {
    /// Builds a trace from bins (at least two, strictly increasing start times; the bin length
    /// is the smallest distance between two starts).
    pub fn new(bins: Vec<Bin>, offset: FixedOffset) -> Result<Trace, String> {
        if bins.len() < 2 {
            return Err(
                "a trace needs at least two rows (the bin length is read from them)".into(),
            );
        }
        // Inside the years the decision core handles, so no difference below overflows.
        if let Some((i, b)) = bins
            .iter()
            .enumerate()
            .find(|(_, b)| crate::policy::check_time_secs(b.start).is_err())
        {
            let e = crate::policy::check_time_secs(b.start).unwrap_err();
            return Err(format!("row {}: {e}", i + 2));
        }
        let mut bin = i64::MAX;
        for (i, w) in bins.windows(2).enumerate() {
            let d = w[1].start - w[0].start;
            if d <= 0 {
                return Err(format!(
                    "row {}: timestamps must increase strictly ({} after {})",
                    i + 3,
                    w[1].start,
                    w[0].start
                ));
            }
            bin = bin.min(d);
        }
        Ok(Trace {
            bin_secs: bin as u64,
            bins,
            offset,
        })
    }

    /// Parses `timestamp,count` CSV text. Timestamps are RFC 3339 (`1995-07-01T00:00:00-04:00`)
    /// or Unix seconds; counts are non-negative numbers. `source` names the text in errors.
    pub fn parse(source: &str, text: &str) -> Result<Trace, String> {
        let mut lines = text.lines().enumerate();
        let header = lines
            .by_ref()
            .find(|(_, l)| !l.trim().is_empty())
            .map(|(_, l)| l.trim().to_ascii_lowercase());
        let cols: Vec<String> = header
            .as_deref()
            .unwrap_or("")
            .split(',')
            .map(|c| c.trim().to_string())
            .collect();
        let (Some(ti), Some(ci)) = (
            cols.iter().position(|c| c == "timestamp"),
            cols.iter().position(|c| c == "count"),
        ) else {
            return Err(format!(
                "{source}:1: the header must name the columns `timestamp` and `count`"
            ));
        };
        let mut bins = Vec::new();
        let mut offset = None;
        for (i, line) in lines {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let fields: Vec<&str> = line.split(',').map(str::trim).collect();
            let at = |j: usize| fields.get(j).copied().unwrap_or("");
            let (start, off) = parse_timestamp(at(ti))
                .and_then(|(t, off)| crate::policy::check_time_secs(t).map(|()| (t, off)))
                .map_err(|e| format!("{source}:{}: timestamp: {e}", i + 1))?;
            let count: f64 = at(ci)
                .parse()
                .map_err(|_| format!("{source}:{}: count `{}` is not a number", i + 1, at(ci)))?;
            if !count.is_finite() || count < 0.0 {
                return Err(format!(
                    "{source}:{}: count must be a non-negative number, not {count}",
                    i + 1
                ));
            }
            offset.get_or_insert(off);
            bins.push(Bin { start, count });
        }
        Trace::new(bins, offset.unwrap_or_else(utc)).map_err(|e| format!("{source}: {e}"))
    }

    /// Multiplies every count by `factor`.
    pub fn scaled(mut self, factor: f64) -> Trace {
        for b in &mut self.bins {
            b.count *= factor;
        }
        self
    }

    /// The load of bin `i` in requests per second.
    pub fn rate(&self, i: usize) -> f64 {
        self.bins[i].count / self.bin_secs as f64
    }

    /// First instant covered.
    pub fn start(&self) -> i64 {
        self.bins[0].start
    }

    /// End of the last bin.
    pub fn end(&self) -> i64 {
        self.bins[self.bins.len() - 1].start + self.bin_secs as i64
    }

    /// `(bin start, requests per second)` for every bin: the forecaster's view of the load.
    pub fn rates(&self) -> Vec<(i64, f64)> {
        (0..self.bins.len())
            .map(|i| (self.bins[i].start, self.rate(i)))
            .collect()
    }

    /// Formats a Unix time in the trace's zone.
    pub fn format_time(&self, t: i64) -> String {
        DateTime::from_timestamp(t, 0)
            .map(|d| {
                d.with_timezone(&self.offset)
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            })
            .unwrap_or_else(|| t.to_string())
    }
}

fn utc() -> FixedOffset {
    FixedOffset::east_opt(0).expect("zero offset")
}

fn parse_timestamp(s: &str) -> Result<(i64, FixedOffset), String> {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit() || b == b'-') {
        if let Ok(n) = s.parse::<i64>() {
            return Ok((n, utc()));
        }
    }
    DateTime::parse_from_rfc3339(s)
        .map(|d| (d.timestamp(), *d.offset()))
        .map_err(|e| format!("`{s}` is neither RFC 3339 nor Unix seconds ({e})"))
}
