//! Row limits and the streaming reader agree with whole-file reads.

use dataset::{Error, Matrix, RowReader};

use crate::common::{f32_bytes, sample_f32, sample_i32, texmex_row, TempPath};

/// The same matrix as `.fvecs` and as `.npy`, for tests that must hold for
/// both layouts.
fn f32_files(matrix: &Matrix<f32>) -> [TempPath; 2] {
    let fvecs = TempPath::new("stream.fvecs");
    dataset::write_fvecs(&fvecs, matrix).unwrap();
    let npy = TempPath::new("stream.npy");
    dataset::write_npy(&npy, matrix).unwrap();
    [fvecs, npy]
}

#[test]
fn row_limit_reads_a_prefix() {
    let matrix = sample_f32(10, 3);
    for path in f32_files(&matrix) {
        for limit in [0, 1, 4, 10] {
            let prefix = dataset::read_f32_limit(&path, Some(limit)).unwrap();
            assert_eq!((prefix.rows(), prefix.dim()), (limit, 3));
            assert_eq!(prefix.as_slice(), &matrix.as_slice()[..limit * 3]);
        }
        // A limit past the end, or none, reads everything.
        assert_eq!(
            dataset::read_f32_limit(&path, Some(usize::MAX)).unwrap(),
            matrix
        );
        assert_eq!(dataset::read_f32_limit(&path, None).unwrap(), matrix);
    }

    let ints = sample_i32(5, 2);
    let ivecs = TempPath::new("limit.ivecs");
    dataset::write_ivecs(&ivecs, &ints).unwrap();
    assert_eq!(
        dataset::read_i32_limit(&ivecs, Some(2)).unwrap().as_slice(),
        &ints.as_slice()[..4]
    );
}

#[test]
fn row_limit_does_not_look_past_the_limit() {
    // Row 2 is ragged and row 3 truncated; the first two rows still read.
    let mut bytes = texmex_row(2, &f32_bytes(&[1.0, 2.0]));
    bytes.extend(texmex_row(2, &f32_bytes(&[3.0, 4.0])));
    bytes.extend(texmex_row(5, &f32_bytes(&[0.0; 5])));
    bytes.extend(texmex_row(2, &f32_bytes(&[9.0])));
    let path = TempPath::with_bytes("bad-tail.fvecs", &bytes);
    let prefix = dataset::read_f32_limit(&path, Some(2)).unwrap();
    assert_eq!(prefix.as_slice(), [1.0, 2.0, 3.0, 4.0]);
    assert!(matches!(
        dataset::read_f32(&path),
        Err(Error::Ragged { row: 2, .. })
    ));
}

#[test]
fn chunks_concatenate_to_the_whole_file() {
    let matrix = sample_f32(23, 4);
    for path in f32_files(&matrix) {
        for chunk_rows in [1, 3, 7, 23, 100] {
            let mut reader = RowReader::<f32>::open(&path).unwrap();
            assert_eq!((reader.dim(), reader.rows_hint()), (4, 23));
            let mut all = Vec::new();
            let mut chunk_count = 0;
            while let Some(chunk) = reader.next_chunk(chunk_rows).unwrap() {
                assert_eq!(chunk.dim(), 4);
                assert!(chunk.rows() >= 1 && chunk.rows() <= chunk_rows);
                all.extend_from_slice(chunk.as_slice());
                chunk_count += 1;
                assert_eq!(reader.rows_read(), (chunk_count * chunk_rows).min(23));
            }
            assert_eq!(chunk_count, 23usize.div_ceil(chunk_rows));
            assert_eq!(all, matrix.as_slice());
            // The end is sticky.
            assert!(reader.next_chunk(chunk_rows).unwrap().is_none());
            assert!(reader.next().is_none());
        }
    }
}

#[test]
fn iterator_and_read_row_into_yield_every_row() {
    let matrix = sample_f32(6, 5);
    for path in f32_files(&matrix) {
        let rows: Vec<Vec<f32>> = RowReader::open(&path)
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(rows.len(), 6);
        for (read, written) in rows.iter().zip(&matrix) {
            assert_eq!(read, written);
        }

        let mut reader = RowReader::<f32>::open(&path).unwrap();
        let mut buffer = Vec::new();
        let mut count = 0;
        while reader.read_row_into(&mut buffer).unwrap() {
            count += 1;
            assert_eq!(buffer.len(), count * 5, "rows are appended, not replaced");
        }
        assert_eq!(buffer, matrix.as_slice());
        assert!(!reader.read_row_into(&mut buffer).unwrap());
    }
}

#[test]
fn mixing_calls_continues_where_the_last_stopped() {
    let matrix = sample_f32(10, 2);
    for path in f32_files(&matrix) {
        let mut reader = RowReader::<f32>::open(&path).unwrap();
        assert_eq!(reader.next().unwrap().unwrap(), matrix.row(0));
        let empty = reader.next_chunk(0).unwrap().unwrap();
        assert!(empty.is_empty());
        assert_eq!(reader.rows_read(), 1);
        let middle = reader.read_rows(Some(4)).unwrap();
        assert_eq!(middle.as_slice(), &matrix.as_slice()[2..10]);
        let rest = reader.read_rows(None).unwrap();
        assert_eq!(rest.as_slice(), &matrix.as_slice()[10..]);
        assert!(reader.read_rows(None).unwrap().is_empty());
    }
}

#[test]
fn stream_stops_at_the_first_bad_row() {
    let mut bytes = texmex_row(2, &f32_bytes(&[1.0, 2.0]));
    bytes.extend(texmex_row(3, &f32_bytes(&[3.0, 4.0, 5.0])));
    bytes.extend(texmex_row(2, &f32_bytes(&[6.0, 7.0])));
    let path = TempPath::with_bytes("ragged-stream.fvecs", &bytes);
    let mut reader = RowReader::<f32>::open(&path).unwrap();
    assert_eq!(reader.next().unwrap().unwrap(), [1.0, 2.0]);
    let error = reader.next().unwrap().unwrap_err();
    assert!(matches!(
        error,
        Error::Ragged {
            row: 1,
            dim: 3,
            first_dim: 2,
            ..
        }
    ));
    assert!(
        reader.next().is_none(),
        "the stream is fused after an error"
    );
    assert!(reader.next_chunk(10).unwrap().is_none());
}

#[test]
fn reader_reports_its_file() {
    let matrix = sample_f32(2, 2);
    let [fvecs, npy] = f32_files(&matrix);
    let reader = RowReader::<f32>::open(&fvecs).unwrap();
    assert_eq!(reader.path(), &*fvecs);
    assert_eq!(reader.format(), dataset::Format::Fvecs);
    assert_eq!(
        RowReader::<f32>::open(&npy).unwrap().format(),
        dataset::Format::Npy
    );
}
