//! TexMex `.fvecs`, `.ivecs` and `.bvecs`: every row is an `i32` dim `d`
//! followed by `d` elements, little-endian, with no file header and no
//! padding. The byte layout is drawn on [`Format::Fvecs`](crate::Format).

use std::path::Path;

use crate::files::{check_writable, write_file, write_rows};
use crate::{Element, Error, Matrix, MAX_DIM};

/// Bytes of the `i32` dim that starts every row.
pub(crate) const DIM_HEADER_BYTES: usize = 4;

/// Reads and validates the dim header of row `row`, which starts at byte
/// `offset` of `bytes`.
///
/// # Errors
///
/// [`Error::Truncated`] if fewer than four bytes remain,
/// [`Error::BadDimension`] if the dim is not in `1..=MAX_DIM`.
pub(crate) fn read_dim_header(
    bytes: &[u8],
    offset: usize,
    row: usize,
    path: &Path,
) -> Result<usize, Error> {
    let remaining = bytes.get(offset..).unwrap_or_default();
    let Some(&[b0, b1, b2, b3]) = remaining.get(..DIM_HEADER_BYTES) else {
        return Err(Error::Truncated {
            path: path.to_path_buf(),
            row,
            expected_bytes: DIM_HEADER_BYTES,
            available_bytes: remaining.len(),
        });
    };
    let dim = i32::from_le_bytes([b0, b1, b2, b3]);
    match usize::try_from(dim) {
        Ok(dim) if (1..=MAX_DIM).contains(&dim) => Ok(dim),
        _ => Err(Error::BadDimension {
            path: path.to_path_buf(),
            row,
            dim: i64::from(dim),
        }),
    }
}

/// Writes `matrix` in the TexMex format for `T` (`.fvecs` for `f32`,
/// `.ivecs` for `i32`, `.bvecs` for `u8`), whatever the path's extension.
pub(crate) fn write_vecs<T: Element>(path: &Path, matrix: &Matrix<T>) -> Result<(), Error> {
    check_writable(path, matrix)?;
    // `check_writable` bounds the dim by MAX_DIM, far below i32::MAX.
    let dim = i32::try_from(matrix.dim()).map_err(|_| Error::BadDimension {
        path: path.to_path_buf(),
        row: 0,
        dim: i64::MAX,
    })?;
    write_file(path, |out| write_rows(out, matrix, &dim.to_le_bytes()))
}
