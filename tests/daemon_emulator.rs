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
    let (sa, sb) = (a.wait().unwrap(), b.wait().unwrap());
    assert!(
        sa.success() && sb.success(),
        "a {sa:?}: {:?}\nb {sb:?}: {:?}",
        la.lock().unwrap(),
        lb.lock().unwrap()
    );
    let outcomes = |l: &std::sync::Mutex<Vec<String>>| -> Vec<String> {
        decisions(&l.lock().unwrap().join("\n"))
            .iter()
            .map(|d| d["outcome"].as_str().unwrap_or("").to_string())
            .collect()
    };
    let (oa, ob) = (outcomes(&la), outcomes(&lb));
    let applied = oa.iter().chain(&ob).filter(|o| *o == "applied").count();
    assert_eq!(applied, 1, "exactly one replica acted: a {oa:?}, b {ob:?}");
    // The other one followed (it may never have wanted a change: the leader may have
    // scaled before its first tick).
    let followed = |l: &std::sync::Mutex<Vec<String>>| {
        l.lock()
            .unwrap()
            .iter()
            .any(|x| x.contains("following: another replica"))
    };
    let acted = |o: &[String]| o.iter().any(|x| x == "applied");
    let follower = if acted(&oa) { &lb } else { &la };
    assert!(
        followed(follower),
        "the replica that did not act followed: a {:?}\nb {:?}",
        la.lock().unwrap(),
        lb.lock().unwrap()
    );
    assert_eq!(rec.count("UpdateService"), 1);
    assert_eq!(desired(&sdk, &s).await, 5);
}

/// The address `capstan run` logged for its HTTP endpoints.
fn http_addr(lines: &std::sync::Mutex<Vec<String>>) -> std::net::SocketAddr {
    assert!(
        wait_for(lines, "HTTP endpoints listening", 30),
        "{:?}",
        lines.lock().unwrap()
    );
    let lines = lines.lock().unwrap();
    let line = lines
        .iter()
        .find(|l| l.contains("HTTP endpoints listening"))
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    v["addr"].as_str().unwrap().parse().unwrap()
}

/// Chromium, if installed (Debian names it `chromium`).
fn chromium() -> Option<PathBuf> {
    ["chromium", "chromium-browser"].iter().find_map(|name| {
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join(name))
                .find(|p| p.is_file())
        })
    })
}

