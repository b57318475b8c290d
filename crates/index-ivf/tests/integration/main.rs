//! Integration tests of `index-ivf`: one binary, a module per concern.

mod common;
mod errors;
mod persist;
mod recall;
mod writes;
