//! Never act twice: `capstan run`, the binary, against the emulator through the fault
//! proxy, with a scale-up rate limit of +2 workers per period.
//!
//! - Every `UpdateService` is carried out but its answer is lost (cut short, or the
//!   connection reset): each change counts for the rate limit anyway, so no period sees
//!   more than +2.
//! - `kill -9` right after a change, before its answer is stored (the history write that
//!   follows the `UpdateService` is held), then a restart, with a rate period twice the
//!   lease: the restarted process counts the change it finds written ahead and waits the
//!   period out. `CAPSTAN_ACT_ONCE_KILLS` (default 2) makes a longer run (the test sets
//!   the workers back to 2 whenever they reach the max, so every kill follows a change).
//!
//! Each test prints one `FIGURES {json}` line (run with `--nocapture`).

mod common;

use std::time::Duration;

use common::daemon::{self as d, Daemon, Shop, TICK};
use common::proxy::{self, Entry, Fault, Rule};
use serde_json::json;

/// Changes AWS carried out: answered 200 by the emulator, whether or not the answer
/// reached capstan. (time ms, desired count)
fn made(log: &[Entry]) -> Vec<(u64, u32)> {
    log.iter()
        .filter(|e| e.operation == "UpdateService" && e.status == 200)
        .filter(|e| {
            e.fault
                .as_deref()
                .is_none_or(|f| f.starts_with("forward-") || f.starts_with("slow"))
        })
        .filter_map(|e| {
            let at = e.body.find("\"desiredCount\"")? + "\"desiredCount\"".len();
            let digits: String = e.body[at..]
                .chars()
                .skip_while(|c| !c.is_ascii_digit())
                .take_while(|c| c.is_ascii_digit())
                .collect();
            Some((e.ms, digits.parse().ok()?))
        })
        .collect()
}

/// The largest rise within any `period` (less 1 s for the gap between a tick's clock and
/// its request reaching the proxy): each change against the capacity in force one period
/// before it.
fn largest_rise(changes: &[(u64, u32)], initial: u32, period: Duration) -> u32 {
    let at = |t: i64| -> u32 {
        changes
            .iter()
            .rev()
            .find(|(ms, _)| (*ms as i64) < t)
            .map_or(initial, |(_, v)| *v)
    };
    changes
        .iter()
        .map(|(ms, v)| {
            let base = at(*ms as i64 - period.as_millis() as i64 + 1000);
            v.saturating_sub(base)
        })
        .max()
        .unwrap_or(0)
}

const UP_PODS: u32 = 2;

fn behavior(period_secs: u64) -> String {
    format!(
        "[target.behavior.scale_up]\npolicies = [{{ type = \"pods\", value = {UP_PODS}, period = \"{period_secs}s\" }}]"
    )
}

async fn lost_answers(fault: Fault) {
    let period = Duration::from_secs(10);
    let sdk = common::sdk().await;
    let shop = Shop::names();
    shop.create(&sdk, None).await;
    shop.add_messages(&sdk, 200).await; // 200 / 20 = 10 = max
    shop.set_load(&sdk, 50.0).await;
    let initial = shop.workers(&sdk).await;
    let cfg = shop.config(None, "", &behavior(period.as_secs()));
    let proxy = proxy::start_proxy(common::endpoint());
    proxy.add(
        Rule::new(fault.clone())
            .service("ecs")
            .operation("UpdateService"),
    );
    let mut daemon = Daemon::spawn(d::capstan(&proxy.url, &cfg, &[]));
    // Long enough for three periods' worth of changes.
    tokio::time::sleep(3 * period - Duration::from_secs(3)).await;
    assert!(daemon.alive(), "{}", daemon.text());
    assert!(daemon.stop(), "{}", daemon.text());
    let text = daemon.text();
    let changes = made(&proxy.log());
    let values: Vec<u32> = changes.iter().map(|c| c.1).collect();
    let rise = largest_rise(&changes, initial, period);
    assert!(
        rise <= UP_PODS,
        "{}: rose {rise} within {period:?}: {values:?} from {initial}\n{text}",
        fault.name()
    );
    // It kept scaling, one period at a time, and said that each answer was lost.
    assert!(
        values.iter().max() >= Some(&(initial + 2 * UP_PODS)),
        "{}: {values:?}\n{text}",
        fault.name()
    );
    assert!(text.contains("it may have been made"), "{text}");
    println!(
        "FIGURES {}",
        json!({
            "scenario": format!("update-service-{}", fault.name()),
            "initial": initial,
            "changes": values,
            "change_ms": changes.iter().map(|c| c.0).collect::<Vec<_>>(),
            "largest_rise_per_period": rise,
            "rate_limit": {"up": UP_PODS, "period_s": period.as_secs()},
        })
    );
}

#[tokio::test]
async fn an_update_carried_out_whose_answer_is_cut_short_is_counted() {
    lost_answers(Fault::ForwardThenTruncate).await;
}

