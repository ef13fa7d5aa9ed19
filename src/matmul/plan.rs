//! The matmul's plan: everything about a product that can be decided on the host from its shape and
//! the device's limits, before anything is encoded — the tile, the chunks of the batch rows (binding
//! limit, dispatch limit, loop cap), split-K's slices per chunk, and the errors for what cannot fit.
//! Pure, so unit-tested without a device.

use crate::error::{Result, XentError};
use crate::shaders::WG_SIZE;

/// The output tile of one matmul workgroup: `tm × tn` elements (a 4×4 block per invocation, so
/// tm·tn = 16·WG), the reduction staged `tk` at a time. Same formulas as matmul.wgsl's overrides.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Tile {
    pub tm: usize,
    pub tn: usize,
    pub tk: usize,
}

impl Tile {
    /// The narrowest of the kernel's tile widths (16, 32, 64) that holds C's `n` columns, or 64: a
    /// softmax-regression product with N = 10 classes then computes 16 columns, not 64.
    pub fn for_cols(n: usize) -> Self {
        let tn = match n {
            0..=16 => 16,
            17..=32 => 32,
            _ => 64,
        };
        let tm = 16 * WG_SIZE as usize / tn;
        Tile {
            tm,
            tn,
            tk: 16.min(2048 / tm),
        }
    }

    /// Loop iterations one invocation runs per `tk` steps of the reduction: the step itself and the
    /// inner loop (the staging is written out, at most 8 stores of A and 4 of B per invocation).
    pub(super) fn iterations_per_step(self) -> u64 {
        debug_assert!(self.tk * self.tm <= 8 * WG_SIZE as usize);
        debug_assert!(self.tk * self.tn <= 4 * WG_SIZE as usize);
        (1 + self.tk) as u64
    }
}

/// Which dimension of the product runs over the batch rows (the one the host splits).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Batch {
    /// Rows of A (not transposed) and of C: `X W`, `G Wᵀ`.
    M,
    /// The reduction: rows of A (transposed, or all ones) and of B: `Xᵀ G`, `1ᵀ G`.
    K,
}

/// The byte range (whole 4-byte words) and element shift of rows `[r0, r0 + rows)` of a row-major
/// operand of `esize`-byte elements.
pub(super) fn row_range(
    r0: usize,
    rows: usize,
    row_len: usize,
    align: u64,
    esize: u64,
) -> (u64, u64, u32) {
    let first = r0 as u64 * row_len as u64 * esize;
    let offset = first / align * align;
    let size = (first - offset + rows as u64 * row_len as u64 * esize)
        .next_multiple_of(4)
        .max(4);
    (offset, size, ((first - offset) / esize) as u32)
}

/// A split-K slice runs at least this many reduction steps (rows of `Xᵀ G`).
const MIN_SLICE: usize = 64;

/// Slices of a split-K reduction of `k` steps over `tiles` output tiles: enough for `target`
/// workgroups in all, none shorter than [`MIN_SLICE`] steps, and all partial products (`c_len`
/// floats each) within `max_floats`. 1 means no split.
pub(super) fn k_slices(
    target: usize,
    tiles: usize,
    k: usize,
    c_len: usize,
    max_floats: u64,
) -> usize {
    if tiles >= target || k < 2 * MIN_SLICE {
        return 1;
    }
    let by_memory = (max_floats / c_len.max(1) as u64).min(usize::MAX as u64) as usize;
    target
        .div_ceil(tiles)
        .min(k / MIN_SLICE)
        .min(by_memory)
        .max(1)
}

/// The shape of one product `C (m × n) = op(A) · op(B)` as the plan sees it.
#[derive(Clone, Copy, Debug)]
pub(super) struct Shape {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub lda: usize,
    pub ldb: usize,
    pub ldc: usize,
    /// Whether A is bound (`1ᵀ G` has none).
    pub has_a: bool,
    pub batch: Batch,
    /// Bytes of the operands bound whole (W and the bias, or dW and the bias).
    pub whole_bytes: [u64; 2],
    /// Whether split-K may be used (off where the summation order must not depend on the device's
    /// occupancy, as linear cross-entropy's fixed tree).
    pub split: bool,
}

