//! API errors in Qdrant's shape: `{"status": {"error": "..."}, "time": seconds}`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use shard_router::{ShardError, ShardErrorKind};
use storage::{StorageError, StorageErrorKind};

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        let m = message.into();
        let m = if m.starts_with("Wrong input")
            || m.starts_with("Bad request")
            || m.starts_with("Format error")
            || m.starts_with("Validation error")
        {
            m
        } else {
            format!("Bad request: {m}")
        };
        ApiError::new(StatusCode::BAD_REQUEST, m)
    }

    pub fn not_implemented(message: impl Into<String>) -> ApiError {
        ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            format!("Not implemented: {}", message.into()),
        )
    }

    /// Names where in the request the error is (`operations[2]`), after the message's kind
    /// ("Format error in JSON body: operations[2]: ...").
    pub fn with_context(mut self, context: &str) -> ApiError {
        self.message = match self.message.split_once(": ") {
            Some((kind, rest)) => format!("{kind}: {context}: {rest}"),
            None => format!("{context}: {}", self.message),
        };
        self
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!("Not found: {}", message.into()),
        )
    }
}

impl From<StorageError> for ApiError {
    /// Storage's errors in Qdrant's words; the status follows the variant.
    fn from(e: StorageError) -> ApiError {
        use StorageError as E;
        let bad = |m: String| ApiError::new(StatusCode::BAD_REQUEST, m);
        match e {
            E::DimensionMismatch {
                expected,
                got,
                point,
                vector,
            } => {
                let mut m = format!(
                    "Wrong input: Vector dimension error: expected dim: {expected}, got {got}"
                );
                match (point, vector.is_empty()) {
                    (Some(p), true) => m.push_str(&format!(" (point {p})")),
                    (Some(p), false) => m.push_str(&format!(" (point {p}, vector `{vector}`)")),
                    (None, _) => {}
                }
                bad(m)
            }
            E::UnknownVector { name } if name.is_empty() => bad(
                "Wrong input: Vector with name `` (the unnamed default vector) is not configured in this collection"
                    .to_string(),
            ),
            E::UnknownVector { name } => {
                bad(format!("Wrong input: Not existing vector name error: {name}"))
            }
            E::InvalidCollectionName { name } => bad(format!(
                "Validation error in path parameters: [name: collection name `{name}` must be 1 to 255 characters, without `/`, `\\`, control characters or a leading `.`]"
            )),
            E::CollectionNotFound { name } => {
                ApiError::not_found(format!("Collection `{name}` doesn't exist!"))
            }
            // A full disk is the operator's to fix, not a fault of ours: 507 says so, and a
            // client may retry once space returns (the write was not applied: the log refused
            // it before anything changed).
            E::Io { ref source, .. } if is_disk_full(source) => {
                tracing::error!(error = %e, "write refused: the disk is full");
                ApiError::new(
                    StatusCode::INSUFFICIENT_STORAGE,
                    format!("Insufficient storage: {e}"),
                )
            }
            E::CollectionExists { name } => ApiError::new(
                StatusCode::CONFLICT,
                format!("Wrong input: Collection `{name}` already exists!"),
            ),
            E::PointNotFound { id } => ApiError::not_found(format!("No point with id {id} found")),
            E::SnapshotNotFound { name } => {
                ApiError::not_found(format!("Snapshot {name} not found"))
            }
            e @ (E::NonFiniteVector { .. }
            | E::PayloadTooLarge { .. }
            | E::TooManyPoints { .. }
            | E::TooManyCollections { .. }
            | E::ChecksumMismatch { .. }
            | E::InvalidConfig(_)) => bad(format!("Wrong input: {e}")),
            // These carry their own prefix in their message.
            e @ (E::InvalidInput(_) | E::Payload(_) | E::AlreadyExists(_) | E::NotFound(_)) => {
                ApiError::new(status_of(e.kind()), e.to_string())
            }
            e => match e.kind() {
                StorageErrorKind::Internal => {
                    tracing::error!(error = %e, "storage failure");
                    ApiError::new(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        format!("Service internal error: {e}"),
                    )
                }
                kind => ApiError::new(status_of(kind), format!("Wrong input: {e}")),
            },
        }
    }
}

/// No space or quota left (ENOSPC, EDQUOT).
fn is_disk_full(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
    )
}

fn status_of(kind: StorageErrorKind) -> StatusCode {
    match kind {
        StorageErrorKind::InvalidInput => StatusCode::BAD_REQUEST,
        StorageErrorKind::NotFound => StatusCode::NOT_FOUND,
        StorageErrorKind::Conflict => StatusCode::CONFLICT,
        StorageErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl From<ShardError> for ApiError {
    fn from(e: ShardError) -> ApiError {
        match e.kind() {
            ShardErrorKind::Timeout => ApiError::new(StatusCode::REQUEST_TIMEOUT, e.to_string()),
            ShardErrorKind::Unavailable => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
            }
            ShardErrorKind::Failed => {
                tracing::error!(error = %e, "shard failure");
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
            }
            ShardErrorKind::Refused(status) => ApiError::new(
                StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
                e.to_string(),
            ),
            ShardErrorKind::Storage(_) => match e {
                ShardError::Storage(s) => s.into(),
                other => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, other.to_string()),
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"status": {"error": self.message}, "time": 0.0});
        let mut r = (self.status, axum::Json(body)).into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE
            || self.status == StatusCode::TOO_MANY_REQUESTS
        {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        r
    }
}
