//! Integration tests for the `dataset` crate: one test binary, one module
//! per concern. Every test writes its files under the system temp dir with
//! unique names and removes them when done.

mod common;
mod errors;
mod known_bytes;
mod real_dataset;
mod round_trip;
mod streaming;
