//! Qdrant's gRPC API (port 6334), through the server traits `qdrant-client` generates.
//!
//! Each method writes its request as the REST body of its twin endpoint (`json.rs`) and runs
//! the same code REST runs (`crate::api`): one typed model, one set of limits, defaults and
//! error wordings for both protocols. Every method is served; an operation not served
//! (`UpdateCollectionClusterSetup`'s shard transfers and replicas) answers `UNIMPLEMENTED`
//! and names itself.
//!
//! Around every call (`Gate`): the API key (`api-key` metadata or an `authorization` bearer
//! token; a read-only key may only call reading methods), the bound on calls in flight that
//! REST's requests share (past it, `UNAVAILABLE` at once), the request time limit
//! (`DEADLINE_EXCEEDED`), and the request metrics under the method's path. Connections count
//! against REST's caps (`listen::SharedSlots`), streams per connection are bounded, messages
//! by the REST body limit; gzipped requests are read, answers go uncompressed; TLS (with a
//! handshake time limit) when REST has it; shutdown with REST's.

pub(crate) mod collections;
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
        let mut status = tonic::Status::new(code, grpc_message(&e.message));
        // The status REST answers, for the metrics (`Gate`): a code stands for several.
        status.metadata_mut().insert(
            REST_STATUS,
            tonic::metadata::MetadataValue::from(e.status.as_u16()),
        );
        status
    }
}

/// An error message as a gRPC client should read it: a gRPC request is mapped onto the REST
/// request types through JSON, whose parser speaks of a "JSON body" and of its line and column;
/// the JSON path of the field (`points[0].vector[0]`), which names the same field of the
/// message, stays.
fn grpc_message(message: &str) -> String {
    let message = message.replacen(" in JSON body", " in the request", 1);
    match message.rfind(" at line ") {
        Some(at)
            if message[at + " at line ".len()..]
                .split_once(" column ")
                .is_some_and(|(l, c)| {
                    !l.is_empty()
                        && !c.is_empty()
                        && l.bytes().chain(c.bytes()).all(|b| b.is_ascii_digit())
                }) =>
        {
            message[..at].to_string()
        }
        _ => message,
    }
}

/// Metadata of an error answer: the HTTP status REST answers for the same error.
const REST_STATUS: &str = "vr-rest-status";

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

/// Methods a full key is needed for, besides `READ_METHODS`.
const WRITE_METHODS: &[&str] = &[
    "/qdrant.Collections/Create",
    "/qdrant.Collections/Update",
    "/qdrant.Collections/Delete",
    "/qdrant.Collections/UpdateAliases",
    "/qdrant.Collections/UpdateCollectionClusterSetup",
    "/qdrant.Collections/CreateShardKey",
    "/qdrant.Collections/DeleteShardKey",
    "/qdrant.Points/Upsert",
    "/qdrant.Points/Delete",
    "/qdrant.Points/UpdateVectors",
    "/qdrant.Points/DeleteVectors",
    "/qdrant.Points/SetPayload",
    "/qdrant.Points/OverwritePayload",
    "/qdrant.Points/DeletePayload",
    "/qdrant.Points/ClearPayload",
    "/qdrant.Points/CreateFieldIndex",
    "/qdrant.Points/DeleteFieldIndex",
    "/qdrant.Points/CreateVectorName",
    "/qdrant.Points/DeleteVectorName",
    "/qdrant.Points/UpdateBatch",
    "/qdrant.Snapshots/Create",
    "/qdrant.Snapshots/Delete",
    "/qdrant.Snapshots/CreateFull",
    "/qdrant.Snapshots/DeleteFull",
];

/// The metrics label of a call: its method path when it is one of Qdrant's, else
/// `unmatched`, so that a client cannot grow the label set with made-up paths.
fn endpoint_label(path: &str) -> &'static str {
    READ_METHODS
        .iter()
        .chain(WRITE_METHODS)
        .find(|m| **m == path)
        .copied()
        .unwrap_or("unmatched")
}

