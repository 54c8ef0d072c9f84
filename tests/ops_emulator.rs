//! The operating commands against the emulator: `capstan dashboard --apply` read back with
//! `GetDashboard`, `capstan alarms --apply` read back with `DescribeAlarms`, and the
//! container's entry point (the CloudFormation task definition's script and the
//! Dockerfile's command) running the daemon.

mod common;

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

/// Points a command at the emulator with test credentials.
fn at_emulator(c: &mut Command) -> &mut Command {
    c.current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("AWS_ENDPOINT_URL", common::endpoint())
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .env_remove("CAPSTAN_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
}

fn capstan(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_capstan"));
    at_emulator(c.args(args));
    c
}

/// A one-shot HTTP server answering 200 on `port` (0: any); returns its port and the
/// request it got.
fn stub_200(port: u16) -> (u16, std::thread::JoinHandle<String>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut req = Vec::new();
        let mut buf = [0u8; 1024];
        while !req.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = s.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            req.extend_from_slice(&buf[..n]);
        }
        s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
            .unwrap();
        String::from_utf8_lossy(&req).to_string()
    });
    (port, server)
}

fn ok(out: Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "exit {:?}: {stderr}", out.status);
    String::from_utf8(out.stdout).unwrap()
}

fn temp_dir(prefix: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(common::unique(prefix));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn config(target: &str, extra_global: &str) -> String {
    format!(
        r#"[global]
region = "us-east-1"
poll_interval = "5s"
{extra_global}

[[target]]
name = "{target}"
kind = "ecs_service"
cluster = "{target}"
service = "{target}"
min = 1
max = 4

[[target.metric]]
name = "backlog"
source = "sqs"
queue = "{target}"

[[target.policy]]
type = "target_tracking"
metric = "backlog"
target_per_unit = 20
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_apply_writes_what_it_prints() {
    let name = common::unique("dash");
    let printed: serde_json::Value = serde_json::from_str(&ok(capstan(&[
        "dashboard",
        "--config",
        "config/example.toml",
    ])
    .output()
    .unwrap()))
    .unwrap();
    let said = ok(capstan(&[
        "dashboard",
        "--config",
        "config/example.toml",
        "--name",
        &name,
        "--apply",
    ])
    .output()
    .unwrap());
    assert!(
        said.contains(&format!("dashboard {name} written")),
        "{said}"
    );
    let cw = aws_sdk_cloudwatch::Client::new(&common::sdk().await);
    let got = cw
        .get_dashboard()
        .dashboard_name(&name)
        .send()
        .await
        .unwrap();
    let body: serde_json::Value = serde_json::from_str(got.dashboard_body().unwrap()).unwrap();
    assert_eq!(body, printed);
    assert!(body["widgets"].as_array().unwrap().len() > 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alarms_apply_writes_four_alarms_per_target() {
    let target = common::unique("alarmed");
    let dir = temp_dir("alarms");
    let path = dir.join("capstan.toml");
    std::fs::write(&path, config(&target, "")).unwrap();
    let topic = "arn:aws:sns:us-east-1:123456789012:capstan-oncall";
    let said = ok(capstan(&[
        "alarms",
        "--config",
        path.to_str().unwrap(),
        "--sns-topic",
        topic,
        "--pinned-minutes",
        "7",
        "--apply",
    ])
    .output()
    .unwrap());
    assert_eq!(said.lines().count(), 4, "{said}");

    let cw = aws_sdk_cloudwatch::Client::new(&common::sdk().await);
    let out = cw
        .describe_alarms()
        .alarm_name_prefix(format!("Capstan-{target}-"))
        .send()
        .await
        .unwrap();
    let alarms = out.metric_alarms();
    let mut names: Vec<&str> = alarms.iter().filter_map(|a| a.alarm_name()).collect();
    names.sort();
    let want = |k: &str| format!("Capstan-{target}-{k}");
    assert_eq!(
        names,
        vec![
            want("actuation-failing"),
            want("metrics-missing"),
            want("no-data"),
            want("pinned-at-max")
        ]
    );
    let get = |k: &str| {
        alarms
            .iter()
            .find(|a| a.alarm_name() == Some(want(k).as_str()))
            .unwrap()
    };
    let pinned = get("pinned-at-max");
    assert_eq!(pinned.evaluation_periods(), Some(7));
    assert_eq!(pinned.datapoints_to_alarm(), Some(7));
    assert_eq!(pinned.threshold(), Some(0.0));
    let queries = pinned.metrics();
    assert_eq!(queries.len(), 3);
    let expr = queries.iter().find(|q| q.id() == Some("pinned")).unwrap();
    assert_eq!(expr.expression(), Some("cur - max"));
    let cur = queries.iter().find(|q| q.id() == Some("cur")).unwrap();
    let stat = cur.metric_stat().unwrap();
    assert_eq!(stat.stat(), Some("Minimum"));
    assert_eq!(
        stat.metric().unwrap().metric_name(),
        Some("CurrentCapacity")
    );
    assert_eq!(pinned.alarm_actions(), [topic.to_string()]);
    assert_eq!(pinned.ok_actions(), [topic.to_string()]);

    let no_data = get("no-data");
    assert_eq!(no_data.treat_missing_data(), Some("breaching"));
    assert_eq!(no_data.metric_name(), Some("CurrentCapacity"));
    assert_eq!(no_data.namespace(), Some("Capstan"));
    assert_eq!(
        no_data.dimensions()[0].value(),
        Some(target.as_str()),
        "dimension Target"
    );
    let failing = get("actuation-failing");
    assert_eq!(failing.metric_name(), Some("ActuationFailures"));
    assert_eq!(failing.datapoints_to_alarm(), Some(3));
}

/// The task definition's entry script writes the config from the environment and runs the
/// daemon on it (here one tick against the emulator, with the lease on).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn container_entry_script_runs_the_daemon_from_the_config_secret() {
    let sdk = common::sdk().await;
    let table = common::unique("lease");
    capstan::controller::state::create_table(&sdk, &table)
        .await
        .unwrap();
    let target = common::unique("boxed");
    // A free port for http_listen, for the health check below.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let text = config(
        &target,
        &format!("http_listen = \"127.0.0.1:{port}\"\n[global.lease]\nenabled = true\ntable = \"{table}\"\nname = \"{target}\""),
    );
    let cfg = capstan::config::from_str("capstan.toml", &text).unwrap();
    let template = capstan::ops::cloudformation::template(
        &cfg,
        &capstan::ops::cloudformation::TemplateOptions {
            replicas: 2,
            config_text: text.clone(),
            source: "capstan.toml".into(),
        },
    )
    .unwrap();
    let c = &template["Resources"]["TaskDefinition"]["Properties"]["ContainerDefinitions"][0];
    let entry: Vec<&str> = c["EntryPoint"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let command: Vec<&str> = c["Command"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(entry, ["/bin/sh", "-c"]);
    assert_eq!(c["Secrets"][0]["Name"], "CAPSTAN_CONFIG");

    let dir = temp_dir("entry");
    let file = dir.join("capstan.toml");
    let bin_dir = PathBuf::from(env!("CARGO_BIN_EXE_capstan"))
        .parent()
        .unwrap()
        .to_path_buf();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let sh = |script: &str, extra: &[&str]| {
        let mut c = Command::new("/bin/sh");
        at_emulator(c.args(["-c", script, "capstan"]).args(extra))
            .env("PATH", &path)
            .env("CAPSTAN_CONFIG", &text)
            .env("CAPSTAN_CONFIG_FILE", &file)
            .output()
            .unwrap()
    };
    assert_eq!(command[1], "capstan");
    let out = sh(command[0], &["--dry-run", "--ticks", "1"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), format!("{text}\n"));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // JSON logs, the lease on, and the lease read from the configured table (a dry run
    // only reads it: a missing table would be a warning) with nothing written there.
    let start = stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["message"] == "capstan starting")
        .unwrap_or_else(|| panic!("{stderr}"));
    assert_eq!(start["lease"], true);
    assert_eq!(start["dry_run"], true);
    let items = aws_sdk_dynamodb::Client::new(&sdk)
        .scan()
        .table_name(&table)
        .send()
        .await
        .unwrap();
    assert_eq!(items.count(), 0, "a dry run wrote {items:?}");
    assert!(!stderr.contains("lease not renewed"), "{stderr}");

    // The task definition's health check reads http_listen from the written config.
    let health = c["HealthCheck"]["Command"].as_array().unwrap();
    assert_eq!(health[0], "CMD-SHELL");
    let health = health[1].as_str().unwrap();
    let out = sh(health, &[]);
    assert_eq!(out.status.code(), Some(1), "nothing listens on {port} yet");
    let (_, server) = stub_200(port);
    let out = sh(health, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(server
        .join()
        .unwrap()
        .starts_with("GET /healthz HTTP/1.1\r\n"));
}

/// The Dockerfile's instructions of its runtime (last) stage, joined across continuation
/// lines: (instruction, rest).
fn runtime_stage() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Dockerfile")).unwrap();
    let mut lines = Vec::new();
    let mut cur = String::new();
    for l in text.lines() {
        let t = l.trim();
        if t.starts_with('#') || t.is_empty() {
            continue;
        }
        match t.strip_suffix('\\') {
            Some(part) => cur.push_str(part),
            None => {
                cur.push_str(t);
                lines.push(std::mem::take(&mut cur));
            }
        }
    }
    let last_from = lines.iter().rposition(|l| l.starts_with("FROM ")).unwrap();
    lines[last_from..]
        .iter()
        .map(|l| {
            let (i, rest) = l.split_once(' ').unwrap();
            (i.to_string(), rest.trim().to_string())
        })
        .collect()
}

fn exec_form(s: &str) -> Vec<String> {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not an exec-form array: {s}: {e}"))
}

/// Copies the config the image ships into a stand-in for its directory and maps image
/// paths onto it; returns (image dir, local dir).
fn shipped_config(stage: &[(String, String)]) -> (String, PathBuf) {
    let copy = stage
        .iter()
        .find(|(i, rest)| i == "COPY" && rest.starts_with("config/"))
        .map(|(_, rest)| rest.clone())
        .expect("the runtime stage copies a config");
    let (src, dst) = copy.split_once(' ').unwrap();
    let dst = std::path::Path::new(dst.trim());
    let image_dir = dst.parent().unwrap().to_str().unwrap().to_string();
    let local = temp_dir("etc-capstan");
    std::fs::copy(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(src),
        local.join(dst.file_name().unwrap()),
    )
    .unwrap();
    (image_dir, local)
}

fn mapped(args: &[String], image_dir: &str, local: &std::path::Path) -> Vec<String> {
    args.iter()
        .map(|a| a.replace(image_dir, local.to_str().unwrap()))
        .collect()
}

#[test]
fn the_image_runs_as_non_root_and_its_command_runs_the_daemon() {
    let stage = runtime_stage();
    let user = stage
        .iter()
        .rfind(|(i, _)| i == "USER")
        .map(|(_, u)| u.clone())
        .expect("the runtime stage sets USER");
    let uid = user.split(':').next().unwrap();
    assert!(uid != "0" && uid != "root", "USER {user}");

    let entry = exec_form(&stage.iter().find(|(i, _)| i == "ENTRYPOINT").unwrap().1);
    let cmd = exec_form(&stage.iter().find(|(i, _)| i == "CMD").unwrap().1);
    assert_eq!(entry, ["/usr/local/bin/capstan"]);
    let (image_dir, local) = shipped_config(&stage);
    // The image's command on the shipped config, one tick against the emulator (its
    // resources do not exist there: each target reports an error, the daemon carries on).
    let mut args = mapped(&cmd, &image_dir, &local);
    args.extend(["--ticks".into(), "1".into()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = capstan(&args).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("\"message\":\"capstan starting\""),
        "{stderr}"
    );
}

#[test]
fn the_image_health_check_passes_on_200_and_fails_without_a_server() {
    let stage = runtime_stage();
    let hc = &stage.iter().find(|(i, _)| i == "HEALTHCHECK").unwrap().1;
    let (_, cmd) = hc.split_once("CMD ").expect("HEALTHCHECK ... CMD [...]");
    let cmd = exec_form(cmd);
    assert_eq!(cmd[0], "/usr/local/bin/capstan");
    let (image_dir, local) = shipped_config(&stage);

    let (port, server) = stub_200(0);
    // The shipped config with its http_listen moved to the stub's port.
    let file = std::fs::read_dir(&local)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let text = std::fs::read_to_string(&file).unwrap();
    let (before, after) = text.split_once("http_listen = \"").unwrap();
    let (_, after) = after.split_once('"').unwrap();
    std::fs::write(
        &file,
        format!("{before}http_listen = \"0.0.0.0:{port}\"{after}"),
    )
    .unwrap();

    let args = mapped(&cmd[1..], &image_dir, &local);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = capstan(&args).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(server.join().unwrap().starts_with("GET /healthz HTTP/1.1"));
    // Nothing listens on that port any more.
    let out = capstan(&args).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unhealthy"));
}
