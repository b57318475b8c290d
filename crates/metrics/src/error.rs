//! The crate's one error type.

/// Everything that can go wrong building [`Metrics`](crate::Metrics).
///
/// Recording and rendering have no failure paths: an observation that cannot
/// be recorded (a non-finite duration) is dropped, and label values beyond
/// the configured limits fold into [`OVERFLOW_LABEL`](crate::OVERFLOW_LABEL).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MetricsError {
    /// A label limit in [`MetricsConfig`](crate::MetricsConfig) is zero,
    /// which would fold every value into the overflow label.
    #[error("metrics limit {field} must be at least 1, got {value}")]
    ZeroLimit {
        /// The offending field's name.
        field: &'static str,
        /// Its value.
        value: usize,
    },

    /// The Prometheus library refused a metric family or its registration
    /// (a bad name or bucket list, or a name registered twice in the
    /// [`registry`](crate::Metrics::registry)).
    #[error("prometheus refused a metric family: {0}")]
    Prometheus(#[from] prometheus::Error),
}

/// The few kinds every [`MetricsError`] folds into, for the router to map
/// to a status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The configuration is invalid.
    InvalidInput,
    /// The metric definitions themselves are inconsistent: a defect, not
    /// something an operator can fix.
    Internal,
}

impl MetricsError {
    /// The kind this error folds into.
    pub fn kind(&self) -> ErrorKind {
        match self {
            MetricsError::ZeroLimit { .. } => ErrorKind::InvalidInput,
            MetricsError::Prometheus(_) => ErrorKind::Internal,
        }
    }
}
