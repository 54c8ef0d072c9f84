//! `capstan run` and the standard AWS credential chain: the shared credentials file, a
//! `credential_process` profile, and sources this build cannot use. Each run is the real
//! binary with a clean environment, its AWS calls pointed at a closed local port (the
//! credentials are resolved and logged, if at all, before anything is sent).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// A fake long-term key id: what must never appear in the output.
const KEY_ID: &str = "AKIAFAKE7CAPSTAN0TST";
const SECRET: &str = "fakeSecretKeyForCapstanTests0000000000000";

const CONFIG: &str = r#"
[global]
region = "us-east-1"
http_listen = "off"
metrics = "off"

[[target]]
name = "api"
kind = "ecs_service"
cluster = "shop"
service = "api"
min = 1
max = 4
[[target.metric]]
name = "cpu"
source = "ecs_cpu"
[[target.policy]]
type = "target_tracking"
metric = "cpu"
target_value = 60
"#;

fn dir(name: &str) -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("credentials-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("capstan.toml"), CONFIG).unwrap();
    d
}

fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `capstan run --ticks 1` in `home` with only the given environment (plus PATH).
fn run(home: &Path, env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_capstan"));
    c.args(["run", "--ticks", "1", "--log-format", "text", "--config"])
        .arg(home.join("capstan.toml"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("AWS_CONFIG_FILE", home.join("config"))
        .env("AWS_SHARED_CREDENTIALS_FILE", home.join("credentials"))
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env(
            "AWS_ENDPOINT_URL",
            format!("http://127.0.0.1:{}", closed_port()),
        )
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c.output().unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn the_access_key_id_of_a_shared_credentials_file_is_never_logged() {
    let home = dir("shared");
    std::fs::write(
        home.join("credentials"),
        format!("[default]\naws_access_key_id = {KEY_ID}\naws_secret_access_key = {SECRET}\n"),
    )
    .unwrap();
    std::fs::write(home.join("config"), "").unwrap();
    // The default level, and a CAPSTAN_LOG asking for everything, the SDK's profile
    // provider by name included.
    for log in [
        None,
        Some("trace,aws_config::profile=trace,aws_config=trace"),
    ] {
        let mut env = vec![];
        if let Some(l) = log {
            env.push(("CAPSTAN_LOG", l));
        }
        let out = run(&home, &env);
        let all = text(&out);
        assert!(out.status.success(), "{log:?}: {all}");
        // The run got as far as calling AWS with these credentials.
        assert!(all.contains("cannot observe target"), "{log:?}: {all}");
        assert!(
            !all.contains(KEY_ID),
            "{log:?}: the key id is logged: {all}"
        );
        assert!(!all.contains(SECRET), "{log:?}: {all}");
    }
}

#[test]
fn a_credential_process_profile_yields_credentials() {
    let home = dir("process");
    let marker = home.join("ran");
    let script = home.join("creds.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\ntouch '{}'\nprintf '%s' '{{\"Version\": 1, \"AccessKeyId\": \"{KEY_ID}\", \"SecretAccessKey\": \"{SECRET}\"}}'\n",
            marker.display()
        ),
    )
    .unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    std::fs::write(
        home.join("config"),
        format!(
            "[profile proc]\ncredential_process = {}\n",
            script.display()
        ),
    )
    .unwrap();
    std::fs::write(home.join("credentials"), "").unwrap();
    let out = run(&home, &[("AWS_PROFILE", "proc")]);
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    assert!(marker.exists(), "credential_process was not run: {all}");
    assert!(!all.lines().any(|l| l.starts_with("error:")), "{all}");
    assert!(all.contains("cannot observe target"), "{all}");
    assert!(!all.contains(KEY_ID), "{all}");
}

#[test]
fn a_chain_that_cannot_work_stops_the_start_naming_the_missing_piece() {
    // A profile whose source this build does not support.
    let home = dir("login");
    std::fs::write(
        home.join("config"),
        "[profile console]\nlogin_session = arn:aws:iam::123456789012:user/someone\nregion = us-east-1\n",
    )
    .unwrap();
    std::fs::write(home.join("credentials"), "").unwrap();
    let out = run(&home, &[("AWS_PROFILE", "console")]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(
        all.contains("error: the AWS credentials configuration cannot be used"),
        "{all}"
    );
    assert!(all.contains("credentials-login"), "{all}");
    assert!(
        !all.contains("cannot observe target"),
        "it must not run: {all}"
    );

    // No credentials anywhere.
    let home = dir("none");
    std::fs::write(home.join("config"), "").unwrap();
    std::fs::write(home.join("credentials"), "").unwrap();
    let out = run(&home, &[]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(all.contains("error: no AWS credentials"), "{all}");
    assert!(all.contains("hint:"), "{all}");
}
