//! Fault injection: `capstan run`, the binary, against the emulator through a proxy that
//! throttles, fails, resets, hangs, slows down or garbles AWS calls per service and
//! operation. In every scenario the daemon keeps ticking, no capacity change leaves the
//! bounds, nothing scales in, targets whose calls are healthy keep being served, every
//! call is attempted at most 3 times (the SDK's standard retries) with no more calls per
//! tick than when healthy, and after the fault clears it converges within two ticks.
//!
//! Each scenario prints one `FIGURES {json}` line (run with `--nocapture`);
//! docs/reliability.md reports them.

mod common;

use std::time::Duration;

use common::daemon::{self as d, Daemon, Shop, TICK};
use common::proxy::{Fault, Proxy, Rule};
use serde_json::json;

/// The target state before and after the load rises: (workers, fleet).
const BEFORE: (u32, u32) = (5, 3);
const AFTER: (u32, u32) = (8, 5);

struct Scenario {
    name: &'static str,
    /// Faults, one set per tick of the fault (the last set lasts the remaining ticks).
    phases: Vec<Vec<Rule>>,
    fault_ticks: u32,
    /// Targets whose scaling the fault blocks; the others must keep being served.
    blocked: &'static [&'static str],
}

async fn run(s: Scenario) {
    let sdk = common::sdk().await;
    let shop = Shop::names();
    shop.create(&sdk, None).await;
    shop.add_messages(&sdk, 100).await;
    shop.set_load(&sdk, 250.0).await;
    let cfg = shop.config(None, "", "");
    let proxy = d::proxy();
    let mut daemon = Daemon::spawn(d::capstan(&proxy.url, &cfg, &[]));

    // Healthy: both targets reach their capacity.
    let healthy = d::until(30, || async {
        (shop.workers(&sdk).await, shop.fleet(&sdk).await) == BEFORE
    })
    .await;
    assert!(healthy.is_some(), "{}: {}", s.name, daemon.text());
    // Let one quiet tick pass so the healthy baseline has steady ticks too.
    tokio::time::sleep(TICK).await;
    let fault_start = proxy.now_ms();

    // The fault starts and the load rises.
    for r in &s.phases[0] {
        proxy.add(r.clone());
    }
    shop.add_messages(&sdk, 60).await;
    shop.set_load(&sdk, 450.0).await;
    for i in 1..s.fault_ticks as usize {
        tokio::time::sleep(TICK).await;
        if let Some(rules) = s.phases.get(i) {
            proxy.clear();
            for r in rules {
                proxy.add(r.clone());
            }
        }
    }
    tokio::time::sleep(TICK).await;
    assert!(
        daemon.alive(),
        "{}: the daemon died: {}",
        s.name,
        daemon.text()
    );
    let during = (shop.workers(&sdk).await, shop.fleet(&sdk).await);
    let fault_end = proxy.now_ms();
    proxy.clear();

    // Targets whose calls were healthy were served during the fault; blocked ones held.
    let served = |name: &str| !s.blocked.contains(&name);
    let want_during = (
        if served("workers") { AFTER.0 } else { BEFORE.0 },
        if served("fleet") { AFTER.1 } else { BEFORE.1 },
    );
    assert_eq!(during, want_during, "{}: {}", s.name, daemon.text());

    // Recovery within two ticks (plus the time one tick takes).
    let conv = d::until(40, || async {
        (shop.workers(&sdk).await, shop.fleet(&sdk).await) == AFTER
    })
    .await;
    let conv = conv.unwrap_or_else(|| panic!("{}: no convergence: {}", s.name, daemon.text()));
    assert!(
        conv <= 2 * TICK + Duration::from_secs(2),
        "{}: converged after {conv:?}",
        s.name
    );
    tokio::time::sleep(TICK).await;
    assert!(
        daemon.stop(),
        "{}: no clean exit: {}",
        s.name,
        daemon.text()
    );
    report(s.name, &proxy, fault_start, fault_end, conv, &daemon);
}

