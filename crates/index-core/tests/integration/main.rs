//! Integration tests of `index-core`: one binary, a module per concern.

mod filter;
mod flat;
mod ids;
mod scored_results;
