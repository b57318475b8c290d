//! IVF index files: any bytes load into an index or are refused; an index that loads answers
//! searches without panicking. With the first byte odd, the trailer is recomputed so that the
//! structure behind the checksum is reached (a crafted file, as a snapshot upload could hold).
#![no_main]

use index_core::{SearchParams, VectorIndex};
use index_ivf::{IvfIndex, LoadOptions};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut bytes = rest.to_vec();
    if mode & 1 == 1 && bytes.len() >= 4 {
        let body = bytes.len() - 4;
        let crc = persist::crc32(&bytes[..body]);
        bytes[body..].copy_from_slice(&crc.to_le_bytes());
    }
    let file = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(file.path(), &bytes).expect("write");
    let options = LoadOptions {
        vectors_on_disk: mode & 2 == 2,
    };
    if let Ok(index) = IvfIndex::load(file.path(), options) {
        let dim = index.dim();
        if dim > 0 && dim <= 4096 {
            let q: Vec<f32> = (0..dim).map(|i| (i as f32 * 0.37).sin()).collect();
            let _ = index.search(&q, &SearchParams::top(5), None);
            let mut exact = SearchParams::top(5);
            exact.exact = true;
            let _ = index.search(&q, &exact, None);
        }
    }
});
