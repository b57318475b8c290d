//! The binary file format of every trained model and code array.
//!
//! Layout (all integers and floats little-endian):
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | magic `b"VRQUANT\0"` |
//! | 8 | 4 | format version (`u32`, currently [`FORMAT_VERSION`]) |
//! | 12 | 4 | kind tag (`u32`: which model or array follows, see [`Kind`]) |
//! | 16 | 8 | payload length in bytes (`u64`) |
//! | 24 | n | payload, laid out by the kind (documented on each type's `write_to`) |
//! | 24 + n | 4 | CRC-32 (IEEE) of bytes `0 .. 24 + n` |
//!
//! A reader checks the magic, the kind, the version, the length against what is left, and the
//! checksum before it decodes a single field, so a damaged or foreign file is refused whole.

use crate::{Error, Result};
use std::io::{Read, Write};

/// The magic bytes that open every file.
pub const MAGIC: [u8; 8] = *b"VRQUANT\0";
/// The format version this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// The largest payload a reader accepts (4 GiB), so a damaged length cannot exhaust memory.
pub const MAX_PAYLOAD: u64 = 1 << 32;

const HEADER_LEN: usize = 24;

/// What a file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A [`crate::ScalarQuantizer`].
    ScalarQuantizer = 1,
    /// A [`crate::ScalarCodes`] array.
    ScalarCodes = 2,
    /// A [`crate::ProductQuantizer`].
    ProductQuantizer = 3,
    /// A [`crate::PqCodes`] array.
    PqCodes = 4,
    /// A [`crate::BinaryQuantizer`].
    BinaryQuantizer = 5,
    /// A [`crate::BinaryCodes`] array.
    BinaryCodes = 6,
    /// A [`crate::KMeans`] model.
    KMeans = 7,
    /// A [`crate::RabitqQuantizer`].
    RabitqQuantizer = 8,
    /// A [`crate::RabitqCodes`] array.
    RabitqCodes = 9,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::ScalarQuantizer => "scalar quantizer",
            Kind::ScalarCodes => "scalar code array",
            Kind::ProductQuantizer => "product quantizer",
            Kind::PqCodes => "product code array",
            Kind::BinaryQuantizer => "binary quantizer",
            Kind::BinaryCodes => "binary code array",
            Kind::KMeans => "k-means model",
            Kind::RabitqQuantizer => "RaBitQ quantizer",
            Kind::RabitqCodes => "RaBitQ code array",
        }
    }
}

/// Builds a payload, then frames it with the header and checksum.
#[derive(Default)]
pub(crate) struct Encoder {
    buf: Vec<u8>,
}

impl Encoder {
    pub fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub fn f32s(&mut self, v: &[f32]) {
        self.u64(v.len() as u64);
        self.buf.reserve(v.len() * 4);
        v.iter()
            .for_each(|x| self.buf.extend_from_slice(&x.to_le_bytes()));
    }
    pub fn u64s(&mut self, v: &[u64]) {
        self.u64(v.len() as u64);
        self.buf.reserve(v.len() * 8);
        v.iter()
            .for_each(|x| self.buf.extend_from_slice(&x.to_le_bytes()));
    }
    pub fn bytes(&mut self, v: &[u8]) {
        self.u64(v.len() as u64);
        self.buf.extend_from_slice(v);
    }

    /// Writes header, payload and checksum.
    pub fn finish(self, kind: Kind, out: &mut impl Write) -> Result<()> {
        let mut head = [0u8; HEADER_LEN];
        head[..8].copy_from_slice(&MAGIC);
        head[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        head[12..16].copy_from_slice(&(kind as u32).to_le_bytes());
        head[16..24].copy_from_slice(&(self.buf.len() as u64).to_le_bytes());
        let mut out = persist::ChecksumWriter::new(out);
        out.write_all(&head)?;
        out.write_all(&self.buf)?;
        out.finish()?;
        Ok(())
    }
}

/// Reads a framed payload after checking everything about the frame.
pub(crate) struct Decoder {
    buf: Vec<u8>,
    pos: usize,
    kind: Kind,
}

impl Decoder {
    /// Reads and checks one frame of `kind` from `input`.
    pub fn open(kind: Kind, input: &mut impl Read) -> Result<Decoder> {
        let name = kind.name();
        let mut head = [0u8; HEADER_LEN];
        read_exact_or(
            input,
            &mut head,
            name,
            "the file is shorter than the header",
        )?;
        if head[..8] != MAGIC {
            return Err(Error::Format {
                expected: name,
                reason: "bad magic bytes".into(),
            });
        }
        let version = u32::from_le_bytes(head[8..12].try_into().expect("4 bytes"));
        let found_kind = u32::from_le_bytes(head[12..16].try_into().expect("4 bytes"));
        let len = u64::from_le_bytes(head[16..24].try_into().expect("8 bytes"));
        if version != FORMAT_VERSION {
            return Err(Error::Version {
                kind: name,
                found: version,
                supported: FORMAT_VERSION,
            });
        }
        if found_kind != kind as u32 {
            return Err(Error::Format {
                expected: name,
                reason: format!("the file holds kind {found_kind}, not {}", kind as u32),
            });
        }
        if len > MAX_PAYLOAD {
            return Err(Error::Format {
                expected: name,
                reason: format!("payload length {len}"),
            });
        }
        // Read through `take` so a damaged length cannot make us allocate more than the file.
        let mut buf = Vec::new();
        input.take(len).read_to_end(&mut buf)?;
        if buf.len() as u64 != len {
            return Err(Error::Format {
                expected: name,
                reason: format!("truncated: payload of {len} bytes, {} present", buf.len()),
            });
        }
        let mut tail = [0u8; 4];
        read_exact_or(input, &mut tail, name, "truncated before the checksum")?;
        let found = u32::from_le_bytes(tail);
        let mut crc = crc32fast::Hasher::new();
        crc.update(&head);
        crc.update(&buf);
        let computed = crc.finalize();
        if found != computed {
            return Err(Error::Checksum {
                kind: name,
                found,
                computed,
            });
        }
        Ok(Decoder { buf, pos: 0, kind })
    }

