//! Integration tests of `index-ivf`: one binary, a module per concern.

mod common;
mod errors;
mod persist;
mod rabitq;
mod recall;
mod writes;
