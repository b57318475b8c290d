//! Distance kernels with runtime CPU dispatch.
//!
//! Every kernel has a scalar reference in [`scalar`] and, where it pays, one implementation per
//! instruction set: `x86_avx2` (AVX2 + FMA + F16C + POPCNT), `x86_avx512` (AVX-512 F/BW/VL/DQ
//! with VNNI and VPOPCNTDQ: Ice Lake, Sapphire Rapids, Zen 4 and later) and `aarch64_neon`.
//!
//! The instruction set is chosen once per process ([`kernels`]) and the choice is a table of
//! plain function pointers ([`Kernels`]): hot loops fetch the table once and call through it,
//! so no call pays for feature detection or a branch on the CPU. The environment variable
//! `VR_MAX_ISA` (`scalar`, `avx2`, `avx512`, `neon`) caps the choice, so that tests and
//! benchmarks reach every path on one machine; [`Kernels::for_isa`] builds any table the CPU
//! can run.
//!
//! Conventions: every kernel takes slices of equal length (checked: a mismatch panics, because
//! it is a programming error and the SIMD code must never read past a slice); sums are
//! accumulated in `f32` (integers in `i32`/`u32`/`u64`); the order of summation differs between
//! paths, so results agree to rounding, not bit for bit.

use half::f16;
use std::sync::OnceLock;

pub mod scalar;

#[cfg(target_arch = "aarch64")]
mod aarch64_neon;
#[cfg(target_arch = "x86_64")]
mod x86_avx2;
#[cfg(target_arch = "x86_64")]
mod x86_avx512;

/// Number of centroids per sub-space that [`Kernels::pq_adc`] tables hold (8-bit codes).
pub const PQ_KSUB: usize = 256;

/// Columns of a panel for [`Kernels::dot_panel16`]: 16 vectors stored transposed, so one
/// AVX-512 register (two AVX2 registers) holds one dimension of all of them.
pub const PANEL_WIDTH: usize = 16;

/// Entries of a 4-bit lookup table, and centroids per sub-space of 4-bit product codes.
pub const PQ4_KSUB: usize = 16;

/// Vectors per block of the 4-bit "fast scan" layout that [`Kernels::pq4_block`] reads.
pub const PQ4_BLOCK: usize = 32;

/// The signature of [`Kernels::min_panel16`].
pub(crate) type MinPanelFn = fn(&[f32], &[f32], f32, &[f32], u32, &mut [f32], &mut [u32]);

/// An instruction-set level that a kernel table is built for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Isa {
    /// Portable Rust, no SIMD intrinsics: the reference every other path is tested against.
    Scalar,
    /// AArch64 Advanced SIMD.
    Neon,
    /// x86-64 AVX2 with FMA, F16C and POPCNT (Haswell, Zen 1 and later).
    Avx2,
    /// x86-64 AVX-512 F, BW, VL, DQ, VNNI and VPOPCNTDQ (Ice Lake, Zen 4 and later).
    Avx512,
}

impl Isa {
    /// Every level, from the most capable down.
    pub const ALL: [Isa; 4] = [Isa::Avx512, Isa::Avx2, Isa::Neon, Isa::Scalar];

    /// The name used by `VR_MAX_ISA` and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Neon => "neon",
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512",
        }
    }

    /// Parses a `VR_MAX_ISA` value.
    pub fn from_name(name: &str) -> Option<Isa> {
        Isa::ALL
            .into_iter()
            .find(|isa| isa.name().eq_ignore_ascii_case(name.trim()))
    }

    /// Whether this CPU can run the level.
    pub fn is_supported(self) -> bool {
        match self {
            Isa::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => {
                std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
                    && std::arch::is_x86_feature_detected!("f16c")
                    && std::arch::is_x86_feature_detected!("popcnt")
            }
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => {
                Isa::Avx2.is_supported()
                    && std::arch::is_x86_feature_detected!("avx512f")
                    && std::arch::is_x86_feature_detected!("avx512bw")
                    && std::arch::is_x86_feature_detected!("avx512vl")
                    && std::arch::is_x86_feature_detected!("avx512dq")
                    && std::arch::is_x86_feature_detected!("avx512vnni")
                    && std::arch::is_x86_feature_detected!("avx512vpopcntdq")
            }
            #[cfg(target_arch = "aarch64")]
            Isa::Neon => std::arch::is_aarch64_feature_detected!("neon"),
            #[allow(unreachable_patterns)]
            _ => false,
        }
    }

    /// Every level this CPU can run, most capable first, ignoring `VR_MAX_ISA`.
    pub fn supported() -> Vec<Isa> {
        Isa::ALL
            .into_iter()
            .filter(|isa| isa.is_supported())
            .collect()
    }

    /// The most capable level this CPU runs, capped by `VR_MAX_ISA` when it is set.
    ///
    /// An unknown `VR_MAX_ISA` value is ignored (with no cap) rather than failing, because the
    /// variable is a testing aid and a typo must not take a server down.
    pub fn best() -> Isa {
        let cap = std::env::var("VR_MAX_ISA")
            .ok()
            .and_then(|v| Isa::from_name(&v));
        Isa::ALL
            .into_iter()
            .filter(|isa| isa.is_supported())
            .find(|isa| match cap {
                // `Neon` sorts between scalar and the x86 levels; a cap only constrains levels
                // of the same architecture, plus `scalar` caps everything.
                Some(Isa::Scalar) => *isa == Isa::Scalar,
                Some(c) => *isa <= c,
                None => true,
            })
            .unwrap_or(Isa::Scalar)
    }
}

