//! Fused linear cross-entropy on the device: the plan of [`super`] recorded into one command
//! encoder and submitted once; the per-row outputs are read back once, at the end.

use crate::context::Context;
use crate::cross_entropy::{GradTo, Targets};
use crate::error::{Result, XentError};
use crate::launch::Encode;
use crate::matmul::LceChunk;
use crate::matrix::{GpuLabels, GpuMatrix};
use crate::shaders::{Elem, Kernel};

use super::listed::Gather;
use super::{LinearCeOptions, LinearCeResult, LinearShape, Plan};

/// The targets of [`Context::linear_cross_entropy`].
#[derive(Clone, Copy, Debug)]
pub enum GpuTargets<'a> {
    /// One class index per row. The rows whose label is `ignore_index` do no matmul work: with a
    /// host copy they are listed out on the host; device-only labels are listed out on the device
    /// (one launch writes a stable partition of the rows and its count, the chunks are recorded for
    /// every row and skip the listed positions past the count; no host round trip, no indirect
    /// dispatch), and their results are the host labels' bits. Device-only labels are never read
    /// back: the batch's denominator is computed on the device once, before the chunks, and a bad
    /// label is [`crate::XentError::LabelOutOfRange`] from the read.
    ///
    /// Where the device cannot list the rows (X past one storage binding, or, on adapters with a
    /// loop cap, more than about 4 million rows), every row is computed instead (ignored rows get a
    /// zero gradient; `dW`/`db`, whose row blocks then hold ignored rows too, equal within
    /// rounding), and the labels' buffer needs COPY_SRC (each chunk's labels are copied out).
    Labels(&'a GpuLabels),
    /// One probability row per row, `n × V`.
    Probs(&'a GpuMatrix),
}

/// Where [`Context::linear_cross_entropy`] writes the gradients it is asked for (each optional).
#[derive(Clone, Copy, Debug, Default)]
pub struct GpuLinearGrads<'a> {
    /// `∂L/∂X`, `n × d` (overwritten; 0 on ignored rows).
    pub input: Option<&'a GpuMatrix>,
    /// `∂L/∂W`, `V × d` (overwritten, or added to with [`LinearCeOptions::accumulate`]).
    pub weight: Option<&'a GpuMatrix>,
    /// `∂L/∂b`, `1 × V` (overwritten, or added to).
    pub bias: Option<&'a GpuMatrix>,
}

impl Context {
    /// Fused linear cross-entropy on the device: the loss of `softmax(X Wᵀ + b)` (X `n × d`, W
    /// `V × d` as PyTorch's `linear_weight`, b `1 × V`) with every option of cross-entropy, and the
    /// gradients asked for, without the `n × V` logits ([`crate::linear_ce`] has the plan; its
    /// results are bit-identical whatever the budget). Everything is recorded into one command
    /// encoder and submitted once; the per-row outputs are then read back (one wait).
    ///
    /// Errors, raised before anything is submitted: those of [`crate::cpu::linear_cross_entropy`],
    /// [`crate::XentError::WrongContext`] for an operand of another context,
    /// [`crate::XentError::InvalidArgument`] for an output that overlaps an input or another output
    /// (dX over X, say; disjoint parts of one buffer are fine), and [`crate::XentError::TooLarge`]
    /// when a product or the cross-entropy's rows do not fit the adapter (on adapters with a loop
    /// cap, the cross-entropy's rows bound V at about 4 million classes).
    ///
    /// ```no_run
    /// use xent::linear_ce::{GpuLinearGrads, GpuTargets, LinearCeOptions};
    /// use xent::{Context, ContextOptions, GpuLabels, GpuMatrix};
    ///
    /// # fn main() -> Result<(), xent::XentError> {
    /// let ctx = Context::new_blocking(ContextOptions::from_env())?;
    /// let x = GpuMatrix::from_slice(&ctx, &[0.5, -1.0, 2.0, 1.5, 0.0, -0.5], 2, 3)?;
    /// let w = GpuMatrix::from_slice(&ctx, &[0.1; 12], 4, 3)?; // nn.Linear(3, 4).weight
    /// let labels = GpuLabels::from_slice(&ctx, &[3i64, 1])?;
    /// let dw = GpuMatrix::zeros(&ctx, 4, 3)?;
    /// let out = ctx.linear_cross_entropy(
    ///     &x,
    ///     &w,
    ///     None,
    ///     GpuTargets::Labels(&labels),
    ///     &LinearCeOptions::default(),
    ///     GpuLinearGrads { weight: Some(&dw), ..Default::default() },
    /// )?;
    /// assert!((out.loss - 4f32.ln()).abs() < 1e-6);
    /// # Ok(())
    /// # }
    /// ```
    pub fn linear_cross_entropy(
        &self,
        x: &GpuMatrix,
        w: &GpuMatrix,
        bias: Option<&GpuMatrix>,
        targets: GpuTargets<'_>,
        opts: &LinearCeOptions,
        grads: GpuLinearGrads<'_>,
    ) -> Result<LinearCeResult> {
        let mut enc = self.encoder("xent.linear_ce");
        let recorded = self.record_linear_ce(&mut enc, x, w, bias, targets, opts, grads)?;
        self.submit(enc)?;
        recorded.read(self)
    }

