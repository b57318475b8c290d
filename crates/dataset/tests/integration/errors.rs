//! Every error variant, each triggered by a crafted file, with the numbers
//! it carries; and no input, however mangled, makes a reader panic.

use std::io::ErrorKind;

use dataset::{ElementType, Error, Matrix, RowReader, MAX_DIM};

use crate::common::{f32_bytes, i32_bytes, npy_dict, npy_file, sample_f32, texmex_row, TempPath};

/// The `reason` of an [`Error::Npy`] from reading `bytes` as an f32 `.npy`
/// file; fails the test for any other outcome.
fn npy_reason(bytes: &[u8]) -> String {
    let path = TempPath::with_bytes("bad.npy", bytes);
    match dataset::read_f32(&path) {
        Err(Error::Npy {
            path: error_path,
            reason,
        }) => {
            assert_eq!(error_path, *path);
            reason
        }
        other => panic!("expected Error::Npy, got {other:?}"),
    }
}

#[test]
fn io_error_for_a_missing_file_or_unwritable_path() {
    let path = TempPath::new("missing.fvecs");
    match dataset::read_f32(&path) {
        Err(Error::Io {
            path: error_path,
            source,
        }) => {
            assert_eq!(error_path, *path);
            assert_eq!(source.kind(), ErrorKind::NotFound);
        }
        other => panic!("expected Error::Io, got {other:?}"),
    }

    let in_missing_dir = TempPath::new("no-such-dir").join("out.fvecs");
    let error = dataset::write_fvecs(&in_missing_dir, &sample_f32(1, 1)).unwrap_err();
    assert!(matches!(error, Error::Io { .. }), "{error:?}");
    assert_eq!(error.path(), in_missing_dir);
}

#[test]
fn empty_file_or_zero_rows() {
    for name in ["empty.fvecs", "empty.ivecs", "empty.bvecs", "empty.npy"] {
        let path = TempPath::with_bytes(name, &[]);
        let error = RowReader::<u8>::open(&path).unwrap_err();
        assert!(
            matches!(&error, Error::Empty { path: p } if *p == *path),
            "{name}: {error:?}"
        );
    }
    let zero_rows = npy_file(1, &npy_dict("<f4", "(0, 8)"), &[]);
    let path = TempPath::with_bytes("zero-rows.npy", &zero_rows);
    assert!(matches!(dataset::read_f32(&path), Err(Error::Empty { .. })));

    let nothing = Matrix::<f32>::from_vec(0, 3, vec![]).unwrap();
    let path = TempPath::new("nothing.fvecs");
    assert!(matches!(
        dataset::write_fvecs(&path, &nothing),
        Err(Error::Empty { .. })
    ));
    assert!(matches!(
        dataset::write_npy(&path, &nothing),
        Err(Error::Empty { .. })
    ));
}

#[test]
fn truncated_last_row() {
    let mut bytes = texmex_row(3, &f32_bytes(&[1.0, 2.0, 3.0]));
    bytes.extend(texmex_row(3, &f32_bytes(&[4.0, 5.0]))); // one element short
    let path = TempPath::with_bytes("short-row.fvecs", &bytes);
    match dataset::read_f32(&path) {
        Err(Error::Truncated {
            path: error_path,
            row,
            expected_bytes,
            available_bytes,
        }) => {
            assert_eq!(error_path, *path);
            assert_eq!((row, expected_bytes, available_bytes), (1, 16, 12));
        }
        other => panic!("expected Error::Truncated, got {other:?}"),
    }
}

