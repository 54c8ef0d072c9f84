//! A recording, fault-injecting HTTP proxy between capstan and the emulator.
//!
//! Every request is logged (time, AWS service, operation, the SDK's invocation id and
//! attempt number, the fault applied, the response status), so tests can count calls:
//! that a dry run makes no mutating call, that retries stay within the SDK's attempts,
//! that two replicas never act in the same tick. Rules inject faults per service and
//! operation (throttling, 5xx, connection resets, hung connections, slow and malformed
//! answers, requests carried out whose answer is then cut short or reset, or the upstream
//! being unreachable), for a number of requests or until removed.
//! Each request is forwarded with `Connection: close`, so one connection carries one
//! request.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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

/// What the proxy does instead of (or on top of) forwarding a request.
#[derive(Clone, Debug, PartialEq)]
pub enum Fault {
    /// 400 with the protocol's throttling error: `ThrottlingException` (JSON protocols),
    /// `Throttling` (query protocols), `RequestThrottled` (SQS).
    Throttle,
    /// A 5xx status: 500 `InternalFailure`, 503 `ServiceUnavailable`.
    Status(u16),
    /// The connection is reset (RST) without an answer.
    Reset,
    /// The connection is held open and never answered.
    Hang,
    /// Forwarded after a delay.
    Slow(Duration),
    /// 200 with a truncated body the SDK cannot parse.
    Malformed,
    /// Forwarded (AWS carries it out), then the answer is cut short: the status line and
    /// headers of the real answer and half its body, then the connection closes.
    ForwardThenTruncate,
    /// Forwarded (AWS carries it out), then the connection is reset without an answer.
    ForwardThenReset,
}

impl Fault {
    pub fn name(&self) -> String {
        match self {
            Fault::Throttle => "throttle".into(),
            Fault::Status(s) => format!("http{s}"),
            Fault::Reset => "reset".into(),
            Fault::Hang => "hang".into(),
            Fault::Slow(d) => format!("slow{}ms", d.as_millis()),
            Fault::Malformed => "malformed".into(),
            Fault::ForwardThenTruncate => "forward-then-truncate".into(),
            Fault::ForwardThenReset => "forward-then-reset".into(),
        }
    }
}

/// When a rule applies: every field that is set must match.
#[derive(Clone, Debug)]
pub struct Rule {
    /// SigV4 signing name: `monitoring` (CloudWatch), `ecs`, `sqs`, `dynamodb`,
    /// `autoscaling`, `rds`, `elasticloadbalancing`, `application-autoscaling`.
    pub service: Option<String>,
    pub operation: Option<String>,
    /// A string the request body must contain (e.g. a resource name).
    pub body_contains: Option<String>,
    pub fault: Fault,
    /// Requests left to fault; `None` until the rule is removed.
    pub times: Option<u32>,
    /// Applies only once a request of this operation has been answered 200 after the rule
    /// was added (e.g. the history write that follows an `UpdateService`).
    pub after: Option<String>,
    /// The log length when the rule was added.
    armed_at: usize,
}

impl Rule {
    pub fn new(fault: Fault) -> Self {
        Rule {
            service: None,
            operation: None,
            body_contains: None,
            fault,
            times: None,
            after: None,
            armed_at: 0,
        }
    }
    pub fn after(mut self, operation: &str) -> Self {
        self.after = Some(operation.into());
        self
    }
    pub fn service(mut self, s: &str) -> Self {
        self.service = Some(s.into());
        self
    }
    pub fn operation(mut self, o: &str) -> Self {
        self.operation = Some(o.into());
        self
    }
    pub fn body_contains(mut self, s: &str) -> Self {
        self.body_contains = Some(s.into());
        self
    }
    pub fn times(mut self, n: u32) -> Self {
        self.times = Some(n);
        self
    }
    fn matches(&self, service: &str, op: &str, body: &str) -> bool {
        self.service.as_deref().is_none_or(|s| s == service)
            && self.operation.as_deref().is_none_or(|o| o == op)
            && self
                .body_contains
                .as_deref()
                .is_none_or(|b| body.contains(b))
    }
}

/// One request as the proxy saw it.
#[derive(Clone, Debug)]
pub struct Entry {
    /// Milliseconds since the proxy started.
    pub ms: u64,
    /// Milliseconds since the Unix epoch (to merge the logs of several proxies).
    pub wall_ms: u64,
    pub service: String,
    pub operation: String,
    /// The SDK's `amz-sdk-invocation-id`: the same for every attempt of one call.
    pub invocation: String,
    /// From `amz-sdk-request: attempt=N; max=M`.
    pub attempt: u32,
    pub fault: Option<String>,
    /// The status returned to the client; 0 when none was (reset, hang, upstream down).
    pub status: u16,
    pub body: String,
}