/// A table of kernels for one instruction-set level.
///
/// Obtain the process-wide table with [`kernels`], or one for a given level with
/// [`Kernels::for_isa`]. Each method checks slice lengths and calls through a function pointer.
#[derive(Clone, Copy)]
pub struct Kernels {
    isa: Isa,
    dot_f32: fn(&[f32], &[f32]) -> f32,
    l2sq_f32: fn(&[f32], &[f32]) -> f32,
    l1_f32: fn(&[f32], &[f32]) -> f32,
    dot_f32_f16: fn(&[f32], &[f16]) -> f32,
    l2sq_f32_f16: fn(&[f32], &[f16]) -> f32,
    l1_f32_f16: fn(&[f32], &[f16]) -> f32,
    dot_f16: fn(&[f16], &[f16]) -> f32,
    l2sq_f16: fn(&[f16], &[f16]) -> f32,
    l1_f16: fn(&[f16], &[f16]) -> f32,
    dot_f32_u8: fn(&[f32], &[u8]) -> f32,
    l1_f32_u8_affine: fn(&[f32], &[f32], &[u8]) -> f32,
    dot_i8_u8: fn(&[i8], &[u8]) -> i32,
    sad_u8: fn(&[u8], &[u8]) -> u32,
    hamming: fn(&[u64], &[u64]) -> u32,
    masked_sum: fn(&[f32], &[u64]) -> f32,
    pq_adc: fn(&[f32], &[u8]) -> f32,
    dot_panel16: fn(&[f32], &[f32], &mut [f32]),
    min_panel16: MinPanelFn,
    pq4_block: fn(&[u8], &[u8], u16, &mut [u16]) -> u32,
    bitplane_dot: fn(&[u8], &[u64]) -> u32,
}

impl std::fmt::Debug for Kernels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kernels")
            .field("isa", &self.isa)
            .finish_non_exhaustive()
    }
}

static KERNELS: OnceLock<Kernels> = OnceLock::new();

/// The process-wide kernel table, for the best level this CPU runs (see [`Isa::best`]).
///
/// Chosen on the first call and cached; later calls are one atomic load. Hot loops should keep
/// the returned reference rather than call this per distance.
#[inline]
pub fn kernels() -> &'static Kernels {
    KERNELS
        .get_or_init(|| Kernels::for_isa(Isa::best()).expect("Isa::best returns a supported level"))
}

impl Kernels {
    /// The kernel table for `isa`, or `None` when this CPU cannot run it.
    pub fn for_isa(isa: Isa) -> Option<Kernels> {
        if !isa.is_supported() {
            return None;
        }
        let scalar = Kernels {
            isa: Isa::Scalar,
            dot_f32: scalar::dot_f32,
            l2sq_f32: scalar::l2sq_f32,
            l1_f32: scalar::l1_f32,
            dot_f32_f16: scalar::dot_f32_f16,
            l2sq_f32_f16: scalar::l2sq_f32_f16,
            l1_f32_f16: scalar::l1_f32_f16,
            dot_f16: scalar::dot_f16,
            l2sq_f16: scalar::l2sq_f16,
            l1_f16: scalar::l1_f16,
            dot_f32_u8: scalar::dot_f32_u8,
            l1_f32_u8_affine: scalar::l1_f32_u8_affine,
            dot_i8_u8: scalar::dot_i8_u8,
            sad_u8: scalar::sad_u8,
            hamming: scalar::hamming,
            masked_sum: scalar::masked_sum,
            pq_adc: scalar::pq_adc,
            dot_panel16: scalar::dot_panel16,
            min_panel16: scalar::min_panel16,
            pq4_block: scalar::pq4_block,
            bitplane_dot: scalar::bitplane_dot,
        };
        Some(match isa {
            Isa::Scalar => scalar,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => x86_avx2::table(),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => x86_avx512::table(),
            #[cfg(target_arch = "aarch64")]
            Isa::Neon => aarch64_neon::table(scalar),
            #[allow(unreachable_patterns)]
            _ => return None,
        })
    }

