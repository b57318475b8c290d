//! The one error type of the payload crate.

/// What parsing a filter, a key path, a selector, a point id or an index schema can fail with.
///
/// Every variant names what was wrong and where, so the router can pass the message on as
/// Qdrant's `Wrong input: …` body.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PayloadError {
    /// A payload key path that does not parse (`a..b`, `a[x]`, `"a`, empty).
    #[error("invalid payload key path `{path}`: {reason}")]
    InvalidKeyPath {
        /// The path as given.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A filter that does not follow Qdrant's grammar.
    #[error("invalid filter at `{at}`: {reason}")]
    InvalidFilter {
        /// Where in the filter, as `must[1].match.any[0]`.
        at: String,
        /// What is wrong there.
        reason: String,
    },
    /// A point id that is neither an unsigned 64-bit integer nor a UUID string.
    #[error("invalid point id {value}: expected an unsigned integer or a UUID string")]
    InvalidPointId {
        /// The JSON given, as text.
        value: String,
    },
    /// A `with_payload` value that is not `bool | [key] | {include} | {exclude}`.
    #[error("invalid payload selector: {reason}")]
    InvalidSelector {
        /// What is wrong with it.
        reason: String,
    },
    /// A payload index schema Qdrant would not accept.
    #[error("invalid payload field schema: {reason}")]
    InvalidFieldSchema {
        /// What is wrong with it.
        reason: String,
    },
}

/// The kinds every [`PayloadError`] folds into; the router maps them to status codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadErrorKind {
    /// The caller sent something invalid (400 `Wrong input`).
    InvalidInput,
}

impl PayloadError {
    /// The kind this error folds into.
    pub fn kind(&self) -> PayloadErrorKind {
        match self {
            PayloadError::InvalidKeyPath { .. }
            | PayloadError::InvalidFilter { .. }
            | PayloadError::InvalidPointId { .. }
            | PayloadError::InvalidSelector { .. }
            | PayloadError::InvalidFieldSchema { .. } => PayloadErrorKind::InvalidInput,
        }
    }

    pub(crate) fn filter(at: &str, reason: impl Into<String>) -> PayloadError {
        PayloadError::InvalidFilter {
            at: if at.is_empty() {
                "filter".to_string()
            } else {
                at.to_string()
            },
            reason: reason.into(),
        }
    }
}

/// Result with [`PayloadError`].
pub type Result<T, E = PayloadError> = std::result::Result<T, E>;

/// How an error message names the JSON type it got instead of the one it wanted.
pub(crate) fn json_type(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(n) if n.is_f64() => "a float",
        serde_json::Value::Number(_) => "an integer",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}
