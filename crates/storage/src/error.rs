//! The storage error type.

use std::path::PathBuf;

/// Everything that can go wrong in storage.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The request is malformed or does not fit the collection (wrong dimension, NaN, bad filter...).
    #[error("Wrong input: {0}")]
    InvalidInput(String),
    /// A named thing (collection, snapshot, point) does not exist.
    #[error("Not found: {0}")]
    NotFound(String),
    /// The thing to create exists already.
    #[error("Wrong input: {0}")]
    AlreadyExists(String),
    /// A file on disk failed its checksum or does not parse: data would be lost if we went on.
    #[error("corrupt data in {path}: {reason}")]
    Corrupt {
        /// The damaged file.
        path: PathBuf,
        /// What is wrong, with the byte offset when known.
        reason: String,
    },
    /// An operating-system I/O error, with the file it happened on.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// An index failed.
    #[error("index error: {0}")]
    Index(#[from] index_core::IndexError),
    /// A payload or filter is invalid.
    #[error("Wrong input: {0}")]
    Payload(#[from] payload::PayloadError),
}

/// The few kinds the router maps to HTTP statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageErrorKind {
    /// 400.
    InvalidInput,
    /// 404.
    NotFound,
    /// 409.
    Conflict,
    /// 500: disk or corruption.
    Internal,
}

impl StorageError {
    /// The kind of error, for status mapping.
    pub fn kind(&self) -> StorageErrorKind {
        match self {
            StorageError::InvalidInput(_) | StorageError::Payload(_) => {
                StorageErrorKind::InvalidInput
            }
            StorageError::NotFound(_) => StorageErrorKind::NotFound,
            StorageError::AlreadyExists(_) => StorageErrorKind::Conflict,
            StorageError::Corrupt { .. } | StorageError::Io { .. } => StorageErrorKind::Internal,
            StorageError::Index(e) => match e.kind() {
                index_core::IndexErrorKind::InvalidInput => StorageErrorKind::InvalidInput,
                _ => StorageErrorKind::Internal,
            },
        }
    }

    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> StorageError {
        StorageError::Io {
            path: path.into(),
            source,
        }
    }

    /// Corruption in `path`.
    pub fn corrupt(path: impl Into<PathBuf>, reason: impl Into<String>) -> StorageError {
        StorageError::Corrupt {
            path: path.into(),
            reason: reason.into(),
        }
    }
}

/// Storage's result type.
pub type Result<T, E = StorageError> = std::result::Result<T, E>;
