//! Human durations as written in config files: `"90s"`, `"5m"`, `"1h30m"`, `"2d"`, `"0s"`.

use std::fmt;

/// Parses a duration such as `"90s"`, `"5m"`, `"1h30m"` or `"250ms"` into whole seconds
/// (milliseconds are allowed only when they add up to whole seconds).
pub fn parse_duration(s: &str) -> Result<u64, String> {
    let text = s.trim();
    if text.is_empty() {
        return Err("empty duration".into());
    }
    let bytes = text.as_bytes();
    let mut i = 0;
    let mut total_ms: u128 = 0;
    while i < bytes.len() {
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        if start == i {
            return Err(format!(
                "`{text}` is not a duration: expected a number at `{}`",
                &text[start..]
            ));
        }
        if i < bytes.len() && bytes[i] == b'.' {
            return Err(format!(
                "`{text}`: fractions are not supported; use a smaller unit, e.g. `90s` for 1.5m"
            ));
        }
        let n: u128 = text[start..i]
            .parse()
            .map_err(|_| format!("`{text}`: number too large"))?;
        let ustart = i;
        while i < bytes.len() && bytes[i].is_ascii_alphabetic() {
            i += 1;
        }
        let unit = &text[ustart..i];
        let ms_per: u128 = match unit {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "" => {
                return Err(format!(
                    "`{text}` has no unit: write it as `{n}s`, `{n}m` or `{n}h`"
                ))
            }
            other => {
                return Err(format!(
                    "`{text}`: unknown unit `{other}` (use ms, s, m, h or d)"
                ))
            }
        };
        total_ms = total_ms
            .checked_add(n.checked_mul(ms_per).ok_or("duration too large")?)
            .ok_or("duration too large")?;
    }
    if total_ms % 1000 != 0 {
        return Err(format!("`{text}` is not a whole number of seconds"));
    }
    let secs = total_ms / 1000;
    // Ten years is far beyond any sensible window; it also keeps arithmetic on timestamps safe.
    if secs > 10 * 365 * 86_400 {
        return Err(format!("`{text}` is longer than ten years"));
    }
    Ok(secs as u64)
}

/// Formats seconds the way config files write them: `90s` -> `1m30s`.
pub fn format_secs(secs: u64) -> String {
    if secs == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    let (d, rem) = (secs / 86_400, secs % 86_400);
    let (h, rem) = (rem / 3600, rem % 3600);
    let (m, s) = (rem / 60, rem % 60);
    for (v, u) in [(d, "d"), (h, "h"), (m, "m"), (s, "s")] {
        if v > 0 {
            out.push_str(&format!("{v}{u}"));
        }
    }
    out
}

/// A duration in whole seconds, displayed as config files write it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Default, serde::Serialize)]
#[serde(transparent)]
pub struct Secs(pub u64);

impl fmt::Display for Secs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_secs(self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_compounds() {
        for (text, secs) in [
            ("90s", 90),
            ("5m", 300),
            ("1h30m", 5400),
            ("2d", 172_800),
            ("0s", 0),
            ("1500ms500ms", 2),
            (" 15s ", 15),
        ] {
            assert_eq!(parse_duration(text), Ok(secs), "{text}");
        }
    }

    #[test]
    fn rejects_bad_durations_with_a_reason() {
        for (text, needle) in [
            ("", "empty"),
            ("90", "no unit"),
            ("5 m", "no unit"),
            ("m5", "expected a number"),
            ("5y", "unknown unit `y`"),
            ("1500ms", "whole number of seconds"),
            ("99999d", "ten years"),
            ("-5s", "expected a number"),
            ("1.5m", "fractions are not supported"),
        ] {
            let err = parse_duration(text).unwrap_err();
            assert!(err.contains(needle), "{text}: {err}");
        }
    }

    #[test]
    fn formats_round_trip() {
        for secs in [0, 1, 59, 60, 90, 3600, 5400, 86_400, 90_061] {
            assert_eq!(parse_duration(&format_secs(secs)), Ok(secs));
        }
        assert_eq!(format_secs(5400), "1h30m");
    }
}
