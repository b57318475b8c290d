//! The file formats, and how a path's extension picks one.

use std::path::Path;

use crate::{ElementType, Error};

/// A dataset file format. Readers pick it from the file's extension
/// (case-insensitively), never by sniffing the contents.
///
/// All formats are little-endian and store a matrix row by row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// TexMex `.fvecs`: rows of `f32`.
    ///
    /// Each row is stored as
    ///
    /// ```text
    /// offset 0      4        8             4 + 4*d
    ///        +------+--------+-----+--------+
    ///        | d    | x[0]   | ... | x[d-1] |
    ///        | i32  | f32    |     | f32    |
    ///        +------+--------+-----+--------+
    /// ```
    ///
    /// and rows follow each other with no file header and no padding. The
    /// format allows every row its own `d`; this crate requires all rows to
    /// share the first row's `d` (see [`Error::Ragged`]).
    Fvecs,
    /// TexMex `.ivecs`: rows of `i32`, laid out like [`Format::Fvecs`] with
    /// `i32` elements (row size `4 + 4*d` bytes). Ground-truth neighbour
    /// ids are stored this way.
    Ivecs,
    /// TexMex `.bvecs`: rows of `u8`, laid out like [`Format::Fvecs`] with
    /// one byte per element (row size `4 + d` bytes).
    Bvecs,
    /// NumPy `.npy`, versions 1.0, 2.0 and 3.0, holding a 2-D C-order array:
    ///
    /// ```text
    /// bytes 0..6    magic "\x93NUMPY"
    /// byte  6       major version (1, 2 or 3)
    /// byte  7       minor version (0)
    /// then          header length HLEN: u16 for version 1, u32 for 2 and 3
    /// then          HLEN bytes of header: a Python dict literal such as
    ///               {'descr': '<f4', 'fortran_order': False, 'shape': (1000, 50), }
    ///               padded with spaces and ending in '\n' (latin-1 text for
    ///               versions 1 and 2, UTF-8 for version 3)
    /// then          rows * dim elements, row after row, nothing after them
    /// ```
    ///
    /// Supported dtypes are `<f4` (`f32`), `<i4` (`i32`) and `|u1` or
    /// `<u1` (`u8`).
    Npy,
}

impl Format {
    /// The format a file extension (without the dot) names, ignoring case;
    /// `None` if it names none.
    pub fn from_extension(extension: &str) -> Option<Self> {
        const BY_EXTENSION: [(&str, Format); 4] = [
            ("fvecs", Format::Fvecs),
            ("ivecs", Format::Ivecs),
            ("bvecs", Format::Bvecs),
            ("npy", Format::Npy),
        ];
        BY_EXTENSION
            .iter()
            .find(|(name, _)| extension.eq_ignore_ascii_case(name))
            .map(|&(_, format)| format)
    }

    /// The format of the file at `path`, from its extension.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownFormat`] if the path has no extension or one that
    /// names no format.
    pub fn from_path(path: &Path) -> Result<Self, Error> {
        path.extension()
            .and_then(|extension| extension.to_str())
            .and_then(Format::from_extension)
            .ok_or_else(|| Error::UnknownFormat {
                path: path.to_path_buf(),
            })
    }

    /// The usual file extension, without the dot.
    pub const fn extension(self) -> &'static str {
        match self {
            Format::Fvecs => "fvecs",
            Format::Ivecs => "ivecs",
            Format::Bvecs => "bvecs",
            Format::Npy => "npy",
        }
    }

    /// The element type the format implies, or `None` for `.npy`, whose
    /// header declares it.
    pub const fn element_type(self) -> Option<ElementType> {
        match self {
            Format::Fvecs => Some(ElementType::F32),
            Format::Ivecs => Some(ElementType::I32),
            Format::Bvecs => Some(ElementType::U8),
            Format::Npy => None,
        }
    }
}