    /// The level this table was built for.
    pub fn isa(&self) -> Isa {
        self.isa
    }

    /// Inner product `Σ aᵢ·bᵢ`.
    #[inline]
    pub fn dot_f32(&self, a: &[f32], b: &[f32]) -> f32 {
        (self.dot_f32)(a, b)
    }

    /// Squared Euclidean distance `Σ (aᵢ − bᵢ)²`.
    #[inline]
    pub fn l2sq_f32(&self, a: &[f32], b: &[f32]) -> f32 {
        (self.l2sq_f32)(a, b)
    }

    /// Manhattan distance `Σ |aᵢ − bᵢ|`.
    #[inline]
    pub fn l1_f32(&self, a: &[f32], b: &[f32]) -> f32 {
        (self.l1_f32)(a, b)
    }

    /// Inner product of an `f32` query and an `f16` stored vector.
    #[inline]
    pub fn dot_f32_f16(&self, a: &[f32], b: &[f16]) -> f32 {
        (self.dot_f32_f16)(a, b)
    }

    /// Squared Euclidean distance of an `f32` query and an `f16` stored vector.
    #[inline]
    pub fn l2sq_f32_f16(&self, a: &[f32], b: &[f16]) -> f32 {
        (self.l2sq_f32_f16)(a, b)
    }

    /// Manhattan distance of an `f32` query and an `f16` stored vector.
    #[inline]
    pub fn l1_f32_f16(&self, a: &[f32], b: &[f16]) -> f32 {
        (self.l1_f32_f16)(a, b)
    }

    /// Inner product of two `f16` vectors (accumulated in `f32`).
    #[inline]
    pub fn dot_f16(&self, a: &[f16], b: &[f16]) -> f32 {
        (self.dot_f16)(a, b)
    }

    /// Squared Euclidean distance of two `f16` vectors (accumulated in `f32`).
    #[inline]
    pub fn l2sq_f16(&self, a: &[f16], b: &[f16]) -> f32 {
        (self.l2sq_f16)(a, b)
    }

    /// Manhattan distance of two `f16` vectors (accumulated in `f32`).
    #[inline]
    pub fn l1_f16(&self, a: &[f16], b: &[f16]) -> f32 {
        (self.l1_f16)(a, b)
    }

    /// `Σ aᵢ·cᵢ` of an `f32` vector and unsigned 8-bit codes: the core of asymmetric
    /// scalar-quantized distance (the query is pre-multiplied by the code scale).
    #[inline]
    pub fn dot_f32_u8(&self, a: &[f32], codes: &[u8]) -> f32 {
        (self.dot_f32_u8)(a, codes)
    }

    /// `Σ |aᵢ − sᵢ·cᵢ|`: Manhattan distance of `a` (the query minus the code offset) to codes
    /// scaled by `s`.
    #[inline]
    pub fn l1_f32_u8_affine(&self, a: &[f32], scale: &[f32], codes: &[u8]) -> f32 {
        (self.l1_f32_u8_affine)(a, scale, codes)
    }

    /// Exact integer `Σ qᵢ·cᵢ` of signed 8-bit query codes and unsigned 8-bit stored codes.
    ///
    /// Exact (no saturation) for any length up to 65,536: each term is at most 128·255 in
    /// magnitude, and 65,536 of them stay inside `i32`.
    #[inline]
    pub fn dot_i8_u8(&self, query: &[i8], codes: &[u8]) -> i32 {
        (self.dot_i8_u8)(query, codes)
    }

    /// Sum of absolute differences of two unsigned 8-bit code vectors.
    #[inline]
    pub fn sad_u8(&self, a: &[u8], b: &[u8]) -> u32 {
        (self.sad_u8)(a, b)
    }

