//! Links the GPU path (feature `cuda`) against cuVS's C library and the CUDA runtime from the
//! directories named by `CUVS_LIB_DIR` (holding `libcuvs_c.so`) and `CUDART_LIB_DIR`
//! (holding `libcudart.so`): the `lib64` and `lib` folders of the `libcuvs-cu13` and
//! `nvidia-cuda-runtime` wheels, say (`gpu-check.sh` does this). Without the feature nothing
//! is linked; `cargo check --features cuda` needs neither directory.

fn main() {
    println!("cargo::rerun-if-env-changed=CUVS_LIB_DIR");
    println!("cargo::rerun-if-env-changed=CUDART_LIB_DIR");
    if std::env::var_os("CARGO_FEATURE_CUDA").is_none() {
        return;
    }
    for var in ["CUVS_LIB_DIR", "CUDART_LIB_DIR"] {
        if let Some(dir) = std::env::var_os(var) {
            println!("cargo::rustc-link-search=native={}", dir.to_string_lossy());
        }
    }
    println!("cargo::rustc-link-lib=dylib=cuvs_c");
    println!("cargo::rustc-link-lib=dylib=cudart");
    // libcuvs_c.so needs libcuvs.so, RMM, NCCL, cuBLAS and more, found by the loader when the
    // program runs (LD_LIBRARY_PATH); the link of this crate's tests and examples does not
    // look for them.
    println!("cargo::rustc-link-arg=-Wl,--allow-shlib-undefined");
}