#[derive(Default)]
struct Inner {
    rules: Vec<Rule>,
    log: Vec<Entry>,
    upstream: String,
    /// Refuse everything as if the network were cut (connections reset).
    down: bool,
}

/// The proxy's handle: rules, log, upstream. Clones share them.
#[derive(Clone)]
pub struct Proxy {
    pub url: String,
    started: Instant,
    inner: Arc<Mutex<Inner>>,
}

/// The old name: the proxy used as a recorder only.
pub type Recorder = Proxy;

impl Proxy {
    fn with<R>(&self, f: impl FnOnce(&mut Inner) -> R) -> R {
        f(&mut self.inner.lock().unwrap())
    }
    /// Adds a fault rule (the first matching rule applies).
    pub fn add(&self, mut rule: Rule) {
        self.with(|i| {
            rule.armed_at = i.log.len();
            i.rules.push(rule)
        });
    }
    /// Removes every rule.
    pub fn clear(&self) {
        self.with(|i| i.rules.clear());
    }
    /// Cuts (or restores) the network: every connection is reset.
    pub fn set_down(&self, down: bool) {
        self.with(|i| i.down = down);
    }
    /// Points the proxy at another upstream (host:port or URL).
    pub fn set_upstream(&self, upstream: &str) {
        let u = clean(upstream);
        self.with(|i| i.upstream = u);
    }
    /// Milliseconds since the proxy started (the clock of [`Entry::ms`]).
    pub fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }
    pub fn log(&self) -> Vec<Entry> {
        self.with(|i| i.log.clone())
    }
    pub fn ops(&self) -> Vec<String> {
        self.log().into_iter().map(|e| e.operation).collect()
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

fn clean(upstream: &str) -> String {
    upstream
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string()
}

/// The AWS operation of a raw request: `X-Amz-Target: Service.Operation` (JSON protocols)
/// or `Action=Operation` in the form body (query protocols).
pub fn operation(head: &str, body: &[u8]) -> String {
    if let Some(v) = header(head, "x-amz-target") {
        return v.rsplit('.').next().unwrap_or("").to_string();
    }
    let body = String::from_utf8_lossy(body);
    for pair in body.split('&') {
        if let Some(a) = pair.strip_prefix("Action=") {
            return a.to_string();
        }
    }
    format!("?{}", head.lines().next().unwrap_or(""))
}

/// A header's value (case-insensitive name).
pub fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// The SigV4 signing name from `Authorization: ... Credential=AKID/date/region/service/...`.
pub fn service(head: &str) -> String {
    header(head, "authorization")
        .and_then(|a| a.split("Credential=").nth(1))
        .and_then(|c| c.split('/').nth(3))
        .unwrap_or("?")
        .to_string()
}

/// Starts the proxy on a free loopback port in front of `upstream` (host:port or URL).
/// It runs on its own thread until the process ends.
pub fn start(upstream: &str) -> (String, Proxy) {
    let p = start_proxy(upstream);
    (p.url.clone(), p)
}

/// Like [`start`], returning only the handle (its `url` field is the endpoint).
pub fn start_proxy(upstream: &str) -> Proxy {
    let inner = Arc::new(Mutex::new(Inner {
        upstream: clean(upstream),
        ..Inner::default()
    }));
    let started = Instant::now();
    let (tx, rx) = std::sync::mpsc::channel();
    let shared = inner.clone();
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
                let inner = shared.clone();
                tokio::spawn(async move {
                    let _ = handle(conn, &inner, started).await;
                });
            }
        });
    });
    let port = rx.recv().unwrap();
    Proxy {
        url: format!("http://127.0.0.1:{port}"),
        started,
        inner,
    }
}

// Linger 0 never blocks on drop (the deprecation is about non-zero lingers).
#[allow(deprecated)]
fn reset(conn: TcpStream) {
    // Linger 0: close sends RST instead of FIN.
    let _ = conn.set_linger(Some(Duration::ZERO));
    drop(conn);
}

