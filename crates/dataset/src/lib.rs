//! Readers and writers for the vector dataset formats used across the
//! project: TexMex `.fvecs` / `.ivecs` / `.bvecs` and 2-D NumPy `.npy`.
//!
//! The crate knows nothing of vectors beyond rows of numbers: a file is a
//! matrix of `f32`, `i32` or `u8`, and reading it gives a row-major
//! [`Matrix`]. The format comes from the file extension (see [`Format`],
//! whose variants document each byte layout).
//!
//! - [`read_f32`], [`read_i32`], [`read_u8`] read a whole file, and the
//!   `_limit` variants only its first rows (for subsets of big datasets).
//! - [`RowReader`] streams rows or chunks of rows from a memory map, for
//!   files too big to load.
//! - [`write_fvecs`], [`write_ivecs`], [`write_bvecs`] and [`write_npy`]
//!   write matrices back out.
//!
//! Malformed input never panics: every problem is an [`Error`] that names
//! the file and, where it applies, the row and byte counts.
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let path = std::env::temp_dir().join(format!("dataset-doc-{}.fvecs", std::process::id()));
//!
//! // Two rows of dim 3. In .fvecs each row is an i32 dim, then dim f32s.
//! let mut bytes = Vec::new();
//! for row in [[1.0f32, 2.0, 3.0], [4.0, 5.0, 6.0]] {
//!     bytes.extend_from_slice(&3i32.to_le_bytes());
//!     for x in row {
//!         bytes.extend_from_slice(&x.to_le_bytes());
//!     }
//! }
//! std::fs::write(&path, &bytes)?;
//!
//! let matrix = dataset::read_f32(&path)?;
//! assert_eq!((matrix.rows(), matrix.dim()), (2, 3));
//! assert_eq!(matrix.row(1), [4.0, 5.0, 6.0]);
//!
//! let first = dataset::read_f32_limit(&path, Some(1))?;
//! assert_eq!(first.as_slice(), [1.0, 2.0, 3.0]);
//!
//! let error = dataset::read_i32(&path).unwrap_err();
//! assert!(matches!(error, dataset::Error::WrongType { .. }));
//! # std::fs::remove_file(&path)?;
//! # Ok(())
//! # }
//! ```
//!
//! # Safety
//!
//! Reading memory-maps the file. The one `unsafe` block in the crate is that
//! call; its argument is given beside it. In short: the map is read-only and
//! every access is bounds-checked, but, as with any memory map, another
//! process truncating or rewriting the file while it is being read is
//! outside the contract.

// `unsafe` is denied everywhere but the one memory-map call, which opts out
// explicitly; `forbid` would not allow even that.
#![deny(unsafe_code)]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]
#![warn(clippy::undocumented_unsafe_blocks)]

mod element;
mod error;
mod files;
mod format;
mod matrix;
mod npy;
mod reader;
mod vecs;

use std::path::Path;

pub use element::{Element, ElementType};
pub use error::Error;
pub use format::Format;
pub use matrix::{Matrix, ShapeError};
pub use reader::RowReader;

/// The largest dim (elements per row) the readers accept and the writers
/// produce. Real datasets stay in the low thousands; anything beyond this
/// is taken as a corrupt header rather than an invitation to allocate.
pub const MAX_DIM: usize = 1 << 20;

/// Reads a whole `.fvecs` file, or a `.npy` file of dtype `<f4`, as `f32`.
///
/// `.bvecs` files and `u1` `.npy` files are accepted too, each byte
/// widened to `f32` exactly. Integer (`i32`) files are refused, since
/// widening `i32` to `f32` can lose precision.
///
/// # Errors
///
/// See [`Error`]: [`Error::WrongType`] for `.ivecs` or `<i4` data, and
/// the structural errors of [`RowReader::open`] and
/// [`RowReader::read_rows`].
pub fn read_f32(path: impl AsRef<Path>) -> Result<Matrix<f32>, Error> {
    read_f32_limit(path, None)
}

