//! Integration tests of `index-hnsw`: one binary, a module per concern.

mod common;
mod concurrency;
mod delete;
mod errors;
mod filter;
mod no_graph;
mod persist;
mod quantized_scan;
mod rabitq;
mod reachability;
mod recall;
