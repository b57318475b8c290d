//! TODO(skeleton)
fn main() {}