    fn take(&mut self, n: usize) -> Result<&[u8]> {
        if self.buf.len() - self.pos < n {
            return Err(self.malformed("payload ends early"));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    pub fn malformed(&self, reason: &str) -> Error {
        Error::Format {
            expected: self.kind.name(),
            reason: reason.to_string(),
        }
    }

    pub fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }
    pub fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }
    pub fn usize(&mut self) -> Result<usize> {
        let v = self.u64()?;
        usize::try_from(v).map_err(|_| self.malformed("count does not fit in memory"))
    }
    /// A length-prefixed element count, checked against the bytes left before allocating.
    fn count(&mut self, elem: usize) -> Result<usize> {
        let n = self.usize()?;
        if n.checked_mul(elem)
            .is_none_or(|b| b > self.buf.len() - self.pos)
        {
            return Err(self.malformed("array longer than the payload"));
        }
        Ok(n)
    }
    pub fn f32s(&mut self) -> Result<Vec<f32>> {
        let n = self.count(4)?;
        Ok(self
            .take(n * 4)?
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
            .collect())
    }
    pub fn u64s(&mut self) -> Result<Vec<u64>> {
        let n = self.count(8)?;
        Ok(self
            .take(n * 8)?
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")))
            .collect())
    }
    pub fn bytes(&mut self) -> Result<Vec<u8>> {
        let n = self.count(1)?;
        Ok(self.take(n)?.to_vec())
    }

    /// Fails unless the whole payload was consumed: trailing bytes mean a layout we don't know.
    pub fn finish(self) -> Result<()> {
        if self.pos != self.buf.len() {
            return Err(self.malformed("trailing bytes after the last field"));
        }
        Ok(())
    }
}

fn read_exact_or(
    input: &mut impl Read,
    buf: &mut [u8],
    kind: &'static str,
    why: &str,
) -> Result<()> {
    input.read_exact(buf).map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => Error::Format {
            expected: kind,
            reason: why.into(),
        },
        _ => Error::Io(e),
    })
}

/// Implements `save`/`load` to a path and `write_to`/`read_from` a stream for a type that
/// encodes and decodes its payload.
macro_rules! impl_persist {
    ($ty:ty, $kind:expr) => {
        impl $ty {
            /// Writes the framed, checksummed form to `out` (layout in [`crate::codec`]).
            pub fn write_to(&self, out: &mut impl std::io::Write) -> $crate::Result<()> {
                let mut enc = $crate::codec::Encoder::default();
                self.encode_payload(&mut enc);
                enc.finish($kind, out)
            }

            /// Reads what [`Self::write_to`] wrote, refusing a damaged, foreign or other-version
            /// file with an error.
            pub fn read_from(input: &mut impl std::io::Read) -> $crate::Result<Self> {
                let mut dec = $crate::codec::Decoder::open($kind, input)?;
                let value = Self::decode_payload(&mut dec)?;
                dec.finish()?;
                Ok(value)
            }

            /// Saves to a file, replaced atomically (a temporary file beside it, synced,
            /// renamed over it, the directory synced): a crash leaves the old file or the new.
            pub fn save(&self, path: impl AsRef<std::path::Path>) -> $crate::Result<()> {
                persist::replace_file(path.as_ref(), |out| {
                    self.write_to(out).map_err(std::io::Error::other)
                })?;
                Ok(())
            }

            /// Loads a file written by [`Self::save`].
            pub fn load(path: impl AsRef<std::path::Path>) -> $crate::Result<Self> {
                let file = std::fs::File::open(path)?;
                Self::read_from(&mut std::io::BufReader::new(file))
            }
        }
    };
}
pub(crate) use impl_persist;
