//! The one error type of the crate.

use std::fmt;

/// What went wrong in training, encoding, querying or (de)serialising.
///
/// Struct variants carry the numbers a caller needs to explain the failure; [`Error::kind`]
/// folds them into the few kinds that an API layer maps onto status codes.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A vector, or a flat buffer of vectors, does not have the dimension the operation expects.
    #[error("dimension mismatch: expected {expected}, got {found}")]
    DimensionMismatch {
        /// The dimension the quantizer or kernel was built for.
        expected: usize,
        /// The length that was passed.
        found: usize,
    },
    /// A dimension of zero, or one beyond what the operation supports.
    #[error("invalid dimension {dim}: must be between 1 and {max}")]
    InvalidDimension {
        /// The dimension asked for.
        dim: usize,
        /// The largest supported dimension.
        max: usize,
    },
    /// A flat buffer whose length is not a multiple of the dimension.
    #[error("buffer of {len} values is not a whole number of {dim}-dimensional vectors")]
    RaggedBuffer {
        /// Length of the flat buffer.
        len: usize,
        /// The dimension.
        dim: usize,
    },
    /// Training data or a query holds NaN or an infinity.
    #[error("non-finite value {value} at vector {vector}, component {component}")]
    NonFinite {
        /// Index of the vector in the batch.
        vector: usize,
        /// Index of the component.
        component: usize,
        /// The offending value.
        value: f32,
    },
    /// Training was asked to run on no data.
    #[error("empty training set")]
    EmptyTrainingSet,
    /// More clusters or centroids were asked for than there are training points.
    #[error("cannot train {k} centroids from {n} points")]
    TooFewPoints {
        /// Centroids asked for.
        k: usize,
        /// Points available.
        n: usize,
    },
    /// A configuration value outside its valid range.
    #[error("invalid parameter `{name}`: {reason}")]
    InvalidParameter {
        /// Name of the parameter, as in the config struct.
        name: &'static str,
        /// Why the value is refused.
        reason: String,
    },
    /// The operation is not defined for this metric with this configuration.
    #[error("{what} is not supported for metric {metric:?}")]
    Unsupported {
        /// What was asked for.
        what: &'static str,
        /// The metric it was asked for.
        metric: crate::Metric,
    },
    /// A serialised blob is not in our format, or is of another kind than expected.
    #[error("not a {expected} file: {reason}")]
    Format {
        /// The kind of blob the reader expected.
        expected: &'static str,
        /// What was found instead.
        reason: String,
    },
    /// A serialised blob of a format version this build does not read.
    #[error(
        "{kind} format version {found} is not supported (this build reads version {supported})"
    )]
    Version {
        /// The kind of blob.
        kind: &'static str,
        /// The version in the blob.
        found: u32,
        /// The version this build reads.
        supported: u32,
    },
    /// A serialised blob whose checksum does not match its contents.
    #[error(
        "{kind} is damaged: checksum {found:#010x} does not match the contents ({computed:#010x})"
    )]
    Checksum {
        /// The kind of blob.
        kind: &'static str,
        /// The checksum stored in the blob.
        found: u32,
        /// The checksum of the bytes read.
        computed: u32,
    },
    /// Reading or writing a file failed.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

/// The few kinds every [`Error`] folds into; the router turns them into status codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The caller sent something invalid (a 4xx).
    InvalidInput,
    /// Stored data is damaged or of another version (a 5xx, with the file named).
    Corrupt,
    /// The environment failed (disk, permissions).
    Io,
}

impl Error {
    /// The kind this error folds into.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::DimensionMismatch { .. }
            | Error::InvalidDimension { .. }
            | Error::RaggedBuffer { .. }
            | Error::NonFinite { .. }
            | Error::EmptyTrainingSet
            | Error::TooFewPoints { .. }
            | Error::InvalidParameter { .. }
            | Error::Unsupported { .. } => ErrorKind::InvalidInput,
            Error::Format { .. } | Error::Version { .. } | Error::Checksum { .. } => {
                ErrorKind::Corrupt
            }
            Error::Io(_) => ErrorKind::Io,
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ErrorKind::InvalidInput => "invalid input",
            ErrorKind::Corrupt => "corrupt data",
            ErrorKind::Io => "i/o",
        })
    }
}

/// Result with the crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Checks that `data` holds whole `dim`-dimensional vectors of finite values; returns the count.
pub(crate) fn check_vectors(data: &[f32], dim: usize) -> Result<usize> {
    if dim == 0 || dim > crate::MAX_DIMENSION {
        return Err(Error::InvalidDimension {
            dim,
            max: crate::MAX_DIMENSION,
        });
    }
    if !data.len().is_multiple_of(dim) {
        return Err(Error::RaggedBuffer {
            len: data.len(),
            dim,
        });
    }
    if let Some(pos) = data.iter().position(|x| !x.is_finite()) {
        return Err(Error::NonFinite {
            vector: pos / dim,
            component: pos % dim,
            value: data[pos],
        });
    }
    Ok(data.len() / dim)
}

/// Checks one vector's length and values.
pub(crate) fn check_vector(v: &[f32], dim: usize) -> Result<()> {
    if v.len() != dim {
        return Err(Error::DimensionMismatch {
            expected: dim,
            found: v.len(),
        });
    }
    if let Some(pos) = v.iter().position(|x| !x.is_finite()) {
        return Err(Error::NonFinite {
            vector: 0,
            component: pos,
            value: v[pos],
        });
    }
    Ok(())
}
