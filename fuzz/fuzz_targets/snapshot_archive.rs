//! Snapshot archives as an upload or a recovery URL delivers them: any bytes verify or are
//! refused, and unpacking never writes outside its destination.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().expect("temp dir");
    let archive = dir.path().join("in.snapshot");
    std::fs::write(&archive, data).expect("write");
    let _ = storage::archive::verify_archive(&archive);
    let dest = dir.path().join("out");
    if storage::archive::unpack_archive(&archive, &dest).is_ok() {
        // Everything unpacked lies under the destination.
        let mut stack = vec![dest.clone()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                let path = e.path();
                assert!(path.starts_with(&dest), "{} escaped", path.display());
                if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                    stack.push(path);
                }
            }
        }
    }
    // Nothing appeared beside the archive and the destination.
    for e in std::fs::read_dir(dir.path()).expect("list").flatten() {
        let name = e.file_name();
        assert!(
            name == "in.snapshot" || name == "out",
            "{name:?} written outside"
        );
    }
});
