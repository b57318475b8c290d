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

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!("Not found: {}", message.into()),
        )
    }
}

impl From<StorageError> for ApiError {
    fn from(e: StorageError) -> ApiError {
        match e.kind() {
            StorageErrorKind::InvalidInput => {
                let m = e.to_string();
                let m = m
                    .strip_prefix("Wrong input: Wrong input: ")
                    .map(|s| format!("Wrong input: {s}"))
                    .unwrap_or(m);
                ApiError::new(StatusCode::BAD_REQUEST, m)
            }
            StorageErrorKind::NotFound => ApiError::new(StatusCode::NOT_FOUND, e.to_string()),
            StorageErrorKind::Conflict => ApiError::new(StatusCode::CONFLICT, e.to_string()),
            StorageErrorKind::Internal => {
                tracing::error!(error = %e, "storage failure");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("Service internal error: {e}"),
                )
            }
        }
    }
}

impl From<ShardError> for ApiError {
    fn from(e: ShardError) -> ApiError {
        match e.kind() {
            ShardErrorKind::Timeout => ApiError::new(StatusCode::REQUEST_TIMEOUT, e.to_string()),
            ShardErrorKind::Unavailable => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
            }
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
