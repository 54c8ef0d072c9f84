//! The HTTP endpoints over real TCP, in process (no AWS needed): only GET and HEAD, no
//! request bodies, 404 for unknown paths, bounded decision queries, readiness before the
//! first tick. `tests/daemon_emulator.rs` checks them on `capstan run` against the emulator.

mod common;

use std::net::SocketAddr;

use capstan::http::{self, Status};
use common::http::{get, request};

const CFG: &str = r#"
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

async fn server() -> (
    SocketAddr,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let cfg = capstan::config::from_str("t.toml", CFG).unwrap();
    let status = Status::new(&cfg, false, chrono::Utc::now());
    let listener = http::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        http::serve(listener, status, async {
            let _ = stop_rx.await;
        })
        .await
        .unwrap();
    });
    (addr, stop_tx, task)
}

/// Runs the blocking client off the runtime's threads.
async fn call<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_are_read_only_bounded_and_stop_on_shutdown() {
    let (addr, stop, task) = server().await;
    call(move || {
        // Every endpoint answers GET; readiness is 503 before the first tick.
        for (path, code, ctype) in [
            ("/", 200, "text/html"),
            ("/healthz", 200, "text/plain"),
            ("/readyz", 503, "application/json"),
            ("/metrics", 200, "text/plain; version=0.0.4"),
            ("/v1/targets", 200, "application/json"),
            ("/v1/decisions", 200, "application/json"),
        ] {
            let r = get(addr, path);
            assert_eq!(r.status, code, "{path}: {r:?}");
            assert!(
                r.header("content-type").unwrap_or("").starts_with(ctype),
                "{path}: {r:?}"
            );
            assert_eq!(r.header("cache-control"), Some("no-store"), "{path}");
        }
        let ready: serde_json::Value = serde_json::from_str(&get(addr, "/readyz").body).unwrap();
        assert_eq!(ready["ready"], false);
        assert_eq!(ready["recent_tick"], false);
        assert_eq!(ready["config_loaded"], true);
        // The page forbids any external asset.
        let page = get(addr, "/");
        let csp = page.header("content-security-policy").unwrap();
        assert!(csp.starts_with("default-src 'none'"), "{csp}");
        assert!(page.body.contains("<h2>api</h2>"));

        // Other methods: 405 with Allow, on every endpoint.
        for method in ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"] {
            for path in ["/", "/healthz", "/v1/targets", "/metrics"] {
                let r = request(addr, method, path, &[], "");
                assert_eq!(r.status, 405, "{method} {path}: {r:?}");
                assert_eq!(r.header("allow"), Some("GET, HEAD"), "{method} {path}");
            }
        }
        // HEAD: the headers of GET, no body.
        let r = request(addr, "HEAD", "/v1/targets", &[], "");
        assert_eq!(r.status, 200);
        assert!(r.body.is_empty(), "{r:?}");
        // Bodies are refused, whatever the method, with a length or chunked.
        let r = request(
            addr,
            "GET",
            "/v1/targets",
            &["Content-Length: 7"],
            "{\"a\":1}",
        );
        assert_eq!(r.status, 413, "{r:?}");
        let r = request(addr, "POST", "/v1/targets", &["Content-Length: 2"], "{}");
        assert_eq!(r.status, 413, "{r:?}");
        let r = request(
            addr,
            "GET",
            "/metrics",
            &["Transfer-Encoding: chunked"],
            "3\r\nabc\r\n0\r\n\r\n",
        );
        assert_eq!(r.status, 413, "{r:?}");
        // An empty body declared as such is no body.
        assert_eq!(
            request(addr, "GET", "/healthz", &["Content-Length: 0"], "").status,
            200
        );
        // Unknown paths.
        for path in ["/nope", "/v1", "/v1/targets/api", "/metrics/x"] {
            assert_eq!(get(addr, path).status, 404, "{path}");
        }
        // Decision queries are bounded; bad ones are refused.
        let d: serde_json::Value =
            serde_json::from_str(&get(addr, "/v1/decisions?limit=1000000").body).unwrap();
        assert_eq!(d["limit"], 500);
        let d: serde_json::Value = serde_json::from_str(&get(addr, "/v1/decisions").body).unwrap();
        assert_eq!(d["limit"], 100);
        assert_eq!(get(addr, "/v1/decisions?limit=abc").status, 400);
        assert_eq!(get(addr, "/v1/decisions?limit=-1").status, 400);
        assert_eq!(get(addr, "/v1/decisions?target=ghost").status, 404);
        assert_eq!(get(addr, "/v1/decisions?target=api&limit=5").status, 200);
    })
    .await;
    // Shutdown: the server stops and the port is released.
    stop.send(()).unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(5), task)
        .await
        .expect("the server stops on shutdown")
        .unwrap();
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "still listening"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_time_out_and_their_number_is_limited() {
    use std::io::Read;
    use std::time::{Duration, Instant};
    let (addr, stop, task) = server().await;
    // Every slot taken by a client that never sends its request.
    let idle: Vec<std::net::TcpStream> = (0..http::MAX_CONNECTIONS)
        .map(|_| std::net::TcpStream::connect(addr).unwrap())
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    // Liveness is answered at once; the other endpoints are busy until the idle ones
    // have timed out.
    assert_eq!(call(move || get(addr, "/healthz")).await.status, 200);
    assert_eq!(call(move || get(addr, "/metrics")).await.status, 503);
    let waited = call(move || loop {
        if get(addr, "/metrics").status == 200 {
            return started.elapsed();
        }
        std::thread::sleep(Duration::from_millis(200));
    })
    .await;
    assert!(
        waited >= http::HEADER_TIMEOUT - Duration::from_secs(1)
            && waited < http::HEADER_TIMEOUT + Duration::from_secs(10),
        "waited {waited:?}"
    );
    // The idle connections were closed by the server.
    call(move || {
        for mut s in idle {
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut buf = Vec::new();
            s.read_to_end(&mut buf)
                .expect("closed by the server, not timed out");
        }
    })
    .await;
    stop.send(()).unwrap();
    task.await.unwrap();
}

