//! Runs `capstan simulate` on the small example trace.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("capstan-sim-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

fn capstan(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_capstan"))
        .args(args)
        .current_dir(root())
        .output()
        .expect("capstan runs")
}

const TRACE: &str = "examples/traces/step_3h_1min.csv";

#[test]
fn simulates_the_example_target_and_writes_csv_summary_and_plot() {
    let dir = scratch("policies");
    let out = dir.join("run.csv");
    let plot = dir.join("run.svg");
    let actions = dir.join("actions.jsonl");
    let o = capstan(&[
        "simulate",
        "--config",
        "config/example.toml",
        "--target",
        "sales-api",
        "--trace",
        TRACE,
        "--out",
        out.to_str().unwrap(),
        "--plot",
        plot.to_str().unwrap(),
        "--actions",
        actions.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("under-provisioned bins"), "{stdout}");
    assert!(stderr.contains("unit capacity: 100 requests/s"), "{stderr}");

    let csv = std::fs::read_to_string(&out).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "timestamp,load,needed,desired,ready");
    assert_eq!(lines.len(), 181, "one row per trace bin");
    assert!(
        lines[1].starts_with("2026-01-05T00:00:00Z,185,2,"),
        "{}",
        lines[1]
    );
    // The step to 800 requests/s needs 8 units; the policies get there.
    let max_ready = lines[1..]
        .iter()
        .map(|l| l.rsplit(',').next().unwrap().parse::<u32>().unwrap())
        .max()
        .unwrap();
    assert!(max_ready >= 8, "{max_ready}");

    // The summary lands next to the CSV by default.
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("run.json")).unwrap()).unwrap();
    assert_eq!(json["target"], "sales-api");
    assert_eq!(json["scaler"], "policies");
    assert_eq!(json["bins"], 180);
    assert_eq!(json["peak_needed"], 9);
    assert!(json["unit_hours"].as_f64().unwrap() > 0.0);
    assert!(json["ratio_to_oracle"].as_f64().unwrap() >= 1.0);
    assert!(json["scaling_actions"].as_u64().unwrap() > 0);
    assert_eq!(json["metrics"][0]["model"], "utilization");

    let svg = std::fs::read_to_string(&plot).unwrap();
    assert!(svg.starts_with("<svg"), "{}", &svg[..50]);
    assert!(svg.contains("desired") && svg.contains("ready") && svg.trim_end().ends_with("</svg>"));

    let acts = std::fs::read_to_string(&actions).unwrap();
    let first: serde_json::Value = serde_json::from_str(acts.lines().next().unwrap()).unwrap();
    assert!(
        first["reason"].as_str().unwrap().contains("scale"),
        "{first}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn runs_each_baseline() {
    let dir = scratch("baselines");
    for b in ["aws-target-tracking", "hpa", "static-peak"] {
        let out = dir.join(format!("{b}.csv"));
        let summary = dir.join(format!("{b}-summary.json"));
        let o = capstan(&[
            "simulate",
            "--target",
            "sales-api",
            "--trace",
            TRACE,
            "--out",
            out.to_str().unwrap(),
            "--summary",
            summary.to_str().unwrap(),
            "--baseline",
            b,
            "--startup",
            "2m",
            "--unit-capacity",
            "100",
        ]);
        assert!(
            o.status.success(),
            "{b}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
        assert_eq!(json["scaler"], b);
        assert_eq!(json["service"]["startup_secs"], 120);
        if b == "static-peak" {
            assert_eq!(json["scaling_actions"], 0);
            assert_eq!(json["under_provisioned_bins"], 0);
            assert_eq!(json["max_desired"], 9);
        }
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn rejects_bad_input_with_exit_code_2() {
    let dir = scratch("bad");
    let out = dir.join("run.csv");
    let o = capstan(&[
        "simulate",
        "--target",
        "sales-apy",
        "--trace",
        TRACE,
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("did you mean `sales-api`?"));

    let bad = dir.join("bad.csv");
    std::fs::write(
        &bad,
        "timestamp,count\n2026-01-05T00:00:00Z,1\n2026-01-05T00:01:00Z,x\n",
    )
    .unwrap();
    let o = capstan(&[
        "simulate",
        "--target",
        "sales-api",
        "--trace",
        bad.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains(":3: count `x` is not a number"));

    // A target whose policies say nothing about what one unit serves needs the flag.
    let o = capstan(&[
        "simulate",
        "--target",
        "catalog-db-readers",
        "--trace",
        TRACE,
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--unit-capacity is required"));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn traces_outside_the_years_or_too_long_to_replay_are_refused_before_replaying() {
    let dir = scratch("crafted");
    let out = dir.join("run.csv");
    let run = |name: &str, text: &str| {
        let trace = dir.join(name);
        std::fs::write(&trace, text).unwrap();
        let o = capstan(&[
            "simulate",
            "--target",
            "sales-api",
            "--trace",
            trace.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ]);
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    // Timestamps near +-2^63 overflowed the bin arithmetic (a panic).
    for (name, rows) in [
        ("max.csv", "9223372036854775000,1\n9223372036854775807,1\n"),
        (
            "min.csv",
            "-9223372036854775808,1\n-9223372036854775000,1\n",
        ),
    ] {
        let (code, err) = run(name, &format!("timestamp,count\n{rows}"));
        assert_eq!(code, Some(2), "{err}");
        assert!(err.contains(":2: timestamp: time "), "{err}");
        assert!(err.contains("outside the years 1678 to 2261"), "{err}");
    }
    // Two rows 292 years apart: 614 million ticks, once 19.7 GB asked for at once.
    let (code, err) = run(
        "centuries.csv",
        "timestamp,count\n1970-01-01T00:00:00Z,1\n2261-12-01T00:00:00Z,1\n",
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("more than the 10000000 a replay runs"),
        "{err}"
    );
    assert!(err.contains("hint: replay a shorter part"), "{err}");
    assert!(!out.exists(), "nothing written");
    let _ = std::fs::remove_dir_all(dir);
}
