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
//! 413, unknown paths 404; connections are limited in number, head size and time
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

/// Connections served at once; further clients wait in the listen backlog.
pub const MAX_CONNECTIONS: usize = 64;
/// Time a client has to send its request head.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest a connection stays open, keep-alive included (then it is closed gracefully).
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(60);
/// Largest request head read (hyper's minimum is 8 KiB).
pub const MAX_HEAD_BYTES: usize = 16 * 1024;

/// Serves until `shutdown` completes, then closes idle connections, lets requests in
/// flight finish (5 s at most) and returns. HTTP/1.1 only; at most [`MAX_CONNECTIONS`]
/// connections, each with [`HEADER_TIMEOUT`] to send its request head and
/// [`CONNECTION_TIMEOUT`] in all.
pub async fn serve(
    listener: tokio::net::TcpListener,
    status: Arc<Status>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = router(status);
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        // A slot first, so clients beyond the limit wait in the backlog.
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            _ = &mut shutdown => break,
        };
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
        let service = TowerToHyperService::new(app.clone());
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .max_buf_size(MAX_HEAD_BYTES)
                .serve_connection(TokioIo::new(stream), service);
            let mut conn = std::pin::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => return,
                _ = stop.wait_for(|s| *s) => {}
                _ = tokio::time::sleep(CONNECTION_TIMEOUT) => {}
            }
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(Duration::from_secs(5), conn).await;
        });
    }
    let _ = stop_tx.send(true);
    // Every slot back: all connections closed (or the 5 s they had are over).
    let _ = tokio::time::timeout(
        Duration::from_secs(6),
        slots.acquire_many(MAX_CONNECTIONS as u32),
    )
    .await;
    Ok(())
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
