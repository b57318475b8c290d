//! File plumbing shared by the readers and writers: the read-only memory
//! map, and buffered creation with errors that name the path.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use memmap2::Mmap;

use crate::{Element, Error, Matrix, MAX_DIM};

/// Maps the whole file at `path` read-only.
///
/// # Errors
///
/// [`Error::Io`] if the file cannot be opened or mapped, [`Error::Empty`]
/// if it is zero bytes long (every format needs at least one row).
#[allow(unsafe_code)] // The crate's only `unsafe`: see the SAFETY argument below.
pub(crate) fn map_read_only(path: &Path) -> Result<Mmap, Error> {
    let io_error = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = File::open(path).map_err(io_error)?;
    // SAFETY: `Mmap::map` is unsafe because the mapped bytes can change
    // under us if the file is modified, and access faults (SIGBUS) if it is
    // truncated, while the map is alive. Here the file is opened read-only,
    // and the map is only ever used as a shared `&[u8]`: this crate never
    // writes through it or hands out anything that could. Every length and
    // offset we use is checked against `map.len()`, so even contents that
    // change between two reads cannot send a slice out of bounds. Another
    // process truncating or rewriting a dataset file while a reader has it
    // open is outside this crate's contract, exactly as memmap2 documents
    // for `Mmap::map`.
    let map = unsafe { Mmap::map(&file) }.map_err(io_error)?;
    if map.is_empty() {
        return Err(Error::Empty {
            path: path.to_path_buf(),
        });
    }
    // Readers walk the file front to back once, so ask the kernel for
    // aggressive read-ahead. It is only a hint: if it fails, reads still work.
    #[cfg(unix)]
    let _ = map.advise(memmap2::Advice::Sequential);
    Ok(map)
}

/// Checks that `matrix` is something the readers will accept back, so that
/// a writer never produces a file that fails to read.
///
/// # Errors
///
/// [`Error::Empty`] if the matrix has no rows, [`Error::BadDimension`] if
/// its dim exceeds [`MAX_DIM`].
pub(crate) fn check_writable<T>(path: &Path, matrix: &Matrix<T>) -> Result<(), Error> {
    if matrix.is_empty() {
        return Err(Error::Empty {
            path: path.to_path_buf(),
        });
    }
    if matrix.dim() > MAX_DIM {
        return Err(Error::BadDimension {
            path: path.to_path_buf(),
            row: 0,
            dim: i64::try_from(matrix.dim()).unwrap_or(i64::MAX),
        });
    }
    Ok(())
}

/// Creates (or truncates) `path`, lets `write_body` fill it through a
/// buffer, then flushes, so that a late write error is reported rather than
/// lost when the buffer is dropped.
pub(crate) fn write_file(
    path: &Path,
    write_body: impl FnOnce(&mut BufWriter<File>) -> std::io::Result<()>,
) -> Result<(), Error> {
    let io_error = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut out = BufWriter::new(File::create(path).map_err(io_error)?);
    write_body(&mut out).map_err(io_error)?;
    out.flush().map_err(io_error)
}

/// Writes the rows of `matrix`, each preceded by `row_prefix` (empty for
/// `.npy`), encoding one row at a time so memory use stays at one row.
pub(crate) fn write_rows<T: Element>(
    out: &mut impl Write,
    matrix: &Matrix<T>,
    row_prefix: &[u8],
) -> std::io::Result<()> {
    let mut row_bytes = Vec::with_capacity(row_prefix.len() + matrix.dim() * T::TYPE.size());
    for row in matrix {
        row_bytes.clear();
        row_bytes.extend_from_slice(row_prefix);
        T::extend_le_bytes(row, &mut row_bytes);
        out.write_all(&row_bytes)?;
    }
    Ok(())
}
