//! The storage error type.

use index_core::PointId;
use std::path::PathBuf;

/// Everything that can go wrong in storage.
///
/// What a client can cause carries its numbers and names in fields, so that the service can
/// word it in its protocol's terms (Qdrant's messages live in the router, not here).
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// A vector's length is not its collection's dimension.
    #[error("vector dimension error: expected {expected}, got {got}")]
    DimensionMismatch {
        /// The configured dimension.
        expected: usize,
        /// The vector's length.
        got: usize,
        /// The point written, when the vector belongs to one.
        point: Option<PointId>,
        /// The vector's name (`""`: the unnamed one).
        vector: String,
    },
    /// A vector name the collection does not have.
    #[error("vector `{name}` is not configured in this collection")]
    UnknownVector {
        /// The name asked for (`""`: the unnamed one, in a collection of named vectors).
        name: String,
    },
    /// A vector value that is NaN or infinite.
    #[error("vector of point {point} has a non-finite value at position {position}")]
    NonFiniteVector {
        /// The point.
        point: PointId,
        /// The value's index.
        position: usize,
    },
    /// A payload larger than a point may carry.
    #[error("payload of {bytes} bytes is larger than the limit of {limit}")]
    PayloadTooLarge {
        /// Its size as JSON.
        bytes: usize,
        /// [`crate::MAX_PAYLOAD_BYTES`].
        limit: usize,
    },
    /// More points in one operation than allowed.
    #[error("{count} points in one request; the limit is {limit}")]
    TooManyPoints {
        /// Points sent.
        count: usize,
        /// [`crate::MAX_POINTS_PER_OPERATION`].
        limit: usize,
    },
    /// The server holds as many collections as it may.
    #[error("at most {limit} collections")]
    TooManyCollections {
        /// [`crate::MAX_COLLECTIONS`].
        limit: usize,
    },
    /// A collection name that cannot be a directory name.
    #[error("collection name `{name}` must be 1 to 255 characters, without `/`, `\\`, control characters or a leading `.`")]
    InvalidCollectionName {
        /// The name.
        name: String,
    },
    /// A collection that does not exist.
    #[error("collection `{name}` does not exist")]
    CollectionNotFound {
        /// Its name.
        name: String,
    },
    /// A collection that exists already.
    #[error("collection `{name}` already exists")]
    CollectionExists {
        /// Its name.
        name: String,
    },
    /// A point an operation names by id that is not stored. For payload writes this comes
    /// after the operation was applied to the points that exist (as Qdrant does), with the
    /// operation's sequence number.
    #[error("point {id} does not exist")]
    PointNotFound {
        /// The first missing id.
        id: PointId,
    },
    /// A snapshot that does not exist.
    #[error("snapshot `{name}` does not exist")]
    SnapshotNotFound {
        /// Its file name.
        name: String,
    },
    /// A snapshot whose SHA-256 is not the one the client gave.
    #[error("snapshot checksum mismatch: expected {expected}, got {actual}")]
    ChecksumMismatch {
        /// What the client said.
        expected: String,
        /// What the file has.
        actual: String,
    },
    /// A collection configuration that does not validate (the message names the field).
    #[error("{0}")]
    InvalidConfig(String),
    /// Other malformed input (log records, archive entries, optimizer settings).
    #[error("Wrong input: {0}")]
    InvalidInput(String),
    /// Something else that does not exist.
    #[error("Not found: {0}")]
    NotFound(String),
    /// Something else that exists already (a snapshot's destination).
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
            StorageError::InvalidInput(_)
            | StorageError::Payload(_)
            | StorageError::DimensionMismatch { .. }
            | StorageError::UnknownVector { .. }
            | StorageError::NonFiniteVector { .. }
            | StorageError::PayloadTooLarge { .. }
            | StorageError::TooManyPoints { .. }
            | StorageError::TooManyCollections { .. }
            | StorageError::InvalidCollectionName { .. }
            | StorageError::ChecksumMismatch { .. }
            | StorageError::InvalidConfig(_) => StorageErrorKind::InvalidInput,
            StorageError::NotFound(_)
            | StorageError::CollectionNotFound { .. }
            | StorageError::PointNotFound { .. }
            | StorageError::SnapshotNotFound { .. } => StorageErrorKind::NotFound,
            StorageError::AlreadyExists(_) | StorageError::CollectionExists { .. } => {
                StorageErrorKind::Conflict
            }
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
