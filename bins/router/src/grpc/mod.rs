//! Qdrant's gRPC API (port 6334), through the server traits `qdrant-client` generates.
//!
//! Each method writes its request as the REST body of its twin endpoint (`json.rs`) and runs
//! the same code REST runs (`crate::api`): one typed model, one set of limits, defaults and
//! error wordings for both protocols. A method this server does not serve answers
//! `UNIMPLEMENTED` and names itself.
//!
//! Around every call (`Gate`): the API key (`api-key` metadata or an `authorization` bearer
//! token; a read-only key may only call reading methods), a bound on calls in flight shared by
//! all connections (past it, `UNAVAILABLE` at once), and the request metrics under the method's
//! path. Messages are bounded by the REST body limit; gzip is accepted and sent to clients
//! that ask for it; TLS when REST has it; shutdown with REST's.

mod collections;
mod json;
mod points;

use crate::error::ApiError;
use crate::AppState;
use axum::http::StatusCode;
use qdrant_client::qdrant as pb;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tonic::codec::CompressionEncoding;

/// An API error as a gRPC status: the code follows the HTTP status REST would answer.
impl From<ApiError> for tonic::Status {
    fn from(e: ApiError) -> tonic::Status {
        use tonic::Code;
        let code = match e.status {
            StatusCode::BAD_REQUEST | StatusCode::UNPROCESSABLE_ENTITY => Code::InvalidArgument,
            StatusCode::NOT_FOUND => Code::NotFound,
            StatusCode::CONFLICT => Code::AlreadyExists,
            StatusCode::UNAUTHORIZED => Code::Unauthenticated,
            StatusCode::FORBIDDEN => Code::PermissionDenied,
            StatusCode::PAYLOAD_TOO_LARGE => Code::ResourceExhausted,
            StatusCode::REQUEST_TIMEOUT | StatusCode::GATEWAY_TIMEOUT => Code::DeadlineExceeded,
            StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS => Code::Unavailable,
            StatusCode::NOT_IMPLEMENTED => Code::Unimplemented,
            _ => Code::Internal,
        };
        tonic::Status::new(code, e.message)
    }
}

/// The deadline of a call: its `timeout` field (seconds, at least 1) or the server's limit,
/// whichever is sooner. (tonic applies the client's `grpc-timeout` itself.)
fn deadline(state: &AppState, timeout: Option<u64>) -> Result<Instant, ApiError> {
    let limit = match timeout {
        Some(0) => {
            return Err(ApiError::bad_request(
                "Wrong input: timeout must be at least 1 second",
            ))
        }
        Some(s) => Duration::from_secs(s).min(state.timeout),
        None => state.timeout,
    };
    Ok(Instant::now() + limit)
}

/// Seconds since `start`, for the `time` field of every answer.
fn seconds(start: Instant) -> f64 {
    start.elapsed().as_secs_f64()
}

/// `Qdrant.HealthCheck`.
struct Service;

#[tonic::async_trait]
impl pb::qdrant_server::Qdrant for Service {
    async fn health_check(
        &self,
        _request: tonic::Request<pb::HealthCheckRequest>,
    ) -> Result<tonic::Response<pb::HealthCheckReply>, tonic::Status> {
        Ok(tonic::Response::new(pb::HealthCheckReply {
            title: "vector-router".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            commit: Some(crate::COMMIT.into()),
        }))
    }
}

/// Methods a read-only key may call (the paths' method names).
const READ_METHODS: &[&str] = &[
    "/qdrant.Qdrant/HealthCheck",
    "/qdrant.Collections/Get",
    "/qdrant.Collections/List",
    "/qdrant.Collections/ListAliases",
    "/qdrant.Collections/ListCollectionAliases",
    "/qdrant.Collections/CollectionExists",
    "/qdrant.Collections/CollectionClusterInfo",
    "/qdrant.Collections/ListShardKeys",
    "/qdrant.Points/Get",
    "/qdrant.Points/Search",
    "/qdrant.Points/SearchBatch",
    "/qdrant.Points/SearchGroups",
    "/qdrant.Points/Scroll",
    "/qdrant.Points/Recommend",
    "/qdrant.Points/RecommendBatch",
    "/qdrant.Points/RecommendGroups",
    "/qdrant.Points/Discover",
    "/qdrant.Points/DiscoverBatch",
    "/qdrant.Points/Count",
    "/qdrant.Points/Query",
    "/qdrant.Points/QueryBatch",
    "/qdrant.Points/QueryGroups",
    "/qdrant.Points/Facet",
    "/qdrant.Points/SearchMatrixPairs",
    "/qdrant.Points/SearchMatrixOffsets",
    "/qdrant.Snapshots/List",
    "/qdrant.Snapshots/ListFull",
];

/// The tower layer around every gRPC call: authentication, the bound on calls in flight, and
/// metrics.
#[derive(Clone)]
struct GateLayer {
    state: Arc<AppState>,
    in_flight: Arc<tokio::sync::Semaphore>,
}

