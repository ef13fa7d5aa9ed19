//! The matmul kernels of softmax regression and their launcher: `XW + b`, `Xᵀ G`, column sums of `G`,
//! `G Wᵀ`. The output tile's width follows C's (16, 32 or 64 columns). Deterministic: each
//! output element has one owner; a reduction over the batch rows that feeds too few tiles to fill the
//! device is split into slices (split-K) whose partial products `matmul_reduce` adds in slice order,
//! and reductions past the loop cap or the binding limit into chunks added into the output in order.

use crate::context::Context;
use crate::error::Result;
use crate::launch::{Encode, dispatch};
use crate::matrix::GpuMatrix;
use crate::shaders::{Elem, Elems, Kernel, WG_SIZE};

mod lce;
mod plan;

pub(crate) use lce::LceChunk;

use plan::{Batch, Tile, row_range};

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
    listed0: u32,
    live: u32,
    pad: [u32; 2],
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

/// One product `C (m × n) = op(A) · op(B)` with leading dimensions and flags. The operands are
/// checked to belong to the context, and placed at their offsets, by [`Context::run_matmul`].
struct Product<'a> {
    a: Option<&'a GpuMatrix>,
    b: &'a GpuMatrix,
    bias: Option<&'a GpuMatrix>,
    c: &'a GpuMatrix,
    m: usize,
    n: usize,
    k: usize,
    lda: usize,
    ldb: usize,
    ldc: usize,
    flags: u32,
    batch: Batch,
    /// First row of the reduction's operands (`Batch::K`; 0 elsewhere): a block of rows of A and B.
    k0: usize,
    /// Whether split-K may be used (see `plan::Shape::split`).
    split: bool,
    /// Only the listed batch rows count (fused linear cross-entropy with device-only labels): the
    /// buffer whose first word is how many rows are listed (written on the device), and the listed
    /// index of the product's first batch row. See `live` in matmul.wgsl.
    limit: Option<(&'a wgpu::Buffer, usize)>,
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

    /// The product's plan ([`plan::Plan`], pure), after checking that every operand belongs to this
    /// context; `None` for an empty C. Every error a product can raise on the host comes from here.
    fn plan_matmul(&self, p: &Product<'_>) -> Result<Option<plan::Plan>> {
        // A and B may be 16-bit (read widened, f32 arithmetic); C and the bias are f32.
        p.c.expect_elem("a matrix product's output", Elem::F32)?;
        p.a.map(|a| a.rows_on(self)).transpose()?;
        let b_buf = p.b.rows_on(self)?.0;
        let c_buf = p.c.rows_on(self)?.0;
        let bias_buf = p.bias.map(|b| b.on(self)).transpose()?;
        let limits = self.limits();
        let shape = plan::Shape {
            m: p.m,
            n: p.n,
            k: p.k,
            lda: p.lda,
            ldb: p.ldb,
            ldc: p.ldc,
            has_a: p.a.is_some(),
            batch: p.batch,
            whole_bytes: match p.batch {
                Batch::M => [b_buf.size(), bias_buf.map_or(0, wgpu::Buffer::size)],
                Batch::K => [c_buf.size(), bias_buf.map_or(0, wgpu::Buffer::size)],
            },
            split: p.split,
        };
        let tile = Tile::for_cols(p.n);
        let device = plan::Device {
            binding_bytes: limits.max_storage_buffer_binding_size,
            align: limits.min_storage_buffer_offset_alignment as u64,
            max_groups: limits.max_compute_workgroups_per_dimension as usize,
            max_k_per_dispatch: self.max_k_per_dispatch(tile),
            busy_workgroups: self.busy_workgroups(),
        };
        plan::Plan::new(&shape, &device)
    }

    /// Plans the product ([`Context::plan_matmul`]) and encodes its steps in one submission.
    fn run_matmul(&self, to: Encode<'_>, p: &Product<'_>) -> Result<()> {
        let Some(plan) = self.plan_matmul(p)? else {
            return Ok(());
        };
        let (a_buf, a0) = match p.a {
            Some(a) => a.rows_on(self).map(|(buf, base)| (Some(buf), base))?,
            None => (None, 0),
        };
        let (b_buf, b0) = p.b.rows_on(self)?;
        let (c_buf, c0) = p.c.rows_on(self)?;
        let bias_buf = p.bias.map(|b| b.on(self)).transpose()?;
        let align = self.limits().min_storage_buffer_offset_alignment as u64;
        let tile = plan.tile;
        let tn = tile.tn as u32;
        let (a_elem, b_elem) = (p.a.map_or(Elem::F32, GpuMatrix::elem), p.b.elem());
        let mut elems = Elems::F32;
        (elems.0[1], elems.0[2]) = (a_elem, b_elem);
        let pipeline_first = self.pipeline(Kernel::Matmul, tn, p.flags, 1, 0, &elems)?;
        // Adding into C: the bias was added by the first piece.
        let rest_flags = (p.flags & !mm_flags::BIAS) | mm_flags::ACCUM;
        let pipeline_rest = self.pipeline(Kernel::Matmul, tn, rest_flags, 1, 0, &elems)?;
        let c_len = plan.c_len;
        let scratch = if plan.max_slices > 1 {
            Some(self.scratch_buffer(
                "xent.matmul.partials",
                (plan.max_slices * c_len * 4) as u64,
                wgpu::BufferUsages::STORAGE,
                false,
            )?)
        } else {
            None
        };
        let reducers = match scratch {
            Some(_) => Some([
                self.pipeline(Kernel::MatmulReduce, 0, 0, 1, 0, &Elems::F32)?,
                self.pipeline(Kernel::MatmulReduce, 0, mm_flags::ACCUM, 1, 0, &Elems::F32)?,
            ]),
            None => None,
        };
        let stand_in = self.stand_in(0);
        let direct = !self.geometry.walk.is_gpu();
        self.launches("xent.matmul", to, |encoder| {
            for step in &plan.steps {
                let (r0, rows, m, k, slices) = (step.r0, step.rows, step.m, step.k, step.slices);
                let whole = |b: &wgpu::Buffer| (0u64, b.size(), 0u32);
                // An operand from its base on: batched rows, or all of it.
                let at = |base: u64, (o, size, shift): (u64, u64, u32)| (base + o, size, shift);
                let from = |base: u64, b: &wgpu::Buffer| (base, b.size() - base, 0u32);
                let (a_rng, b_rng, c_rng) = match p.batch {
                    Batch::M => (
                        a_buf.map(|_| at(a0, row_range(r0, rows, p.lda, align, a_elem.size()))),
                        from(b0, b_buf),
                        at(c0, row_range(r0, rows, p.ldc, align, 4)),
                    ),
                    Batch::K => (
                        a_buf.map(|_| {
                            at(a0, row_range(p.k0 + r0, rows, p.lda, align, a_elem.size()))
                        }),
                        at(b0, row_range(p.k0 + r0, rows, p.ldb, align, b_elem.size())),
                        from(c0, c_buf),
                    ),
                };
                let a_buf = a_buf.unwrap_or(stand_in);
                let a_rng = a_rng.unwrap_or((0, 4, 0));
                let (out, out_rng, pipeline) = match &scratch {
                    Some(s) if slices > 1 => (s, whole(s), &pipeline_first),
                    _ if step.accum => (c_buf, c_rng, &pipeline_rest),
                    _ => (c_buf, c_rng, &pipeline_first),
                };
                let params = MatmulParams {
                    m: m as u32,
                    n: p.n as u32,
                    k: k as u32,
                    lda: p.lda as u32,
                    ldb: p.ldb as u32,
                    ldc: p.ldc as u32,
                    // Along M, this step's piece of the reduction: A's columns, B's rows (or
                    // columns, transposed) from k0 on.
                    a_off: a_rng.2 + step.k0 as u32,
                    b_off: b_rng.2
                        + step.k0 as u32
                            * if p.flags & mm_flags::TRANS_B != 0 {
                                1
                            } else {
                                p.ldb as u32
                            },
                    c_off: out_rng.2,
                    kslice: step.kslice as u32,
                    cslice: if slices > 1 { c_len } else { 0 } as u32,
                    listed0: p.limit.map_or(0, |(_, base)| (base + r0) as u32),
                    live: u32::MAX,
                    pad: [0; 2],
                };
                let uniform = self.uniform_buffer("xent.matmul", &params)?;
                if let Some((list, _)) = p.limit {
                    // The listed rows' count, from the device, into `live`.
                    let at = std::mem::offset_of!(MatmulParams, live) as u64;
                    encoder.copy_buffer_to_buffer(list, 0, &uniform, at, 4);
                }
                let bias = bias_buf.unwrap_or(stand_in);
                let resources = [
                    uniform.as_entire_binding(),
                    bind(a_buf, a_rng),
                    bind(b_buf, b_rng),
                    bias.as_entire_binding(),
                    bind(out, out_rng),
                ];
                let group = self.bind_group(pipeline, &resources)?;
                let (cols, rows) = (p.n.div_ceil(tile.tn) as u32, m.div_ceil(tile.tm) as u32);
                // The direct walk of CPU drivers takes the grid transposed (see matmul.wgsl).
                let groups = if direct {
                    [rows, cols, slices as u32]
                } else {
                    [cols, rows, slices as u32]
                };
                dispatch(encoder, "xent.matmul", pipeline, &group, groups);
                if slices > 1
                    && let Some(reducers) = &reducers
                {
                    let reducer = &reducers[step.accum as usize];
                    let params = ReduceParams {
                        count: c_len as u32,
                        slices: slices as u32,
                        c_off: c_rng.2,
                        pad: 0,
                    };
                    let uniform = self.uniform_buffer("xent.matmul_reduce", &params)?;
                    let resources = [
                        uniform.as_entire_binding(),
                        bind(out, whole(out)),
                        bind(c_buf, c_rng),
                    ];
                    let group = self.bind_group(reducer, &resources)?;
                    let groups = [c_len.div_ceil(WG_SIZE as usize) as u32, 1, 1];
                    dispatch(encoder, "xent.matmul_reduce", reducer, &group, groups);
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
        self.linear_to(Encode::Submit, x, w, b, z)
    }

    pub(crate) fn linear_to(
        &self,
        to: Encode<'_>,
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
        self.run_matmul(
            to,
            &Product {
                a: Some(x),
                b: w,
                bias: b,
                c: z,
                m: n,
                n: classes,
                k: d,
                lda: d,
                ldb: classes,
                ldc: classes,
                flags: if b.is_some() { mm_flags::BIAS } else { 0 },
                batch: Batch::M,
                k0: 0,
                split: true,
                limit: None,
            },
        )
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
        self.weight_grad_to(Encode::Submit, x, g, dw)
    }

    pub(crate) fn weight_grad_to(
        &self,
        to: Encode<'_>,
        x: &GpuMatrix,
        g: &GpuMatrix,
        dw: &GpuMatrix,
    ) -> Result<()> {
        let (n, d) = x.shape();
        let classes = g.cols();
        g.expect_shape("gradient G (n × N)", n, classes)?;
        dw.expect_shape("weight gradient (d × N)", d, classes)?;
        self.run_matmul(
            to,
            &Product {
                a: Some(x),
                b: g,
                bias: None,
                c: dw,
                m: d,
                n: classes,
                k: n,
                lda: d,
                ldb: classes,
                ldc: classes,
                flags: mm_flags::TRANS_A,
                batch: Batch::K,
                k0: 0,
                split: true,
                limit: None,
            },
        )
    }

    /// [`Context::weight_grad_into`] into a new matrix.
    pub fn weight_grad(&self, x: &GpuMatrix, g: &GpuMatrix) -> Result<GpuMatrix> {
        let dw = GpuMatrix::zeros(self, x.cols(), g.cols())?;
        self.weight_grad_into(x, g, &dw)?;
        Ok(dw)
    }

    /// The bias gradient `db = Σ_i G_i` (column sums, 1 × N).
    pub fn bias_grad_into(&self, g: &GpuMatrix, db: &GpuMatrix) -> Result<()> {
        self.bias_grad_to(Encode::Submit, g, db)
    }

    pub(crate) fn bias_grad_to(&self, to: Encode<'_>, g: &GpuMatrix, db: &GpuMatrix) -> Result<()> {
        let (n, classes) = g.shape();
        db.expect_shape("bias gradient (1 × N)", 1, classes)?;
        self.run_matmul(
            to,
            &Product {
                a: None,
                b: g,
                bias: None,
                c: db,
                m: 1,
                n: classes,
                k: n,
                lda: 1,
                ldb: classes,
                ldc: classes,
                flags: mm_flags::TRANS_A | mm_flags::A_ONES,
                batch: Batch::K,
                k0: 0,
                split: true,
                limit: None,
            },
        )
    }

    /// [`Context::bias_grad_into`] into a new matrix.
    pub fn bias_grad(&self, g: &GpuMatrix) -> Result<GpuMatrix> {
        let db = GpuMatrix::zeros(self, 1, g.cols())?;
        self.bias_grad_into(g, &db)?;
        Ok(db)
    }

    /// The input gradient `dX = G Wᵀ` (n × d) for a layer before this one.
    pub fn input_grad(&self, g: &GpuMatrix, w: &GpuMatrix) -> Result<GpuMatrix> {
        let dx = GpuMatrix::zeros(self, g.rows(), w.rows())?;
        self.input_grad_to(Encode::Submit, g, w, &dx)?;
        Ok(dx)
    }

    /// [`Context::input_grad`] into an existing `dx` (n × d).
    pub fn input_grad_into(&self, g: &GpuMatrix, w: &GpuMatrix, dx: &GpuMatrix) -> Result<()> {
        self.input_grad_to(Encode::Submit, g, w, dx)
    }

    pub(crate) fn input_grad_to(
        &self,
        to: Encode<'_>,
        g: &GpuMatrix,
        w: &GpuMatrix,
        dx: &GpuMatrix,
    ) -> Result<()> {
        let (n, classes) = g.shape();
        let d = w.rows();
        w.expect_shape("weights W (d × N)", d, classes)?;
        dx.expect_shape("input gradient dX (n × d)", n, d)?;
        self.run_matmul(
            to,
            &Product {
                a: Some(g),
                b: w,
                bias: None,
                c: dx,
                m: n,
                n: d,
                k: classes,
                lda: classes,
                ldb: classes,
                ldc: d,
                flags: mm_flags::TRANS_B,
                batch: Batch::M,
                k0: 0,
                split: true,
                limit: None,
            },
        )
    }
}
