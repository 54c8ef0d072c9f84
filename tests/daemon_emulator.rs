//! `capstan run`, the binary, against the emulator: a load step scales out within one tick,
//! a dry run makes no mutating call (counted by a recording proxy), a broken config sent
//! with SIGHUP is refused while the old one keeps running, SIGTERM exits 0, and two
//! daemons sharing a lease never both act.

mod common;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use capstan::controller::state::create_table;
use common::proxy;

struct Shop {
    cluster: String,
    service: String,
    queue: String,
}

async fn shop(sdk: &aws_config::SdkConfig, messages: usize) -> Shop {
    let (cluster, service) = (common::unique("shop"), common::unique("workers"));
    capstan::emulator::create_ecs_service(sdk, &cluster, &service, 0)
        .await
        .unwrap();
    let ecs = aws_sdk_ecs::Client::new(sdk);
    ecs.update_service()
        .cluster(&cluster)
        .service(&service)
        .desired_count(2)
        .send()
        .await
        .unwrap();
    let queue = common::unique("orders");
    let sqs = aws_sdk_sqs::Client::new(sdk);
    let url = sqs
        .create_queue()
        .queue_name(&queue)
        .send()
        .await
        .unwrap()
        .queue_url()
        .unwrap()
        .to_string();
    for i in 0..messages {
        sqs.send_message()
            .queue_url(&url)
            .message_body(format!("o{i}"))
            .send()
            .await
            .unwrap();
    }
    Shop {
        cluster,
        service,
        queue,
    }
}

async fn desired(sdk: &aws_config::SdkConfig, s: &Shop) -> i32 {
    aws_sdk_ecs::Client::new(sdk)
        .describe_services()
        .cluster(&s.cluster)
        .services(&s.service)
        .send()
        .await
        .unwrap()
        .services()[0]
        .desired_count()
}

fn write_config(s: &Shop, lease_table: Option<&str>, extra: &str) -> PathBuf {
    let lease = match lease_table {
        Some(t) => format!(
            "[global.lease]\nenabled = true\ntable = \"{t}\"\nname = \"{}\"\nduration = \"20s\"\n",
            s.service
        ),
        None => String::new(),
    };
    let text = format!(
        r#"[global]
region = "us-east-1"
poll_interval = "5s"
metrics_namespace = "{}"
# Any free port: daemons of these tests run side by side.
http_listen = "127.0.0.1:0"
{lease}
[[target]]
name = "workers"
kind = "ecs_service"
cluster = "{}"
service = "{}"
min = 1
max = 10
[[target.metric]]
name = "backlog"
source = "sqs"
queue = "{}"
[[target.policy]]
type = "target_tracking"
metric = "backlog"
target_per_unit = 20
{extra}
"#,
        s.service, s.cluster, s.service, s.queue
    );
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(common::unique("cfg"));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("capstan.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn capstan(endpoint: &str, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_capstan"));
    c.args(args)
        .args(["--log-format", "json"])
        .env("AWS_ENDPOINT_URL", endpoint)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .env_remove("CAPSTAN_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

fn decisions(stderr: &str) -> Vec<serde_json::Value> {
    stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["message"] == "decision")
        .collect()
}

#[tokio::test]
async fn one_tick_scales_out_and_a_dry_run_never_mutates() {
    let sdk = common::sdk().await;
    let s = shop(&sdk, 100).await;
    let cfg = write_config(&s, None, "");
    let (url, rec) = proxy::start(common::endpoint());

    let out = capstan(
        &url,
        &[
            "run",
            "--config",
            cfg.to_str().unwrap(),
            "--ticks",
            "3",
            "--dry-run",
        ],
    )
    .output()
    .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{err}");
    assert_eq!(desired(&sdk, &s).await, 2, "dry run changed the service");
    let ds = decisions(&err);
    assert_eq!(ds.len(), 3, "one decision line per tick: {err}");
    assert!(
        ds.iter()
            .all(|d| d["outcome"] == "skipped: dry run" && d["desired"] == 5),
        "{ds:?}"
    );
    assert!(
        rec.mutating().is_empty(),
        "mutating calls in a dry run: {:?}",
        rec.mutating()
    );
    assert!(
        rec.count("DescribeServices") >= 3 && rec.count("GetQueueAttributes") >= 3,
        "{:?}",
        rec.ops()
    );

    // For real: 100 messages at 20 per worker -> 5 workers, on the first tick.
    let out = capstan(
        &url,
        &["run", "--config", cfg.to_str().unwrap(), "--ticks", "1"],
    )
    .output()
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(desired(&sdk, &s).await, 5);
    assert_eq!(rec.count("UpdateService"), 1, "{:?}", rec.ops());
    let ds = decisions(&String::from_utf8_lossy(&out.stderr));
    assert_eq!(ds[0]["outcome"], "applied");
    assert!(
        ds[0]["reason"]
            .as_str()
            .unwrap()
            .contains("backlog 100 at 20 per unit"),
        "{ds:?}"
    );
    // capstan's own metrics went to CloudWatch, in the namespace of the config.
    let got = aws_sdk_cloudwatch::Client::new(&sdk)
        .list_metrics()
        .namespace(&s.service)
        .metric_name("DesiredCapacity")
        .send()
        .await
        .unwrap();
    assert_eq!(got.metrics().len(), 1, "{got:?}");
    assert!(rec.count("PutMetricData") >= 4, "{:?}", rec.ops());
}

