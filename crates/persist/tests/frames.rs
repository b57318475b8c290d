//! The frame refuses every damaged or foreign file, the cursor never reads past the end,
//! and a failed replacement leaves the old file.

use persist::{
    check_frame, check_frame_versions, replace_file, ChecksumWriter, Cursor, FrameError,
};
use std::io::Write;

const MAGIC: [u8; 8] = *b"TESTFMT\0";

fn framed(values: &[f32]) -> Vec<u8> {
    let mut out = ChecksumWriter::new(Vec::new());
    out.write_all(&MAGIC).unwrap();
    out.u32(3).unwrap();
    out.u64(values.len() as u64).unwrap();
    out.f32s(values).unwrap();
    out.counted_u32s([7u32, 9].into_iter()).unwrap();
    assert_eq!(out.written(), 8 + 4 + 8 + 4 * values.len() as u64 + 8 + 8);
    out.finish().unwrap()
}

#[test]
fn fields_come_back_as_written() {
    let values: Vec<f32> = (0..10_000).map(|i| i as f32 * 0.25 - 7.0).collect();
    let bytes = framed(&values);
    let body = check_frame(&bytes, &MAGIC, 3).unwrap();
    assert_eq!(body.len(), bytes.len() - 4);
    let mut r = Cursor::new(body, 12);
    let n = r.len(4).unwrap();
    assert_eq!(r.f32s(n).unwrap(), values);
    let k = r.len(4).unwrap();
    assert_eq!(r.u32s(k).unwrap(), vec![7, 9]);
    assert_eq!(r.remaining(), 0);
    assert_eq!(r.u8(), None);
}

#[test]
fn every_damaged_byte_and_every_truncation_is_refused() {
    let bytes = framed(&[1.0, 2.0, 3.0]);
    for i in 0..bytes.len() {
        for flip in [0x01u8, 0x80] {
            let mut damaged = bytes.clone();
            damaged[i] ^= flip;
            assert!(
                check_frame(&damaged, &MAGIC, 3).is_err(),
                "byte {i} ^ {flip:#x} accepted"
            );
        }
    }
    for len in 0..bytes.len() {
        assert!(
            check_frame(&bytes[..len], &MAGIC, 3).is_err(),
            "cut at {len} accepted"
        );
    }
    assert_eq!(
        check_frame(&bytes, b"OTHERFMT", 3),
        Err(FrameError::BadMagic)
    );
    assert_eq!(
        check_frame(&bytes, &MAGIC, 4),
        Err(FrameError::Version {
            found: 3,
            oldest: 4,
            expected: 4
        })
    );
    // A reader of several versions takes each of them, says which, and refuses the others.
    assert_eq!(
        check_frame_versions(&bytes, &MAGIC, 2..=3).map(|(b, v)| (b.len(), v)),
        Ok((bytes.len() - 4, 3))
    );
    let refused = check_frame_versions(&bytes, &MAGIC, 4..=5).unwrap_err();
    assert_eq!(
        refused,
        FrameError::Version {
            found: 3,
            oldest: 4,
            expected: 5
        }
    );
    assert_eq!(
        refused.to_string(),
        "format version 3, this build reads 4 to 5"
    );
}

#[test]
fn a_count_larger_than_what_is_left_is_refused() {
    let mut bytes = Vec::new();
    bytes.extend_from_slice(&u64::MAX.to_le_bytes());
    assert_eq!(Cursor::new(&bytes, 0).len(1), None);
    let mut bytes = Vec::new();
    bytes.extend_from_slice(&3u64.to_le_bytes());
    bytes.extend_from_slice(&[0; 11]);
    assert_eq!(
        Cursor::new(&bytes, 0).len(4),
        None,
        "3 u32s need 12 bytes, 11 left"
    );
    assert_eq!(Cursor::new(&bytes, 0).len(3), Some(3));
    assert_eq!(Cursor::new(&bytes, 0).bytes(usize::MAX), None);
}

#[test]
fn a_failed_replacement_leaves_the_old_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data.bin");
    replace_file(&path, |w| w.write_all(b"first")).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), b"first");
    let failed = replace_file(&path, |w| {
        w.write_all(b"half of the sec")?;
        Err(std::io::Error::other("disk full"))
    });
    assert!(failed.is_err());
    assert_eq!(std::fs::read(&path).unwrap(), b"first");
    assert!(
        !path.with_extension("tmp").exists(),
        "the temporary file was left"
    );
    replace_file(&path, |w| w.write_all(b"second")).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), b"second");
}