    /// [`Context::linear_cross_entropy`] recorded into `enc` (nothing submitted; every host error
    /// raised before anything is recorded). [`crate::Recorder::linear_cross_entropy`] is the public
    /// form.
    #[expect(
        clippy::too_many_arguments,
        reason = "the operands of the call, and the encoder"
    )]
    pub(crate) fn record_linear_ce(
        &self,
        enc: &mut wgpu::CommandEncoder,
        x: &GpuMatrix,
        w: &GpuMatrix,
        bias: Option<&GpuMatrix>,
        targets: GpuTargets<'_>,
        opts: &LinearCeOptions,
        grads: GpuLinearGrads<'_>,
    ) -> Result<LinearCeRecorded> {
        let (n, d) = x.shape();
        let classes = w.rows();
        let shape = LinearShape { n, d, classes };
        shape.check()?;
        w.expect_shape("linear weight W (V × d)", classes, d)?;
        x.rows_on(self)?;
        w.rows_on(self)?;
        // W may be 16-bit (the matmuls read it widened); X too (widened once on the device, below);
        // probability targets must be f32 (their rows are gathered per chunk by buffer copies).
        if let GpuTargets::Probs(p) = targets {
            p.expect_elem("linear cross-entropy probability targets", Elem::F32)?;
        }
        if let Some(b) = bias {
            b.expect_shape("linear bias b (1 × V)", 1, classes)?;
            b.on(self)?;
        }
        // Device-only labels: their chunks are copied from the caller's buffer.
        let mut device_labels = None;
        let labels_host: Option<Vec<i64>> = match targets {
            GpuTargets::Labels(l) => {
                l.on(self)?;
                match l.host() {
                    // The plan lists the kept rows on the host (their matmul work is skipped).
                    Some(host) => {
                        crate::options::check_labels(host, n, classes, opts.ce.ignore_index)?;
                        Some(host.iter().map(|&v| i64::from(v)).collect())
                    }
                    None => {
                        if l.len() != n {
                            return Err(XentError::LengthMismatch {
                                what: "labels (one per row)",
                                expected: n,
                                got: l.len(),
                            });
                        }
                        device_labels = Some(l);
                        None
                    }
                }
            }
            GpuTargets::Probs(p) => {
                p.expect_shape("probability targets (n × V)", n, classes)?;
                p.rows_on(self)?;
                opts.ce.validate_for_probs()?;
                None
            }
        };
        let outs = [
            (grads.input, "input gradient (n × d)", n, d),
            (grads.weight, "weight gradient (V × d)", classes, d),
            (grads.bias, "bias gradient (1 × V)", 1, classes),
        ];
        for (g, what, r, c) in outs {
            if let Some(g) = g {
                g.expect_shape(what, r, c)?;
                // Gradients accumulate in f32 (X, W and probability targets may be 16-bit).
                g.expect_elem(what, crate::shaders::Elem::F32)?;
                g.rows_on(self)?;
            }
        }
        // An output over an input (dX written over X, dW over W) would feed later chunks the
        // gradient instead of the data: refused, as outputs over each other.
        let probs = match targets {
            GpuTargets::Probs(p) => Some(p),
            GpuTargets::Labels(_) => None,
        };
        let inputs = [
            ("X", Some(x)),
            ("W", Some(w)),
            ("the bias", bias),
            ("the targets", probs),
        ];
        let outputs = [
            ("dX", grads.input),
            ("dW", grads.weight),
            ("db", grads.bias),
        ];
        for (i, (out, o)) in outputs.iter().enumerate() {
            let Some(o) = o else { continue };
            let mut others = inputs.iter().chain(&outputs[i + 1..]);
            if let Some((name, _)) = others.find(|(_, m)| m.is_some_and(|m| overlaps(o, m))) {
                return Err(XentError::InvalidArgument(format!(
                    "linear cross-entropy: the output {out} overlaps {name} in the same buffer"
                )));
            }
        }
        // Device-only labels: the rows that count are listed on the device where it can (listed.rs);
        // else every row is computed, and each chunk's labels are copied out of the caller's buffer.
        let listing = device_labels.is_some_and(|l| self.can_list_rows(n, d, l));
        if let Some(l) = device_labels
            && !listing
            && !l.buffer().usage().contains(wgpu::BufferUsages::COPY_SRC)
        {
            return Err(XentError::InvalidArgument(format!(
                "device-only labels of linear cross-entropy need COPY_SRC usage here (each \
                 chunk's labels are copied out: {n} rows of {d} features are more than this \
                 adapter's limits let the device list)"
            )));
        }
        // A 16-bit X is widened once into f32 scratch (exact; counted in the transient bytes): the
        // chunks gather its rows by buffer copies, and then every product is the f32 path's on the
        // same values, so the results are its bits.
        let widened = match x.elem() {
            Elem::F32 => None,
            _ => {
                let xw = GpuMatrix::zeros(self, n.max(1), d)?;
                let xw_n = GpuMatrix::from_buffer(self, xw.buffer().clone(), n, d)?;
                self.copy_rows(Encode::Into(enc), x, &xw_n)?;
                Some(xw)
            }
        };
        let x = widened.as_ref().unwrap_or(x);
        let granule = self.row_granule(Kernel::CeFwdBwd, classes);
        let plan = Plan::new(shape, labels_host.as_deref(), opts, granule)?;
        let want_grad = grads.input.is_some() || grads.weight.is_some() || grads.bias.is_some();
        let c_max = plan.chunk_rows;
        let matrix = |rows: usize, cols: usize| GpuMatrix::zeros(self, rows.max(1), cols);
        let (xc, z) = (matrix(c_max, d)?, matrix(c_max, classes)?);
        let dxc = grads.input.map(|_| matrix(c_max, d)).transpose()?;
        let pc = match targets {
            GpuTargets::Probs(_) => Some(matrix(c_max, classes)?),
            GpuTargets::Labels(_) => None,
        };
        let rows_out = matrix(plan.count, 4)?;
        let mut transient = 4
            * (widened.as_ref().map_or(0, GpuMatrix::len)
                + xc.len()
                + z.len()
                + dxc.as_ref().map_or(0, GpuMatrix::len)
                + pc.as_ref().map_or(0, GpuMatrix::len)
                + rows_out.len()) as u64;
        // Views of the scratch with the chunk's row count (the last chunk may be shorter).
        let view = |m: &GpuMatrix, rows: usize| {
            GpuMatrix::from_buffer(self, m.buffer().clone(), rows, m.cols())
        };
        let row_bytes = |cols: usize| cols as u64 * 4;
        // Every product's errors (sizes past the adapter's limits) before anything is recorded:
        // they depend on the chunk's and the block's sizes only through the first of each.
        if let Some(first) = plan.chunks().next() {
            let c = first.len();
            let (x_c, z_c) = (view(&xc, c)?, view(&z, c)?);
            let dx_c = dxc.as_ref().map(|m| view(m, c)).transpose()?;
            let chunk = chunk_ops(&x_c, w, bias, &z_c, dx_c.as_ref(), grads, None);
            let block = plan.blocks(&first).next().unwrap_or(0..0);
            self.lce_check(&chunk, &block)?;
            // The cross-entropy's rows (the loop cap bounds V there, about 4 million classes):
            // two passes with the gradient, smoothing or probabilities, as its plan says.
            let two = want_grad || opts.ce.label_smoothing > 0.0 || probs.is_some();
            self.check_row_launch(Kernel::CeFwdBwd, classes, if two { 2 } else { 1 })?;
        }
        // Each row's "correct" column is 1, 0 or −1 once its cross-entropy has run: NaN until then
        // (written at the next submission, before the recording), so reading a recording that was
        // never submitted is an error, not a loss of 0.
        if plan.count > 0 {
            let sentinel: Vec<f32> = (0..plan.count * 4)
                .map(|i| if i % 4 == 3 { f32::NAN } else { 0.0 })
                .collect();
            self.checked(|| {
                self.queue
                    .write_buffer(rows_out.buffer(), 0, bytemuck::cast_slice(&sentinel))
            })?;
        }
        if !opts.accumulate {
            for g in [grads.weight, grads.bias].into_iter().flatten() {
                enc.clear_buffer(g.buffer(), g.offset(), Some(g.len() as u64 * 4));
            }
        }
        if let Some(g) = grads.input {
            enc.clear_buffer(g.buffer(), g.offset(), Some(g.len() as u64 * 4));
        }
        // Device-only labels: one denominator for the whole batch, on the device, before the chunks
        // (whose cross-entropies take their gradient's scale from it); each chunk's labels are
        // copied into one scratch buffer.
        let batch = device_labels
            .map(|l| self.record_batch_denominator(enc, l, classes, &opts.ce))
            .transpose()?;
        let label_scratch = device_labels
            .map(|l| {
                let bytes = c_max as u64 * l.label_type().size();
                self.create_buffer("xent.linear_ce.labels", bytes, crate::context::MATRIX_USAGE)
            })
            .transpose()?;
        let list = match device_labels {
            Some(l) if listing => Some(self.record_list(
                enc,
                l,
                opts.ce.ignore_index,
                classes,
                x,
                grads.input,
                opts.row_upstream.as_deref(),
            )?),
            _ => None,
        };
        // The listed rows' upstream, gathered per chunk.
        let up_scratch = match (&list, &opts.row_upstream) {
            (Some(_), Some(_)) => Some(matrix(c_max, 1)?),
            _ => None,
        };
        transient += label_scratch.as_ref().map_or(0, wgpu::Buffer::size)
            + batch.as_ref().map_or(0, |b| 4 * b.len() as u64)
            + list.as_ref().map_or(0, |l| 4 * l.list.len() as u64)
            + 4 * (up_scratch.as_ref().map_or(0, GpuMatrix::len)
                + opts
                    .row_upstream
                    .as_ref()
                    .filter(|_| list.is_some())
                    .map_or(0, Vec::len)) as u64;
        // Per-chunk uploads (labels, upstream) live until the submission.
        let mut keep: Vec<GpuMatrix> = Vec::new();
        let mut keep_labels: Vec<GpuLabels> = Vec::new();
        for chunk in plan.chunks() {
            let c = chunk.len();
            // X_c: gathered by the device's list, or run by run (with the probabilities' rows).
            let runs = match &list {
                Some(l) => {
                    self.gather_listed(enc, l, Gather::X, chunk.start, c, xc.buffer())?;
                    Vec::new()
                }
                None => plan.runs(&chunk),
            };
            for (r0, pos, len) in &runs {
                let (bytes, src, dst) = (row_bytes(d), *r0 as u64, *pos as u64);
                enc.copy_buffer_to_buffer(
                    x.buffer(),
                    x.offset() + src * bytes,
                    xc.buffer(),
                    dst * bytes,
                    *len as u64 * bytes,
                );
                if let (Some(pc), GpuTargets::Probs(p)) = (&pc, targets) {
                    let bytes = row_bytes(classes);
                    enc.copy_buffer_to_buffer(
                        p.buffer(),
                        p.offset() + src * bytes,
                        pc.buffer(),
                        dst * bytes,
                        *len as u64 * bytes,
                    );
                }
            }
            let (x_c, z_c) = (view(&xc, c)?, view(&z, c)?);
            let dx_c = dxc.as_ref().map(|m| view(m, c)).transpose()?;
            let limit = list.as_ref().map(|l| (l.list.buffer(), chunk.start));
            let ops = chunk_ops(&x_c, w, bias, &z_c, dx_c.as_ref(), grads, limit);
            self.lce_logits(enc, &ops)?;
            let labels_c = match (&labels_host, device_labels, &label_scratch) {
                (Some(l), _, _) => {
                    let listed: Vec<i64> = chunk.clone().map(|k| l[plan.row(k)]).collect();
                    Some(GpuLabels::from_slice(self, &listed)?)
                }
                (None, Some(l), Some(buf)) => {
                    match &list {
                        Some(li) => {
                            self.gather_listed(enc, li, Gather::Labels, chunk.start, c, buf)?
                        }
                        // Every row is listed.
                        None => {
                            let size = l.label_type().size();
                            enc.copy_buffer_to_buffer(
                                l.buffer(),
                                l.offset() + chunk.start as u64 * size,
                                buf,
                                0,
                                c as u64 * size,
                            );
                        }
                    }
                    Some(GpuLabels::from_buffer(
                        self,
                        buf.clone(),
                        0,
                        c,
                        l.label_type(),
                    )?)
                }
                _ => None,
            };
            let probs_c = match &labels_c {
                None => Some(view(pc.as_ref().expect("probability scratch"), c)?),
                Some(_) => None,
            };
            let t = match (&labels_c, &probs_c) {
                (Some(l), _) => Targets::Labels(l),
                (None, Some(p)) => Targets::Probs(p),
                (None, None) => unreachable!("labels or probabilities"),
            };
            let upstream = if let (Some(l), Some(s)) = (&list, &up_scratch) {
                self.gather_listed(enc, l, Gather::Upstream, chunk.start, c, s.buffer())?;
                Some(view(s, c)?)
            } else if opts.row_upstream.is_some() || plan.const_upstream.is_some() {
                let listed: Vec<f32> = chunk
                    .clone()
                    .map(|k| plan.upstream(opts, k).expect("an upstream"))
                    .collect();
                Some(GpuMatrix::from_slice(self, &listed, c, 1)?)
            } else {
                None
            };
            let grad_to = if want_grad {
                GradTo::Logits
            } else {
                GradTo::Nowhere
            };
            let out = self.ce_with(
                Encode::Into(enc),
                &z_c,
                t,
                &plan.chunk_ce,
                upstream.as_ref(),
                grad_to,
                batch.as_ref(),
            )?;
            enc.copy_buffer_to_buffer(
                out.rows.buffer(),
                0,
                rows_out.buffer(),
                chunk.start as u64 * 16,
                c as u64 * 16,
            );
            // The chunk's uploads and outputs stay allocated until the recording has run: counted.
            transient += 4 * (out.rows.len() + out.stats.len()) as u64
                + 4 * c as u64 * (u64::from(upstream.is_some()) + u64::from(labels_c.is_some()))
                + opts.ce.weight.as_ref().map_or(0, |w| 4 * w.len() as u64);
            keep.extend([out.rows, out.stats]);
            keep.extend(upstream);
            keep_labels.extend(labels_c);
            if !want_grad {
                continue;
            }
            if let (Some(dx), Some(dxc)) = (grads.input, &dxc) {
                self.lce_input_grad(enc, &ops)?;
                if let Some(l) = &list {
                    self.scatter_listed(enc, l, chunk.start, &view(dxc, c)?)?;
                }
                let bytes = row_bytes(d);
                for (r0, pos, len) in &runs {
                    enc.copy_buffer_to_buffer(
                        dxc.buffer(),
                        *pos as u64 * bytes,
                        dx.buffer(),
                        dx.offset() + *r0 as u64 * bytes,
                        *len as u64 * bytes,
                    );
                }
            }
            for block in plan.blocks(&chunk) {
                self.lce_block_grads(enc, &ops, &block)?;
            }
        }
        keep.extend([xc, z]);
        keep.extend(widened);
        keep.extend(dxc);
        keep.extend(pc);
        keep.extend(up_scratch);
        let list = list.map(|l| {
            let (list, upload) = l.into_parts();
            keep.extend(upload);
            list
        });
        Ok(LinearCeRecorded {
            list,
            rows: rows_out,
            plan,
            labels: labels_host,
            device: batch.map(|stats| (stats, classes, opts.ce.ignore_index)),
            transient,
            _keep: (keep, keep_labels),
        })
    }
}

