//! The element types the formats can hold, and their little-endian codecs.

use std::fmt;

use crate::Format;

/// The type of the numbers in a dataset file, as a runtime value (for error
/// messages and for dispatch on what a `.npy` header declares).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ElementType {
    /// 32-bit IEEE float: `.fvecs`, `.npy` dtype `<f4`.
    F32,
    /// 32-bit signed integer: `.ivecs`, `.npy` dtype `<i4`.
    I32,
    /// 8-bit unsigned integer: `.bvecs`, `.npy` dtype `|u1` (or `<u1`).
    U8,
}

impl ElementType {
    /// Bytes one element occupies in a file.
    pub const fn size(self) -> usize {
        match self {
            ElementType::F32 | ElementType::I32 => 4,
            ElementType::U8 => 1,
        }
    }

    /// The Rust name of the type: `"f32"`, `"i32"` or `"u8"`.
    pub const fn name(self) -> &'static str {
        match self {
            ElementType::F32 => "f32",
            ElementType::I32 => "i32",
            ElementType::U8 => "u8",
        }
    }

    /// The TexMex format that stores this element type.
    pub const fn vecs_format(self) -> Format {
        match self {
            ElementType::F32 => Format::Fvecs,
            ElementType::I32 => Format::Ivecs,
            ElementType::U8 => Format::Bvecs,
        }
    }

    /// The NumPy dtype string the writer puts in a `.npy` header.
    pub(crate) const fn npy_descr(self) -> &'static str {
        match self {
            ElementType::F32 => "<f4",
            ElementType::I32 => "<i4",
            ElementType::U8 => "|u1",
        }
    }

    /// The element type for a NumPy dtype string, if it is one we read.
    ///
    /// Single bytes have no byte order, so NumPy writes `|u1`; `<u1` is
    /// accepted as well because some writers emit it.
    pub(crate) fn from_npy_descr(descr: &str) -> Option<Self> {
        match descr {
            "<f4" => Some(ElementType::F32),
            "<i4" => Some(ElementType::I32),
            "|u1" | "<u1" => Some(ElementType::U8),
            _ => None,
        }
    }
}

impl fmt::Display for ElementType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

pub(crate) mod sealed {
    /// The little-endian codec behind [`Element`](super::Element). It lives
    /// in a private module so that only this crate can implement or call it.
    pub trait Codec: Sized {
        /// Decodes `bytes` (a whole number of elements) and appends them.
        fn extend_from_le_bytes(out: &mut Vec<Self>, bytes: &[u8]);
        /// Encodes `values` and appends the bytes.
        fn extend_le_bytes(values: &[Self], out: &mut Vec<u8>);
    }
}

/// A Rust type that can be an element of a dataset matrix: `f32`, `i32` or
/// `u8`.
///
/// The trait is sealed: the formats define exactly these three types.
pub trait Element: sealed::Codec + Copy + fmt::Debug + PartialEq + Send + Sync + 'static {
    /// The runtime tag for this type.
    const TYPE: ElementType;
}

impl Element for f32 {
    const TYPE: ElementType = ElementType::F32;
}

impl Element for i32 {
    const TYPE: ElementType = ElementType::I32;
}

impl Element for u8 {
    const TYPE: ElementType = ElementType::U8;
}

// `chunks_exact(4)` only yields 4-byte chunks, so the indexing below cannot
// fail; callers pass whole rows, so there is never a remainder to drop.
impl sealed::Codec for f32 {
    fn extend_from_le_bytes(out: &mut Vec<Self>, bytes: &[u8]) {
        out.extend(
            bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        );
    }

    fn extend_le_bytes(values: &[Self], out: &mut Vec<u8>) {
        for value in values {
            out.extend_from_slice(&value.to_le_bytes());
        }
    }
}

impl sealed::Codec for i32 {
    fn extend_from_le_bytes(out: &mut Vec<Self>, bytes: &[u8]) {
        out.extend(
            bytes
                .chunks_exact(4)
                .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        );
    }

    fn extend_le_bytes(values: &[Self], out: &mut Vec<u8>) {
        for value in values {
            out.extend_from_slice(&value.to_le_bytes());
        }
    }
}

impl sealed::Codec for u8 {
    fn extend_from_le_bytes(out: &mut Vec<Self>, bytes: &[u8]) {
        out.extend_from_slice(bytes);
    }

    fn extend_le_bytes(values: &[Self], out: &mut Vec<u8>) {
        out.extend_from_slice(values);
    }
}
