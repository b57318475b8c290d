//! Integration tests of the `cache` crate, one module per concern.

mod config;
mod counting;
mod disabled;
mod epochs;
mod eviction;
mod expiry;
mod keys;