#[tokio::test]
async fn a_restart_keeps_the_stabilization_history_in_dynamodb() {
    let sdk = common::sdk().await;
    let s = shop(&sdk, 100).await;
    let table = common::unique("capstan-state");
    create_table(&sdk, &table).await.unwrap();
    let cfg = write_config(
        &s,
        Some(&table),
        "[target.behavior.scale_down]\nstabilization_window = \"10s\"",
    );
    let run = || {
        let out = capstan(
            common::endpoint(),
            &["run", "--config", cfg.to_str().unwrap(), "--ticks", "1"],
        )
        .output()
        .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run();
    assert_eq!(desired(&sdk, &s).await, 5);
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let url = sqs
        .get_queue_url()
        .queue_name(&s.queue)
        .send()
        .await
        .unwrap()
        .queue_url()
        .unwrap()
        .to_string();
    sqs.purge_queue().queue_url(&url).send().await.unwrap();
    // A new process inside the 10 s window: the recommendation of 5 holds the capacity.
    run();
    assert_eq!(desired(&sdk, &s).await, 5);
    // After the window, a new process scales in at once. Without the stored history it
    // would see the target for the first time and hold for another window.
    tokio::time::sleep(Duration::from_secs(11)).await;
    run();
    assert_eq!(desired(&sdk, &s).await, 1);
}

/// Reads the child's stderr on a thread; returns the lines seen so far on demand.
fn collect(child: &mut Child) -> std::sync::Arc<std::sync::Mutex<Vec<String>>> {
    let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let l2 = lines.clone();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            l2.lock().unwrap().push(line);
        }
    });
    lines
}

fn wait_for(lines: &std::sync::Mutex<Vec<String>>, needle: &str, secs: u64) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if lines.lock().unwrap().iter().any(|l| l.contains(needle)) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

fn signal(child: &Child, sig: &str) {
    assert!(Command::new("kill")
        .args(["-s", sig, &child.id().to_string()])
        .status()
        .unwrap()
        .success());
}

#[tokio::test]
async fn sighup_with_a_broken_config_keeps_the_old_one_and_sigterm_exits_cleanly() {
    let sdk = common::sdk().await;
    let s = shop(&sdk, 100).await;
    let cfg = write_config(&s, None, "");
    let mut child = capstan(
        common::endpoint(),
        &["run", "--config", cfg.to_str().unwrap()],
    )
    .spawn()
    .unwrap();
    let lines = collect(&mut child);
    assert!(
        wait_for(&lines, "\"outcome\":\"applied\"", 30),
        "no first action: {:?}",
        lines.lock().unwrap()
    );
    std::fs::write(&cfg, "[[target]]\nname = \"workers\"\nmin = 5\nmax = 2\n").unwrap();
    signal(&child, "HUP");
    assert!(
        wait_for(&lines, "reload refused", 15),
        "{:?}",
        lines.lock().unwrap()
    );
    // Still running the old config: more messages scale it further.
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let url = sqs
        .get_queue_url()
        .queue_name(&s.queue)
        .send()
        .await
        .unwrap()
        .queue_url()
        .unwrap()
        .to_string();
    for i in 0..60 {
        sqs.send_message()
            .queue_url(&url)
            .message_body(format!("p{i}"))
            .send()
            .await
            .unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while desired(&sdk, &s).await != 8 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(desired(&sdk, &s).await, 8, "{:?}", lines.lock().unwrap());
    signal(&child, "TERM");
    let status = child.wait().unwrap();
    assert!(status.success(), "exit after SIGTERM: {status:?}");
    assert!(wait_for(&lines, "capstan stopped", 5));
}

#[tokio::test]
async fn two_daemons_sharing_a_lease_never_both_act() {
    let sdk = common::sdk().await;
    let s = shop(&sdk, 100).await;
    let table = common::unique("capstan-ha");
    create_table(&sdk, &table).await.unwrap();
    let cfg = write_config(&s, Some(&table), "");
    let (url, rec) = proxy::start(common::endpoint());
    let mut a = capstan(
        &url,
        &["run", "--config", cfg.to_str().unwrap(), "--ticks", "4"],
    )
    .env("HOSTNAME", "replica-a")
    .spawn()
    .unwrap();
    let mut b = capstan(
        &url,
        &["run", "--config", cfg.to_str().unwrap(), "--ticks", "4"],
    )
    .env("HOSTNAME", "replica-b")
    .spawn()
    .unwrap();
    let (la, lb) = (collect(&mut a), collect(&mut b));
    assert!(a.wait().unwrap().success() && b.wait().unwrap().success());
    let outcomes = |l: &std::sync::Mutex<Vec<String>>| -> Vec<String> {
        decisions(&l.lock().unwrap().join("\n"))
            .iter()
            .map(|d| d["outcome"].as_str().unwrap_or("").to_string())
            .collect()
    };
    let (oa, ob) = (outcomes(&la), outcomes(&lb));
    let applied = oa.iter().chain(&ob).filter(|o| *o == "applied").count();
    assert_eq!(applied, 1, "exactly one replica acted: a {oa:?}, b {ob:?}");
    assert!(
        oa.iter()
            .chain(&ob)
            .any(|o| o.starts_with("skipped: follower")),
        "a {oa:?}, b {ob:?}"
    );
    assert_eq!(rec.count("UpdateService"), 1);
    assert_eq!(desired(&sdk, &s).await, 5);
}