    /// Hamming distance: the number of differing bits of two bit vectors.
    #[inline]
    pub fn hamming(&self, a: &[u64], b: &[u64]) -> u32 {
        (self.hamming)(a, b)
    }

    /// `Σⱼ 2ʲ · popcount(code & planesⱼ)`: the inner product of a bit vector with a vector of
    /// small unsigned integers stored as bit planes (plane `j` holds bit `j` of every value,
    /// one plane after another). The core of RaBitQ's estimator, where `code` is a vector's
    /// 1-bit code and the planes are its few-bit query.
    ///
    /// `code` is bytes read as little-endian words (bit `d` in bit `d % 8` of byte `d / 8`,
    /// as codes are stored inside larger byte arrays, unaligned); `planes` must hold 1 to 8
    /// whole planes of `code.len() / 8` words (checked).
    #[inline]
    pub fn bitplane_dot(&self, code: &[u8], planes: &[u64]) -> u32 {
        (self.bitplane_dot)(code, planes)
    }

    /// `Σ wᵢ` over the dimensions `i` whose bit is set in `bits` (bit `i % 64` of word `i / 64`).
    ///
    /// `bits` must hold exactly `ceil(w.len() / 64)` words; bits past `w.len()` are ignored.
    #[inline]
    pub fn masked_sum(&self, weights: &[f32], bits: &[u64]) -> f32 {
        (self.masked_sum)(weights, bits)
    }

    /// Table-driven product-quantization distance: `Σₘ table[m·256 + codes[m]]`.
    ///
    /// `table` must hold exactly `codes.len() · 256` entries.
    #[inline]
    pub fn pq_adc(&self, table: &[f32], codes: &[u8]) -> f32 {
        (self.pq_adc)(table, codes)
    }
}

impl Kernels {
    /// Inner products of `rows` (whole vectors of dimension `d`, one after the other) with the
    /// 16 vectors of `panel`, stored transposed (`panel[j·16 + c]` is dimension `j` of vector
    /// `c`, so `panel.len() == 16·d`): `out[r·16 + c] = rows[r] · panel_c`.
    ///
    /// The blocked form of many dot products at once (as a matrix product would): every load of
    /// a panel row serves several query rows, so k-means assignment and the coarse search of an
    /// IVF index run at the speed of the multiply-adds rather than of the loads.
    ///
    /// Panics unless `panel.len()` is a non-zero multiple of 16, `rows.len()` a multiple of
    /// `d = panel.len() / 16`, and `out.len() == 16 · rows.len() / d`.
    #[inline]
    pub fn dot_panel16(&self, rows: &[f32], panel: &[f32], out: &mut [f32]) {
        check_panel(rows.len(), panel.len(), out.len());
        (self.dot_panel16)(rows, panel, out)
    }

    /// [`Kernels::dot_panel16`] fused with a running minimum, for nearest-centroid search:
    /// for each row `r` and column `c`, `d = scale · (rows[r] · panel_c) + bias[c]`, and where
    /// `d < best[r·16 + c]` the minimum becomes `d` and `best_group[r·16 + c]` becomes `group`.
    ///
    /// With `scale = −2` and `bias` the centroids' squared norms, `d + ‖x‖²` is the squared L2
    /// distance; with `scale = −1` and a zero bias, the negated inner product. Padding columns
    /// get an infinite bias, so they never win. Keeping the minimum in registers saves
    /// writing every distance out and comparing it again in scalar code.
    ///
    /// Panics unless the shapes agree as for [`Kernels::dot_panel16`], `bias` holds 16 values
    /// and `best` and `best_group` 16 per row.
    #[inline]
    #[allow(clippy::too_many_arguments)]
    pub fn min_panel16(
        &self,
        rows: &[f32],
        panel: &[f32],
        scale: f32,
        bias: &[f32],
        group: u32,
        best: &mut [f32],
        best_group: &mut [u32],
    ) {
        check_panel(rows.len(), panel.len(), best.len());
        assert!(
            bias.len() == PANEL_WIDTH && best_group.len() == best.len(),
            "bias or best groups of the wrong size"
        );
        (self.min_panel16)(rows, panel, scale, bias, group, best, best_group)
    }

