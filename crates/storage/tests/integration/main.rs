mod archive;
mod wal;
