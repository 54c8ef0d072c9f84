//! A hand-written SVG of a replay: the capacity the load needed, the desired and the ready
//! capacity over time, downsampled to about 2000 points (per point: the largest need and
//! desired capacity and the smallest ready capacity of the bins it stands for, so short
//! under-provisioning stays visible).

use std::fmt::Write;

use chrono::DateTime;

use super::engine::BinResult;
use super::trace::Trace;

const W: f64 = 1200.0;
const H: f64 = 520.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 50.0;
const BOTTOM: f64 = 70.0;
/// About how many points each line gets.
pub const POINTS: usize = 2000;

/// Name, color, stroke width and value of one line.
type Series<'a> = (&'a str, &'a str, &'a str, &'a dyn Fn(&Point) -> u32);

struct Point {
    t: i64,
    needed: u32,
    desired: u32,
    ready: u32,
}

fn downsample(bins: &[BinResult], bin_secs: i64) -> (Vec<Point>, i64) {
    let per = bins.len().div_ceil(POINTS).max(1);
    let mut pts = Vec::with_capacity(bins.len() / per + 1);
    for chunk in bins.chunks(per) {
        pts.push(Point {
            t: chunk[0].start,
            needed: chunk.iter().map(|b| b.needed).max().unwrap_or(0),
            desired: chunk.iter().map(|b| b.desired).max().unwrap_or(0),
            ready: chunk.iter().map(|b| b.ready).min().unwrap_or(0),
        });
    }
    (pts, per as i64 * bin_secs)
}