/// Like [`read_f32`], but reads only the first `max_rows` rows (all of them
/// for `None`, or all there are if the file holds fewer). Rows past the
/// limit are not validated.
///
/// # Errors
///
/// As [`read_f32`].
pub fn read_f32_limit(
    path: impl AsRef<Path>,
    max_rows: Option<usize>,
) -> Result<Matrix<f32>, Error> {
    let path = path.as_ref();
    match read_limit::<f32>(path, max_rows) {
        Err(Error::WrongType {
            found: ElementType::U8,
            ..
        }) => Ok(read_limit::<u8>(path, max_rows)?.map(|&byte| f32::from(byte))),
        result => result,
    }
}

/// Reads a whole `.ivecs` file, or a `.npy` file of dtype `<i4`, as `i32`.
///
/// # Errors
///
/// See [`Error`]: [`Error::WrongType`] for any other element type, and
/// the structural errors of [`RowReader::open`] and
/// [`RowReader::read_rows`].
pub fn read_i32(path: impl AsRef<Path>) -> Result<Matrix<i32>, Error> {
    read_limit(path.as_ref(), None)
}

/// Like [`read_i32`], but reads only the first `max_rows` rows.
///
/// # Errors
///
/// As [`read_i32`].
pub fn read_i32_limit(
    path: impl AsRef<Path>,
    max_rows: Option<usize>,
) -> Result<Matrix<i32>, Error> {
    read_limit(path.as_ref(), max_rows)
}

/// Reads a whole `.bvecs` file, or a `.npy` file of dtype `|u1`, as `u8`.
///
/// # Errors
///
/// See [`Error`]: [`Error::WrongType`] for any other element type, and
/// the structural errors of [`RowReader::open`] and
/// [`RowReader::read_rows`].
pub fn read_u8(path: impl AsRef<Path>) -> Result<Matrix<u8>, Error> {
    read_limit(path.as_ref(), None)
}

/// Like [`read_u8`], but reads only the first `max_rows` rows.
///
/// # Errors
///
/// As [`read_u8`].
pub fn read_u8_limit(path: impl AsRef<Path>, max_rows: Option<usize>) -> Result<Matrix<u8>, Error> {
    read_limit(path.as_ref(), max_rows)
}

fn read_limit<T: Element>(path: &Path, max_rows: Option<usize>) -> Result<Matrix<T>, Error> {
    RowReader::<T>::open(path)?.read_rows(max_rows)
}

/// Writes `matrix` to `path` in the `.fvecs` layout (whatever the path's
/// extension), creating or truncating the file.
///
/// # Errors
///
/// [`Error::Io`] if the file cannot be written; [`Error::Empty`] for a
/// matrix with no rows and [`Error::BadDimension`] for a dim above
/// [`MAX_DIM`], which the readers would refuse.
pub fn write_fvecs(path: impl AsRef<Path>, matrix: &Matrix<f32>) -> Result<(), Error> {
    vecs::write_vecs(path.as_ref(), matrix)
}

/// Writes `matrix` to `path` in the `.ivecs` layout.
///
/// # Errors
///
/// As [`write_fvecs`].
pub fn write_ivecs(path: impl AsRef<Path>, matrix: &Matrix<i32>) -> Result<(), Error> {
    vecs::write_vecs(path.as_ref(), matrix)
}

/// Writes `matrix` to `path` in the `.bvecs` layout.
///
/// # Errors
///
/// As [`write_fvecs`].
pub fn write_bvecs(path: impl AsRef<Path>, matrix: &Matrix<u8>) -> Result<(), Error> {
    vecs::write_vecs(path.as_ref(), matrix)
}

/// Writes `matrix` to `path` as a version 1.0 `.npy` file in C order, with
/// dtype `<f4`, `<i4` or `|u1` according to `T`, laid out as NumPy itself
/// writes it (header padded so the data starts 64-byte aligned).
///
/// # Errors
///
/// As [`write_fvecs`].
pub fn write_npy<T: Element>(path: impl AsRef<Path>, matrix: &Matrix<T>) -> Result<(), Error> {
    npy::write_npy(path.as_ref(), matrix)
}
