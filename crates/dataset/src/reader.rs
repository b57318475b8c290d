//! The streaming reader over a memory map, which the whole-file readers
//! are also built on, so every format is validated by one code path.

use std::marker::PhantomData;
use std::ops::Range;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use crate::files::map_read_only;
use crate::vecs::{read_dim_header, DIM_HEADER_BYTES};
use crate::{npy, Element, Error, Format, Matrix};

/// Reads the rows of a dataset file one at a time or in chunks, without
/// loading the whole file.
///
/// The file is memory-mapped read-only, and each row is decoded only when
/// asked for, so memory use is bounded by what the caller keeps. Works for
/// every [`Format`]; the format comes from the extension, and the element
/// type `T` must match the file's (`f32` for `.fvecs`, `i32` for `.ivecs`,
/// `u8` for `.bvecs`, the header's dtype for `.npy`).
///
/// Rows are validated as they are reached: a `.fvecs`/`.ivecs`/`.bvecs`
/// row whose dim header differs from the first row's, or that is cut short
/// by the end of the file, yields an error when the reader gets to it. The
/// first error ends the stream: every later call reports the end. (A `.npy`
/// file's size is checked against its shape up front, by
/// [`open`](Self::open).)
///
/// As an [`Iterator`], it yields each row as a `Vec<T>`;
/// [`next_chunk`](Self::next_chunk) and
/// [`read_row_into`](Self::read_row_into) avoid the per-row allocation.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use dataset::{Matrix, RowReader};
///
/// let path = std::env::temp_dir().join(format!("dataset-doc-reader-{}.ivecs", std::process::id()));
/// let ids = Matrix::from_vec(5, 2, (0..10).collect())?;
/// dataset::write_ivecs(&path, &ids)?;
///
/// let mut reader = RowReader::<i32>::open(&path)?;
/// assert_eq!((reader.dim(), reader.rows_hint()), (2, 5));
/// let mut chunk_sizes = Vec::new();
/// while let Some(chunk) = reader.next_chunk(2)? {
///     chunk_sizes.push(chunk.rows());
/// }
/// assert_eq!(chunk_sizes, [2, 2, 1]);
///
/// let rows: Vec<Vec<i32>> = RowReader::open(&path)?.collect::<Result<_, _>>()?;
/// assert_eq!(rows[4], [8, 9]);
/// # std::fs::remove_file(&path)?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct RowReader<T: Element> {
    path: PathBuf,
    map: Mmap,
    format: Format,
    /// Row count from the `.npy` shape; `None` for the TexMex formats,
    /// which have no header and end where the bytes end.
    npy_rows: Option<usize>,
    /// Elements per row; every row must have this many.
    dim: usize,
    /// Bytes of one row's elements, not counting a TexMex dim header.
    payload_bytes: usize,
    /// Byte offset of the next row (of its dim header, for TexMex).
    offset: usize,
    /// Index of the next row.
    next_row: usize,
    /// Set at the end of the data or after the first error.
    finished: bool,
    element: PhantomData<fn() -> T>,
}