#[tokio::test]
async fn an_update_carried_out_whose_connection_is_reset_is_counted() {
    lost_answers(Fault::ForwardThenReset).await;
}

#[tokio::test]
async fn kill_9_between_a_change_and_its_record_never_repeats_it() {
    let kills = std::env::var("CAPSTAN_ACT_ONCE_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2usize);
    // The shop's lease is 10 s: the rate period is twice that.
    let period = Duration::from_secs(20);
    let sdk = common::sdk().await;
    let shop = Shop::names();
    let table = common::unique("once");
    shop.create(&sdk, Some(&table)).await;
    shop.add_messages(&sdk, 400).await; // 400 / 20 = 20, capped at the max of 10
    shop.set_load(&sdk, 50.0).await;
    let initial = shop.workers(&sdk).await;
    let cfg = shop.config(Some(&table), "", &behavior(period.as_secs()));
    let proxy = proxy::start_proxy(common::endpoint());
    let spawn = || {
        let mut c = d::capstan(&proxy.url, &cfg, &[]);
        c.env("HOSTNAME", "once");
        Daemon::spawn(c)
    };
    let mut killed_after = Vec::new();
    // Changes made behind capstan's back (the test resets the workers to 2 at the max, so a
    // long run keeps scaling out): (proxy time ms, desired count).
    let mut outside: Vec<(u64, u32)> = Vec::new();
    for k in 0..kills {
        if shop.workers(&sdk).await >= 10 {
            aws_sdk_ecs::Client::new(&sdk)
                .update_service()
                .cluster(&shop.cluster)
                .service(&shop.service)
                .desired_count(2)
                .send()
                .await
                .unwrap();
            outside.push((proxy.now_ms(), 2));
        }
        // The history write that follows the next change is held: the process is killed
        // after AWS made the change and before its answer is stored.
        proxy.clear();
        proxy.add(
            Rule::new(Fault::Hang)
                .service("dynamodb")
                .operation("PutItem")
                .body_contains("history#")
                .after("UpdateService"),
        );
        let before = made(&proxy.log()).len();
        let mut daemon = spawn();
        let acted = d::until(3 * period.as_secs() + 15, || async {
            made(&proxy.log()).len() > before
        })
        .await;
        assert!(acted.is_some(), "kill {k}: no change\n{}", daemon.text());
        // Past the change's own request, into the held write.
        tokio::time::sleep(Duration::from_millis(300)).await;
        daemon.kill9();
        killed_after.push(*made(&proxy.log()).last().map(|(_, v)| v).unwrap());
    }
    proxy.clear();
    // The last process runs until a period after its first change.
    let mut daemon = spawn();
    let before = made(&proxy.log()).len();
    d::until(2 * period.as_secs() + 15, || async {
        made(&proxy.log()).len() > before
    })
    .await;
    tokio::time::sleep(period + TICK).await;
    assert!(daemon.stop(), "{}", daemon.text());
    let mut changes = made(&proxy.log());
    let values: Vec<u32> = changes.iter().map(|c| c.1).collect();
    let change_ms: Vec<u64> = changes.iter().map(|c| c.0).collect();
    changes.extend(outside.iter().copied());
    changes.sort();
    let rise = largest_rise(&changes, initial, period);
    assert!(
        rise <= UP_PODS,
        "rose {rise} within {period:?}: {values:?} from {initial}, killed after {killed_after:?}\n{}",
        daemon.text()
    );
    assert!(values.len() > kills.min(1), "{values:?}");
    println!(
        "FIGURES {}",
        json!({
            "scenario": "kill-9-after-change",
            "kills": killed_after.len(),
            "killed_after": killed_after,
            "initial": initial,
            "changes": values,
            "outside_resets_to_2": outside.len(),
            "change_ms": change_ms,
            "largest_rise_per_period": rise,
            "rate_limit": {"up": UP_PODS, "period_s": period.as_secs()},
            "lease_s": 10,
        })
    );
}

/// libfaketime's preload library (Debian package `libfaketime`).
fn libfaketime() -> Option<std::path::PathBuf> {
    let candidates = [
        std::env::var("CAPSTAN_LIBFAKETIME").unwrap_or_default(),
        "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1".into(),
        "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1".into(),
        "/usr/lib/faketime/libfaketime.so.1".into(),
    ];
    candidates
        .into_iter()
        .filter(|c| !c.is_empty())
        .map(std::path::PathBuf::from)
        .find(|p| p.exists())
}

/// Three replicas whose wall clocks are 12 s ahead, right and 12 s behind (libfaketime;
/// their monotonic clocks are left alone): one leader, the others never take its lease
/// while it renews; the leader is killed and one other takes over, not before the old
/// lease ran out by the true clock, and no two replicas ever act within a tick.
#[tokio::test]
async fn replicas_with_skewed_clocks_never_act_together() {
    let Some(lib) = libfaketime() else {
        // CI installs it (.ci/run): there a missing library is a failure, not a skip.
        assert!(
            std::env::var_os("CAPSTAN_REQUIRE_FAKETIME").is_none(),
            "libfaketime not found and CAPSTAN_REQUIRE_FAKETIME is set"
        );
        println!(
            "SKIPPED: libfaketime not found (install the Debian package libfaketime, or set CAPSTAN_LIBFAKETIME)"
        );
        return;
    };
    let lease = Duration::from_secs(10);
    let sdk = common::sdk().await;
    let shop = Shop::names();
    let table = common::unique("skew");
    shop.create(&sdk, Some(&table)).await;
    shop.add_messages(&sdk, 60).await; // 3 workers
    shop.set_load(&sdk, 50.0).await;
    let cfg = shop.config(Some(&table), "", "");
    // The replica with the true clock starts first and leads; then one 12 s ahead (it
    // would see the leader's lease as long expired by its own clock) and one 12 s behind.
    let skews = ["+0s", "+12s", "-12s"];
    let spawn = |i: usize| {
        let p = proxy::start_proxy(common::endpoint());
        let mut c = d::capstan(&p.url, &cfg, &[]);
        c.env("HOSTNAME", format!("skew-{i}"))
            .env("LD_PRELOAD", &lib)
            .env("FAKETIME", skews[i])
            .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
            .env("FAKETIME_DONT_RESET", "1");
        (p, Daemon::spawn(c))
    };
    let mut rs = vec![spawn(0)];
    d::until(30, || async { shop.workers(&sdk).await == 3 })
        .await
        .unwrap_or_else(|| panic!("the first replica did not act: {}", rs[0].1.text()));
    rs.push(spawn(1));
    rs.push(spawn(2));
    // The load rises in steps while all three run for 5 lease durations.
    for n in [40, 40, 40] {
        tokio::time::sleep(lease + TICK).await;
        shop.add_messages(&sdk, n).await;
    }
    tokio::time::sleep(lease + TICK).await;
    // Who wrote the lease, and who changed capacity (true time, from the proxies).
    let lease_writes = |p: &proxy::Proxy| -> Vec<u64> {
        p.log()
            .iter()
            .filter(|e| e.operation == "PutItem" && e.status == 200 && e.body.contains("lease#"))
            .map(|e| e.wall_ms)
            .collect()
    };
    let holders: Vec<usize> = (0..rs.len())
        .filter(|&i| !lease_writes(&rs[i].0).is_empty())
        .collect();
    assert_eq!(
        holders.len(),
        1,
        "the lease changed hands while its holder renewed it: {holders:?}"
    );
    let leader = holders[0];
    let last_renewal = *lease_writes(&rs[leader].0).last().unwrap();
    rs[leader].1.kill9();
    let killed = std::time::Instant::now();
    shop.add_messages(&sdk, 40).await;
    let before = shop.workers(&sdk).await;
    d::until(4 * lease.as_secs(), || async {
        shop.workers(&sdk).await > before
    })
    .await
    .unwrap_or_else(|| panic!("no take-over after the kill"));
    let took = killed.elapsed();
    tokio::time::sleep(TICK).await;
    for (i, (_, daemon)) in rs.iter_mut().enumerate() {
        if i != leader {
            assert!(daemon.stop(), "replica {i}: {}", daemon.text());
        }
    }
    let mut all: Vec<(u64, usize, u32)> = Vec::new();
    let mut takeover_at = None;
    for (i, (p, _)) in rs.iter().enumerate() {
        let log = p.log();
        let offset = log.first().map_or(0, |e| e.wall_ms - e.ms);
        all.extend(made(&log).iter().map(|(ms, v)| (ms + offset, i, *v)));
        if i != leader {
            if let Some(first) = lease_writes(p).first() {
                takeover_at = Some(*first);
            }
        }
    }
    all.sort();
    let actors: std::collections::BTreeSet<usize> = all.iter().map(|a| a.1).collect();
    for w in all.windows(2) {
        if w[0].1 != w[1].1 {
            assert!(
                w[1].0 - w[0].0 >= TICK.as_millis() as u64,
                "two replicas acted within a tick: {all:?}"
            );
        }
    }
    let takeover_at = takeover_at.expect("another replica took the lease");
    assert!(
        takeover_at >= last_renewal + lease.as_millis() as u64,
        "taken {} ms after the last renewal (lease {lease:?})",
        takeover_at - last_renewal
    );
    println!(
        "FIGURES {}",
        json!({
            "scenario": "3-replicas-skewed-clocks",
            "skews": skews,
            "leader": leader,
            "actors": actors,
            "changes": all.iter().map(|(_, i, v)| format!("r{i}:{v}")).collect::<Vec<_>>(),
            "takeover_after_last_renewal_ms": takeover_at - last_renewal,
            "convergence_after_kill_ms": took.as_millis() as u64,
            "lease_ms": lease.as_millis() as u64,
        })
    );
}
