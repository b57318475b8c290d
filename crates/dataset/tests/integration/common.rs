//! Temp files and byte builders shared by the test modules.

use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use dataset::Matrix;

/// A path under the temp dir, unique to this process and call, removed
/// (if it exists) when dropped.
pub struct TempPath(PathBuf);

impl TempPath {
    /// A fresh path ending in `name` (which carries the extension); no
    /// file is created.
    pub fn new(name: &str) -> Self {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let unique = COUNTER.fetch_add(1, Ordering::Relaxed);
        let file_name = format!("dataset-test-{}-{unique}-{name}", std::process::id());
        TempPath(std::env::temp_dir().join(file_name))
    }

    /// A fresh path ending in `name`, holding `bytes`.
    pub fn with_bytes(name: &str, bytes: &[u8]) -> Self {
        let path = TempPath::new(name);
        std::fs::write(&path.0, bytes).expect("write test file");
        path
    }

    /// The file's current bytes.
    pub fn bytes(&self) -> Vec<u8> {
        std::fs::read(&self.0).expect("read test file")
    }
}

impl Deref for TempPath {
    type Target = Path;

    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for TempPath {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// One TexMex row: the `i32` dim header as given (it may lie), then the
/// elements already encoded as bytes.
pub fn texmex_row(dim_header: i32, element_bytes: &[u8]) -> Vec<u8> {
    let mut row = dim_header.to_le_bytes().to_vec();
    row.extend_from_slice(element_bytes);
    row
}

/// Little-endian bytes of some `f32`s.
pub fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values
        .iter()
        .flat_map(|value| value.to_le_bytes())
        .collect()
}

/// Little-endian bytes of some `i32`s.
pub fn i32_bytes(values: &[i32]) -> Vec<u8> {
    values
        .iter()
        .flat_map(|value| value.to_le_bytes())
        .collect()
}

/// A `.npy` file of format version `major`.0 with the header dict `dict`
/// (padded as NumPy does) followed by `data`.
pub fn npy_file(major: u8, dict: &str, data: &[u8]) -> Vec<u8> {
    let length_field_bytes = if major == 1 { 2 } else { 4 };
    let preamble = 8 + length_field_bytes;
    let unpadded = preamble + dict.len() + 1;
    let header_len = unpadded.next_multiple_of(64) - preamble;
    let mut bytes = b"\x93NUMPY".to_vec();
    bytes.extend_from_slice(&[major, 0]);
    if major == 1 {
        bytes.extend_from_slice(&u16::try_from(header_len).unwrap().to_le_bytes());
    } else {
        bytes.extend_from_slice(&u32::try_from(header_len).unwrap().to_le_bytes());
    }
    bytes.extend_from_slice(dict.as_bytes());
    bytes.resize(preamble + header_len - 1, b' ');
    bytes.push(b'\n');
    bytes.extend_from_slice(data);
    bytes
}

/// The standard NumPy header dict for a C-order array.
pub fn npy_dict(descr: &str, shape: &str) -> String {
    format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}")
}

/// A `rows x dim` f32 matrix with distinct, non-integral values.
pub fn sample_f32(rows: usize, dim: usize) -> Matrix<f32> {
    let data = (0..rows * dim)
        .map(|index| index as f32 * 0.5 - 3.25)
        .collect();
    Matrix::from_vec(rows, dim, data).unwrap()
}

/// A `rows x dim` i32 matrix including negative values.
pub fn sample_i32(rows: usize, dim: usize) -> Matrix<i32> {
    let data = (0..rows * dim)
        .map(|index| (index as i32 - 7) * 1_000_003)
        .collect();
    Matrix::from_vec(rows, dim, data).unwrap()
}

/// A `rows x dim` u8 matrix covering the whole byte range.
pub fn sample_u8(rows: usize, dim: usize) -> Matrix<u8> {
    let data = (0..rows * dim)
        .map(|index| (index * 37 % 256) as u8)
        .collect();
    Matrix::from_vec(rows, dim, data).unwrap()
}
