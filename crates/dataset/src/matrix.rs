//! The in-memory result of a read: a dense row-major matrix.

use std::slice::ChunksExact;

/// A dense row-major matrix: `rows` rows of `dim` elements each, stored
/// contiguously, row 0 first.
///
/// `dim` is always at least 1, and the data always holds exactly
/// `rows * dim` elements. A matrix may have zero rows (e.g. a read limited
/// to zero rows), though no file this crate writes or reads does.
#[derive(Debug, Clone, PartialEq)]
pub struct Matrix<T> {
    rows: usize,
    dim: usize,
    data: Vec<T>,
}

/// The error from [`Matrix::from_vec`]: the element count does not fit the
/// shape asked for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "cannot shape {len} elements as {rows} rows of dim {dim}: \
     dim must be at least 1 and rows x dim must equal the element count"
)]
pub struct ShapeError {
    /// The row count asked for.
    pub rows: usize,
    /// The dim asked for.
    pub dim: usize,
    /// The number of elements supplied.
    pub len: usize,
}

impl<T> Matrix<T> {
    /// Wraps `data` (row-major) as a matrix of `rows` rows of `dim`
    /// elements.
    ///
    /// # Errors
    ///
    /// [`ShapeError`] if `dim` is zero or `data.len() != rows * dim`.
    pub fn from_vec(rows: usize, dim: usize, data: Vec<T>) -> Result<Self, ShapeError> {
        if dim == 0 || rows.checked_mul(dim) != Some(data.len()) {
            return Err(ShapeError {
                rows,
                dim,
                len: data.len(),
            });
        }
        Ok(Matrix { rows, dim, data })
    }

    /// Builds a matrix from data whose shape the caller has already checked.
    pub(crate) fn from_checked_parts(rows: usize, dim: usize, data: Vec<T>) -> Self {
        debug_assert!(dim > 0 && rows.checked_mul(dim) == Some(data.len()));
        Matrix { rows, dim, data }
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Number of elements in each row (at least 1).
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Whether the matrix has no rows.
    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// Row `index`.
    ///
    /// # Panics
    ///
    /// If `index >= self.rows()`, like slice indexing; see
    /// [`get_row`](Self::get_row) for the checked form.
    pub fn row(&self, index: usize) -> &[T] {
        match self.get_row(index) {
            Some(row) => row,
            None => panic!("row index {index} out of range for {} rows", self.rows),
        }
    }

    /// Row `index`, or `None` if there is no such row.
    pub fn get_row(&self, index: usize) -> Option<&[T]> {
        let start = index.checked_mul(self.dim)?;
        self.data.get(start..start.checked_add(self.dim)?)
    }

    /// All elements, row-major.
    pub fn as_slice(&self) -> &[T] {
        &self.data
    }

    /// Gives up the elements, row-major.
    pub fn into_vec(self) -> Vec<T> {
        self.data
    }

    /// The rows, in order, each a slice of [`dim`](Self::dim) elements.
    pub fn iter(&self) -> ChunksExact<'_, T> {
        // `dim >= 1` is an invariant, so `chunks_exact` cannot panic, and the
        // data length is a multiple of `dim`, so no remainder is skipped.
        self.data.chunks_exact(self.dim)
    }

    /// A matrix of the same shape with `convert` applied to each element
    /// (e.g. widening `u8` to `f32`).
    pub fn map<U>(&self, convert: impl FnMut(&T) -> U) -> Matrix<U> {
        Matrix {
            rows: self.rows,
            dim: self.dim,
            data: self.data.iter().map(convert).collect(),
        }
    }
}

impl<'a, T> IntoIterator for &'a Matrix<T> {
    type Item = &'a [T];
    type IntoIter = ChunksExact<'a, T>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}
