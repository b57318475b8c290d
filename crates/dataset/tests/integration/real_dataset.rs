//! Reads a real dataset when `VR_DATASET_DIR` points at one, e.g.
//! `VR_DATASET_DIR=/work/main/data/glove-50-angular`, holding
//! `base`, `query` (`.fvecs` or `.npy`) and `groundtruth` (`.ivecs` or
//! `.npy`). Without the variable the test passes after saying it skipped.

use std::path::{Path, PathBuf};

use dataset::RowReader;

/// `dir/stem.ext` for the first extension that exists.
fn find(dir: &Path, stem: &str, extensions: &[&str]) -> PathBuf {
    extensions
        .iter()
        .map(|extension| dir.join(format!("{stem}.{extension}")))
        .find(|path| path.exists())
        .unwrap_or_else(|| {
            panic!(
                "{} holds no {stem}.{{{}}}",
                dir.display(),
                extensions.join(",")
            )
        })
}

#[test]
fn reads_the_dataset_named_by_vr_dataset_dir() {
    let Some(dir) = std::env::var_os("VR_DATASET_DIR") else {
        println!("skipped: VR_DATASET_DIR is not set, so no real dataset was read");
        return;
    };
    let dir = PathBuf::from(dir);
    let base_path = find(&dir, "base", &["fvecs", "npy"]);
    let base = dataset::read_f32(&base_path).unwrap();
    let query = dataset::read_f32(find(&dir, "query", &["fvecs", "npy"])).unwrap();
    let groundtruth = dataset::read_i32(find(&dir, "groundtruth", &["ivecs", "npy"])).unwrap();

    assert_eq!(base.dim(), query.dim(), "base and query dims differ");
    assert_eq!(
        groundtruth.rows(),
        query.rows(),
        "one ground-truth row per query"
    );
    let base_rows = i32::try_from(base.rows()).unwrap();
    assert!(
        groundtruth
            .as_slice()
            .iter()
            .all(|&id| (0..base_rows).contains(&id)),
        "ground-truth ids must index base rows"
    );
    assert!(
        base.as_slice().iter().all(|x| x.is_finite()),
        "base holds NaN or infinity"
    );

    // Streaming the base file gives the same rows as reading it whole.
    let mut reader = RowReader::<f32>::open(&base_path).unwrap();
    assert_eq!(reader.rows_hint(), base.rows());
    let mut rows_seen = 0;
    while let Some(chunk) = reader.next_chunk(50_000).unwrap() {
        let start = rows_seen * base.dim();
        assert_eq!(
            chunk.as_slice(),
            &base.as_slice()[start..start + chunk.as_slice().len()]
        );
        rows_seen += chunk.rows();
    }
    assert_eq!(rows_seen, base.rows());

    println!(
        "read {}: base {}x{}, query {}x{}, groundtruth {}x{}",
        dir.display(),
        base.rows(),
        base.dim(),
        query.rows(),
        query.dim(),
        groundtruth.rows(),
        groundtruth.dim()
    );
}