async fn handle(
    mut conn: TcpStream,
    inner: &Mutex<Inner>,
    started: Instant,
) -> std::io::Result<()> {
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
    let len: usize = header(&head, "content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + len {
        let n = conn.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = buf[head_end..].to_vec();
    let body_text = String::from_utf8_lossy(&body).to_string();
    let op = operation(&head, &body);
    let svc = service(&head);
    let attempt = header(&head, "amz-sdk-request")
        .and_then(|v| v.split(';').next())
        .and_then(|a| a.trim().strip_prefix("attempt="))
        .and_then(|n| n.parse().ok())
        .unwrap_or(1);
    let invocation = header(&head, "amz-sdk-invocation-id")
        .unwrap_or("")
        .to_string();
    // Pick the fault (consuming one use of a counted rule) and log the request.
    let (fault, upstream, idx) = {
        let mut i = inner.lock().unwrap();
        let mut fault = if i.down { Some(Fault::Reset) } else { None };
        if fault.is_none() {
            let Inner { rules, log, .. } = &mut *i;
            let armed = |r: &Rule| {
                r.after.as_deref().is_none_or(|after| {
                    log[r.armed_at.min(log.len())..]
                        .iter()
                        .any(|e| e.operation == after && e.status == 200)
                })
            };
            if let Some(r) = rules
                .iter_mut()
                .find(|r| r.times != Some(0) && r.matches(&svc, &op, &body_text) && armed(r))
            {
                if let Some(n) = r.times.as_mut() {
                    *n -= 1;
                }
                fault = Some(r.fault.clone());
            }
        }
        i.log.push(Entry {
            ms: started.elapsed().as_millis() as u64,
            wall_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis() as u64,
            service: svc,
            operation: op,
            invocation,
            attempt,
            fault: fault.as_ref().map(Fault::name),
            status: 0,
            body: body_text,
        });
        (fault, i.upstream.clone(), i.log.len() - 1)
    };
    let set_status = |s: u16| inner.lock().unwrap().log[idx].status = s;
    let json = header(&head, "x-amz-target").is_some();
    let sqs = header(&head, "x-amz-target").is_some_and(|t| t.starts_with("AmazonSQS"));
    match fault {
        Some(Fault::Reset) => {
            reset(conn);
            return Ok(());
        }
        Some(Fault::Hang) => {
            // Held until the client gives up (its attempt timeout is 5 s).
            tokio::time::sleep(Duration::from_secs(60)).await;
            return Ok(());
        }
        Some(Fault::Throttle) => {
            let (code, status) = if sqs {
                ("RequestThrottled", 400)
            } else if json {
                ("ThrottlingException", 400)
            } else {
                ("Throttling", 400)
            };
            set_status(status);
            return error_response(conn, json, status, code).await;
        }
        Some(Fault::Status(s)) => {
            let code = if s == 503 {
                "ServiceUnavailable"
            } else {
                "InternalFailure"
            };
            set_status(s);
            return error_response(conn, json, s, code).await;
        }
        Some(Fault::Malformed) => {
            set_status(200);
            let (ctype, text) = if json {
                ("application/x-amz-json-1.1", "{\"services\": [{\"desiredCo")
            } else {
                ("text/xml", "<DescribeResponse><Result><Member><Val")
            };
            let resp = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
                text.len()
            );
            conn.write_all(resp.as_bytes()).await?;
            return conn.shutdown().await;
        }
        Some(Fault::Slow(d)) => tokio::time::sleep(d).await,
        Some(Fault::ForwardThenTruncate | Fault::ForwardThenReset) | None => {}
    }
    let mut new_head: String = head
        .trim_end()
        .lines()
        .filter(|l| !l.to_ascii_lowercase().starts_with("connection:"))
        .map(|l| format!("{l}\r\n"))
        .collect();
    new_head.push_str("Connection: close\r\n\r\n");
    let Ok(mut up) = TcpStream::connect(&upstream).await else {
        // The upstream is down: the client sees its connection reset.
        reset(conn);
        return Ok(());
    };
    up.write_all(new_head.as_bytes()).await?;
    up.write_all(&body).await?;
    let mut resp = Vec::new();
    up.read_to_end(&mut resp).await?;
    let status = String::from_utf8_lossy(&resp[..resp.len().min(64)])
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    set_status(status);
    match fault {
        Some(Fault::ForwardThenReset) => {
            reset(conn);
            Ok(())
        }
        Some(Fault::ForwardThenTruncate) => {
            let head_len = resp
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .map_or(0, |p| p + 4);
            let cut = head_len + (resp.len() - head_len) / 2;
            conn.write_all(&resp[..cut]).await?;
            conn.shutdown().await
        }
        _ => {
            conn.write_all(&resp).await?;
            conn.shutdown().await
        }
    }
}

async fn error_response(
    mut conn: TcpStream,
    json: bool,
    status: u16,
    code: &str,
) -> std::io::Result<()> {
    let reason = match status {
        400 => "Bad Request",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Error",
    };
    let (ctype, extra, body) = if json {
        (
            "application/x-amz-json-1.1",
            format!("x-amzn-ErrorType: {code}\r\nx-amzn-query-error: {code};Sender\r\n"),
            format!("{{\"__type\":\"{code}\",\"message\":\"injected by the test proxy\"}}"),
        )
    } else {
        (
            "text/xml",
            String::new(),
            format!(
                "<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code><Message>injected by the test proxy</Message></Error><RequestId>injected</RequestId></ErrorResponse>"
            ),
        )
    };
    let resp = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\n{extra}x-amzn-RequestId: injected\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    conn.write_all(resp.as_bytes()).await?;
    conn.shutdown().await
}
