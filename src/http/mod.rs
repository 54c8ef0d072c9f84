//! The read-only HTTP endpoints of `capstan run`, on `[global] http_listen`:
//!
//! - `/healthz`: liveness, 200 while the process serves.
//! - `/readyz`: 200 when a tick finished recently, AWS answered it and the lease role is
//!   known, else 503; the body says which check failed.
//! - `/metrics`: Prometheus text ([`prom`]).
//! - `/v1/targets`: each target's current state as JSON.
//! - `/v1/decisions?target=NAME&limit=N`: the recent decisions with their reasons and
//!   explanations, newest first (`limit` defaults to 100, at most 500).
//! - `/`: the status page ([`page`]).
//!
//! Only GET and HEAD are served (others get 405 with `Allow`), a request with a body gets
//! 413, unknown paths 404; connections are limited in number, head size and time, a peer
//! that does not read what it is sent is dropped, and a few connections are kept for
//! `/healthz` alone so that liveness cannot be starved by clients of the other endpoints
//! ([`serve`]). Responses are bounded by the number of targets and metrics in
//! the config and by the bounded logs of [`status`]. Every string in `/v1/*` and on the
//! page passes [`redact::redact`], so credentials never appear.

pub mod page;
pub mod prom;
pub mod redact;
pub mod status;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::Utc;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::{watch, Semaphore};

use crate::aws::CallStats;
use redact::redact_json;
pub use status::Status;

/// Decisions `/v1/decisions` returns without `limit`.
pub const DEFAULT_DECISIONS: usize = 100;

/// The router over the shared status.
pub fn router(status: Arc<Status>) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/v1/targets", get(targets))
        .route("/v1/decisions", get(decisions))
        .fallback(not_found)
        .layer(middleware::from_fn(guard))
        .with_state(status)
}

/// Binds the listener (`[global] http_listen`).
pub async fn bind(addr: &str) -> std::io::Result<tokio::net::TcpListener> {
    let addr: SocketAddr = addr.parse().map_err(|e| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("`{addr}`: {e}"))
    })?;
    tokio::net::TcpListener::bind(addr).await
}

/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 64;
/// Connections kept for liveness: while all [`MAX_CONNECTIONS`] are taken, a new one is
/// served from these, with `/healthz` answered and every other path `503`, one request
/// each, [`LIVENESS_TIMEOUT`] in all. With these taken too, a new connection is closed.
pub const LIVENESS_CONNECTIONS: usize = 8;
/// Time a connection kept for liveness has to send its request and take the answer.
pub const LIVENESS_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest a write may wait for the peer to read (a client that pipelines requests and
/// never reads the answers): then the connection is dropped.
pub const WRITE_STALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Time a client has to send its request head.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest a connection stays open, keep-alive included (then it is closed gracefully).
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(60);
/// Largest request head read (hyper's minimum is 8 KiB).
pub const MAX_HEAD_BYTES: usize = 16 * 1024;

/// Serves until `shutdown` completes, then closes idle connections, lets requests in
/// flight finish (5 s at most) and returns. HTTP/1.1 only; at most [`MAX_CONNECTIONS`]
/// connections, each with [`HEADER_TIMEOUT`] to send its request head, [`CONNECTION_TIMEOUT`]
/// in all and [`WRITE_STALL_TIMEOUT`] for any write; beyond them, [`LIVENESS_CONNECTIONS`]
/// that answer only `/healthz`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    status: Arc<Status>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = router(status);
    let liveness_app = liveness_router();
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let spare = Arc::new(Semaphore::new(LIVENESS_CONNECTIONS));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        // Every connection is taken at once (none waits in the backlog behind clients
        // that hold the slots), then served in full, for liveness only, or closed.
        let stream = tokio::select! {
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(e) => {
                    // Out of file descriptors and the like: wait, never spin.
                    tracing::warn!(error = %e, "accepting an HTTP connection");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let io = TokioIo::new(WriteDeadline::new(stream, WRITE_STALL_TIMEOUT));
        if let Ok(permit) = slots.clone().try_acquire_owned() {
            let service = TowerToHyperService::new(app.clone());
            let mut stop = stop_rx.clone();
            tokio::spawn(async move {
                let _permit = permit;
                let conn = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(HEADER_TIMEOUT)
                    .max_buf_size(MAX_HEAD_BYTES)
                    .serve_connection(io, service);
                let mut conn = std::pin::pin!(conn);
                tokio::select! {
                    _ = conn.as_mut() => return,
                    _ = stop.wait_for(|s| *s) => {}
                    _ = tokio::time::sleep(CONNECTION_TIMEOUT) => {}
                }
                conn.as_mut().graceful_shutdown();
                let _ = tokio::time::timeout(Duration::from_secs(5), conn).await;
            });
        } else if let Ok(permit) = spare.clone().try_acquire_owned() {
            let service = TowerToHyperService::new(liveness_app.clone());
            tokio::spawn(async move {
                let _permit = permit;
                let conn = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(LIVENESS_TIMEOUT)
                    .keep_alive(false)
                    .max_buf_size(MAX_HEAD_BYTES)
                    .serve_connection(io, service);
                let _ = tokio::time::timeout(LIVENESS_TIMEOUT, conn).await;
            });
        }
        // Else the stream is dropped: closed at once.
    }
    let _ = stop_tx.send(true);
    // Every slot back: all connections closed (or the 5 s they had are over).
    let _ = tokio::time::timeout(Duration::from_secs(6), async {
        let _ = slots.acquire_many(MAX_CONNECTIONS as u32).await;
        let _ = spare.acquire_many(LIVENESS_CONNECTIONS as u32).await;
    })
    .await;
    Ok(())
}

/// The router of connections kept for liveness: `/healthz`, else `503`.
fn liveness_router() -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .fallback(busy)
        .layer(middleware::from_fn(guard))
}

