mod archive;
mod collection;
mod wal;
