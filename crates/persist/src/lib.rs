//! The pieces every file format of the workspace is made of, so that each format only lays
//! out its own fields:
//!
//! - [`ChecksumWriter`]: a writer that keeps the CRC-32 (IEEE) and the count of what passes
//!   through it, and ends a file with that CRC as a 4-byte little-endian trailer;
//! - [`check_frame`]: the reader's side of the common frame (an 8-byte magic, a `u32` format
//!   version, fields, the CRC-32 trailer of everything before it), checked before a single
//!   field is trusted;
//! - [`Cursor`]: little-endian fields read from a checked byte slice, every count bounded
//!   by what is left, so a damaged length cannot allocate or read past the end;
//! - [`replace_file`] and [`sync_dir`]: a file replaced atomically (temporary file, fsync,
//!   rename, directory fsync), so a crash leaves the old file or the new one, never a mix;
//! - [`sync_file`], [`sync_file_data`], [`sync_dir`] and [`create_dir_durable`]: every fsync
//!   of the workspace goes through these, so that the power-loss simulation of the tests
//!   ([`power_loss`], cargo feature `power-loss`) sees each one.
//!
//! ```
//! use persist::{check_frame, ChecksumWriter, Cursor};
//! use std::io::Write;
//!
//! const MAGIC: [u8; 8] = *b"EXAMPLE\0";
//! let mut out = ChecksumWriter::new(Vec::new());
//! out.write_all(&MAGIC).unwrap();
//! out.u32(1).unwrap(); // format version
//! out.f32s(&[0.5, 2.0]).unwrap();
//! let bytes = out.finish().unwrap();
//!
//! let body = check_frame(&bytes, &MAGIC, 1).unwrap();
//! let mut r = Cursor::new(body, 12);
//! assert_eq!(r.f32s(2), Some(vec![0.5, 2.0]));
//! assert!(check_frame(&bytes[..bytes.len() - 1], &MAGIC, 1).is_err());
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

#[cfg(all(feature = "power-loss", target_os = "linux"))]
pub mod power_loss;

/// The CRC-32 (IEEE) of `bytes`, the checksum of every format here.
pub fn crc32(bytes: &[u8]) -> u32 {
    crc32fast::hash(bytes)
}

/// A writer that keeps the CRC-32 of, and counts, everything written through it.
pub struct ChecksumWriter<W: Write> {
    inner: W,
    crc: crc32fast::Hasher,
    written: u64,
}

impl<W: Write> ChecksumWriter<W> {
    /// Starts a checksum over what is written to `inner` from now on.
    pub fn new(inner: W) -> ChecksumWriter<W> {
        ChecksumWriter {
            inner,
            crc: crc32fast::Hasher::new(),
            written: 0,
        }
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// A little-endian `u32`.
    pub fn u32(&mut self, v: u32) -> std::io::Result<()> {
        self.write_all(&v.to_le_bytes())
    }

    /// A little-endian `u64`.
    pub fn u64(&mut self, v: u64) -> std::io::Result<()> {
        self.write_all(&v.to_le_bytes())
    }

    /// A little-endian `f32`.
    pub fn f32(&mut self, v: f32) -> std::io::Result<()> {
        self.write_all(&v.to_le_bytes())
    }

    /// Little-endian `f32`s, without a count.
    pub fn f32s(&mut self, v: &[f32]) -> std::io::Result<()> {
        let mut bytes = Vec::with_capacity(v.len().min(4096) * 4);
        for chunk in v.chunks(4096) {
            bytes.clear();
            bytes.extend(chunk.iter().flat_map(|x| x.to_le_bytes()));
            self.write_all(&bytes)?;
        }
        Ok(())
    }

    /// A `u64` count, then the `u32`s.
    pub fn counted_u32s(&mut self, v: impl Iterator<Item = u32>) -> std::io::Result<()> {
        let bytes: Vec<u8> = v.flat_map(|x| x.to_le_bytes()).collect();
        self.u64(bytes.len() as u64 / 4)?;
        self.write_all(&bytes)
    }

    /// The CRC-32 of everything written so far.
    pub fn crc(&self) -> u32 {
        self.crc.clone().finalize()
    }

    /// Ends the file: writes the CRC-32 of everything before it (little-endian, not itself
    /// checksummed) and returns the inner writer, flushed.
    pub fn finish(self) -> std::io::Result<W> {
        let crc = self.crc();
        let mut inner = self.inner;
        inner.write_all(&crc.to_le_bytes())?;
        inner.flush()?;
        Ok(inner)
    }
}

impl<W: Write> Write for ChecksumWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.crc.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Why a framed file was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// Shorter than a magic, a version and a checksum, or not this format's magic.
    BadMagic,
    /// Another format version.
    Version {
        /// What the file says.
        found: u32,
        /// The oldest version this build reads.
        oldest: u32,
        /// The version this build writes (the newest it reads).
        expected: u32,
    },
    /// The trailing CRC-32 does not match the contents.
    Checksum {
        /// The trailer.
        stored: u32,
        /// Computed over the contents.
        computed: u32,
        /// Bytes the checksum covers, from offset 0: the damage lies somewhere in them.
        covered: usize,
    },
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::BadMagic => f.write_str("bad magic"),
            FrameError::Version {
                found,
                oldest,
                expected,
            } if oldest < expected => {
                write!(
                    f,
                    "format version {found}, this build reads {oldest} to {expected}"
                )
            }
            FrameError::Version {
                found, expected, ..
            } => {
                write!(f, "format version {found}, this build reads {expected}")
            }
            FrameError::Checksum {
                stored,
                computed,
                covered,
            } => write!(
                f,
                "checksum {stored:#010x} does not match the contents ({computed:#010x}): \
                 damage somewhere in bytes 0..{covered}"
            ),
        }
    }
}

