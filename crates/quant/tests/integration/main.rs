//! Integration tests of `quant`: one binary, a module per concern.

mod binary;
mod codec;
mod common;
mod errors;
mod kernels;
mod kmeans;
mod product;
mod rabitq;
mod scalar;
