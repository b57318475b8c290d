mod archive;
mod collection;
mod filter_cache;
mod fixtures;
mod power_loss;
mod sparse;
mod vector_names;
mod wal;
