//! The fuzz targets' kept inputs (`tests/fuzz-inputs/<target>/`: the seed corpus and every
//! input that once failed), replayed through the same checks as `fuzz/` on every run.

mod fuzzing;

use std::path::Path;

fn replay(target: &str, check: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz-inputs")
        .join(target);
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        let r = std::panic::catch_unwind(|| check(&data));
        assert!(r.is_ok(), "{}", path.display());
        n += 1;
    }
    assert!(n > 0, "no inputs in {}", dir.display());
}

#[test]
fn config_inputs() {
    replay("config", fuzzing::config);
}

#[test]
fn decide_lines_inputs() {
    replay("decide_lines", fuzzing::decide_lines);
}

#[test]
fn decide_inputs() {
    replay("decide", fuzzing::decide);
}
