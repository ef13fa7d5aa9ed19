//! The matmul kernels of softmax regression and their launcher: `XW + b`, `Xᵀ G`, column sums of `G`,
//! `G Wᵀ`. The output tile's width follows C's (16, 32 or 64 columns). Deterministic: each
//! output element has one owner; a reduction over the batch rows that feeds too few tiles to fill the
//! device is split into slices (split-K) whose partial products `matmul_reduce` adds in slice order,
//! and reductions past the loop cap or the binding limit into chunks added into the output in order.

use crate::context::Context;
use crate::error::{Result, XentError};
use crate::launch::dispatch;
use crate::matrix::GpuMatrix;
use crate::shaders::{Kernel, WG_SIZE};

/// The uniform of `matmul.wgsl`. Keep in sync with `MmParams` there.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct MatmulParams {
    m: u32,
    n: u32,
    k: u32,
    lda: u32,
    ldb: u32,
    ldc: u32,
    a_off: u32,
    b_off: u32,
    c_off: u32,
    kslice: u32,
    cslice: u32,
    pad: u32,
}

/// The uniform of `matmul_reduce.wgsl`. Keep in sync with `RedParams` there.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct ReduceParams {
    count: u32,
    slices: u32,
    c_off: u32,
    pad: u32,
}

/// The matmul kernels' FLAGS bits (defined once, in [`crate::shaders::flags`]).
mod mm_flags {
    pub use crate::shaders::flags::{
        MM_A_ONES as A_ONES, MM_ACCUM as ACCUM, MM_BIAS as BIAS, MM_TRANS_A as TRANS_A,
        MM_TRANS_B as TRANS_B,
    };
}

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
    fn iterations_per_step(self) -> u64 {
        debug_assert!(self.tk * self.tm <= 8 * WG_SIZE as usize);
        debug_assert!(self.tk * self.tn <= 4 * WG_SIZE as usize);
        (1 + self.tk) as u64
    }
}

/// A split-K slice runs at least this many reduction steps (rows of `Xᵀ G`).
const MIN_SLICE: usize = 64;

/// Which dimension of the product runs over the batch rows (the one the host splits).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Batch {
    /// Rows of A (not transposed) and of C: `X W`, `G Wᵀ`.
    M,
    /// The reduction: rows of A (transposed, or all ones) and of B: `Xᵀ G`, `1ᵀ G`.
    K,
}

/// One product `C (m × n) = op(A) · op(B)` with leading dimensions and flags.
struct Product<'a> {
    a: Option<&'a wgpu::Buffer>,
    b: &'a wgpu::Buffer,
    bias: Option<&'a wgpu::Buffer>,
    c: &'a wgpu::Buffer,
    m: usize,
    n: usize,
    k: usize,
    lda: usize,
    ldb: usize,
    ldc: usize,
    flags: u32,
    batch: Batch,
}

/// The byte range and element shift of rows `[r0, r0 + rows)` of a row-major operand.
fn row_range(r0: usize, rows: usize, row_len: usize, align: u64) -> (u64, u64, u32) {
    let first = r0 as u64 * row_len as u64 * 4;
    let offset = first / align * align;
    let size = (first - offset + rows as u64 * row_len as u64 * 4).max(4);
    (offset, size, ((first - offset) / 4) as u32)
}

/// Slices of a split-K reduction of `k` steps over `tiles` output tiles: enough for `target`
/// workgroups in all, none shorter than [`MIN_SLICE`] steps, and all partial products (`c_len`
/// floats each) within `max_floats`. 1 means no split.
fn k_slices(target: usize, tiles: usize, k: usize, c_len: usize, max_floats: u64) -> usize {
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

fn bind(buf: &wgpu::Buffer, (offset, size, _): (u64, u64, u32)) -> wgpu::BindingResource<'_> {
    wgpu::BindingResource::Buffer(wgpu::BufferBinding {
        buffer: buf,
        offset,
        size: wgpu::BufferSize::new(size.min(buf.size() - offset)),
    })
}

impl Context {
    /// Largest reduction one dispatch may run under the loop cap (a multiple of the tile's step), if
    /// any cap.
    fn max_k_per_dispatch(&self, tile: Tile) -> Option<u64> {
        // Per invocation: the reduction's steps, plus the 4×4 write-back loops. Only half the cap is
        // used: measured on lavapipe, a chunk that fills the cap to within 50 iterations came out
        // wrong, so how the driver counts is not exactly the probe's single loop.
        self.loop_cap().map(|cap| {
            (cap as u64 / 2).saturating_sub(64) / tile.iterations_per_step() * tile.tk as u64
        })
    }

