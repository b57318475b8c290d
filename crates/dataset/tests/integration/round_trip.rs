//! Every writer's output reads back as the matrix written.

use std::path::Path;

use dataset::{Format, Matrix};

use crate::common::{npy_dict, npy_file, sample_f32, sample_i32, sample_u8, TempPath};

/// Compares by bit pattern, so NaN, -0.0 and subnormals must survive
/// exactly.
fn assert_same_bits(left: &Matrix<f32>, right: &Matrix<f32>) {
    assert_eq!((left.rows(), left.dim()), (right.rows(), right.dim()));
    let bits = |matrix: &Matrix<f32>| -> Vec<u32> {
        matrix
            .as_slice()
            .iter()
            .map(|value| value.to_bits())
            .collect()
    };
    assert_eq!(bits(left), bits(right));
}

fn awkward_f32() -> Matrix<f32> {
    let data = vec![
        0.0,
        -0.0,
        f32::NAN,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::MIN_POSITIVE / 2.0, // subnormal
        f32::MAX,
        f32::MIN,
        1.0e-30,
    ];
    Matrix::from_vec(3, 3, data).unwrap()
}

#[test]
fn fvecs() {
    for matrix in [sample_f32(17, 5), sample_f32(1, 1), awkward_f32()] {
        let path = TempPath::new("round.fvecs");
        dataset::write_fvecs(&path, &matrix).unwrap();
        assert_same_bits(&dataset::read_f32(&path).unwrap(), &matrix);
    }
}

#[test]
fn ivecs() {
    let edges = Matrix::from_vec(2, 2, vec![i32::MIN, -1, 0, i32::MAX]).unwrap();
    for matrix in [sample_i32(9, 100), edges] {
        let path = TempPath::new("round.ivecs");
        dataset::write_ivecs(&path, &matrix).unwrap();
        assert_eq!(dataset::read_i32(&path).unwrap(), matrix);
    }
}

#[test]
fn bvecs() {
    let matrix = sample_u8(31, 128);
    let path = TempPath::new("round.bvecs");
    dataset::write_bvecs(&path, &matrix).unwrap();
    assert_eq!(dataset::read_u8(&path).unwrap(), matrix);
}

#[test]
fn npy_of_each_element_type() {
    let floats = sample_f32(12, 7);
    let path = TempPath::new("round-f32.npy");
    dataset::write_npy(&path, &floats).unwrap();
    assert_same_bits(&dataset::read_f32(&path).unwrap(), &floats);

    let awkward = awkward_f32();
    dataset::write_npy(&path, &awkward).unwrap();
    assert_same_bits(&dataset::read_f32(&path).unwrap(), &awkward);

    let ints = sample_i32(4, 3);
    let path = TempPath::new("round-i32.npy");
    dataset::write_npy(&path, &ints).unwrap();
    assert_eq!(dataset::read_i32(&path).unwrap(), ints);

    let bytes = sample_u8(5, 9);
    let path = TempPath::new("round-u8.npy");
    dataset::write_npy(&path, &bytes).unwrap();
    assert_eq!(dataset::read_u8(&path).unwrap(), bytes);
}

#[test]
fn npy_header_is_laid_out_as_numpy_does() {
    let path = TempPath::new("layout.npy");
    dataset::write_npy(&path, &sample_f32(1000, 50)).unwrap();
    let bytes = path.bytes();
    assert_eq!(&bytes[..8], b"\x93NUMPY\x01\x00");
    let header_len = usize::from(u16::from_le_bytes([bytes[8], bytes[9]]));
    let data_offset = 10 + header_len;
    assert_eq!(data_offset % 64, 0, "data must start 64-byte aligned");
    let header = std::str::from_utf8(&bytes[10..data_offset]).unwrap();
    assert!(header.starts_with("{'descr': '<f4', 'fortran_order': False, 'shape': (1000, 50), }"));
    assert!(header.ends_with(" \n"));
    assert_eq!(bytes.len(), data_offset + 1000 * 50 * 4);
}