/// Whether two matrices share bytes of one buffer.
fn overlaps(a: &GpuMatrix, b: &GpuMatrix) -> bool {
    let end = |m: &GpuMatrix| m.offset() + m.len() as u64 * 4;
    a.buffer() == b.buffer()
        && a.offset() < end(b)
        && b.offset() < end(a)
        && !a.is_empty()
        && !b.is_empty()
}

/// The operands of one chunk's products.
fn chunk_ops<'a>(
    x: &'a GpuMatrix,
    w: &'a GpuMatrix,
    bias: Option<&'a GpuMatrix>,
    z: &'a GpuMatrix,
    dx: Option<&'a GpuMatrix>,
    grads: GpuLinearGrads<'a>,
    limit: Option<(&'a wgpu::Buffer, usize)>,
) -> LceChunk<'a> {
    LceChunk {
        x,
        w,
        bias,
        z,
        dx,
        dw: grads.weight,
        db: grads.bias,
        limit,
    }
}

/// A recorded linear cross-entropy: its gradients are in the caller's buffers once the encoder
/// has run; [`LinearCeRecorded::read`] then reads the per-row outputs back and reduces the loss.
#[derive(Debug)]
pub struct LinearCeRecorded {
    /// Per listed row: loss, log-sum-exp, argmax, correct (as [`crate::CrossEntropyOutput::rows`]).
    rows: GpuMatrix,
    plan: Plan,
    labels: Option<Vec<i64>>,
    /// Device-only labels: the batch's numbers (denominator, status), N and the ignore index.
    device: Option<(GpuMatrix, usize, i64)>,
    /// Device-only labels listed on the device: the count, then the listed rows (listed.rs).
    list: Option<GpuMatrix>,
    transient: u64,
    /// The chunks' scratch and uploads, alive until the recording has run.
    _keep: (Vec<GpuMatrix>, Vec<GpuLabels>),
}