/// The tower layer around every gRPC call: authentication, the bound on calls in flight, the
/// request time limit, and metrics.
#[derive(Clone)]
struct GateLayer {
    state: Arc<AppState>,
    time_limit: Duration,
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
        let time_limit = self.layer.time_limit;
        let path = req.uri().path().to_string();
        let endpoint = endpoint_label(&path);
        // The ready inner service answers this call; a clone waits for the next one.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let applied_floor = applied_floor(&state, &req, &path);
        Box::pin(async move {
            // The log index of a write this call made (on a replica), for its answer's view.
            let mut written_at = 0;
            let mut response = if let Some(status) = refusal(&state, &req, &path) {
                status.into_http()
            } else if let Some(why) = state.catalog_unavailable().filter(|_| {
                [
                    "/qdrant.Collections/",
                    "/qdrant.Points/",
                    "/qdrant.Snapshots/",
                ]
                .iter()
                .any(|p| path.starts_with(p))
            }) {
                tonic::Status::from(crate::catalog_error(&why)).into_http()
            } else if let Some(status) = read_your_writes(&state, applied_floor, time_limit).await {
                status.into_http()
            } else if let Ok(_permit) = state.in_flight.clone().try_acquire_owned() {
                // Snapshot creation copies the data and goes on once begun: as over REST, it
                // is not cut off by the time limit (a cut would leave the snapshot behind).
                let unlimited = matches!(
                    path.as_str(),
                    "/qdrant.Snapshots/Create" | "/qdrant.Snapshots/CreateFull"
                );
                let call = crate::replica::recording_writes(shard_router::remote::gate_scope(
                    async move {
                        if unlimited {
                            Ok(inner.call(req).await)
                        } else {
                            tokio::time::timeout(time_limit, inner.call(req)).await
                        }
                    },
                ));
                let ((answer, written), missing) = if state.partial_answers {
                    shard_router::partial::allowing(call).await
                } else {
                    (call.await, Vec::new())
                };
                written_at = written;
                match answer {
                    Ok(answer) => {
                        let mut answer = answer?;
                        if let Some(v) = crate::partial_header(&missing) {
                            answer.headers_mut().insert(crate::PARTIAL_HEADER, v);
                        }
                        answer
                    }
                    Err(_) => tonic::Status::from(ApiError::new(
                        StatusCode::REQUEST_TIMEOUT,
                        "Timeout: the request took longer than the server's limit",
                    ))
                    .into_http(),
                }
            } else {
                tonic::Status::from(ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Service unavailable: too many requests in flight, retry later",
                ))
                .into_http()
            };
            // A unary error is a trailers-only answer (its status in the headers); success
            // sends its status in the trailers, after this point.
            let code = response
                .headers()
                .get("grpc-status")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<i32>().ok())
                .unwrap_or(0);
            let seconds = start.elapsed().as_secs_f64();
            // Counted as the HTTP status REST would answer, so that one error-rate query covers
            // both protocols (gRPC calls are POSTs): the one an error carries, else the code's.
            let status = response
                .headers()
                .get(REST_STATUS)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u16>().ok())
                .unwrap_or_else(|| http_status_of(tonic::Code::from_i32(code)));
            state
                .metrics
                .observe_request(endpoint, "POST", status, seconds);
            tracing::info!(target: "access", method = "POST", endpoint = path, grpc_status = code, status, ms = seconds * 1e3);
            // A replica names its set's leader in every answer: a router over the set sends
            // its writes there (refusals too: they are answers the router learns from).
            if let Some(r) = state.replica() {
                response.headers_mut().insert(
                    shard_router::remote::replicas::REPLICA_VIEW_HEADER,
                    r.view_header(written_at),
                );
            }
            Ok(response)
        })
    }
}

/// How long a replica waits for a router's last write before refusing a read (the router
/// then asks another replica): a follower applies an entry within a heartbeat or two.
const APPLIED_WAIT: Duration = Duration::from_secs(1);