impl std::error::Error for FrameError {}

/// Checks the common frame of `bytes`: `magic` at 0, format `version` (`u32`) at 8, and a
/// CRC-32 trailer over everything before it. Returns the contents without the trailer (the
/// fields start at offset 12).
pub fn check_frame<'a>(
    bytes: &'a [u8],
    magic: &[u8; 8],
    version: u32,
) -> Result<&'a [u8], FrameError> {
    check_frame_versions(bytes, magic, version..=version).map(|(body, _)| body)
}

/// [`check_frame`] for a format whose reader also takes older versions: any version in
/// `versions`. Returns the contents and the version found.
pub fn check_frame_versions<'a>(
    bytes: &'a [u8],
    magic: &[u8; 8],
    versions: std::ops::RangeInclusive<u32>,
) -> Result<(&'a [u8], u32), FrameError> {
    if bytes.len() < magic.len() + 8 || bytes[..8] != magic[..] {
        return Err(FrameError::BadMagic);
    }
    let found = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
    if !versions.contains(&found) {
        return Err(FrameError::Version {
            found,
            oldest: *versions.start(),
            expected: *versions.end(),
        });
    }
    let (body, trailer) = bytes.split_at(bytes.len() - 4);
    let stored = u32::from_le_bytes(trailer.try_into().expect("4 bytes"));
    let computed = crc32(body);
    if stored != computed {
        return Err(FrameError::Checksum {
            stored,
            computed,
            covered: body.len(),
        });
    }
    Ok((body, found))
}