impl LinearCeRecorded {
    /// The loss and the per-row numbers, read back (after the encoder was submitted; waits for it).
    /// Errors: [`XentError::InvalidArgument`] when the encoder was not submitted (yet).
    pub fn read(&self, ctx: &Context) -> Result<LinearCeResult> {
        let rows = if self.plan.count > 0 {
            self.rows.read_blocking(ctx)?
        } else {
            Vec::new()
        };
        if rows.chunks_exact(4).any(|r| r[3].is_nan()) {
            return Err(XentError::InvalidArgument(
                "a recorded linear cross-entropy was read before its encoder was submitted".into(),
            ));
        }
        let col = |c: usize| rows.chunks_exact(4).map(|r| r[c]).collect::<Vec<f32>>();
        let argmax: Vec<u32> = col(2).iter().map(|&a| a as u32).collect();
        let Some((stats, classes, ignore_index)) = &self.device else {
            return Ok(self.plan.finish(
                self.labels.as_deref(),
                &col(0),
                &col(1),
                &argmax,
                self.transient,
            ));
        };
        // Device-only labels: the batch's denominator and status from the device; every row was
        // listed, so ignored rows (correct −1) get the host path's NaN log-sum-exp, and the
        // accuracy counts the rows' "correct" column.
        let s = stats.read_blocking(ctx)?;
        crate::cross_entropy::label_status(&s, *classes, *ignore_index)?;
        let mut plan = self.plan.clone();
        plan.denominator = s[1];
        let correct = col(3);
        if let Some(list) = &self.list {
            // The kept rows at the listed positions before the count: the host list's plan.
            let words: Vec<u32> = list
                .read_blocking(ctx)?
                .iter()
                .map(|v| v.to_bits())
                .collect();
            let count = (words[0] as usize).min(words.len() - 4);
            plan.listed = Some(words[4..4 + count].iter().map(|&r| r as usize).collect());
            plan.count = count;
            let mut result = plan.finish(
                None,
                &col(0)[..count],
                &col(1)[..count],
                &argmax[..count],
                self.transient,
            );
            let hits = correct[..count].iter().filter(|&&c| c == 1.0).count();
            result.accuracy = if count == 0 {
                f32::NAN
            } else {
                (hits as f64 / count as f64) as f32
            };
            return Ok(result);
        }
        let lse: Vec<f32> = col(1)
            .iter()
            .zip(&correct)
            .map(|(&l, &c)| if c < 0.0 { f32::NAN } else { l })
            .collect();
        let mut result = plan.finish(None, &col(0), &lse, &argmax, self.transient);
        let labelled = correct.iter().filter(|&&c| c >= 0.0).count();
        let hits = correct.iter().filter(|&&c| c == 1.0).count();
        result.accuracy = if labelled == 0 {
            f32::NAN
        } else {
            (hits as f64 / labelled as f64) as f32
        };
        Ok(result)
    }
}