    fn run_matmul(&self, p: &Product<'_>) -> Result<()> {
        let limits = self.limits();
        let align = limits.min_storage_buffer_offset_alignment as u64;
        let max_groups = limits.max_compute_workgroups_per_dimension as usize;
        let tile = Tile::for_cols(p.n);
        let batch_len = match p.batch {
            Batch::M => p.m,
            Batch::K => p.k,
        };
        if p.m == 0 || p.n == 0 {
            return Ok(());
        }
        // Operands bound whole (W and the bias, or dW) must fit one binding.
        let whole_bound = match p.batch {
            Batch::M => [Some(p.b), p.bias],
            Batch::K => [Some(p.c), p.bias],
        };
        for b in whole_bound.into_iter().flatten() {
            if b.size() > limits.max_storage_buffer_binding_size {
                return Err(XentError::TooLarge {
                    what: "a matmul's weights (or weight gradient)".into(),
                    needed: format!("{} bytes in one storage binding", b.size()),
                    limit: format!(
                        "{} bytes (max_storage_buffer_binding_size)",
                        limits.max_storage_buffer_binding_size
                    ),
                });
            }
        }
        // Row lengths of the operands split along the batch rows.
        let batched: Vec<usize> = match p.batch {
            Batch::M => vec![p.lda, p.ldc],
            Batch::K => [p.a.map(|_| p.lda), Some(p.ldb)]
                .into_iter()
                .flatten()
                .collect(),
        };
        let binding_elems = limits.max_storage_buffer_binding_size / 4;
        let mut chunk = batched
            .iter()
            .map(|&len| binding_elems.saturating_sub(align / 4) / len.max(1) as u64)
            .min()
            .unwrap_or(u64::MAX);
        let (other_dim, what) = match p.batch {
            Batch::M => (p.k as u64, "reduction length"),
            Batch::K => (p.m as u64, "output rows"),
        };
        match p.batch {
            Batch::M => {
                chunk = chunk.min((max_groups * tile.tm) as u64);
                if let Some(kmax) = self.max_k_per_dispatch(tile)
                    && other_dim > kmax
                {
                    return Err(XentError::TooLarge {
                        what: format!("a matmul {what} of {other_dim}"),
                        needed: format!("{other_dim} reduction steps in one dispatch"),
                        limit: format!("{kmax} under this adapter's loop cap"),
                    });
                }
            }
            Batch::K => {
                if let Some(kmax) = self.max_k_per_dispatch(tile) {
                    chunk = chunk.min(kmax);
                }
                if p.m.div_ceil(tile.tm) > max_groups {
                    return Err(XentError::TooLarge {
                        what: format!("a matmul with {} output rows", p.m),
                        needed: format!("{} workgroups", p.m.div_ceil(tile.tm)),
                        limit: format!("{max_groups} per dimension"),
                    });
                }
            }
        }
        if chunk == 0 {
            return Err(XentError::TooLarge {
                what: "one batch row of a matmul operand".into(),
                needed: format!("{} bytes", batched.iter().max().unwrap_or(&0) * 4),
                limit: format!(
                    "{} bytes (max_storage_buffer_binding_size)",
                    limits.max_storage_buffer_binding_size
                ),
            });
        }
        if p.n.div_ceil(tile.tn) > max_groups {
            return Err(XentError::TooLarge {
                what: format!("a matmul with {} output columns", p.n),
                needed: format!("{} workgroups", p.n.div_ceil(tile.tn)),
                limit: format!("{max_groups} per dimension"),
            });
        }
        let chunk = chunk as usize;
        let tn = tile.tn as u32;
        let pipeline_first = self.pipeline(Kernel::Matmul, tn, p.flags, 1, 0)?;
        let pipeline_rest = self.pipeline(Kernel::Matmul, tn, p.flags | mm_flags::ACCUM, 1, 0)?;
        // Split-K (reductions over the batch rows into a contiguous C): the slices' partial products
        // go to a scratch buffer, summed into C in slice order by matmul_reduce.
        let c_len = p.m * p.n;
        let tiles = p.m.div_ceil(tile.tm) * p.n.div_ceil(tile.tn);
        let slices_of = |rows: usize| match p.batch {
            Batch::K if p.ldc == p.n => k_slices(
                self.busy_workgroups(),
                tiles,
                rows,
                c_len,
                binding_elems.min(max_groups as u64 * c_len as u64),
            ),
            _ => 1,
        };
        let max_slices = slices_of(chunk.min(batch_len));
        let scratch = if max_slices > 1 {
            Some(self.create_buffer(
                "xent.matmul.partials",
                (max_slices * c_len * 4) as u64,
                wgpu::BufferUsages::STORAGE,
            )?)
        } else {
            None
        };
        let reducers = match scratch {
            Some(_) => Some([
                self.pipeline(Kernel::MatmulReduce, 0, 0, 1, 0)?,
                self.pipeline(Kernel::MatmulReduce, 0, mm_flags::ACCUM, 1, 0)?,
            ]),
            None => None,
        };
        let stand_in = self.stand_in(0);
        self.submit_launches("xent.matmul", |encoder| {
            let mut r0 = 0;
            // A K-split reduction must still run once when k = 0 (to write C = 0 + bias).
            while r0 < batch_len || (r0 == 0 && batch_len == 0) {
                let rows = chunk.min(batch_len - r0);
                let whole = |b: &wgpu::Buffer| (0u64, b.size(), 0u32);
                let (a_rng, b_rng, c_rng) = match p.batch {
                    Batch::M => (
                        p.a.map(|_| row_range(r0, rows, p.lda, align)),
                        whole(p.b),
                        row_range(r0, rows, p.ldc, align),
                    ),
                    Batch::K => (
                        p.a.map(|_| row_range(r0, rows, p.lda, align)),
                        row_range(r0, rows, p.ldb, align),
                        whole(p.c),
                    ),
                };
                let a_buf = p.a.unwrap_or(stand_in);
                let a_rng = a_rng.unwrap_or((0, 4, 0));
                let (m, k) = match p.batch {
                    Batch::M => (rows, p.k),
                    Batch::K => (p.m, rows),
                };
                let slices = slices_of(rows);
                let kslice = k.div_ceil(slices).next_multiple_of(tile.tk);
                let slices = k.div_ceil(kslice.max(1)).max(1);
                // Along K every chunk after the first adds into C; along M the chunks are disjoint.
                let accum = p.batch == Batch::K && r0 > 0;
                let (out, out_rng, pipeline) = match &scratch {
                    Some(s) if slices > 1 => (s, whole(s), &pipeline_first),
                    _ if accum => (p.c, c_rng, &pipeline_rest),
                    _ => (p.c, c_rng, &pipeline_first),
                };
                let params = MatmulParams {
                    m: m as u32,
                    n: p.n as u32,
                    k: k as u32,
                    lda: p.lda as u32,
                    ldb: p.ldb as u32,
                    ldc: p.ldc as u32,
                    a_off: a_rng.2,
                    b_off: b_rng.2,
                    c_off: out_rng.2,
                    kslice: if slices > 1 { kslice } else { k } as u32,
                    cslice: if slices > 1 { c_len } else { 0 } as u32,
                    pad: 0,
                };
                let uniform = self.uniform_buffer("xent.matmul", &params)?;
                let bias = p.bias.unwrap_or(stand_in);
                let resources = [
                    uniform.as_entire_binding(),
                    bind(a_buf, a_rng),
                    bind(p.b, b_rng),
                    bias.as_entire_binding(),
                    bind(out, out_rng),
                ];
                let group = self.bind_group(pipeline, &resources)?;
                let groups = [
                    p.n.div_ceil(tile.tn) as u32,
                    m.div_ceil(tile.tm) as u32,
                    slices as u32,
                ];
                dispatch(encoder, "xent.matmul", pipeline, &group, groups);
                if slices > 1
                    && let Some(reducers) = &reducers
                {
                    let part = out;
                    let reducer = &reducers[accum as usize];
                    let params = ReduceParams {
                        count: c_len as u32,
                        slices: slices as u32,
                        c_off: c_rng.2,
                        pad: 0,
                    };
                    let uniform = self.uniform_buffer("xent.matmul_reduce", &params)?;
                    let resources = [
                        uniform.as_entire_binding(),
                        bind(part, whole(part)),
                        bind(p.c, c_rng),
                    ];
                    let group = self.bind_group(reducer, &resources)?;
                    let groups = [c_len.div_ceil(WG_SIZE as usize) as u32, 1, 1];
                    dispatch(encoder, "xent.matmul_reduce", reducer, &group, groups);
                }
                r0 += rows;
                if batch_len == 0 {
                    break;
                }
            }
            Ok(())
        })
    }

