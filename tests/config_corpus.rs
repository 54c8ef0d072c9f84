//! The corpus of broken configs: each file under tests/configs/invalid/ must fail
//! `capstan validate` with exit code 2 and print exactly the errors in its `.expected`
//! file (every error, with file:line:column, key and hint), and `capstan run` must refuse it
//! with the same errors and exit code 2 before any AWS call. Shipped configs must pass.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

fn capstan() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_capstan"));
    c.current_dir(env!("CARGO_MANIFEST_DIR"));
    c
}

fn check_invalid(input: &Path, expected: &Path) {
    let rel = input.strip_prefix(env!("CARGO_MANIFEST_DIR")).unwrap();
    let out = capstan().arg("validate").arg(rel).output().unwrap();
    let want = std::fs::read_to_string(expected).unwrap();
    let got = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(2), "{}: exit code", rel.display());
    assert_eq!(got, want, "{}: errors differ", rel.display());
    assert!(
        out.stdout.is_empty(),
        "{}: nothing on stdout",
        rel.display()
    );
}

#[test]
fn every_broken_config_yields_its_exact_errors() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/configs/invalid");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    assert!(files.len() >= 12, "the corpus is there");
    for f in files {
        check_invalid(&f, &f.with_extension("expected"));
    }
}

#[test]
fn a_directory_with_two_global_tables_is_refused() {
    let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/configs");
    check_invalid(&base.join("twoglobals"), &base.join("twoglobals.expected"));
}

#[test]
fn poll_every_is_checked_against_the_poll_interval_of_another_file() {
    let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/configs");
    check_invalid(&base.join("pollevery"), &base.join("pollevery.expected"));
}

#[test]
fn poll_every_sets_the_cadence_and_widens_the_default_staleness() {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/configs/pollevery/b-targets.toml"),
    )
    .unwrap();
    // With the default poll interval (15s), 20s is valid.
    let c = capstan::config::from_str("b.toml", &text).unwrap();
    let m = |name: &str| c.targets[0].metric(name).unwrap().clone();
    assert_eq!(m("orders").poll_every_secs, Some(20));
    assert_eq!(m("cpu").poll_every_secs, None);
    let stale = |name: &str| match m(name).source {
        capstan::config::MetricSource::Cloudwatch {
            stale_after_secs, ..
        } => stale_after_secs,
        _ => unreachable!(),
    };
    assert_eq!(stale("cpu"), 180, "3 periods");
    assert_eq!(stale("orders"), 200, "3 periods plus poll_every");
    // With a 30s poll interval in the same text, it is refused at its place.
    let e = capstan::config::from_str(
        "b.toml",
        &format!("[global]\npoll_interval = \"30s\"\n{text}"),
    )
    .unwrap_err();
    assert_eq!(e.len(), 1);
    assert_eq!((e[0].line, e[0].column), (20, 14));
    assert_eq!(e[0].key, "target[0].metric[1].poll_every");
}

#[test]
fn every_error_names_file_line_and_column() {
    let out = capstan()
        .args(["validate", "tests/configs/invalid"])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stderr).unwrap();
    let errors: Vec<&str> = text.lines().filter(|l| l.starts_with("error: ")).collect();
    assert!(errors.len() > 30, "{}", errors.len());
    for e in errors {
        let loc = e.trim_start_matches("error: ").split(": ").next().unwrap();
        let parts: Vec<&str> = loc.rsplitn(3, ':').collect();
        assert!(
            parts.len() == 3 && parts[0].parse::<u32>().is_ok() && parts[1].parse::<u32>().is_ok(),
            "no file:line:col in {e}"
        );
    }
}

#[test]
fn shipped_configs_are_valid() {
    for p in ["config/example.toml", "config/examples", "config/demo.toml"] {
        if !Path::new(env!("CARGO_MANIFEST_DIR")).join(p).exists() {
            continue;
        }
        let out = capstan().args(["validate", p]).output().unwrap();
        assert!(
            out.status.success(),
            "{p}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).starts_with("ok: "));
    }
}

#[test]
fn schema_is_json_and_describes_targets() {
    let out = capstan().arg("schema").output().unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let text = v.to_string();
    for key in [
        "target",
        "global",
        "stabilization_window",
        "target_per_unit",
        "include_in_flight",
    ] {
        assert!(text.contains(key), "schema lacks {key}");
    }
}

#[test]
fn every_error_has_a_hint() {
    let out = capstan()
        .args(["validate", "tests/configs/invalid"])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stderr).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    for (i, l) in lines.iter().enumerate() {
        if l.starts_with("error: ") {
            assert!(
                lines.get(i + 1).is_some_and(|h| h.starts_with("  hint: ")),
                "no hint for {l}"
            );
        }
    }
}

/// `capstan run` on each broken config: the same errors, exit code 2, and nothing started
/// (no AWS request reaches the recording proxy it is pointed at, no start-up log).
#[test]
fn run_refuses_every_broken_config_before_any_aws_call() {
    let (url, rec) = common::proxy::start("127.0.0.1:9");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/configs/invalid");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    for f in files {
        let rel = f.strip_prefix(env!("CARGO_MANIFEST_DIR")).unwrap();
        let out = capstan()
            .arg("run")
            .arg("--config")
            .arg(rel)
            .env("AWS_ENDPOINT_URL", &url)
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_REGION", "us-east-1")
            .output()
            .unwrap();
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(out.status.code(), Some(2), "{}: {err}", rel.display());
        let want = std::fs::read_to_string(f.with_extension("expected")).unwrap();
        for line in want.lines().filter(|l| l.starts_with("error: ")) {
            assert!(err.contains(line), "{}: missing {line}", rel.display());
        }
        assert!(!err.contains("capstan starting"), "{}", rel.display());
    }
    assert!(rec.log().is_empty(), "AWS calls: {:?}", rec.ops());
}

#[test]
fn files_that_never_end_are_not_text_or_cannot_be_read_get_a_clear_error() {
    // A device that never ends was read until memory ran out.
    let out = capstan().args(["validate", "/dev/zero"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.starts_with("error: /dev/zero: the file is larger than 32 MiB"),
        "{err}"
    );
    assert!(err.contains("  hint: split the targets"), "{err}");

    // Bytes that are not UTF-8: the line and column of the first, not only the file.
    let dir = std::env::temp_dir().join(format!("capstan-read-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let latin1 = dir.join("latin1.toml");
    std::fs::write(&latin1, b"[[target]]\nname = \"caf\xe9\"\n").unwrap();
    let out = capstan().arg("validate").arg(&latin1).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    let want = format!(
        "error: {}:2:12: the file is not UTF-8 text: byte 0xe9\n  hint: TOML files are UTF-8",
        latin1.display()
    );
    assert!(err.starts_with(&want), "{err}");

    // A file that cannot be read: the system's reason with the path, and a hint.
    let missing = dir.join("missing.toml");
    let out = capstan().arg("validate").arg(&missing).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    let want = format!(
        "error: {}: cannot read file: No such file or directory (os error 2)\n  hint: check the path",
        missing.display()
    );
    assert!(err.starts_with(&want), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