/// Little-endian fields read from a byte slice; `None` when the slice ends first.
pub struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    /// Reads `buf` from offset `pos`.
    pub fn new(buf: &'a [u8], pos: usize) -> Cursor<'a> {
        Cursor { buf, pos }
    }

    /// The offset of the next field.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Moves to offset `pos` (reads past the end then give `None`).
    pub fn seek(&mut self, pos: usize) {
        self.pos = pos;
    }

    /// Bytes left.
    pub fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    /// The next `n` bytes.
    pub fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.buf.get(self.pos..self.pos.checked_add(n)?)?;
        self.pos += n;
        Some(s)
    }

    /// A byte.
    pub fn u8(&mut self) -> Option<u8> {
        Some(self.bytes(1)?[0])
    }

    /// A `u16`.
    pub fn u16(&mut self) -> Option<u16> {
        Some(u16::from_le_bytes(self.bytes(2)?.try_into().ok()?))
    }

    /// A `u32`.
    pub fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.bytes(4)?.try_into().ok()?))
    }

    /// A `u64`.
    pub fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.bytes(8)?.try_into().ok()?))
    }

    /// A `u128`.
    pub fn u128(&mut self) -> Option<u128> {
        Some(u128::from_le_bytes(self.bytes(16)?.try_into().ok()?))
    }

    /// An `f32`.
    pub fn f32(&mut self) -> Option<f32> {
        Some(f32::from_le_bytes(self.bytes(4)?.try_into().ok()?))
    }

    /// A `u64` count of items of `item` bytes each, refused when they would not fit in
    /// what is left.
    pub fn len(&mut self, item: usize) -> Option<usize> {
        let n = usize::try_from(self.u64()?).ok()?;
        (n.checked_mul(item)? <= self.remaining()).then_some(n)
    }

    /// `n` `f32`s.
    pub fn f32s(&mut self, n: usize) -> Option<Vec<f32>> {
        let b = self.bytes(n.checked_mul(4)?)?;
        Some(
            b.chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
                .collect(),
        )
    }

    /// `n` `u32`s.
    pub fn u32s(&mut self, n: usize) -> Option<Vec<u32>> {
        let b = self.bytes(n.checked_mul(4)?)?;
        Some(
            b.chunks_exact(4)
                .map(|c| u32::from_le_bytes(c.try_into().expect("4 bytes")))
                .collect(),
        )
    }
}

/// Makes file creations, renames and deletions in `dir` durable. Directories can be opened
/// for fsync on Unix, where a rename is not durable without it; elsewhere this does nothing.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    if cfg!(unix) {
        let handle = File::open(dir)?;
        fsync_observed(SyncTarget::Dir(dir), || handle.sync_all())?;
    }
    Ok(())
}

/// Makes `file`'s bytes and metadata durable (`fsync`).
pub fn sync_file(file: &File) -> std::io::Result<()> {
    fsync_observed(SyncTarget::File(file), || file.sync_all())
}

/// Makes `file`'s bytes durable, and its metadata as far as reading them back needs
/// (`fdatasync`: the length, not the times).
pub fn sync_file_data(file: &File) -> std::io::Result<()> {
    fsync_observed(SyncTarget::File(file), || file.sync_data())
}

/// What an fsync is called on, for the power-loss simulation.
#[cfg_attr(
    not(all(feature = "power-loss", target_os = "linux")),
    allow(dead_code)
)]
enum SyncTarget<'a> {
    File(&'a File),
    Dir(&'a Path),
}

/// Runs `fsync`; with the `power-loss` feature, also records what it made durable.
fn fsync_observed(
    target: SyncTarget<'_>,
    fsync: impl FnOnce() -> std::io::Result<()>,
) -> std::io::Result<()> {
    #[cfg(all(feature = "power-loss", target_os = "linux"))]
    {
        power_loss::observe(target, fsync)
    }
    #[cfg(not(all(feature = "power-loss", target_os = "linux")))]
    {
        let _ = target;
        fsync()
    }
}

/// Creates `dir` and its missing parents, each made durable in its parent directory: a
/// directory whose entry was never fsynced can vanish, with everything in it, at a power cut.
pub fn create_dir_durable(dir: &Path) -> std::io::Result<()> {
    let mut missing = Vec::new();
    let mut at = dir;
    while !at.exists() {
        missing.push(at);
        match at.parent() {
            Some(parent) => at = parent,
            None => break,
        }
    }
    std::fs::create_dir_all(dir)?;
    for made in missing.iter().rev() {
        let parent = made
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        sync_dir(parent)?;
    }
    Ok(())
}

/// Replaces `path` with what `write` writes: into `<path>.tmp` beside it, flushed and
/// fsynced, renamed over `path`, then the directory fsynced. A crash at any point leaves
/// either the old file or the new one. On an error the temporary file is removed.
pub fn replace_file(
    path: &Path,
    write: impl FnOnce(&mut BufWriter<File>) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let result = (|| {
        let mut out = BufWriter::new(File::create(&tmp)?);
        write(&mut out)?;
        let file = out.into_inner().map_err(|e| e.into_error())?;
        sync_file(&file)?;
        drop(file);
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    sync_dir(
        path.parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new(".")),
    )
}
