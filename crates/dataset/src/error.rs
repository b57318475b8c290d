//! The crate's one error type.

use std::io;
use std::path::{Path, PathBuf};

use crate::{ElementType, MAX_DIM};

/// Everything that can go wrong reading or writing a dataset file.
///
/// Every variant names the file, so a message that surfaces deep inside a
/// benchmark or a load test still says which file was at fault, and the
/// variants that concern a position carry the row and byte counts involved.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The operating system refused an operation on the file (open, map,
    /// create, write).
    #[error("{}: {source}", path.display())]
    Io {
        /// The file concerned.
        path: PathBuf,
        /// What the operating system reported.
        source: io::Error,
    },

    /// The file holds no rows: it is zero bytes long, or it is a `.npy`
    /// file whose shape has zero rows. Writers also refuse to write a
    /// matrix with no rows, since it could not be read back.
    #[error("{}: the file holds no rows", path.display())]
    Empty {
        /// The file concerned.
        path: PathBuf,
    },

    /// The file ends part-way through a row (or part-way through a row's
    /// 4-byte dim header).
    #[error(
        "{}: file ends mid-row: row {row} needs {expected_bytes} bytes but only {available_bytes} remain",
        path.display()
    )]
    Truncated {
        /// The file concerned.
        path: PathBuf,
        /// Index (from 0) of the incomplete row.
        row: usize,
        /// Bytes the row needs, counted from its start (header included).
        expected_bytes: usize,
        /// Bytes left in the file from the row's start.
        available_bytes: usize,
    },

    /// A `.fvecs`/`.ivecs`/`.bvecs` row declares a dim different from the
    /// first row's; the readers only produce rectangular matrices.
    #[error(
        "{}: row {row} has dim {dim} but the first row has dim {first_dim}",
        path.display()
    )]
    Ragged {
        /// The file concerned.
        path: PathBuf,
        /// Index (from 0) of the offending row.
        row: usize,
        /// The dim that row declares.
        dim: usize,
        /// The dim of row 0, which every row must share.
        first_dim: usize,
    },

    /// A row declares a dim of zero, a negative dim, or one above
    /// [`MAX_DIM`] (for `.npy` files, the shape's second axis, reported as
    /// row 0). Writers refuse such matrices too.
    #[error(
        "{}: row {row} declares dim {dim}, outside 1..={MAX_DIM}",
        path.display()
    )]
    BadDimension {
        /// The file concerned.
        path: PathBuf,
        /// Index (from 0) of the row whose header carries the dim.
        row: usize,
        /// The dim as stored in the file (signed, since the header is an
        /// `i32`).
        dim: i64,
    },

    /// A `.npy` file this crate cannot read: bad magic, unsupported
    /// version, malformed header, unsupported dtype, Fortran order, an
    /// array that is not 2-D, or data whose size does not match the shape.
    #[error("{}: unsupported or malformed .npy file: {reason}", path.display())]
    Npy {
        /// The file concerned.
        path: PathBuf,
        /// What exactly is wrong, in words.
        reason: String,
    },

    /// The path's extension is not one of `.fvecs`, `.ivecs`, `.bvecs`,
    /// `.npy`.
    #[error(
        "{}: unrecognised extension (expected .fvecs, .ivecs, .bvecs or .npy)",
        path.display()
    )]
    UnknownFormat {
        /// The file concerned.
        path: PathBuf,
    },

    /// The file holds elements of another type than the one asked for,
    /// e.g. an `.ivecs` file read with [`read_f32`](crate::read_f32).
    #[error("{}: the file holds {found} elements, not {expected}", path.display())]
    WrongType {
        /// The file concerned.
        path: PathBuf,
        /// The element type the caller asked for.
        expected: ElementType,
        /// The element type the file holds.
        found: ElementType,
    },
}

impl Error {
    /// The file the error concerns.
    pub fn path(&self) -> &Path {
        match self {
            Error::Io { path, .. }
            | Error::Empty { path }
            | Error::Truncated { path, .. }
            | Error::Ragged { path, .. }
            | Error::BadDimension { path, .. }
            | Error::Npy { path, .. }
            | Error::UnknownFormat { path }
            | Error::WrongType { path, .. } => path,
        }
    }
}