    /// Logits of a linear layer, `Z = X W + b`: X is n × d, W is d × N, b (optional) 1 × N.
    pub fn linear_into(
        &self,
        x: &GpuMatrix,
        w: &GpuMatrix,
        b: Option<&GpuMatrix>,
        z: &GpuMatrix,
    ) -> Result<()> {
        let (n, d) = x.shape();
        let classes = w.cols();
        w.expect_shape("weights W (d × N)", d, classes)?;
        if let Some(b) = b {
            b.expect_shape("bias b (1 × N)", 1, classes)?;
        }
        z.expect_shape("logits Z (n × N)", n, classes)?;
        self.run_matmul(&Product {
            a: Some(x.on(self)?),
            b: w.on(self)?,
            bias: b.map(|b| b.on(self)).transpose()?,
            c: z.on(self)?,
            m: n,
            n: classes,
            k: d,
            lda: d,
            ldb: classes,
            ldc: classes,
            flags: if b.is_some() { mm_flags::BIAS } else { 0 },
            batch: Batch::M,
        })
    }

    /// [`Context::linear_into`] into a new matrix.
    pub fn linear(&self, x: &GpuMatrix, w: &GpuMatrix, b: Option<&GpuMatrix>) -> Result<GpuMatrix> {
        let z = GpuMatrix::zeros(self, x.rows(), w.cols())?;
        self.linear_into(x, w, b, &z)?;
        Ok(z)
    }

