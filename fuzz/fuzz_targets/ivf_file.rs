//! IVF index files: any bytes load into an index or are refused; an index that loads answers
//! searches without panicking (the input's first byte: see `vector_router_fuzz::graph_file`).
#![no_main]

use index_ivf::{IvfIndex, LoadOptions};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((file, vectors_on_disk)) = vector_router_fuzz::graph_file(data) else {
        return;
    };
    if let Ok(index) = IvfIndex::load(file.path(), LoadOptions { vectors_on_disk }) {
        vector_router_fuzz::search_loaded(&index);
    }
});