impl<T: Element> RowReader<T> {
    /// Opens the file at `path` and reads what is needed to know the shape:
    /// the `.npy` header, or the first row's dim header.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownFormat`] for an unrecognised extension,
    /// [`Error::Io`] if the file cannot be opened or mapped,
    /// [`Error::Empty`] if it holds no rows, [`Error::WrongType`] if it
    /// holds elements other than `T`, [`Error::Truncated`] or
    /// [`Error::BadDimension`] for a bad first dim header, [`Error::Npy`]
    /// for a `.npy` file this crate cannot read.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, Error> {
        let path = path.as_ref();
        let format = Format::from_path(path)?;
        let map = map_read_only(path)?;
        let wrong_type = |found| Error::WrongType {
            path: path.to_path_buf(),
            expected: T::TYPE,
            found,
        };
        let (dim, npy_rows, offset) = match format.element_type() {
            Some(found) if found != T::TYPE => return Err(wrong_type(found)),
            Some(_) => (read_dim_header(&map, 0, 0, path)?, None, 0),
            None => {
                let layout = npy::parse_layout(&map, path)?;
                if layout.element != T::TYPE {
                    return Err(wrong_type(layout.element));
                }
                (layout.dim, Some(layout.rows), layout.data_offset)
            }
        };
        Ok(RowReader {
            path: path.to_path_buf(),
            map,
            format,
            npy_rows,
            dim,
            // The dim is at most MAX_DIM and elements at most 4 bytes, so
            // this cannot overflow.
            payload_bytes: dim * T::TYPE.size(),
            offset,
            next_row: 0,
            finished: false,
            element: PhantomData,
        })
    }

    /// The file being read.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file's format.
    pub fn format(&self) -> Format {
        self.format
    }

    /// Elements per row.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Total rows in the file. Exact for `.npy`; for the TexMex formats,
    /// the count the file size implies if every row is well-formed (reading
    /// reports an error otherwise).
    pub fn rows_hint(&self) -> usize {
        self.npy_rows
            .unwrap_or(self.map.len() / (DIM_HEADER_BYTES + self.payload_bytes))
    }

    /// Rows returned so far, which is also the index of the next row.
    pub fn rows_read(&self) -> usize {
        self.next_row
    }

    /// Decodes the next row and appends it to `out` (which is not cleared
    /// first). Returns `false`, leaving `out` alone, at the end of the data.
    ///
    /// # Errors
    ///
    /// [`Error::Ragged`], [`Error::BadDimension`] or [`Error::Truncated`]
    /// for a malformed TexMex row. After an error the reader is finished.
    pub fn read_row_into(&mut self, out: &mut Vec<T>) -> Result<bool, Error> {
        match self.advance()? {
            Some(payload) => {
                T::extend_from_le_bytes(out, &self.map[payload]);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Reads up to `max_rows` of the remaining rows (all of them for
    /// `None`) into a matrix. At the end of the data this is a matrix with
    /// zero rows. Rows past the limit are neither read nor validated.
    ///
    /// # Errors
    ///
    /// As [`read_row_into`](Self::read_row_into); the rows read before the
    /// error are discarded.
    pub fn read_rows(&mut self, max_rows: Option<usize>) -> Result<Matrix<T>, Error> {
        let max_rows = max_rows.unwrap_or(usize::MAX);
        // Reserve for what the file size says is left, never more, so a
        // huge `max_rows` or a lying header cannot trigger a huge allocation.
        let expected_rows = max_rows.min(self.rows_hint().saturating_sub(self.next_row));
        let mut data = Vec::with_capacity(expected_rows.saturating_mul(self.dim));
        let mut rows = 0;
        while rows < max_rows && self.read_row_into(&mut data)? {
            rows += 1;
        }
        Ok(Matrix::from_checked_parts(rows, self.dim, data))
    }

    /// The next chunk of up to `max_rows` rows, or `None` at the end of the
    /// data. Every chunk but the last has exactly `max_rows` rows (for
    /// `max_rows` of 0, chunks have zero rows and the reader never
    /// advances).
    ///
    /// # Errors
    ///
    /// As [`read_rows`](Self::read_rows).
    pub fn next_chunk(&mut self, max_rows: usize) -> Result<Option<Matrix<T>>, Error> {
        if self.at_end() {
            self.finished = true;
            return Ok(None);
        }
        self.read_rows(Some(max_rows)).map(Some)
    }

    /// Whether there are no more rows (or the reader has stopped after an
    /// error).
    fn at_end(&self) -> bool {
        self.finished
            || match self.npy_rows {
                Some(rows) => self.next_row >= rows,
                None => self.offset >= self.map.len(),
            }
    }

    /// Validates the next row, moves past it, and returns the byte range of
    /// its elements in the map; `None` at the end. Marks the reader
    /// finished at the end or on error, so the stream is fused.
    fn advance(&mut self) -> Result<Option<Range<usize>>, Error> {
        if self.at_end() {
            self.finished = true;
            return Ok(None);
        }
        let payload = match self.npy_rows {
            // `npy::parse_layout` checked that the data holds every row.
            Some(_) => Ok(self.offset..self.offset + self.payload_bytes),
            None => self.texmex_row_payload(),
        };
        match payload {
            Ok(payload) => {
                self.offset = payload.end;
                self.next_row += 1;
                Ok(Some(payload))
            }
            Err(error) => {
                self.finished = true;
                Err(error)
            }
        }
    }

    /// Checks the TexMex row at `self.offset` (dim header, then elements)
    /// and returns the byte range of its elements.
    fn texmex_row_payload(&self) -> Result<Range<usize>, Error> {
        let row = self.next_row;
        let dim = read_dim_header(&self.map, self.offset, row, &self.path)?;
        if dim != self.dim {
            return Err(Error::Ragged {
                path: self.path.clone(),
                row,
                dim,
                first_dim: self.dim,
            });
        }
        let row_bytes = DIM_HEADER_BYTES + self.payload_bytes;
        let available_bytes = self.map.len() - self.offset;
        if available_bytes < row_bytes {
            return Err(Error::Truncated {
                path: self.path.clone(),
                row,
                expected_bytes: row_bytes,
                available_bytes,
            });
        }
        Ok(self.offset + DIM_HEADER_BYTES..self.offset + row_bytes)
    }
}

impl<T: Element> Iterator for RowReader<T> {
    type Item = Result<Vec<T>, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        let mut row = Vec::with_capacity(self.dim);
        match self.read_row_into(&mut row) {
            Ok(true) => Some(Ok(row)),
            Ok(false) => None,
            Err(error) => Some(Err(error)),
        }
    }
}

impl<T: Element> std::iter::FusedIterator for RowReader<T> {}