#[test]
fn npy_versions_2_and_3() {
    let matrix = sample_f32(3, 4);
    let data: Vec<u8> = matrix
        .as_slice()
        .iter()
        .flat_map(|x| x.to_le_bytes())
        .collect();
    for major in [2, 3] {
        let bytes = npy_file(major, &npy_dict("<f4", "(3, 4)"), &data);
        let path = TempPath::with_bytes("version.npy", &bytes);
        assert_same_bits(&dataset::read_f32(&path).unwrap(), &matrix);
    }
    // Version 3 headers are UTF-8; non-ASCII text in a key we ignore is fine.
    let dict = "{'descr': '<f4', 'note': 'é ✓', 'fortran_order': False, 'shape': (3, 4)}";
    let path = TempPath::with_bytes("utf8.npy", &npy_file(3, dict, &data));
    assert_same_bits(&dataset::read_f32(&path).unwrap(), &matrix);
}

#[test]
fn npy_accepts_either_byte_dtype_spelling() {
    for descr in ["|u1", "<u1"] {
        let bytes = npy_file(1, &npy_dict(descr, "(2, 3,)"), &[1, 2, 3, 4, 5, 6]);
        let path = TempPath::with_bytes("bytes.npy", &bytes);
        assert_eq!(
            dataset::read_u8(&path).unwrap().as_slice(),
            [1, 2, 3, 4, 5, 6]
        );
    }
}

#[test]
fn bytes_widen_to_f32() {
    let matrix = sample_u8(6, 10);
    let widened = matrix.map(|&byte| f32::from(byte));
    let bvecs = TempPath::new("widen.bvecs");
    dataset::write_bvecs(&bvecs, &matrix).unwrap();
    assert_eq!(dataset::read_f32(&bvecs).unwrap(), widened);
    let limited = dataset::read_f32_limit(&bvecs, Some(2)).unwrap();
    assert_eq!(limited.as_slice(), &widened.as_slice()[..20]);

    let npy = TempPath::new("widen.npy");
    dataset::write_npy(&npy, &matrix).unwrap();
    assert_eq!(dataset::read_f32(&npy).unwrap(), widened);
}

#[test]
fn extension_picks_the_format_case_insensitively() {
    let format = |name: &str| Format::from_path(Path::new(name)).ok();
    assert_eq!(format("a/base.fvecs"), Some(Format::Fvecs));
    assert_eq!(format("gt.IVECS"), Some(Format::Ivecs));
    assert_eq!(format("x.BVecs"), Some(Format::Bvecs));
    assert_eq!(format("x.npy"), Some(Format::Npy));
    assert_eq!(format("x.fvecs.gz"), None);
    assert_eq!(format("fvecs"), None);

    let matrix = sample_f32(2, 2);
    let path = TempPath::new("UPPER.FVECS");
    dataset::write_fvecs(&path, &matrix).unwrap();
    assert_eq!(dataset::read_f32(&path).unwrap(), matrix);

    for format in [Format::Fvecs, Format::Ivecs, Format::Bvecs, Format::Npy] {
        assert_eq!(Format::from_extension(format.extension()), Some(format));
    }
}

#[test]
fn matrix_accessors() {
    let matrix = Matrix::from_vec(3, 2, vec![1, 2, 3, 4, 5, 6]).unwrap();
    assert_eq!(
        (matrix.rows(), matrix.dim(), matrix.is_empty()),
        (3, 2, false)
    );
    assert_eq!(matrix.row(2), [5, 6]);
    assert_eq!(matrix.get_row(3), None);
    let rows: Vec<&[i32]> = matrix.iter().collect();
    assert_eq!(rows, [[1, 2], [3, 4], [5, 6]]);
    assert_eq!((&matrix).into_iter().len(), 3);
    assert_eq!(matrix.clone().into_vec(), [1, 2, 3, 4, 5, 6]);

    assert!(Matrix::from_vec(2, 2, vec![1, 2, 3]).is_err());
    assert!(Matrix::<u8>::from_vec(0, 0, vec![]).is_err());
    assert!(Matrix::from_vec(usize::MAX, 2, vec![1u8]).is_err());
    let empty = Matrix::<u8>::from_vec(0, 4, vec![]).unwrap();
    assert!(empty.is_empty());
    assert_eq!(empty.iter().count(), 0);
}
