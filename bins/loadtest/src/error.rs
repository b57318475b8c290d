//! The crate's one error type.

use std::path::PathBuf;

/// Everything that stops a load test.
///
/// A failed *query* during a measured run is not an `Error`: it is counted by kind in the
/// run's report ([`crate::latency::RequestErrorKind`]), because errors under load are a
/// result to report, not a reason to stop. `Error` is for what makes the run itself
/// impossible: bad arguments, unreadable datasets, a server that refuses the setup calls.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A command-line argument or configuration value is out of range or malformed.
    #[error("invalid argument `{name}`: {reason}")]
    InvalidArgument {
        /// The argument (flag name without dashes).
        name: String,
        /// What is wrong with it.
        reason: String,
    },

    /// The target address is not an `http://host[:port][/prefix]` URL.
    #[error("invalid target URL `{url}`: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },

    /// A dataset file could not be read.
    #[error("dataset: {source}")]
    Dataset {
        /// The reader's error, which names the file.
        #[from]
        source: dataset::Error,
    },

    /// The dataset's parts disagree with each other.
    #[error("dataset: {what}: expected {expected}, found {found}")]
    DatasetShape {
        /// Which part disagrees (for example "query dimension").
        what: &'static str,
        /// The value the other parts imply.
        expected: usize,
        /// The value found.
        found: usize,
    },

    /// A ground-truth row names a base row that does not exist.
    #[error("ground truth: query {query} names base row {id}, but the base has {base_rows} rows")]
    GroundTruthOutOfRange {
        /// The query row.
        query: usize,
        /// The offending id.
        id: i64,
        /// How many base rows there are.
        base_rows: usize,
    },

    /// No connection could be opened to the target.
    #[error("cannot connect to {address}: {source}")]
    Connect {
        /// `host:port`.
        address: String,
        /// What the operating system reported.
        source: std::io::Error,
    },

    /// A setup request (create, upload, status) failed below HTTP: reset, timeout, bad framing.
    #[error("{method} {path}: {reason}")]
    Transport {
        /// The HTTP method.
        method: &'static str,
        /// The request path.
        path: String,
        /// What went wrong.
        reason: String,
    },

    /// A setup request got an HTTP status other than 2xx.
    #[error("{method} {path}: HTTP {status}: {body}")]
    Status {
        /// The HTTP method.
        method: &'static str,
        /// The request path.
        path: String,
        /// The status code.
        status: u16,
        /// The start of the response body (Qdrant puts its message there).
        body: String,
    },

    /// A response did not have the shape Qdrant's API documents.
    #[error("{path}: unexpected response: {reason}")]
    BadResponse {
        /// The request path.
        path: String,
        /// What was missing or malformed.
        reason: String,
    },

    /// The collection did not report `green` (indexing done) within the allowed time.
    #[error(
        "collection `{collection}` not ready after {waited_s:.1} s (last status: {last_status})"
    )]
    NotReady {
        /// The collection name.
        collection: String,
        /// Seconds waited.
        waited_s: f64,
        /// The last `result.status` seen.
        last_status: String,
    },

    /// Writing a report file failed.
    #[error("{}: {source}", path.display())]
    Output {
        /// The file.
        path: PathBuf,
        /// What the operating system reported.
        source: std::io::Error,
    },

    /// Drawing a chart failed (plotters reports its own message).
    #[error("chart `{chart}`: {reason}")]
    Chart {
        /// Which chart.
        chart: &'static str,
        /// The drawing backend's message.
        reason: String,
    },
}

/// The few kinds an [`Error`] folds into; the binary turns them into exit codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The user's arguments or files are wrong: fix the command line.
    InvalidInput,
    /// The local environment failed (files, disk).
    Io,
    /// The target could not be reached or broke the connection.
    Unavailable,
    /// The target answered, but with an error or an unexpected shape.
    Server,
    /// The target did not finish something in the allowed time.
    Timeout,
}

impl ErrorKind {
    /// The process exit code for this kind (sysexits-style, so scripts can tell them apart).
    pub fn exit_code(self) -> u8 {
        match self {
            ErrorKind::InvalidInput => 64, // EX_USAGE
            ErrorKind::Io => 74,           // EX_IOERR
            ErrorKind::Unavailable => 69,  // EX_UNAVAILABLE
            ErrorKind::Server => 76,       // EX_PROTOCOL
            ErrorKind::Timeout => 75,      // EX_TEMPFAIL
        }
    }
}

impl Error {
    /// The kind this error folds into.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::InvalidArgument { .. }
            | Error::InvalidUrl { .. }
            | Error::DatasetShape { .. }
            | Error::GroundTruthOutOfRange { .. } => ErrorKind::InvalidInput,
            Error::Dataset { source } => match source {
                dataset::Error::Io { .. } => ErrorKind::Io,
                _ => ErrorKind::InvalidInput,
            },
            Error::Connect { .. } | Error::Transport { .. } => ErrorKind::Unavailable,
            Error::Status { .. } | Error::BadResponse { .. } => ErrorKind::Server,
            Error::NotReady { .. } => ErrorKind::Timeout,
            Error::Output { .. } | Error::Chart { .. } => ErrorKind::Io,
        }
    }

    /// Shorthand for [`Error::InvalidArgument`].
    pub(crate) fn argument(name: &str, reason: impl Into<String>) -> Error {
        Error::InvalidArgument {
            name: name.to_string(),
            reason: reason.into(),
        }
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
