//! A recording HTTP proxy between capstan and the emulator: every request's AWS operation
//! is logged, so tests can count calls (e.g. that a dry run makes no mutating call). Each
//! request is forwarded with `Connection: close`, so one connection carries one request.

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Operations that change AWS resources (as opposed to reading them).
pub const MUTATING: &[&str] = &[
    "UpdateService",
    "SetDesiredCapacity",
    "TerminateInstanceInAutoScalingGroup",
    "CreateDBInstance",
    "DeleteDBInstance",
    "RegisterTargets",
    "DeregisterTargets",
    "RegisterScalableTarget",
    "SuspendProcesses",
    "PutScalingPolicy",
];

#[derive(Clone, Default)]
pub struct Recorder {
    ops: Arc<Mutex<Vec<String>>>,
}

impl Recorder {
    pub fn ops(&self) -> Vec<String> {
        self.ops.lock().unwrap().clone()
    }
    pub fn mutating(&self) -> Vec<String> {
        self.ops()
            .into_iter()
            .filter(|o| MUTATING.contains(&o.as_str()))
            .collect()
    }
    pub fn count(&self, op: &str) -> usize {
        self.ops().iter().filter(|o| *o == op).count()
    }
}

/// The AWS operation of a raw request: `X-Amz-Target: Service.Operation` (JSON protocols)
/// or `Action=Operation` in the form body (query protocols).
pub fn operation(head: &str, body: &[u8]) -> String {
    for line in head.lines() {
        if let Some(v) = line
            .strip_prefix("x-amz-target:")
            .or_else(|| line.strip_prefix("X-Amz-Target:"))
        {
            return v.trim().rsplit('.').next().unwrap_or("").to_string();
        }
    }
    let body = String::from_utf8_lossy(body);
    for pair in body.split('&') {
        if let Some(a) = pair.strip_prefix("Action=") {
            return a.to_string();
        }
    }
    format!("?{}", head.lines().next().unwrap_or(""))
}

/// Starts the proxy on a free loopback port in front of `upstream` (host:port); returns its
/// URL and the recorder. It runs on its own thread until the process ends.
pub fn start(upstream: &str) -> (String, Recorder) {
    let upstream = upstream
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let rec = Recorder::default();
    let r2 = rec.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap().port()).unwrap();
            loop {
                let Ok((conn, _)) = listener.accept().await else {
                    continue;
                };
                let (up, rec) = (upstream.clone(), r2.clone());
                tokio::spawn(async move {
                    let _ = forward(conn, &up, &rec).await;
                });
            }
        });
    });
    let port = rx.recv().unwrap();
    (format!("http://127.0.0.1:{port}"), rec)
}

async fn forward(mut conn: TcpStream, upstream: &str, rec: &Recorder) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        let n = conn.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let len: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap_or(0))
        })
        .unwrap_or(0);
    while buf.len() < head_end + len {
        let n = conn.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = buf[head_end..].to_vec();
    rec.ops.lock().unwrap().push(operation(&head, &body));
    let mut new_head: String = head
        .trim_end()
        .lines()
        .filter(|l| !l.to_ascii_lowercase().starts_with("connection:"))
        .map(|l| format!("{l}\r\n"))
        .collect();
    new_head.push_str("Connection: close\r\n\r\n");
    let mut up = TcpStream::connect(upstream).await?;
    up.write_all(new_head.as_bytes()).await?;
    up.write_all(&body).await?;
    let mut resp = Vec::new();
    up.read_to_end(&mut resp).await?;
    conn.write_all(&resp).await?;
    conn.shutdown().await
}
