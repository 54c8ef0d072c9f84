//! Crashes and replicas: `capstan run`, the binary, against the emulator through the
//! recording proxy.
//!
//! - `kill -9` at seeded random points during a scale-out and a scale-in, restarted each
//!   time: no capacity change exceeds the rate limits or the bounds, the stored history
//!   (DynamoDB) survives every restart, and the last process converges.
//!   `CAPSTAN_CRASH_KILLS` (default 4) and `CAPSTAN_CRASH_SEED` (default 7) make a longer run.
//! - Two and three replicas sharing the lease, the leader partitioned from DynamoDB by its
//!   proxy, then the next leader killed: no two replicas ever act within the same tick, and
//!   a new leader acts within the lease time plus two ticks.
//!
//! Each test prints one `FIGURES {json}` line (run with `--nocapture`).

mod common;

use std::time::{Duration, Instant};

use common::daemon::{self as d, Daemon, Shop, TICK};
use common::proxy::{self, Fault, Proxy, Rule};
use serde_json::json;

/// The lease duration of the shop's config.
const LEASE: Duration = Duration::from_secs(10);

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

const UP_PODS: u32 = 2;
const DOWN_PODS: u32 = 3;
const RATE_PERIOD_MS: u64 = 10_000;

/// The largest move of any rate-limit period: for each change, its distance from the
/// capacity in force one period earlier (less 1 s for the gap between a tick's clock and
/// its request reaching the proxy). Returns (largest rise, largest fall).
fn largest_moves(changes: &[d::Change], initial: u32) -> (u32, u32) {
    let at = |t: i64| -> u32 {
        changes
            .iter()
            .rev()
            .find(|c| (c.ms as i64) < t)
            .map_or(initial, |c| c.value)
    };
    let (mut up, mut down) = (0, 0);
    for c in changes {
        let base = at(c.ms as i64 - RATE_PERIOD_MS as i64 + 1000);
        up = up.max(c.value.saturating_sub(base));
        down = down.max(base.saturating_sub(c.value));
    }
    (up, down)
}

#[tokio::test]
async fn kill_9_at_random_points_keeps_rate_limits_bounds_and_history() {
    let kills = env_or("CAPSTAN_CRASH_KILLS", 4) as usize;
    let seed = env_or("CAPSTAN_CRASH_SEED", 7);
    let mut rng = common::Rng::new(seed);
    let sdk = common::sdk().await;
    let shop = Shop::names();
    let table = common::unique("fcrash");
    shop.create(&sdk, Some(&table)).await;
    shop.add_messages(&sdk, 200).await; // 200 / 20 = 10 = max
    shop.set_load(&sdk, 50.0).await; // the fleet stays at 1
    let behavior = format!(
        r#"[target.behavior.scale_up]
policies = [{{ type = "pods", value = {UP_PODS}, period = "10s" }}]
[target.behavior.scale_down]
stabilization_window = "10s"
policies = [{{ type = "pods", value = {DOWN_PODS}, period = "10s" }}]"#
    );
    let cfg = shop.config(Some(&table), "", &behavior);
    let proxy = proxy::start_proxy(common::endpoint());
    let spawn = || {
        let mut c = d::capstan(&proxy.url, &cfg, &[]);
        c.env("HOSTNAME", "crash");
        Daemon::spawn(c)
    };

    let mut out_kills = 0;
    let mut in_kills = 0;
    let mut kills_after_acting = 0;
    let mut first_leader_killed_at: Option<chrono::DateTime<chrono::Utc>> = None;
    // Half the kills during the scale-out; then the queue is purged and the other half
    // fall in the scale-in (its stabilization window first).
    let mut scaling_in = false;
    for k in 0..kills {
        if !scaling_in && k >= kills / 2 {
            shop.purge(&sdk).await;
            scaling_in = true;
        }
        let mut daemon = spawn();
        // Anywhere from start-up to well after it could take the lease (10 s).
        tokio::time::sleep(Duration::from_millis(1000 + rng.below(15_000))).await;
        let acted = daemon.text().contains("\"outcome\":\"applied\"");
        daemon.kill9();
        if acted {
            kills_after_acting += 1;
            first_leader_killed_at.get_or_insert_with(chrono::Utc::now);
        }
        if scaling_in {
            in_kills += 1;
        } else {
            out_kills += 1;
        }
    }

    // The last process converges to the minimum.
    let mut daemon = spawn();
    if !scaling_in {
        shop.purge(&sdk).await;
    }
    let conv = d::until(120, || async { shop.workers(&sdk).await == 1 })
        .await
        .unwrap_or_else(|| panic!("no convergence: {}", daemon.text()));
    // It stays there (and has installed its signal handlers before the SIGTERM).
    tokio::time::sleep(2 * TICK).await;
    assert_eq!(shop.workers(&sdk).await, 1);
    assert!(daemon.stop(), "{}", daemon.text());

    let log = proxy.log();
    let (requests, _, worst) = d::check_log(&log);
    let changes: Vec<d::Change> = d::changes(&log)
        .into_iter()
        .filter(|c| c.resource == "workers")
        .collect();
    let values: Vec<u32> = changes.iter().map(|c| c.value).collect();
    assert!(
        values.iter().max() >= Some(&4) && values.last() == Some(&1),
        "scaled out (2 -> 4 or more), then in to 1: {values:?}"
    );
    let (up, down) = largest_moves(&changes, 2);
    assert!(up <= UP_PODS, "rose {up} within 10 s: {values:?}");
    assert!(down <= DOWN_PODS, "fell {down} within 10 s: {values:?}");
    // The stored history is the one the first leader started: no restart replaced it.
    let h = shop
        .stored_history(&sdk, &table, "workers")
        .await
        .expect("the history is stored");
    let first_seen: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(h["first_seen"].clone()).unwrap();
    if let Some(killed) = first_leader_killed_at {
        assert!(
            first_seen < killed,
            "history restarted at {first_seen}, after the first leader died at {killed}"
        );
    }
    println!(
        "FIGURES {}",
        json!({
            "scenario": "kill-9",
            "seed": seed,
            "kills": kills,
            "kills_during_scale_out": out_kills,
            "kills_during_scale_in": in_kills,
            "kills_after_acting": kills_after_acting,
            "changes": values,
            "largest_rise_per_10s": up,
            "largest_fall_per_10s": down,
            "rate_limits": {"up": UP_PODS, "down": DOWN_PODS},
            "requests": requests,
            "max_attempts_per_call": worst,
            "history_first_seen_kept": true,
            "final_convergence_ms": conv.as_millis() as u64,
        })
    );
}

