//! Hand-built byte sequences, spelled out byte by byte, read as expected,
//! and the writers produce exactly them. This pins down endianness and
//! layout independently of the crate's own writers.

use dataset::{Matrix, RowReader};

use crate::common::TempPath;

/// Two rows of dim 2: [1.5, -2.0] and [0.25, 8.0].
const FVECS: [u8; 24] = [
    0x02, 0x00, 0x00, 0x00, // dim 2
    0x00, 0x00, 0xc0, 0x3f, // 1.5
    0x00, 0x00, 0x00, 0xc0, // -2.0
    0x02, 0x00, 0x00, 0x00, // dim 2
    0x00, 0x00, 0x80, 0x3e, // 0.25
    0x00, 0x00, 0x00, 0x41, // 8.0
];

/// One row of dim 3: [7, -1, 256].
const IVECS: [u8; 16] = [
    0x03, 0x00, 0x00, 0x00, // dim 3
    0x07, 0x00, 0x00, 0x00, // 7
    0xff, 0xff, 0xff, 0xff, // -1
    0x00, 0x01, 0x00, 0x00, // 256
];

/// Two rows of dim 3: [0, 255, 16] and [1, 2, 3].
const BVECS: [u8; 14] = [
    0x03, 0x00, 0x00, 0x00, 0x00, 0xff, 0x10, // dim 3, then 3 bytes
    0x03, 0x00, 0x00, 0x00, 0x01, 0x02, 0x03, // dim 3, then 3 bytes
];

#[test]
fn fvecs() {
    let path = TempPath::with_bytes("known.fvecs", &FVECS);
    let matrix = dataset::read_f32(&path).unwrap();
    assert_eq!((matrix.rows(), matrix.dim()), (2, 2));
    assert_eq!(matrix.as_slice(), [1.5, -2.0, 0.25, 8.0]);

    let written = TempPath::new("known-written.fvecs");
    dataset::write_fvecs(&written, &matrix).unwrap();
    assert_eq!(written.bytes(), FVECS);
}

#[test]
fn ivecs() {
    let path = TempPath::with_bytes("known.ivecs", &IVECS);
    let matrix = dataset::read_i32(&path).unwrap();
    assert_eq!((matrix.rows(), matrix.dim()), (1, 3));
    assert_eq!(matrix.row(0), [7, -1, 256]);

    let written = TempPath::new("known-written.ivecs");
    dataset::write_ivecs(&written, &matrix).unwrap();
    assert_eq!(written.bytes(), IVECS);
}

#[test]
fn bvecs() {
    let path = TempPath::with_bytes("known.bvecs", &BVECS);
    let matrix = dataset::read_u8(&path).unwrap();
    assert_eq!(matrix.as_slice(), [0, 255, 16, 1, 2, 3]);
    assert_eq!(dataset::read_f32(&path).unwrap().row(0), [0.0, 255.0, 16.0]);

    let written = TempPath::new("known-written.bvecs");
    dataset::write_bvecs(&written, &matrix).unwrap();
    assert_eq!(written.bytes(), BVECS);
}

/// What `numpy.save` writes for `numpy.arange(1, 7, dtype='<i4').reshape(2, 3)`.
fn numpy_saved_i32_2x3() -> Vec<u8> {
    let dict = "{'descr': '<i4', 'fortran_order': False, 'shape': (2, 3), }";
    // Preamble (10 bytes) + header = 128, a multiple of 64, so HLEN = 118.
    let mut bytes = b"\x93NUMPY\x01\x00\x76\x00".to_vec();
    bytes.extend_from_slice(dict.as_bytes());
    bytes.extend_from_slice(" ".repeat(118 - dict.len() - 1).as_bytes());
    bytes.push(b'\n');
    bytes.extend_from_slice(&[
        1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, // row 0
        4, 0, 0, 0, 5, 0, 0, 0, 6, 0, 0, 0, // row 1
    ]);
    bytes
}

#[test]
fn npy() {
    let expected = numpy_saved_i32_2x3();
    assert_eq!(expected.len(), 128 + 24);
    let path = TempPath::with_bytes("known.npy", &expected);
    let matrix = dataset::read_i32(&path).unwrap();
    assert_eq!(
        matrix,
        Matrix::from_vec(2, 3, vec![1, 2, 3, 4, 5, 6]).unwrap()
    );

    let written = TempPath::new("known-written.npy");
    dataset::write_npy(&written, &matrix).unwrap();
    assert_eq!(written.bytes(), expected);
}

#[test]
fn npy_with_python2_longs_and_no_padding() {
    // Old NumPy under Python 2 wrote `2L`; some writers skip the padding.
    let dict = b"{'shape': (2L, 1L), 'fortran_order': False, 'descr': '<f4'}";
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&u16::try_from(dict.len()).unwrap().to_le_bytes());
    bytes.extend_from_slice(dict);
    bytes.extend_from_slice(&[0x00, 0x00, 0xc0, 0x3f, 0x00, 0x00, 0x00, 0xc0]);
    let path = TempPath::with_bytes("python2.npy", &bytes);
    let reader = RowReader::<f32>::open(&path).unwrap();
    assert_eq!((reader.rows_hint(), reader.dim()), (2, 1));
    assert_eq!(dataset::read_f32(&path).unwrap().as_slice(), [1.5, -2.0]);
}
