//! Integration tests of `gpu-cagra`'s CPU path: one binary, a module per concern.

mod common;
mod errors;
mod export;
mod filter;
mod graph;
mod persist;
mod recall;
