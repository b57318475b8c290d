//! Integration tests of the `metrics` crate, one module per concern.

mod exposition;

mod cardinality;
mod config;
mod counters;
mod forget;
mod rendering;
