//! What the graph-file targets share: the input turned into a file, and the searches run on
//! what loads.

use index_core::{SearchParams, VectorIndex};

/// The file of an input whose first byte chooses the mode: odd, the trailing CRC-32 is
/// recomputed over the rest (so the structure behind the checksum is reached, as in a crafted
/// file a snapshot upload could carry); bit 1, the vectors are to stay in the file map.
/// `None` for an empty input.
pub fn graph_file(data: &[u8]) -> Option<(tempfile::NamedTempFile, bool)> {
    let (&mode, rest) = data.split_first()?;
    let mut bytes = rest.to_vec();
    if mode & 1 == 1 && bytes.len() >= 4 {
        let body = bytes.len() - 4;
        let crc = persist::crc32(&bytes[..body]);
        bytes[body..].copy_from_slice(&crc.to_le_bytes());
    }
    let file = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(file.path(), &bytes).expect("write");
    Some((file, mode & 2 == 2))
}

/// An approximate and an exact search on an index that loaded: neither may panic.
pub fn search_loaded(index: &dyn VectorIndex) {
    let dim = index.dim();
    if dim > 0 && dim <= 4096 {
        let q: Vec<f32> = (0..dim).map(|i| (i as f32 * 0.37).sin()).collect();
        let _ = index.search(&q, &SearchParams::top(5), None);
        let mut exact = SearchParams::top(5);
        exact.exact = true;
        let _ = index.search(&q, &exact, None);
    }
}