/// Replica `i` of `n`, with its own proxy (so it alone can be partitioned).
struct Replica {
    proxy: Proxy,
    daemon: Daemon,
}

/// Lets the proxies log the answers of the calls the emulator has already carried out (a
/// change is visible to a describe before its proxy has read the whole answer).
async fn settle_logs() {
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// The replica whose proxy carried the latest capacity change.
fn last_actor(replicas: &[Replica]) -> usize {
    replicas
        .iter()
        .enumerate()
        .filter_map(|(i, r)| {
            let log = r.proxy.log();
            let last = d::changes(&log).last()?.ms;
            let wall = log.iter().find(|e| e.ms == last)?.wall_ms;
            Some((wall, i))
        })
        .max()
        .map(|(_, i)| i)
        .expect("someone acted")
}

async fn replicas(n: usize) {
    let sdk = common::sdk().await;
    let shop = Shop::names();
    let table = common::unique("fha");
    shop.create(&sdk, Some(&table)).await;
    shop.add_messages(&sdk, 100).await; // 5 workers
    shop.set_load(&sdk, 50.0).await;
    let cfg = shop.config(Some(&table), "", "");
    let mut rs: Vec<Replica> = (0..n)
        .map(|i| {
            let proxy = proxy::start_proxy(common::endpoint());
            let mut c = d::capstan(&proxy.url, &cfg, &[]);
            c.env("HOSTNAME", format!("replica-{i}"));
            Replica {
                daemon: Daemon::spawn(c),
                proxy,
            }
        })
        .collect();
    let first = d::until(30, || async { shop.workers(&sdk).await == 5 }).await;
    assert!(first.is_some(), "{}", rs[0].daemon.text());
    settle_logs().await;
    let leader = last_actor(&rs);

    // 1. The leader is cut off from DynamoDB (but still reaches ECS and SQS).
    rs[leader]
        .proxy
        .add(Rule::new(Fault::Reset).service("dynamodb"));
    let cut = Instant::now();
    shop.add_messages(&sdk, 40).await; // 7 workers
    d::until(40, || async { shop.workers(&sdk).await == 7 })
        .await
        .unwrap_or_else(|| panic!("no take-over after the partition"));
    let t1 = cut.elapsed();
    settle_logs().await;
    let second = last_actor(&rs);
    assert_ne!(
        second,
        leader,
        "the partitioned leader acted: {:?}",
        rs.iter()
            .map(|r| {
                let log = r.proxy.log();
                let lease: Vec<u64> = log
                    .iter()
                    .filter(|e| e.operation == "PutItem" && e.status == 200)
                    .filter(|e| e.body.contains("lease#"))
                    .map(|e| e.wall_ms)
                    .collect();
                let offset = log.first().map_or(0, |e| e.wall_ms - e.ms);
                let changes: Vec<(u64, u32)> = d::changes(&log)
                    .iter()
                    .map(|c| (c.ms + offset, c.value))
                    .collect();
                (changes, lease)
            })
            .collect::<Vec<_>>()
    );
    rs[leader].proxy.clear();

    // 2. The new leader is killed.
    rs[second].daemon.kill9();
    let killed = Instant::now();
    shop.add_messages(&sdk, 40).await; // 9 workers
    d::until(40, || async { shop.workers(&sdk).await == 9 })
        .await
        .unwrap_or_else(|| panic!("no take-over after the kill"));
    let t2 = killed.elapsed();
    settle_logs().await;
    let third = last_actor(&rs);
    assert_ne!(third, second);
    tokio::time::sleep(TICK).await;
    for (i, r) in rs.iter_mut().enumerate() {
        if i != second {
            assert!(r.daemon.stop(), "replica {i}: {}", r.daemon.text());
        }
    }

    // No two replicas acted within the same tick: changes by different replicas are at
    // least the leader's no-action margin (2 s) apart, and no 5 s window holds two actors.
    let mut all: Vec<(u64, usize, u32)> = Vec::new();
    let mut requests = 0;
    for (i, r) in rs.iter().enumerate() {
        let log = r.proxy.log();
        requests += d::check_log(&log).0;
        let offset = log.first().map_or(0, |e| e.wall_ms - e.ms);
        all.extend(d::changes(&log).iter().map(|c| (c.ms + offset, i, c.value)));
    }
    all.sort();
    let mut min_gap = u64::MAX;
    let mut double = 0;
    for w in all.windows(2) {
        if w[0].1 != w[1].1 {
            min_gap = min_gap.min(w[1].0 - w[0].0);
            if w[1].0 - w[0].0 < TICK.as_millis() as u64 {
                double += 1;
            }
        }
    }
    assert_eq!(double, 0, "two replicas acted within a tick: {all:?}");
    assert!(min_gap >= 2000, "{all:?}");
    // A new leader acts after the old lease expired (never before) and within the lease
    // time plus two ticks of the old leader's last renewal.
    let takeovers: Vec<u64> = all
        .windows(2)
        .filter(|w| w[0].1 != w[1].1)
        .map(|w| {
            let (old, first_action) = (w[0].1, w[1].0);
            let last_renewal = rs[old]
                .proxy
                .log()
                .iter()
                .filter(|e| e.operation == "PutItem" && e.status == 200)
                .filter(|e| e.body.contains("lease#"))
                .map(|e| e.wall_ms)
                .filter(|t| *t < first_action)
                .max()
                .unwrap();
            first_action - last_renewal
        })
        .collect();
    assert_eq!(takeovers.len(), 2, "{all:?}");
    for &k in &takeovers {
        assert!(
            k + 1000 >= LEASE.as_millis() as u64,
            "a new leader acted {k} ms after the old one renewed"
        );
        // A taker first sees the last renewal's record up to a tick after it was written,
        // then waits a full lease of its own ticks: up to two ticks past the lease.
        assert!(
            k <= (LEASE + 2 * TICK + Duration::from_secs(1)).as_millis() as u64,
            "take-over took {k} ms after the last renewal"
        );
    }
    let bound = LEASE + 2 * TICK + Duration::from_secs(2);
    assert!(t1 <= bound, "take-over after the partition took {t1:?}");
    assert!(t2 <= bound, "take-over after the kill took {t2:?}");
    println!(
        "FIGURES {}",
        json!({
            "scenario": format!("{n}-replicas"),
            "replicas": n,
            "changes": all.iter().map(|(_, i, v)| format!("r{i}:{v}")).collect::<Vec<_>>(),
            "double_actions": double,
            "min_gap_between_actors_ms": min_gap,
            "convergence_after_partition_ms": t1.as_millis() as u64,
            "convergence_after_kill_ms": t2.as_millis() as u64,
            "takeover_after_last_renewal_ms": takeovers,
            "lease_ms": LEASE.as_millis() as u64,
            "requests": requests,
        })
    );
}

#[tokio::test]
async fn two_replicas_leader_partitioned_then_killed() {
    replicas(2).await;
}

#[tokio::test]
async fn three_replicas_leader_partitioned_then_killed() {
    replicas(3).await;
}