    /// The weight gradient `dW = Xᵀ G` (d × N) for X n × d and G n × N; the reduction over the n rows
    /// runs in chunks added in order.
    pub fn weight_grad_into(&self, x: &GpuMatrix, g: &GpuMatrix, dw: &GpuMatrix) -> Result<()> {
        let (n, d) = x.shape();
        let classes = g.cols();
        g.expect_shape("gradient G (n × N)", n, classes)?;
        dw.expect_shape("weight gradient (d × N)", d, classes)?;
        self.run_matmul(&Product {
            a: Some(x.on(self)?),
            b: g.on(self)?,
            bias: None,
            c: dw.on(self)?,
            m: d,
            n: classes,
            k: n,
            lda: d,
            ldb: classes,
            ldc: classes,
            flags: mm_flags::TRANS_A,
            batch: Batch::K,
        })
    }

    /// [`Context::weight_grad_into`] into a new matrix.
    pub fn weight_grad(&self, x: &GpuMatrix, g: &GpuMatrix) -> Result<GpuMatrix> {
        let dw = GpuMatrix::zeros(self, x.cols(), g.cols())?;
        self.weight_grad_into(x, g, &dw)?;
        Ok(dw)
    }

    /// The bias gradient `db = Σ_i G_i` (column sums, 1 × N).
    pub fn bias_grad_into(&self, g: &GpuMatrix, db: &GpuMatrix) -> Result<()> {
        let (n, classes) = g.shape();
        db.expect_shape("bias gradient (1 × N)", 1, classes)?;
        self.run_matmul(&Product {
            a: None,
            b: g.on(self)?,
            bias: None,
            c: db.on(self)?,
            m: 1,
            n: classes,
            k: n,
            lda: 1,
            ldb: classes,
            ldc: classes,
            flags: mm_flags::TRANS_A | mm_flags::A_ONES,
            batch: Batch::K,
        })
    }

    /// [`Context::bias_grad_into`] into a new matrix.
    pub fn bias_grad(&self, g: &GpuMatrix) -> Result<GpuMatrix> {
        let db = GpuMatrix::zeros(self, 1, g.cols())?;
        self.bias_grad_into(g, &db)?;
        Ok(db)
    }

    /// The input gradient `dX = G Wᵀ` (n × d) for a layer before this one.
    pub fn input_grad(&self, g: &GpuMatrix, w: &GpuMatrix) -> Result<GpuMatrix> {
        let (n, classes) = g.shape();
        let d = w.rows();
        w.expect_shape("weights W (d × N)", d, classes)?;
        let dx = GpuMatrix::zeros(self, n, d)?;
        self.run_matmul(&Product {
            a: Some(g.on(self)?),
            b: w.on(self)?,
            bias: None,
            c: dx.on(self)?,
            m: n,
            n: d,
            k: classes,
            lda: classes,
            ldb: classes,
            ldc: d,
            flags: mm_flags::TRANS_B,
            batch: Batch::M,
        })?;
        Ok(dx)
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
}
