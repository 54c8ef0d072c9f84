//! `capstan decide` end to end: JSON Lines in, one decision per line out, history kept
//! across lines as the daemon keeps it.

use std::io::Write;
use std::process::{Command, Stdio};

fn capstan(args: &[&str], stdin: &str) -> (i32, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_capstan"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

fn desired(stdout: &str) -> Vec<u64> {
    stdout
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["desired"]
                .as_u64()
                .unwrap()
        })
        .collect()
}

#[test]
fn the_flash_sale_example_scales_out_holds_on_missing_data_and_stabilizes_down() {
    let (code, out, err) = capstan(
        &[
            "decide",
            "--target",
            "sales-api",
            "--input",
            "examples/flash-sale.jsonl",
        ],
        "",
    );
    assert_eq!(code, 0, "{err}");
    // Business-hours floor 4 at once; rate-limited scale-out to max 20; a missing CPU
    // datapoint holds; the 5-minute stabilization delays the scale-in; 50% per minute.
    assert_eq!(
        desired(&out),
        vec![4, 4, 8, 14, 19, 20, 20, 20, 20, 20, 12, 12, 12, 9]
    );
    let first: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    for key in [
        "at",
        "target",
        "current",
        "desired",
        "action",
        "reason",
        "explanation",
    ] {
        assert!(first.get(key).is_some(), "output lacks {key}");
    }
    assert!(out
        .lines()
        .nth(6)
        .unwrap()
        .contains("cpu: missing, no proposal"));
}

#[test]
fn reads_stdin_and_takes_current_from_each_line() {
    let input = r#"{"at":"2026-11-24T03:00:00Z","current":2,"metrics":{"backlog":{"visible":200,"in_flight":100,"delayed":50}}}
{"at":"2026-11-24T03:00:15Z","current":7,"metrics":{"backlog":{"visible":200,"in_flight":100,"delayed":50}}}
"#;
    let (code, out, err) = capstan(&["decide", "--target", "order-workers", "--brief"], input);
    assert_eq!(code, 0, "{err}");
    // 300 messages (visible + in flight) at 20 per task: 15, capped at max 10; from 2 the
    // default rate limit allows 6; from 7 (what exists) it allows 10.
    assert_eq!(desired(&out), vec![6, 10]);
}

#[test]
fn bad_input_names_the_line_and_exits_2() {
    let input = "{\"at\":\"2026-11-24T03:00:00Z\",\"current\":2}\n{\"at\": 5}\n";
    let (code, out, err) = capstan(&["decide", "--target", "sales-api"], input);
    assert_eq!(code, 2);
    assert_eq!(out.lines().count(), 1, "the first line was decided");
    assert!(err.contains("<stdin>:2:"), "{err}");
    let (code, _, err) = capstan(&["decide", "--target", "sales-apy"], "");
    assert_eq!(code, 2);
    assert!(err.contains("did you mean `sales-api`?"), "{err}");
    let (code, _, err) = capstan(
        &["decide", "--target", "sales-api"],
        "{\"at\":\"2026-11-24T03:00:00Z\"}\n",
    );
    assert_eq!(code, 2);
    assert!(err.contains("needs \"current\""), "{err}");
}

#[test]
fn times_and_forecast_bins_the_core_cannot_use_are_refused_with_their_line() {
    let ok = "{\"at\":\"2026-11-24T03:00:00Z\",\"current\":2}\n";
    let forecast = |start: &str, step: &str| {
        format!("{{\"at\":\"2026-11-24T03:00:10Z\",\"metrics\":{{\"rps\":100}},\"forecast\":{{\"start\":\"{start}\",\"step_secs\":{step},\"values\":[1,2,3]}}}}\n")
    };
    let cases = [
        // Before 1677 every rate-limit period and window collapsed onto one instant.
        (
            "{\"at\":\"1600-01-01T00:00:00Z\",\"current\":2}\n".to_string(),
            "<stdin>:1: \"at\": time 1600-01-01T00:00:00+00:00 is outside the years 1678 to 2261",
        ),
        (
            format!("{ok}{{\"at\":\"2262-06-01T00:00:00Z\"}}\n"),
            "<stdin>:2: \"at\": time 2262-06-01",
        ),
        // A bin of 1e15 s made the forecast's end overflow (a panic).
        (
            ok.to_string() + &forecast("2026-11-24T03:00:00Z", "1000000000000000"),
            "<stdin>:2: \"forecast.step_secs\" is 1000000000000000, not between 1 and 86400",
        ),
        (
            ok.to_string() + &forecast("2026-11-24T03:00:00Z", "0"),
            "\"forecast.step_secs\" is 0",
        ),
        (
            ok.to_string() + &forecast("1000-01-01T00:00:00Z", "300"),
            "<stdin>:2: \"forecast.start\": time 1000-01-01",
        ),
    ];
    for (input, want) in cases {
        let (code, _, err) = capstan(&["decide", "--target", "sales-api"], &input);
        assert_eq!(code, 2, "{input}: {err}");
        assert!(err.contains(want), "{input}: {err}");
        assert!(err.contains("  hint: "), "{input}: {err}");
    }
}

#[test]
fn a_line_of_80000_metric_names_is_read_in_linear_time() {
    // Each name used to be looked up among the names before it: 80,000 names took 65 s in
    // a release build. Now a fraction of a second, far under the limit even in a debug
    // build on a busy machine.
    let mut line = String::from("{\"at\":\"2026-11-24T03:00:00Z\",\"current\":2,\"metrics\":{");
    for i in 0..80_000 {
        line.push_str(&format!("\"m{i}\":1,"));
    }
    line.push_str("\"cpu\":50}}\n");
    let mut child = Command::new(env!("CARGO_BIN_EXE_capstan"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["decide", "--target", "sales-api", "--brief"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(line.as_bytes())
        .unwrap();
    let started = std::time::Instant::now();
    let limit = std::time::Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("80,000 metric names took more than {limit:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(desired(&String::from_utf8(out.stdout).unwrap()), [2]);
}

#[test]
fn input_that_never_ends_a_line_or_is_not_text_is_refused() {
    // Read until memory ran out, once.
    let (code, out, err) = capstan(
        &["decide", "--target", "sales-api", "--input", "/dev/zero"],
        "",
    );
    assert_eq!(code, 2, "{err}");
    assert!(out.is_empty());
    assert!(
        err.starts_with("error: /dev/zero:1: the line is longer than 64 MiB\n  hint: "),
        "{err}"
    );
    let dir = std::env::temp_dir().join(format!("capstan-decide-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let latin1 = dir.join("latin1.jsonl");
    std::fs::write(
        &latin1,
        b"{\"at\":\"2026-11-24T03:00:00Z\",\"current\":2}\n{\"at\":\"2026-11-24T03:00:15Z\",\"scale_in_blocked\":\"d\xe9ploiement\"}\n",
    )
    .unwrap();
    let (code, out, err) = capstan(
        &[
            "decide",
            "--target",
            "sales-api",
            "--input",
            latin1.to_str().unwrap(),
        ],
        "",
    );
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(code, 2, "{err}");
    assert_eq!(out.lines().count(), 1, "the first line was decided");
    assert!(
        err.contains("latin1.jsonl:2:51: the line is not UTF-8 text"),
        "{err}"
    );
}
