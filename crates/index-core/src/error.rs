//! The one error type of the index crates' shared vocabulary.

/// What an index operation can fail with.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// A vector of the wrong dimension.
    #[error("vector dimension error: expected dim: {expected}, got {found}")]
    DimensionMismatch {
        /// The index's dimension.
        expected: usize,
        /// The dimension passed.
        found: usize,
    },
    /// A vector holds NaN or an infinity.
    #[error("vector component {component} is not a finite number")]
    NonFinite {
        /// Index of the component.
        component: usize,
    },
    /// An offset beyond what the index can address.
    #[error("point offset {offset} is out of range (limit {limit})")]
    OffsetOutOfRange {
        /// The offset passed.
        offset: PointOffset,
        /// The first offset that is out of range.
        limit: usize,
    },
    /// A search or build parameter outside its valid range.
    #[error("invalid parameter `{name}`: {reason}")]
    InvalidParameter {
        /// Name of the parameter.
        name: &'static str,
        /// Why it is refused.
        reason: String,
    },
    /// The operation needs a trained index (IVF before `train`).
    #[error("the index is not trained")]
    NotTrained,
    /// A persisted index is damaged, foreign or of another version.
    #[error("index file {path}: {reason}")]
    Corrupt {
        /// The file.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A failure in the quantization layer.
    #[error(transparent)]
    Quant(#[from] quant::Error),
    /// Reading or writing a file failed.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

use crate::PointOffset;

/// The few kinds every [`IndexError`] folds into; the router maps them to status codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IndexErrorKind {
    /// The caller sent something invalid (4xx).
    InvalidInput,
    /// Stored data is damaged (5xx, naming the file).
    Corrupt,
    /// The environment failed.
    Io,
}

impl IndexError {
    /// The kind this error folds into.
    pub fn kind(&self) -> IndexErrorKind {
        match self {
            IndexError::DimensionMismatch { .. }
            | IndexError::NonFinite { .. }
            | IndexError::OffsetOutOfRange { .. }
            | IndexError::InvalidParameter { .. }
            | IndexError::NotTrained => IndexErrorKind::InvalidInput,
            IndexError::Corrupt { .. } => IndexErrorKind::Corrupt,
            IndexError::Quant(e) => match e.kind() {
                quant::ErrorKind::InvalidInput => IndexErrorKind::InvalidInput,
                quant::ErrorKind::Corrupt => IndexErrorKind::Corrupt,
                quant::ErrorKind::Io => IndexErrorKind::Io,
            },
            IndexError::Io(_) => IndexErrorKind::Io,
        }
    }
}

/// Result with [`IndexError`].
pub type Result<T, E = IndexError> = std::result::Result<T, E>;

/// Checks a vector's dimension and values: what every index does before it stores or searches
/// with a vector it was given.
pub fn check_vector(v: &[f32], dim: usize) -> Result<()> {
    if v.len() != dim {
        return Err(IndexError::DimensionMismatch {
            expected: dim,
            found: v.len(),
        });
    }
    if let Some(component) = v.iter().position(|x| !x.is_finite()) {
        return Err(IndexError::NonFinite { component });
    }
    Ok(())
}

/// Checks a vector (as [`check_vector`]) and returns a copy prepared for the metric
/// ([`quant::Metric::prepare`]: normalised for cosine): what every index does with a query or
/// a new point before it measures anything.
pub fn prepared_vector(v: &[f32], dim: usize, metric: quant::Metric) -> Result<Vec<f32>> {
    check_vector(v, dim)?;
    let mut out = v.to_vec();
    metric.prepare(&mut out);
    Ok(out)
}
