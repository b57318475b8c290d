//! `/`, health, readiness, metrics and the answer to a path not served.

use crate::error::ApiError;
use crate::AppState;
use axum::extract::State;
use axum::http::{header, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use std::sync::Arc;

/// `GET /` (Qdrant's `VersionInfo`, not enveloped).
#[derive(Serialize)]
struct VersionInfo {
    title: &'static str,
    version: &'static str,
    commit: &'static str,
}

/// Serialised once: the answer never changes.
static ROOT: std::sync::LazyLock<Vec<u8>> = std::sync::LazyLock::new(|| {
    serde_json::to_vec(&VersionInfo {
        title: "qdrant - vector search engine",
        version: "1.20.0",
        commit: crate::COMMIT,
    })
    .expect("serialises")
});

pub async fn root() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        ROOT.as_slice(),
    )
        .into_response()
}

pub async fn healthz() -> Response {
    text(StatusCode::OK, "healthz check passed")
}

pub async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    // A replica is ready once it knows a leader of its set; a cluster router once its
    // catalog is loaded.
    if state.ready.load(std::sync::atomic::Ordering::Acquire)
        && state.catalog_unavailable().is_none()
        && state.replica().is_none_or(|r| r.knows_leader())
    {
        text(StatusCode::OK, "all shards are ready")
    } else {
        text(StatusCode::SERVICE_UNAVAILABLE, "some shards are not ready")
    }
}

fn text(status: StatusCode, body: &'static str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body,
    )
        .into_response()
}

pub async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let snapshot = state.metrics_snapshot();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        {
            let mut text = state.metrics.render(&snapshot);
            // Apart from the 503 answers: those also count a cluster node that could not
            // answer, and shedding wants its own alert (add capacity, not mend a node).
            text.push_str(&format!(
                "# HELP vector_router_http_requests_shed_total REST requests refused with 503 \
                 because --max-concurrent-requests were in flight.\n\
                 # TYPE vector_router_http_requests_shed_total counter\n\
                 vector_router_http_requests_shed_total {}\n",
                crate::REQUESTS_SHED.load(std::sync::atomic::Ordering::Relaxed)
            ));
            if let Some(r) = state.replica() {
                text.push_str(&r.render_metrics());
            }
            text
        },
    )
        .into_response()
}

pub async fn not_served(uri: Uri, method: Method) -> Response {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!(
            "Not found: {method} {} is not served by this server",
            uri.path()
        ),
    )
    .into_response()
}