impl<S> tower::Layer<S> for GateLayer {
    type Service = Gate<S>;

    fn layer(&self, inner: S) -> Gate<S> {
        Gate {
            inner,
            layer: self.clone(),
        }
    }
}

#[derive(Clone)]
struct Gate<S> {
    inner: S,
    layer: GateLayer,
}

type HttpRequest = axum::http::Request<tonic::body::Body>;
type HttpResponse = axum::http::Response<tonic::body::Body>;

impl<S> tower::Service<HttpRequest> for Gate<S>
where
    S: tower::Service<HttpRequest, Response = HttpResponse> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = HttpResponse;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: HttpRequest) -> Self::Future {
        let start = Instant::now();
        let state = self.layer.state.clone();
        let path = req.uri().path().to_string();
        let refused = refusal(&state, &req, &path);
        // The ready inner service answers this call; a clone waits for the next one.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let permit = self.layer.in_flight.clone().try_acquire_owned();
        Box::pin(async move {
            let response = match (refused, permit) {
                (Some(status), _) => status.into_http(),
                (None, Err(_)) => tonic::Status::unavailable(
                    "Service unavailable: too many requests in flight, retry later",
                )
                .into_http(),
                (None, Ok(_permit)) => inner.call(req).await?,
            };
            // A unary error is a trailers-only answer (its status in the headers); success
            // sends its status in the trailers, after this point.
            let code = response
                .headers()
                .get("grpc-status")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u16>().ok())
                .unwrap_or(0);
            let seconds = start.elapsed().as_secs_f64();
            state.metrics.observe_request(&path, "GRPC", code, seconds);
            tracing::info!(target: "access", method = "GRPC", endpoint = path, status = code, ms = seconds * 1e3);
            Ok(response)
        })
    }
}

/// Why a call is refused before it runs, if it is: no key or an unknown one
/// (`UNAUTHENTICATED`), or a read-only key calling a writing method (`PERMISSION_DENIED`).
fn refusal(state: &AppState, req: &HttpRequest, path: &str) -> Option<tonic::Status> {
    let full = state.api_key.as_deref()?;
    if path == "/qdrant.Qdrant/HealthCheck" || path.starts_with("/grpc.health.") {
        return None;
    }
    match crate::presented_key(req.headers()) {
        None => Some(tonic::Status::unauthenticated(
            "Unauthorized: an api-key or an authorization bearer token is required",
        )),
        Some(key) if crate::same_key(key, full) => None,
        Some(key)
            if state
                .read_only_api_key
                .as_deref()
                .is_some_and(|ro| crate::same_key(key, ro)) =>
        {
            (!READ_METHODS.contains(&path)).then(|| {
                tonic::Status::permission_denied(
                    "Forbidden: write access denied to the read-only api-key",
                )
            })
        }
        Some(_) => Some(tonic::Status::unauthenticated(
            "Unauthorized: invalid api-key",
        )),
    }
}

/// Serves gRPC on `listener` until `shutdown` completes, then lets calls in flight finish.
pub async fn serve(
    state: Arc<AppState>,
    settings: &crate::config::Settings,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), String> {
    let limit = settings.max_body_bytes;
    macro_rules! bounded {
        ($server:expr) => {
            $server
                .max_decoding_message_size(limit)
                .accept_compressed(CompressionEncoding::Gzip)
                .send_compressed(CompressionEncoding::Gzip)
        };
    }
    let mut builder = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(20)))
        .timeout(settings.request_timeout);
    if let Some((cert, key)) = &settings.tls {
        let read = |p: &std::path::Path| {
            std::fs::read(p).map_err(|e| format!("cannot read {}: {e}", p.display()))
        };
        let identity = tonic::transport::Identity::from_pem(read(cert)?, read(key)?);
        builder = builder
            .tls_config(tonic::transport::ServerTlsConfig::new().identity(identity))
            .map_err(|e| format!("gRPC TLS: {e}"))?;
    }
    let gate = GateLayer {
        state: state.clone(),
        in_flight: Arc::new(tokio::sync::Semaphore::new(
            settings.max_concurrent_requests,
        )),
    };
    let router = builder
        .layer(gate)
        .add_service(bounded!(pb::qdrant_server::QdrantServer::new(Service)))
        .add_service(bounded!(pb::collections_server::CollectionsServer::new(
            collections::Collections(state.clone())
        )))
        .add_service(bounded!(pb::points_server::PointsServer::new(
            points::Points(state.clone())
        )))
        .add_service(bounded!(pb::snapshots_server::SnapshotsServer::new(
            collections::Snapshots
        )));
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    router
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
        .map_err(|e| format!("gRPC server: {e}"))
}

/// `UNIMPLEMENTED`, naming the method.
fn unimplemented<T>(method: &str) -> Result<tonic::Response<T>, tonic::Status> {
    Err(tonic::Status::unimplemented(format!(
        "Not implemented: {method} is not served by this server"
    )))
}