/// The common checks on the proxy log, then the scenario's figures.
fn report(
    name: &str,
    proxy: &Proxy,
    fault_start: u64,
    fault_end: u64,
    conv: Duration,
    daemon: &Daemon,
) {
    let log = proxy.log();
    let (requests, faults, worst) = d::check_log(&log);
    // Nothing scales in: the load only rose.
    for target in ["workers", "fleet"] {
        let values: Vec<u32> = d::changes(&log)
            .iter()
            .filter(|c| c.resource == target)
            .map(|c| c.value)
            .collect();
        assert!(
            values.windows(2).all(|w| w[1] >= w[0]),
            "{name}: {target} scaled in: {values:?}"
        );
    }
    // No retry storm: calls per tick during the fault no more than when healthy (the
    // first tick included: it checks every target for AWS-side scaling), requests at most
    // 3 per call.
    let healthy_ticks = d::ticks(&log, 0, fault_start).max(1);
    let fault_ticks = d::ticks(&log, fault_start, fault_end);
    let healthy_calls = d::calls(&log, 0, fault_start);
    let fault_calls = d::calls(&log, fault_start, fault_end);
    let fault_requests = d::requests(&log, fault_start, fault_end);
    let healthy_rate = healthy_calls as f64 / healthy_ticks as f64;
    let fault_rate = fault_calls as f64 / fault_ticks.max(1) as f64;
    assert!(
        fault_ticks >= 3,
        "{name}: only {fault_ticks} ticks in the fault"
    );
    assert!(
        fault_rate <= healthy_rate * 1.5,
        "{name}: {fault_rate:.1} calls per tick in the fault vs {healthy_rate:.1} healthy"
    );
    assert!(
        fault_requests <= 3 * fault_calls,
        "{name}: {fault_requests} requests for {fault_calls} calls"
    );
    // Every fault is visible at warning level (failed calls, unread metrics, failed
    // changes).
    let errors = daemon
        .text()
        .lines()
        .filter(|l| l.contains("\"level\":\"WARN\"") || l.contains("\"level\":\"ERROR\""))
        .count();
    assert!(errors > 0, "{name}: the fault was not logged as a warning");
    println!(
        "FIGURES {}",
        json!({
            "scenario": name,
            "requests": requests,
            "faults_injected": faults,
            "faults_by_kind": d::faults_by_kind(&log),
            "ticks_during_fault": fault_ticks,
            "calls_per_tick_healthy": (healthy_rate * 10.0).round() / 10.0,
            "calls_per_tick_fault": (fault_rate * 10.0).round() / 10.0,
            "requests_during_fault": fault_requests,
            "max_attempts_per_call": worst,
            "out_of_bounds_changes": 0,
            "scale_ins": 0,
            "convergence_ms": conv.as_millis() as u64,
            "warnings_logged": errors,
        })
    );
}

/// The four scenarios run at once (each with its own shop, proxy and daemon): they spend
/// their time waiting for ticks.
#[tokio::test]
async fn throttling_5xx_resets_hangs_and_garbage_per_service_and_all_at_once() {
    let all = |f: Fault| vec![Rule::new(f)];
    tokio::join!(
        // Sustained CloudWatch throttling blocks only the CloudWatch-scaled target.
        run(Scenario {
            name: "cloudwatch-throttled",
            phases: vec![vec![Rule::new(Fault::Throttle)
                .service("monitoring")
                .operation("GetMetricData")]],
            fault_ticks: 4,
            blocked: &["fleet"],
        }),
        // A throttled ECS actuator (and slow CloudWatch) leaves the ASG served.
        run(Scenario {
            name: "ecs-update-throttled",
            phases: vec![vec![
                Rule::new(Fault::Throttle)
                    .service("ecs")
                    .operation("UpdateService"),
                Rule::new(Fault::Slow(Duration::from_millis(1500))).service("monitoring"),
            ]],
            fault_ticks: 4,
            blocked: &["workers"],
        }),
        // SQS `RequestThrottled`, then 500 and 503, leave the fleet served.
        run(Scenario {
            name: "sqs-throttled-then-5xx",
            phases: vec![
                vec![Rule::new(Fault::Throttle).service("sqs")],
                vec![Rule::new(Fault::Throttle).service("sqs")],
                vec![Rule::new(Fault::Status(500)).service("sqs")],
                vec![Rule::new(Fault::Status(503)).service("sqs")],
            ],
            fault_ticks: 4,
            blocked: &["workers"],
        }),
        // Every call of every service: hung, 503, reset, garbled, 500, one tick each.
        run(Scenario {
            name: "total-outage",
            phases: vec![
                all(Fault::Hang),
                all(Fault::Status(503)),
                all(Fault::Reset),
                all(Fault::Malformed),
                all(Fault::Status(500)),
            ],
            fault_ticks: 5,
            blocked: &["workers", "fleet"],
        }),
    );
}