async fn busy() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::RETRY_AFTER, "1")],
        "busy: every connection is taken; only /healthz is answered now\n",
    )
        .into_response()
}

/// A stream whose writes fail once one has waited `limit` for the peer to read: a client
/// that pipelines requests and never reads the answers cannot hold its connection.
struct WriteDeadline<T> {
    io: T,
    limit: Duration,
    stalled: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
}

impl<T> WriteDeadline<T> {
    fn new(io: T, limit: Duration) -> Self {
        WriteDeadline {
            io,
            limit,
            stalled: None,
        }
    }

    /// Passes a ready write on (and forgets the stall); a pending one waits at most
    /// `limit` from when it first could not proceed.
    fn check<R>(
        &mut self,
        cx: &mut std::task::Context<'_>,
        r: std::task::Poll<std::io::Result<R>>,
    ) -> std::task::Poll<std::io::Result<R>> {
        use std::task::Poll;
        match r {
            Poll::Pending => {
                let limit = self.limit;
                let timer = self
                    .stalled
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "the peer does not read",
                    ))),
                    Poll::Pending => Poll::Pending,
                }
            }
            ready => {
                self.stalled = None;
                ready
            }
        }
    }
}

impl<T: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for WriteDeadline<T> {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl<T: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for WriteDeadline<T> {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let r = std::pin::Pin::new(&mut this.io).poll_write(cx, buf);
        this.check(cx, r)
    }

    fn poll_write_vectored(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let r = std::pin::Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.check(cx, r)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let r = std::pin::Pin::new(&mut this.io).poll_flush(cx);
        this.check(cx, r)
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let r = std::pin::Pin::new(&mut this.io).poll_shutdown(cx);
        this.check(cx, r)
    }
}

/// Refuses request bodies (the endpoints are read-only) and marks every response as not
/// cacheable and not to be sniffed.
async fn guard(req: Request, next: Next) -> Response {
    let has_body = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .is_some_and(|v| v.to_str().map_or(true, |v| v.trim() != "0"))
        || req.headers().contains_key(header::TRANSFER_ENCODING);
    let mut resp = if has_body {
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            "request bodies are not accepted: the endpoints are read-only\n",
        )
            .into_response()
    } else {
        let resp = next.run(req).await;
        if resp.status() == StatusCode::METHOD_NOT_ALLOWED {
            (
                StatusCode::METHOD_NOT_ALLOWED,
                [(header::ALLOW, "GET, HEAD")],
                "only GET and HEAD are served: the endpoints are read-only\n",
            )
                .into_response()
        } else {
            resp
        }
    };
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    resp
}