#[tokio::test]
async fn capstan_run_serves_its_endpoints_and_the_page_renders_in_a_browser() {
    let sdk = common::sdk().await;
    let s = shop(&sdk, 100).await;
    // A second target whose service does not exist: shown, with its error.
    let ghost = format!(
        "[[target]]\nname = \"ghost-api\"\nkind = \"ecs_service\"\ncluster = \"{}\"\nservice = \"ghost\"\nmin = 1\nmax = 3\n[[target.metric]]\nname = \"cpu\"\nsource = \"ecs_cpu\"\n[[target.policy]]\ntype = \"target_tracking\"\nmetric = \"cpu\"\ntarget_value = 60\n",
        s.cluster
    );
    let cfg = write_config(&s, None, &ghost);
    // Credentials that must never be served.
    let (secret, token) = (
        "capstanTestSecretKey0123456789abcdefXYZ",
        "capstanTestSessionToken9876543210zyxwvu",
    );
    let mut child = capstan(
        common::endpoint(),
        &["run", "--config", cfg.to_str().unwrap(), "--dry-run"],
    )
    .env("AWS_SECRET_ACCESS_KEY", secret)
    .env("AWS_SESSION_TOKEN", token)
    .spawn()
    .unwrap();
    let lines = collect(&mut child);
    let addr = http_addr(&lines);
    let get = move |path: &'static str| {
        tokio::task::spawn_blocking(move || common::http::get(addr, path))
    };
    // Ready once the first tick has run.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut ready = get("/readyz").await.unwrap();
    while ready.status != 200 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        ready = get("/readyz").await.unwrap();
    }
    assert_eq!(ready.status, 200, "{ready:?}");
    let r: serde_json::Value = serde_json::from_str(&ready.body).unwrap();
    assert_eq!(r["lease"], "disabled");
    assert_eq!(r["aws_reachable"], true);
    assert_eq!(get("/healthz").await.unwrap().body, "ok\n");

    let targets = get("/v1/targets").await.unwrap();
    assert_eq!(targets.status, 200);
    let t: serde_json::Value = serde_json::from_str(&targets.body).unwrap();
    assert_eq!(t["dry_run"], true);
    let by_name = |n: &str| {
        t["targets"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["name"] == n)
            .cloned()
            .unwrap_or_else(|| panic!("{n} missing: {t}"))
    };
    let workers = by_name("workers");
    assert_eq!(workers["current"], 2);
    assert_eq!(workers["desired"], 5, "{workers}");
    assert_eq!(workers["outcome"], "skipped: dry run");
    assert_eq!(workers["load"]["metric"], "backlog");
    assert_eq!(workers["load"]["value"], 100.0);
    assert_eq!(workers["load"]["basis"], "total");
    assert!(workers["metrics"][0]["age_secs"].as_i64().unwrap() < 60);
    let ghost = by_name("ghost-api");
    assert!(
        ghost["error"].as_str().unwrap_or("").contains("ghost"),
        "{ghost}"
    );

    let decisions = get("/v1/decisions").await.unwrap();
    let d: serde_json::Value = serde_json::from_str(&decisions.body).unwrap();
    let first = &d["decisions"][0];
    assert_eq!(first["target"], "workers");
    assert_eq!(first["action"], "scale_out");
    assert!(
        first["reason"]
            .as_str()
            .unwrap()
            .contains("backlog 100 at 20 per unit"),
        "{d}"
    );
    assert!(first["explanation"]["proposals"].is_array());

    let metrics = get("/metrics").await.unwrap().body;
    for want in [
        "capstan_target_desired_capacity{target=\"workers\"} 5",
        "capstan_target_current_capacity{target=\"workers\"} 2",
        "capstan_decisions_total{target=\"workers\",direction=\"scale_out\",reason=\"target_tracking\"}",
        "capstan_actions_total{target=\"workers\",outcome=\"skipped\"}",
        "capstan_observe_errors_total{target=\"ghost-api\"}",
        "capstan_metric_age_seconds{target=\"workers\",metric=\"backlog\"}",
        "capstan_lease_state{state=\"disabled\"} 1",
        "capstan_aws_call_duration_seconds_count{service=\"ecs\",operation=\"DescribeServices\"}",
        "capstan_aws_call_duration_seconds_count{service=\"sqs\",operation=\"GetQueueAttributes\"}",
        "capstan_tick_duration_seconds_count ",
    ] {
        assert!(metrics.contains(want), "{want} not in\n{metrics}");
    }

    let page = get("/").await.unwrap();
    assert_eq!(page.status, 200);
    for body in [&targets.body, &decisions.body, &metrics, &page.body] {
        assert!(!body.contains(secret) && !body.contains(token));
    }

    // The page in a real browser: it loads and shows every configured target.
    match chromium() {
        Some(bin) => {
            let profile = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(common::unique("chromium"));
            let out = Command::new(bin)
                .args([
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-quic",
                    "--no-first-run",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                ])
                .arg(format!("--user-data-dir={}", profile.display()))
                .arg("--dump-dom")
                .arg(format!("http://{addr}/"))
                .output()
                .unwrap();
            let dom = String::from_utf8_lossy(&out.stdout);
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            for name in ["workers", "ghost-api"] {
                assert!(
                    dom.contains(&format!("<h2>{name}</h2>")),
                    "{name} not on the rendered page:\n{dom}"
                );
            }
            assert!(dom.contains("<svg"), "{dom}");
            let _ = std::fs::remove_dir_all(profile);
        }
        None if std::env::var_os("CAPSTAN_REQUIRE_BROWSER").is_some() => {
            panic!("CAPSTAN_REQUIRE_BROWSER is set but chromium is not installed")
        }
        None => eprintln!(
            "SKIPPED the browser check: chromium is not installed (apt-get install chromium; set CAPSTAN_REQUIRE_BROWSER=1 to make this a failure)"
        ),
    }

    // SIGTERM stops the daemon and its endpoints.
    signal(&child, "TERM");
    assert!(child.wait().unwrap().success());
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "still listening"
    );
}
