//! CAGRA graph files: any bytes load into an index or are refused; an index that loads answers
//! searches without panicking (the input's first byte: see `vector_router_fuzz::graph_file`;
//! a CAGRA index keeps its vectors in memory, so the file-map bit is ignored).
#![no_main]

use gpu_cagra::CagraIndex;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((file, _)) = vector_router_fuzz::graph_file(data) else {
        return;
    };
    if let Ok(index) = CagraIndex::load(file.path()) {
        vector_router_fuzz::search_loaded(&index);
    }
});