async fn not_found() -> impl IntoResponse {
    (
        StatusCode::NOT_FOUND,
        "not found: /, /healthz, /readyz, /metrics, /v1/targets, /v1/decisions\n",
    )
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(s): State<Arc<Status>>) -> impl IntoResponse {
    let r = s.read().readiness(Utc::now());
    let code = if r.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(r))
}

async fn metrics(State(s): State<Arc<Status>>) -> impl IntoResponse {
    let text = prom::render(&s.read(), CallStats::global(), Utc::now());
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
}

/// `/v1/targets` as a value (redacted).
pub fn targets_json(s: &status::State, now: chrono::DateTime<Utc>) -> serde_json::Value {
    let targets: Vec<serde_json::Value> = s
        .targets
        .iter()
        .map(|t| {
            let last = t.last();
            json!({
                "name": t.name,
                "kind": t.kind,
                "resource": t.resource,
                "configured": {"min": t.min, "max": t.max},
                "decided_in_last_tick": t.in_last_tick,
                "at": last.map(|d| d.at),
                "current": last.map(|d| d.current),
                "desired": last.map(|d| d.desired),
                "min": last.map(|d| d.explanation.bounds.min),
                "max": last.map(|d| d.explanation.bounds.max),
                "action": last.map(|d| status::direction(d.action)),
                "reason": last.map(|d| d.reason()),
                "outcome": t.outcome,
                "error": t.error,
                "load": t.load,
                // The predictive policy's forecast: its unit, and why there is none.
                "forecast": last.and_then(|d| d.explanation.forecast.as_ref()).map(|f| json!({
                    "policy": f.policy,
                    "mode": f.mode,
                    "available": f.predicted_load.is_some(),
                    "unit": f.unit,
                    "predicted_load": f.predicted_load,
                    "capacity": f.capacity,
                    "error": f.error,
                    "applied": f.applied,
                    "note": f.note,
                })),
                "metrics": t.metrics.iter().map(|m| json!({
                    "name": m.name,
                    "value": m.value,
                    "at": m.at,
                    "age_secs": m.at.map(|at| (now - at).num_seconds().max(0)),
                    "missing": m.missing,
                    "problem": m.problem,
                    // Set when the value was reused from an earlier read (poll_every).
                    "read_secs_ago": m.read_at.map(|at| (now - at).num_seconds().max(0)),
                })).collect::<Vec<_>>(),
                // Where a value changed (each holds until the next), first and last included.
                "capacity_last_hour": status::capacity_changes(&t.capacity),
            })
        })
        .collect();
    let mut v = json!({
        "generated_at": now,
        "started_at": s.started,
        "dry_run": s.dry_run,
        "readiness": s.readiness(now),
        "last_tick": s.last_tick,
        "targets": targets,
    });
    redact_json(&mut v);
    v
}

async fn targets(State(s): State<Arc<Status>>) -> impl IntoResponse {
    Json(targets_json(&s.read(), Utc::now()))
}

#[derive(Debug, Deserialize)]
struct DecisionsQuery {
    target: Option<String>,
    limit: Option<usize>,
}

/// `/v1/decisions` as a value (redacted): newest first, at most
/// [`status::DECISIONS_MAX`].
pub fn decisions_json(s: &status::State, target: Option<&str>, limit: usize) -> serde_json::Value {
    let limit = limit.min(status::DECISIONS_MAX);
    let entries = s.recent_decisions(target, limit);
    let mut v = json!({
        "limit": limit,
        "count": entries.len(),
        "decisions": entries,
    });
    redact_json(&mut v);
    v
}

async fn decisions(State(s): State<Arc<Status>>, Query(q): Query<DecisionsQuery>) -> Response {
    let state = s.read();
    if let Some(t) = &q.target {
        if !state.targets.iter().any(|x| &x.name == t) {
            return (StatusCode::NOT_FOUND, "no such target\n").into_response();
        }
    }
    let v = decisions_json(
        &state,
        q.target.as_deref(),
        q.limit.unwrap_or(DEFAULT_DECISIONS),
    );
    Json(v).into_response()
}

async fn page(State(s): State<Arc<Status>>) -> impl IntoResponse {
    let html = page::render(&s.read(), Utc::now());
    (
        [(
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        )],
        Html(html),
    )
}

#[cfg(test)]
mod tests;