/// On a replica, the log index a read must wait for: that of a router's last write, sent
/// with its reads ([`shard_router::remote::replicas::APPLIED_AT_LEAST_HEADER`]).
fn applied_floor(state: &AppState, req: &HttpRequest, path: &str) -> Option<u64> {
    state.replica()?;
    // A health check answers at once: the router's probes are not reads of its writes.
    if !READ_METHODS.contains(&path) || path == "/qdrant.Qdrant/HealthCheck" {
        return None;
    }
    req.headers()
        .get(shard_router::remote::replicas::APPLIED_AT_LEAST_HEADER)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// Waits until this replica has applied `floor` ([`applied_floor`]); `UNAVAILABLE` when it
/// has not within [`APPLIED_WAIT`] (the router then asks another replica).
async fn read_your_writes(
    state: &AppState,
    floor: Option<u64>,
    time_limit: Duration,
) -> Option<tonic::Status> {
    let (r, index) = (state.replica()?, floor?);
    r.wait_applied(index, APPLIED_WAIT.min(time_limit))
        .await
        .err()
        .map(tonic::Status::from)
}

/// The HTTP status REST answers for what a gRPC code says.
fn http_status_of(code: tonic::Code) -> u16 {
    use tonic::Code;
    match code {
        Code::Ok => 200,
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => 400,
        Code::Unauthenticated => 401,
        Code::PermissionDenied => 403,
        Code::NotFound => 404,
        Code::AlreadyExists | Code::Aborted => 409,
        Code::ResourceExhausted => 413,
        Code::Cancelled => 499,
        Code::Unimplemented => 501,
        Code::Unavailable => 503,
        Code::DeadlineExceeded => 504,
        _ => 500,
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

/// Streams a client may open at once on one connection (HTTP/2's own default is unbounded
/// in tonic).
const MAX_STREAMS_PER_CONNECTION: u32 = 256;

/// The gRPC port's TLS configuration (REST's certificate and key), read before anything is
/// served so that a bad one stops the start.
pub fn tls_config(
    settings: &crate::config::Settings,
) -> Result<Option<tonic::transport::ServerTlsConfig>, String> {
    let Some((cert, key)) = &settings.tls else {
        return Ok(None);
    };
    let read = |p: &std::path::Path| {
        std::fs::read(p).map_err(|e| format!("cannot read {}: {e}", p.display()))
    };
    let identity = tonic::transport::Identity::from_pem(read(cert)?, read(key)?);
    Ok(Some(
        tonic::transport::ServerTlsConfig::new()
            .identity(identity)
            .timeout(settings.listen.header_read_timeout),
    ))
}

impl tonic::transport::server::Connected for crate::listen::CountedConnection {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        tonic::transport::server::TcpConnectInfo {
            local_addr: self.local,
            remote_addr: Some(self.remote),
        }
    }
}

/// Serves gRPC on `listener` until `shutdown` completes, then lets calls in flight finish.
/// Its connections count against the caps REST's do (`shared`).
pub async fn serve(
    state: Arc<AppState>,
    settings: &crate::config::Settings,
    tls: Option<tonic::transport::ServerTlsConfig>,
    listener: tokio::net::TcpListener,
    shared: crate::listen::SharedSlots,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), String> {
    let limit = settings.max_body_bytes;
    // Answers are not compressed: tonic would gzip every answer a client accepts gzip for
    // (grpcio always does), and a search answer of a few hundred bytes costs more CPU to
    // compress than it saves (REST compresses only answers of 4 KiB or more). Requests a
    // client compressed are read.
    macro_rules! bounded {
        ($server:expr) => {
            $server
                .max_decoding_message_size(limit)
                .accept_compressed(CompressionEncoding::Gzip)
        };
    }
    let mut builder = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(20)))
        .max_concurrent_streams(MAX_STREAMS_PER_CONNECTION);
    if let Some(tls) = tls {
        builder = builder
            .tls_config(tls)
            .map_err(|e| format!("gRPC TLS: {e}"))?;
    }
    let gate = GateLayer {
        state: state.clone(),
        time_limit: settings.request_timeout,
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
            collections::Snapshots(state.clone())
        )));
    let incoming = crate::listen::counted_connections(listener, shared, settings.listen);
    router
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
        .map_err(|e| format!("gRPC server: {e}"))
}

/// The `result` of a REST handler's answer, as JSON: for the methods whose gRPC answer is
/// rebuilt from REST's (aliases, facets, groups, the search matrix, snapshots, update
/// batches). The handler ran in full, with REST's checks; only its envelope is read here.
async fn rest_result(answer: crate::api::ApiResult) -> Result<serde_json::Value, ApiError> {
    let internal = |e: &dyn std::fmt::Display| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("Service internal error: {e}"),
        )
    };
    let response = answer?;
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .map_err(|e| internal(&e))?;
    let mut envelope: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| internal(&e))?;
    Ok(envelope["result"].take())
}

/// REST's read parameters for a call's `timeout` (seconds, at least 1).
fn read_params(timeout: Option<u64>) -> Result<crate::model::ReadParams, ApiError> {
    if timeout == Some(0) {
        return Err(ApiError::bad_request(
            "Wrong input: timeout must be at least 1 second",
        ));
    }
    Ok(crate::model::ReadParams {
        consistency: None,
        timeout: timeout.map(crate::model::Timeout),
    })
}

/// REST's management parameters for a call's `wait`.
fn manage_params(wait: Option<bool>) -> crate::model::ManageParams {
    crate::model::ManageParams {
        wait: wait.map(crate::model::Flag),
        timeout: None,
    }
}

/// REST's write parameters for a call's `wait`.
fn write_params(wait: Option<bool>) -> crate::model::WriteParams {
    crate::model::WriteParams {
        wait: wait.map(crate::model::Flag),
        ordering: None,
        timeout: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_method_is_listed_once_and_unknown_paths_share_one_label() {
        let mut all: Vec<&str> = READ_METHODS.iter().chain(WRITE_METHODS).copied().collect();
        let n = all.len();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), n, "a method listed twice");
        // Qdrant's four services: 1 + 14 + 30 + 6 methods.
        assert_eq!(n, 51);
        assert_eq!(
            endpoint_label("/qdrant.Points/Query"),
            "/qdrant.Points/Query"
        );
        assert_eq!(endpoint_label("/qdrant.Points/Made-up"), "unmatched");
    }
}