/// A round step for about `n` ticks over `span`.
fn nice_step(span: f64, n: f64) -> f64 {
    let raw = (span / n).max(1e-9);
    let mag = 10f64.powf(raw.log10().floor());
    let f = raw / mag;
    let nice = if f <= 1.0 {
        1.0
    } else if f <= 2.0 {
        2.0
    } else if f <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * mag
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The SVG document for `bins` of `trace`.
pub fn svg(trace: &Trace, bins: &[BinResult], title: &str) -> String {
    let mut s = String::new();
    let (pts, span_per_point) = downsample(bins, trace.bin_secs as i64);
    let (t0, t1) = (trace.start(), trace.end().max(trace.start() + 1));
    let ymax_data = pts
        .iter()
        .map(|p| p.needed.max(p.desired).max(p.ready))
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let ystep = nice_step(ymax_data, 6.0).max(1.0);
    let ymax = (ymax_data / ystep).ceil() * ystep;
    let pw = W - LEFT - RIGHT;
    let ph = H - TOP - BOTTOM;
    let x = |t: i64| LEFT + (t - t0) as f64 / (t1 - t0) as f64 * pw;
    let y = |v: f64| TOP + ph - v / ymax * ph;

    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="24" font-size="15" text-anchor="middle">{}</text>"#,
        W / 2.0,
        esc(title)
    );
    // Horizontal grid and y labels.
    let mut v = 0.0;
    while v <= ymax + 1e-9 {
        let yy = y(v);
        let _ = writeln!(
            s,
            r##"<line x1="{LEFT}" y1="{yy:.1}" x2="{:.1}" y2="{yy:.1}" stroke="#e4e4e4"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            LEFT + pw,
            LEFT - 6.0,
            yy + 4.0,
            v
        );
        v += ystep;
    }
    // Time ticks.
    let span = (t1 - t0) as f64;
    let steps = [
        60, 300, 600, 1800, 3600, 7200, 21_600, 43_200, 86_400, 172_800, 604_800, 1_209_600,
        2_592_000,
    ];
    let tstep = *steps
        .iter()
        .find(|st| span / **st as f64 <= 10.0)
        .unwrap_or(&31_536_000);
    let offset = trace.offset.local_minus_utc() as i64;
    let fmt = if tstep >= 86_400 {
        "%m-%d"
    } else if span > 86_400.0 {
        "%m-%d %H:%M"
    } else {
        "%H:%M"
    };
    // Ticks on the local grid of the trace's zone.
    let mut t = (t0 + offset).div_euclid(tstep) * tstep - offset;
    if t < t0 {
        t += tstep;
    }
    while t <= t1 {
        let xx = x(t);
        let label = DateTime::from_timestamp(t, 0)
            .map(|d| d.with_timezone(&trace.offset).format(fmt).to_string())
            .unwrap_or_default();
        let _ = writeln!(
            s,
            r##"<line x1="{xx:.1}" y1="{TOP}" x2="{xx:.1}" y2="{:.1}" stroke="#f0f0f0"/><text x="{xx:.1}" y="{:.1}" text-anchor="middle">{label}</text>"##,
            TOP + ph,
            TOP + ph + 18.0
        );
        t += tstep;
    }
    // Step lines (capacity holds until the next point), broken at gaps of the trace; the
    // need is also shaded, so where it rises above the ready line shows.
    let runs: Vec<&[Point]> = pts
        .chunk_by(|a, b| b.t - a.t <= 2 * span_per_point)
        .collect();
    let step_path = |run: &[Point], get: &dyn Fn(&Point) -> u32| {
        let mut d = String::new();
        for (i, p) in run.iter().enumerate() {
            let yy = y(get(p) as f64);
            if i == 0 {
                let _ = write!(d, "M{:.1} {yy:.1}", x(p.t));
            } else {
                let _ = write!(d, "H{:.1}V{yy:.1}", x(p.t));
            }
        }
        if let Some(last) = run.last() {
            let _ = write!(d, "H{:.1}", x((last.t + span_per_point).min(t1)));
        }
        d
    };
    let series: [Series; 3] = [
        ("needed", "#9e9e9e", "1", &|p| p.needed),
        ("desired", "#e67e22", "1.2", &|p| p.desired),
        ("ready", "#1f6fb2", "1.2", &|p| p.ready),
    ];
    for run in &runs {
        let base = y(0.0);
        let d = step_path(run, series[0].3);
        let _ = writeln!(
            s,
            r##"<path d="{d}V{base:.1}H{:.1}Z" fill="#e3e3e3" stroke="none"/>"##,
            x(run[0].t)
        );
    }
    for (_, color, width, get) in series.iter() {
        let d: String = runs.iter().map(|run| step_path(run, *get)).collect();
        let _ = writeln!(
            s,
            r#"<path d="{d}" fill="none" stroke="{color}" stroke-width="{width}" stroke-linejoin="round"/>"#
        );
    }
    // Axes and their labels.
    let _ = writeln!(
        s,
        r#"<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{:.1}" stroke="black"/><line x1="{LEFT}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="black"/>"#,
        TOP + ph,
        TOP + ph,
        LEFT + pw,
        TOP + ph
    );
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">time (UTC{})</text>"#,
        LEFT + pw / 2.0,
        H - 22.0,
        trace.offset
    );
    let _ = writeln!(
        s,
        r#"<text transform="translate(18 {:.1}) rotate(-90)" text-anchor="middle">capacity (units)</text>"#,
        TOP + ph / 2.0
    );
    // Legend.
    let labels = [
        "needed = ceil(load / unit capacity), most per point",
        "desired, most per point",
        "ready, least per point",
    ];
    let lx = LEFT + 12.0;
    let _ = writeln!(
        s,
        r##"<rect x="{}" y="{}" width="350" height="58" fill="white" fill-opacity="0.85" stroke="#cccccc"/>"##,
        lx - 6.0,
        TOP + 3.0
    );
    for (i, ((_, color, _, _), label)) in series.iter().zip(labels).enumerate() {
        let ly = TOP + 14.0 + i as f64 * 17.0;
        let _ = writeln!(
            s,
            r#"<line x1="{lx}" y1="{ly}" x2="{}" y2="{ly}" stroke="{color}" stroke-width="3"/><text x="{}" y="{}">{}</text>"#,
            lx + 22.0,
            lx + 28.0,
            ly + 4.0,
            esc(label)
        );
    }
    s.push_str("</svg>\n");
    s
}