/// What the plan needs of the device.
#[derive(Clone, Copy, Debug)]
pub(super) struct Device {
    pub binding_bytes: u64,
    pub align: u64,
    pub max_groups: usize,
    /// Largest reduction one dispatch may run under the loop cap, if any cap.
    pub max_k_per_dispatch: Option<u64>,
    /// Split-K's target (see `crate::geometry`).
    pub busy_workgroups: usize,
}

/// One dispatch of the plan: batch rows `r0 .. r0 + rows`, as an `m × k` product in `slices`
/// split-K slices of `kslice` steps, adding into C when `accum`. Along M, a reduction past the loop
/// cap runs in pieces: `k0` is where this step's piece starts (0 along K, whose pieces are rows).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Step {
    pub r0: usize,
    pub rows: usize,
    pub m: usize,
    pub k: usize,
    pub k0: usize,
    pub slices: usize,
    pub kslice: usize,
    pub accum: bool,
}

/// The plan of one product.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Plan {
    pub tile: Tile,
    /// C's elements (the size of one split-K partial product).
    pub c_len: usize,
    /// The most slices any step has (the scratch buffer holds that many partials).
    pub max_slices: usize,
    pub steps: Vec<Step>,
}

impl Plan {
    /// The plan, or the `TooLarge` error naming what does not fit. `None` for an empty C.
    pub fn new(p: &Shape, d: &Device) -> Result<Option<Self>> {
        let tile = Tile::for_cols(p.n);
        if p.m == 0 || p.n == 0 {
            return Ok(None);
        }
        let too_large = |what: String, needed: String, limit: String| {
            Err(XentError::TooLarge {
                what,
                needed,
                limit,
            })
        };
        let binding_limit = format!(
            "{} bytes (max_storage_buffer_binding_size)",
            d.binding_bytes
        );
        for bytes in p.whole_bytes {
            if bytes > d.binding_bytes {
                return too_large(
                    "a matmul's weights (or weight gradient)".into(),
                    format!("{bytes} bytes in one storage binding"),
                    binding_limit,
                );
            }
        }
        // Row lengths of the operands split along the batch rows.
        let batched: Vec<usize> = match p.batch {
            Batch::M => vec![p.lda, p.ldc],
            Batch::K => [p.has_a.then_some(p.lda), Some(p.ldb)]
                .into_iter()
                .flatten()
                .collect(),
        };
        let binding_elems = d.binding_bytes / 4;
        let mut chunk = batched
            .iter()
            .map(|&len| binding_elems.saturating_sub(d.align / 4) / len.max(1) as u64)
            .min()
            .unwrap_or(u64::MAX);
        match p.batch {
            Batch::M => {
                chunk = chunk.min((d.max_groups * tile.tm) as u64);
            }
            Batch::K => {
                if let Some(kmax) = d.max_k_per_dispatch {
                    chunk = chunk.min(kmax);
                }
                if p.m.div_ceil(tile.tm) > d.max_groups {
                    return too_large(
                        format!("a matmul with {} output rows", p.m),
                        format!("{} workgroups", p.m.div_ceil(tile.tm)),
                        format!("{} per dimension", d.max_groups),
                    );
                }
            }
        }
        if chunk == 0 {
            return too_large(
                "one batch row of a matmul operand".into(),
                format!("{} bytes", batched.iter().max().unwrap_or(&0) * 4),
                binding_limit,
            );
        }
        if p.n.div_ceil(tile.tn) > d.max_groups {
            return too_large(
                format!("a matmul with {} output columns", p.n),
                format!("{} workgroups", p.n.div_ceil(tile.tn)),
                format!("{} per dimension", d.max_groups),
            );
        }
        let chunk = chunk as usize;
        // Split-K (reductions over the batch rows into a contiguous C): the slices' partial products
        // go to a scratch buffer, summed into C in slice order by matmul_reduce.
        let c_len = p.m * p.n;
        let tiles = p.m.div_ceil(tile.tm) * p.n.div_ceil(tile.tn);
        let slices_of = |rows: usize| match p.batch {
            Batch::K if p.ldc == p.n && p.split => k_slices(
                d.busy_workgroups,
                tiles,
                rows,
                c_len,
                binding_elems.min(d.max_groups as u64 * c_len as u64),
            ),
            _ => 1,
        };
        let batch_len = match p.batch {
            Batch::M => p.m,
            Batch::K => p.k,
        };
        // Along M, the reduction in pieces the loop cap allows (a multiple of the tile's step), each
        // after the first adding into C: the pieces depend on k and the adapter only.
        let k_piece = match (p.batch, d.max_k_per_dispatch) {
            (Batch::M, Some(kmax)) => (kmax as usize).max(tile.tk),
            _ => usize::MAX,
        };
        let mut steps = Vec::new();
        let mut r0 = 0;
        // A K-split reduction must still run once when k = 0 (to write C = 0 + bias).
        while r0 < batch_len || (r0 == 0 && batch_len == 0) {
            let rows = chunk.min(batch_len - r0);
            match p.batch {
                Batch::M => {
                    let mut k0 = 0;
                    while k0 < p.k || k0 == 0 {
                        let k = k_piece.min(p.k - k0);
                        steps.push(Step {
                            r0,
                            rows,
                            m: rows,
                            k,
                            k0,
                            slices: 1,
                            kslice: k,
                            accum: k0 > 0,
                        });
                        k0 += k;
                        if p.k == 0 {
                            break;
                        }
                    }
                }
                Batch::K => {
                    let (m, k) = (p.m, rows);
                    let slices = slices_of(rows);
                    let kslice = k.div_ceil(slices).next_multiple_of(tile.tk);
                    let slices = k.div_ceil(kslice.max(1)).max(1);
                    steps.push(Step {
                        r0,
                        rows,
                        m,
                        k,
                        k0: 0,
                        slices,
                        kslice: if slices > 1 { kslice } else { k },
                        // Every chunk after the first adds into C.
                        accum: r0 > 0,
                    });
                }
            }
            r0 += rows;
            if batch_len == 0 {
                break;
            }
        }
        Ok(Some(Self {
            tile,
            c_len,
            max_slices: slices_of(chunk.min(batch_len)),
            steps,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiles_cover_16_wg_elements_within_workgroup_memory() {
        for n in [1, 10, 16, 17, 32, 33, 64, 1000] {
            let t = Tile::for_cols(n);
            assert_eq!(t.tm * t.tn, 16 * WG_SIZE as usize, "n={n}");
            assert!(
                t.tn >= n.min(64) && t.tk * t.tm <= 2048 && t.tk * t.tn <= 1024,
                "n={n}"
            );
        }
        assert_eq!(Tile::for_cols(10).tn, 16);
        assert_eq!(Tile::for_cols(20).tn, 32);
        assert_eq!(Tile::for_cols(129).tn, 64);
    }

    #[test]
    fn k_slices_fill_the_target_without_short_slices() {
        // XᵀG of 4096×784×10 on a GPU target: 4 tiles, 64-row slices at least.
        assert_eq!(k_slices(512, 4, 4096, 7840, 1 << 25), 64);
        // Enough tiles already, or a reduction too short to split: one slice.
        assert_eq!(k_slices(512, 1024, 1 << 20, 1 << 22, 1 << 25), 1);
        assert_eq!(k_slices(512, 1, 127, 10, 1 << 25), 1);
        // The target reached before the slice floor: 4 tiles × 3 slices ≥ 10 workgroups.
        assert_eq!(k_slices(10, 4, 100_000, 100, 1 << 25), 3);
        // The partial products must fit the scratch binding.
        assert_eq!(k_slices(512, 1, 1 << 20, 1000, 5000), 5);
    }

    fn xtg(n: usize, d: usize, c: usize) -> Shape {
        // dW (d × c) = Xᵀ G: the reduction runs over the n batch rows.
        Shape {
            m: d,
            n: c,
            k: n,
            lda: d,
            ldb: c,
            ldc: c,
            has_a: true,
            batch: Batch::K,
            whole_bytes: [(d * c * 4) as u64, 0],
            split: true,
        }
    }

    fn lavapipe(busy: usize) -> Device {
        Device {
            binding_bytes: 128 << 20,
            align: 256,
            max_groups: 65_535,
            max_k_per_dispatch: Some(30_000),
            busy_workgroups: busy,
        }
    }

    #[test]
    fn plans_split_k_by_the_device_only_and_chunk_at_the_loop_cap() {
        // 4096×784×10 on a CPU driver (16 busy workgroups): 4 tiles of 256×16, so 4 slices.
        let p = Plan::new(&xtg(4096, 784, 10), &lavapipe(16))
            .unwrap()
            .unwrap();
        assert_eq!(
            (p.max_slices, p.steps.len(), p.steps[0].kslice),
            (4, 1, 1024)
        );
        // 4096×16×10: one tile, split into 16 slices of 256 rows; the GPU geometry 64 of 64 rows.
        let p = Plan::new(&xtg(4096, 16, 10), &lavapipe(16))
            .unwrap()
            .unwrap();
        assert_eq!((p.steps[0].slices, p.steps[0].kslice), (16, 256));
        let p = Plan::new(&xtg(4096, 16, 10), &lavapipe(512))
            .unwrap()
            .unwrap();
        assert_eq!(p.steps[0].slices, 64);
        // 100,000 rows under a loop cap of 30,000 steps a dispatch: 4 chunks, each after the first
        // adding into C.
        let p = Plan::new(&xtg(100_000, 16, 10), &lavapipe(16))
            .unwrap()
            .unwrap();
        let rows: Vec<usize> = p.steps.iter().map(|s| s.rows).collect();
        assert_eq!(rows, [30_000, 30_000, 30_000, 10_000]);
        assert!(!p.steps[0].accum && p.steps[1..].iter().all(|s| s.accum));
        // An empty C plans nothing; k = 0 still runs once (C = bias).
        assert!(Plan::new(&xtg(10, 0, 10), &lavapipe(16)).unwrap().is_none());
        assert_eq!(
            Plan::new(&xtg(0, 4, 10), &lavapipe(16))
                .unwrap()
                .unwrap()
                .steps
                .len(),
            1
        );
    }

    #[test]
    fn refuses_what_cannot_fit_and_pieces_long_reductions() {
        let mut s = xtg(10, 16, 10);
        s.whole_bytes = [200 << 20, 0];
        assert!(matches!(
            Plan::new(&s, &lavapipe(16)),
            Err(XentError::TooLarge { .. })
        ));
        // X W + b with a reduction past the loop cap.
        let xw = Shape {
            m: 10,
            n: 10,
            k: 40_000,
            lda: 40_000,
            ldb: 10,
            ldc: 10,
            has_a: true,
            batch: Batch::M,
            whole_bytes: [1_600_000, 40],
            split: true,
        };
        // Past the loop cap, the reduction runs in pieces, each after the first adding into C.
        let p = Plan::new(&xw, &lavapipe(16)).unwrap().unwrap();
        let pieces: Vec<_> = p.steps.iter().map(|s| (s.k0, s.k, s.accum)).collect();
        assert_eq!(pieces, [(0, 30_000, false), (30_000, 10_000, true)]);
    }
}