/// The emulator is restarted and loses everything (services, queue, group, metrics, the
/// lease table and the stored histories): the daemon keeps ticking, changes nothing while
/// the resources are missing, and converges within two ticks once they are back.
#[tokio::test]
async fn the_emulator_restarted_with_its_state_lost() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let emu = capstan::emulator::Emulator::start(root).unwrap();
    let sdk_for = |url: String| async move {
        capstan::aws::sdk_config(&capstan::aws::AwsSettings {
            region: Some("us-east-1".into()),
            endpoint_url: Some(url),
            static_credentials: Some(("test".into(), "test".into())),
            ..Default::default()
        })
        .await
    };
    let sdk = sdk_for(emu.endpoint.clone()).await;
    let shop = Shop::names();
    let table = common::unique("fstate");
    shop.create(&sdk, Some(&table)).await;
    shop.add_messages(&sdk, 100).await;
    shop.set_load(&sdk, 250.0).await;
    let cfg = shop.config(Some(&table), "", "");
    let proxy = common::proxy::start_proxy(&emu.endpoint);
    let mut daemon = Daemon::spawn(d::capstan(&proxy.url, &cfg, &[]));
    let healthy = d::until(30, || async {
        (shop.workers(&sdk).await, shop.fleet(&sdk).await) == BEFORE
    })
    .await;
    assert!(healthy.is_some(), "{}", daemon.text());

    // Restart: everything is gone.
    let lost_at = proxy.now_ms();
    drop(emu);
    let emu = capstan::emulator::Emulator::start(root).unwrap();
    proxy.set_upstream(&emu.endpoint);
    let sdk = sdk_for(emu.endpoint.clone()).await;
    tokio::time::sleep(3 * TICK).await;
    assert!(daemon.alive(), "{}", daemon.text());
    let missing_ticks = d::ticks(&proxy.log(), lost_at, proxy.now_ms());
    let changes_while_lost = d::changes(&proxy.log())
        .iter()
        .filter(|c| c.ms >= lost_at)
        .count();
    assert_eq!(changes_while_lost, 0, "{}", daemon.text());

    // The resources come back (as the infrastructure code would re-create them: workers
    // at 2, the fleet at 1), with more load on the fleet than before. (Within the
    // scale-up rate limit of 4 units per 15 s: a larger step takes more ticks by design.)
    let back_ms = proxy.now_ms();
    shop.create(&sdk, Some(&table)).await;
    shop.add_messages(&sdk, 100).await;
    shop.set_load(&sdk, 450.0).await;
    let conv = d::until(40, || async {
        (shop.workers(&sdk).await, shop.fleet(&sdk).await) == (BEFORE.0, AFTER.1)
    })
    .await
    .unwrap_or_else(|| panic!("no convergence: {}", daemon.text()));
    assert!(
        conv <= 2 * TICK + Duration::from_secs(2),
        "{conv:?} after {back_ms} ms: {}",
        daemon.text()
    );
    assert!(daemon.stop(), "{}", daemon.text());
    let log = proxy.log();
    let (requests, _, worst) = d::check_log(&log);
    let not_found = log
        .iter()
        .filter(|e| e.ms >= lost_at && e.ms < back_ms && e.status == 400)
        .count();
    println!(
        "FIGURES {}",
        json!({
            "scenario": "emulator-restarted-state-lost",
            "requests": requests,
            "ticks_while_lost": missing_ticks,
            "error_answers_while_lost": not_found,
            "changes_while_lost": changes_while_lost,
            "max_attempts_per_call": worst,
            "convergence_ms_after_recreation": conv.as_millis() as u64,
        })
    );
}

/// Distinctive credentials and a session token, debug logging of everything (the SDK's
/// own logs included) and every decision: none of the secrets, and no signature or
/// security-token header, appear in what the daemon writes.
#[tokio::test]
async fn credentials_and_signatures_never_appear_in_the_logs() {
    let sdk = common::sdk().await;
    let shop = Shop::names();
    let table = common::unique("fcreds");
    shop.create(&sdk, Some(&table)).await;
    shop.add_messages(&sdk, 100).await;
    shop.set_load(&sdk, 250.0).await;
    let cfg = shop.config(Some(&table), "metrics = \"emf\"", "");
    let proxy = d::proxy();
    // Faults too, so error paths are logged.
    proxy.add(Rule::new(Fault::Throttle).service("monitoring").times(2));
    proxy.add(Rule::new(Fault::Status(500)).service("ecs").times(1));
    const KEY: &str = "AKIAFAULTSKEYID7Q3ZX";
    const SECRET: &str = "s3cr3t-FAULTS-5ecret/Key+9876543210abcdef";
    const TOKEN: &str = "FQoGZXIvYXdzEFAULTS-session-token-0123456789";
    let mut cmd = d::capstan(&proxy.url, &cfg, &["--ticks", "3", "--log-all"]);
    cmd.env("AWS_ACCESS_KEY_ID", KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET)
        .env("AWS_SESSION_TOKEN", TOKEN)
        .env("CAPSTAN_LOG", "trace");
    let out = cmd.output().unwrap();
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("\"message\":\"decision\""),
        "the run decided: {text}"
    );
    // The secrets did reach AWS (the proxy saw them signed)...
    assert!(proxy.log().iter().any(|e| e.status == 200));
    // ...and never the logs.
    for needle in [
        KEY,
        SECRET,
        TOKEN,
        "Signature=",
        "X-Amz-Security-Token",
        "x-amz-security-token",
        "Credential=",
    ] {
        assert!(
            !text.contains(needle),
            "`{needle}` in the logs: {}",
            text.lines()
                .filter(|l| l.contains(needle))
                .take(3)
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    println!(
        "FIGURES {}",
        json!({
            "scenario": "credentials-in-logs",
            "log_lines": text.lines().count(),
            "log_bytes": text.len(),
            "secrets_found": 0,
        })
    );
}