    /// Sums of 4-bit table lookups for one block of 32 codes in the "fast scan" layout (André,
    /// Kermarrec and Le Scouarnec, 2015; FAISS's `PQ4` fast scan), and which sums are below
    /// `threshold`.
    ///
    /// `lut` holds one 16-entry `u8` table per sub-space (`lut[m·16 + k]`), `codes` 16 bytes per
    /// sub-space: byte `j` of sub-space `m` has the code of vector `j` in its low nibble and of
    /// vector `j + 16` in its high nibble. The number of sub-spaces must be even (pad with a
    /// zero table). Writes `out[v] = Σₘ lut[m·16 + code(v, m)]` for the 32 vectors, summed in
    /// wrapping `u16` arithmetic (the caller scales its tables so the sums cannot overflow),
    /// and returns a mask whose bit `v` is set when `out[v] < threshold`.
    ///
    /// Panics unless `lut` and `codes` have the same length, a multiple of 32, and `out`
    /// holds 32 sums.
    #[inline]
    pub fn pq4_block(&self, lut: &[u8], codes: &[u8], threshold: u16, out: &mut [u16]) -> u32 {
        check_pq4(lut.len(), codes.len(), out.len());
        (self.pq4_block)(lut, codes, threshold, out)
    }
}

/// Panics unless the shapes of a [`Kernels::dot_panel16`] call agree.
#[inline(always)]
#[track_caller]
pub(crate) fn check_panel(rows: usize, panel: usize, out: usize) {
    assert!(
        panel > 0 && panel.is_multiple_of(PANEL_WIDTH),
        "panel of the wrong size"
    );
    let dim = panel / PANEL_WIDTH;
    assert!(
        rows.is_multiple_of(dim) && out == rows / dim * PANEL_WIDTH,
        "panel rows or output of the wrong size"
    );
}

/// Panics unless the shapes of a [`Kernels::pq4_block`] call agree.
#[inline(always)]
#[track_caller]
pub(crate) fn check_pq4(lut: usize, codes: usize, out: usize) {
    assert!(
        lut == codes && lut.is_multiple_of(2 * PQ4_KSUB) && out == PQ4_BLOCK,
        "4-bit table, codes or output of the wrong size"
    );
}

/// Asks the CPU to start loading the cache lines that hold the `len` bytes from `ptr` (at
/// most 8 lines), so that a graph walk can fetch the next vectors while it measures the
/// current one.
///
/// Every line the range touches is asked for, also when `ptr` is not at the start of a line
/// (a range of 200 bytes may span 5 lines, not 4).
///
/// Safe for any pointer: a prefetch is a hint that never faults, reads nothing the program can
/// observe and changes no memory. A no-op on targets without a prefetch hint.
#[inline(always)]
pub fn prefetch(ptr: *const u8, len: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        let into_line = ptr as usize & 63;
        let lines = if len == 0 {
            0
        } else {
            (into_line + len).div_ceil(64).min(8)
        };
        let first = ptr.wrapping_sub(into_line);
        for line in 0..lines {
            // SAFETY: `_mm_prefetch` never faults, even on an invalid address, and has no
            // effect on program semantics; `wrapping_add` computes the address without any
            // in-bounds requirement.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(first.wrapping_add(line * 64) as *const i8) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (ptr, len);
}

/// Panics unless the two lengths are equal: SIMD code relies on it to stay inside both slices.
#[inline(always)]
#[track_caller]
pub(crate) fn check_len(a: usize, b: usize) {
    assert_eq!(a, b, "kernel called on slices of different lengths");
}

/// Panics unless `bits` holds exactly the words a `dim`-bit vector needs.
#[inline(always)]
#[track_caller]
pub(crate) fn check_bits_len(dim: usize, words: usize) {
    assert_eq!(dim.div_ceil(64), words, "bit vector of the wrong length");
}

/// Panics unless `code_bytes` is whole words and `planes` 1 to 8 whole planes of that many
/// words; returns how many planes.
#[inline(always)]
#[track_caller]
pub(crate) fn check_planes(code_bytes: usize, planes: usize) -> usize {
    let words = code_bytes / 8;
    assert!(
        words > 0
            && code_bytes.is_multiple_of(8)
            && planes.is_multiple_of(words)
            && (1..=8).contains(&(planes / words)),
        "bit planes of the wrong length"
    );
    planes / words
}

/// Panics unless `table` holds a 256-entry row per code.
#[inline(always)]
#[track_caller]
pub(crate) fn check_table_len(table: usize, codes: usize) {
    assert_eq!(codes * PQ_KSUB, table, "lookup table of the wrong size");
}