#[test]
fn truncated_dim_header() {
    // A file too short for even the first header.
    let path = TempPath::with_bytes("two-bytes.ivecs", &[3, 0]);
    assert!(matches!(
        dataset::read_i32(&path),
        Err(Error::Truncated {
            row: 0,
            expected_bytes: 4,
            available_bytes: 2,
            ..
        })
    ));

    // Whole rows, then three stray bytes where the next header should be.
    let mut bytes = texmex_row(1, &i32_bytes(&[10]));
    bytes.extend(texmex_row(1, &i32_bytes(&[11])));
    bytes.extend([1, 0, 0]);
    let path = TempPath::with_bytes("stray.ivecs", &bytes);
    let error = dataset::read_i32(&path).unwrap_err();
    assert!(
        matches!(
            error,
            Error::Truncated {
                row: 2,
                expected_bytes: 4,
                available_bytes: 3,
                ..
            }
        ),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert!(
        message.contains("row 2") && message.contains("needs 4 bytes"),
        "{message}"
    );
}

#[test]
fn ragged_row() {
    let mut bytes = texmex_row(2, &[1, 2]);
    bytes.extend(texmex_row(2, &[3, 4]));
    bytes.extend(texmex_row(3, &[5, 6, 7]));
    let path = TempPath::with_bytes("ragged.bvecs", &bytes);
    match dataset::read_u8(&path) {
        Err(Error::Ragged {
            path: error_path,
            row,
            dim,
            first_dim,
        }) => {
            assert_eq!(error_path, *path);
            assert_eq!((row, dim, first_dim), (2, 3, 2));
        }
        other => panic!("expected Error::Ragged, got {other:?}"),
    }
}

#[test]
fn bad_dimension() {
    let max_dim = i32::try_from(MAX_DIM).unwrap();
    for (name, dim) in [
        ("negative", -1),
        ("zero", 0),
        ("min", i32::MIN),
        ("huge", max_dim + 1),
    ] {
        let path = TempPath::with_bytes(&format!("{name}.fvecs"), &texmex_row(dim, &[0; 16]));
        match dataset::read_f32(&path) {
            Err(Error::BadDimension {
                path: error_path,
                row: 0,
                dim: found,
            }) => {
                assert_eq!(error_path, *path);
                assert_eq!(found, i64::from(dim), "{name}");
            }
            other => panic!("{name}: expected Error::BadDimension, got {other:?}"),
        }
    }

    // A bad header in a later row is reported as such, not as ragged.
    let mut bytes = texmex_row(1, &f32_bytes(&[1.0]));
    bytes.extend(texmex_row(-7, &f32_bytes(&[1.0])));
    let path = TempPath::with_bytes("negative-later.fvecs", &bytes);
    assert!(matches!(
        dataset::read_f32(&path),
        Err(Error::BadDimension {
            row: 1,
            dim: -7,
            ..
        })
    ));

    // A .npy second axis of 0 or beyond MAX_DIM.
    let path = TempPath::with_bytes(
        "zero-dim.npy",
        &npy_file(1, &npy_dict("<f4", "(4, 0)"), &[]),
    );
    assert!(matches!(
        dataset::read_f32(&path),
        Err(Error::BadDimension { row: 0, dim: 0, .. })
    ));
    let shape = format!("(1, {})", MAX_DIM + 1);
    let path = TempPath::with_bytes("wide.npy", &npy_file(1, &npy_dict("<f4", &shape), &[]));
    assert!(matches!(
        dataset::read_f32(&path),
        Err(Error::BadDimension { .. })
    ));

    // Writers refuse what readers would refuse.
    let too_wide = Matrix::from_vec(1, MAX_DIM + 1, vec![0u8; MAX_DIM + 1]).unwrap();
    let path = TempPath::new("too-wide.bvecs");
    assert!(matches!(
        dataset::write_bvecs(&path, &too_wide),
        Err(Error::BadDimension { .. })
    ));
}

#[test]
fn npy_bad_magic() {
    let mut bytes = npy_file(1, &npy_dict("<f4", "(1, 1)"), &[0; 4]);
    bytes[1] = b'n';
    assert!(npy_reason(&bytes).contains("magic"));
    assert!(npy_reason(b"PK\x03\x04 a zip file").contains("magic"));
}

#[test]
fn npy_truncated_preamble_or_header() {
    assert!(npy_reason(b"\x93NUMPY").contains("version"));
    assert!(npy_reason(b"\x93NUMPY\x01\x00\x10").contains("header length"));
    let whole = npy_file(1, &npy_dict("<f4", "(1, 1)"), &[0; 4]);
    assert!(npy_reason(&whole[..40]).contains("past the end"));
}

#[test]
fn npy_unsupported_version() {
    let mut bytes = npy_file(1, &npy_dict("<f4", "(1, 1)"), &[0; 4]);
    bytes[6] = 4;
    assert!(npy_reason(&bytes).contains("version 4.0"));
    bytes[6] = 1;
    bytes[7] = 1;
    assert!(npy_reason(&bytes).contains("version 1.1"));
}

#[test]
fn npy_malformed_header() {
    let bytes = npy_file(
        1,
        "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 1)",
        &[0; 4],
    );
    assert!(npy_reason(&bytes).contains("expected"));
    let bytes = npy_file(1, "{'descr': '<f4', 'shape': (1, 1)}", &[0; 4]);
    assert!(npy_reason(&bytes).contains("fortran_order"));
    let mut bytes = npy_file(3, &npy_dict("<f4", "(1, 1)"), &[0; 4]);
    bytes[13] = 0xff; // inside the dict: not UTF-8
    assert!(npy_reason(&bytes).contains("UTF-8"));
}

#[test]
fn npy_fortran_order() {
    let dict = "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }";
    assert!(npy_reason(&npy_file(1, dict, &[0; 16])).contains("Fortran"));
}

#[test]
fn npy_not_two_dimensional() {
    let three_d = npy_reason(&npy_file(1, &npy_dict("<f4", "(2, 3, 4)"), &[0; 96]));
    assert!(
        three_d.contains("2-D") && three_d.contains("(2, 3, 4)"),
        "{three_d}"
    );
    let one_d = npy_reason(&npy_file(1, &npy_dict("<f4", "(5,)"), &[0; 20]));
    assert!(one_d.contains("1-D") && one_d.contains("(5,)"), "{one_d}");
    let scalar = npy_reason(&npy_file(1, &npy_dict("<f4", "()"), &[0; 4]));
    assert!(scalar.contains("0-D"), "{scalar}");
}

#[test]
fn npy_unsupported_dtype() {
    for descr in ["<f8", ">f4", "<i8", "<f2", "|b1"] {
        let reason = npy_reason(&npy_file(1, &npy_dict(descr, "(1, 2)"), &[0; 16]));
        assert!(
            reason.contains("dtype") && reason.contains(descr),
            "{reason}"
        );
    }
    let structured = "{'descr': [('x', '<f4')], 'fortran_order': False, 'shape': (1, 1), }";
    assert!(npy_reason(&npy_file(1, structured, &[0; 4])).contains("structured"));
}

#[test]
fn npy_data_size_differs_from_shape() {
    let short = npy_reason(&npy_file(1, &npy_dict("<f4", "(3, 4)"), &[0; 44]));
    assert!(
        short.contains("needs 48") && short.contains("has 44"),
        "{short}"
    );
    let long = npy_reason(&npy_file(1, &npy_dict("<f4", "(3, 4)"), &[0; 52]));
    assert!(long.contains("has 52"), "{long}");
    let overflowing = npy_reason(&npy_file(
        1,
        &npy_dict("<f4", "(18446744073709551615, 2)"),
        &[],
    ));
    assert!(overflowing.contains("too large"), "{overflowing}");
}

#[test]
fn unknown_format() {
    for name in ["data.txt", "data.fvecs.gz", "noextension"] {
        let path = TempPath::with_bytes(name, &texmex_row(1, &[0; 4]));
        let error = dataset::read_f32(&path).unwrap_err();
        assert!(
            matches!(&error, Error::UnknownFormat { path: p } if *p == *path),
            "{error:?}"
        );
    }
}

#[test]
fn wrong_type() {
    let ivecs = TempPath::with_bytes("ids.ivecs", &texmex_row(1, &i32_bytes(&[5])));
    match dataset::read_f32(&ivecs) {
        Err(Error::WrongType {
            path,
            expected,
            found,
        }) => {
            assert_eq!(path, *ivecs);
            assert_eq!((expected, found), (ElementType::F32, ElementType::I32));
        }
        other => panic!("expected Error::WrongType, got {other:?}"),
    }

    let fvecs = TempPath::with_bytes("floats.fvecs", &texmex_row(1, &f32_bytes(&[5.0])));
    assert!(matches!(
        dataset::read_i32(&fvecs),
        Err(Error::WrongType {
            expected: ElementType::I32,
            found: ElementType::F32,
            ..
        })
    ));
    assert!(matches!(
        dataset::read_u8(&fvecs),
        Err(Error::WrongType {
            expected: ElementType::U8,
            found: ElementType::F32,
            ..
        })
    ));

    let npy_i32 = TempPath::with_bytes(
        "ids.npy",
        &npy_file(1, &npy_dict("<i4", "(1, 1)"), &[5, 0, 0, 0]),
    );
    assert!(matches!(
        dataset::read_f32(&npy_i32),
        Err(Error::WrongType {
            expected: ElementType::F32,
            found: ElementType::I32,
            ..
        })
    ));
    let message = dataset::read_u8(&npy_i32).unwrap_err().to_string();
    assert!(
        message.contains("i32") && message.contains("u8"),
        "{message}"
    );
}

/// A tiny deterministic generator, so the mangling is reproducible.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// Reads `bytes` every way the crate offers; any result is fine, a panic
/// is not.
fn read_every_way(name: &str, bytes: &[u8]) {
    let path = TempPath::with_bytes(name, bytes);
    let _ = dataset::read_f32(&path);
    let _ = dataset::read_i32(&path);
    let _ = dataset::read_u8_limit(&path, Some(2));
    if let Ok(reader) = RowReader::<f32>::open(&path) {
        for row in reader {
            let _ = row;
        }
    }
}

#[test]
fn mangled_files_never_panic() {
    let fvecs = {
        let path = TempPath::new("seed.fvecs");
        dataset::write_fvecs(&path, &sample_f32(4, 3)).unwrap();
        path.bytes()
    };
    let npy = npy_file(1, &npy_dict("<f4", "(4, 3)"), &f32_bytes(&[0.5; 12]));

    for (name, seed) in [("fuzz.fvecs", &fvecs), ("fuzz.npy", &npy)] {
        // Every prefix: truncation at each byte.
        for len in 0..seed.len() {
            read_every_way(name, &seed[..len]);
        }
        // Random byte changes.
        let mut random = SplitMix64(0x5eed);
        for _ in 0..300 {
            let mut mangled = seed.clone();
            for _ in 0..1 + random.next() % 4 {
                let index = (random.next() % mangled.len() as u64) as usize;
                mangled[index] = random.next() as u8;
            }
            read_every_way(name, &mangled);
        }
    }
}
