//! Qdrant's payload filter language (being written).

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
pub enum PayloadError {
    /// Invalid input.
    #[error("{0}")]
    InvalidInput(String),
}