/// Opens `n` connections that each pipeline requests for `path` and never read.
fn non_readers(addr: SocketAddr, n: usize, path: &str) -> Vec<std::net::TcpStream> {
    use std::io::Write;
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").repeat(2000);
    (0..n)
        .map(|_| {
            let mut s = std::net::TcpStream::connect(addr).unwrap();
            s.set_nonblocking(true).unwrap();
            // As much as the socket takes; the rest is never sent.
            let _ = s.write(req.as_bytes());
            s
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn liveness_is_answered_while_clients_that_never_read_hold_every_connection() {
    let (addr, stop, task) = server().await;
    call(move || {
        let hogs = non_readers(addr, http::MAX_CONNECTIONS + 6, "/metrics");
        std::thread::sleep(std::time::Duration::from_millis(500));
        // The container's health check: answered, not left in the backlog behind them.
        let url = format!("http://{addr}/healthz");
        let t = std::time::Instant::now();
        capstan::ops::healthcheck::check(&url, std::time::Duration::from_secs(3))
            .unwrap_or_else(|e| panic!("healthcheck failed while the slots are held: {e}"));
        assert!(t.elapsed() < std::time::Duration::from_secs(1));
        // The other endpoints say they are busy meanwhile.
        let r = get(addr, "/metrics");
        assert_eq!(r.status, 503, "{r:?}");
        assert_eq!(r.header("retry-after"), Some("1"));
        assert_eq!(get(addr, "/healthz").status, 200);
        drop(hogs);
    })
    .await;
    stop.send(()).unwrap();
    task.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_its_answers_is_dropped() {
    use std::time::{Duration, Instant};
    let (addr, stop, task) = server().await;
    call(move || {
        // Far more answers than the socket buffers hold: the server's writes stall.
        let hogs = non_readers(addr, http::MAX_CONNECTIONS, "/metrics");
        std::thread::sleep(Duration::from_millis(500));
        assert_eq!(get(addr, "/metrics").status, 503);
        let started = Instant::now();
        // The slots come back once the stalled writes time out, while the clients still
        // hold their sockets open (not at the 60 s connection limit).
        loop {
            if get(addr, "/metrics").status == 200 {
                break;
            }
            assert!(
                started.elapsed()
                    < (http::WRITE_STALL_TIMEOUT + Duration::from_secs(10))
                        .min(http::CONNECTION_TIMEOUT / 2),
                "the non-reading clients still hold the slots"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        drop(hogs);
    })
    .await;
    stop.send(()).unwrap();
    task.await.unwrap();
}
