//! Workspaces: scratch buffers kept between calls, so that a loop running the same operations step
//! after step (a training loop, a renderer's per-frame work) allocates no wgpu buffer after its
//! first step.
//!
//! Inside [`Context::with_workspace`], every buffer an operation makes for itself — the uniforms of
//! its launches, per-row outputs, batch numbers, partial sums, uploaded class weights — is taken
//! from the workspace in the order the operations ask for them: the k-th request of a run gets the
//! k-th buffer of the workspace, made on the first run and reused (contents cleared where the
//! operation relies on zeros) on every later run that asks for the same size and usage. The
//! workspace belongs to the calling thread for the closure's duration, so threads recording into
//! their own encoders on one shared context each use their own.
//!
//! Buffers that an operation returns (a [`crate::CrossEntropyOutput`]'s `rows` and `stats`) are then
//! the workspace's: valid until the same workspace runs again. Gradients and results that the
//! caller asks to be made (`cross_entropy_fwd_bwd`'s new gradient, `softmax`'s output, gathered
//! labels) are never taken from a workspace; pass an output to the `_into` forms to reuse it.
//!
//! **Submit before the workspace runs again.** A run writes its uniforms (and clears what must
//! start at zero) through the queue, and those writes land at the next submission: two runs of one
//! workspace recorded into encoders not yet submitted would both see the second run's values. Use
//! one workspace per step in flight (the trainer keeps one per batch size and submits each step
//! before the next). A workspace belongs to one context: used with another, it starts afresh.

use std::cell::RefCell;

use super::{Context, ContextId};
use crate::error::Result;

/// Scratch buffers for [`Context::with_workspace`] (see the module docs). Keep one per loop.
#[derive(Debug, Default)]
pub struct Workspace {
    slots: Vec<wgpu::Buffer>,
    /// The context its buffers are of.
    owner: Option<ContextId>,
}

impl Workspace {
    /// An empty workspace (its buffers are made on the first run).
    pub fn new() -> Self {
        Self::default()
    }

    /// How many buffers it holds.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether it holds none yet.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }
}

/// This thread's workspaces in use, innermost last.
struct Active {
    ctx: ContextId,
    slots: Vec<wgpu::Buffer>,
    next: usize,
}

thread_local! {
    static ACTIVE: RefCell<Vec<Active>> = const { RefCell::new(Vec::new()) };
}

/// Puts the workspace back when the closure ends, even by unwinding.
struct Restore<'a>(&'a mut Workspace);

impl Drop for Restore<'_> {
    fn drop(&mut self) {
        if let Some(a) = ACTIVE.with(|s| s.borrow_mut().pop()) {
            self.0.slots = a.slots;
        }
    }
}

impl Context {
    /// Runs `f` with `ws` as this thread's workspace for this context: the scratch buffers of the
    /// operations inside come from it (see [`crate::context::workspace`]), so the second and later
    /// runs of the same operations allocate no buffer ([`Context::buffers_created`] counts them).
    /// Submit what a run recorded before running the same workspace again (module docs).
    ///
    /// ```no_run
    /// # fn main() -> xent::Result<()> {
    /// use xent::{Context, ContextOptions, CrossEntropyOptions, GpuLabels, GpuMatrix, Targets, Workspace};
    /// let ctx = Context::new_blocking(ContextOptions::default())?;
    /// let z = GpuMatrix::from_slice(&ctx, &[1.0, 2.0, 3.0, 0.5, 0.1, 0.2], 2, 3)?;
    /// let labels = GpuLabels::from_slice(&ctx, &[2i64, 0])?;
    /// let mut ws = Workspace::new();
    /// for _ in 0..3 {
    ///     let before = ctx.buffers_created();
    ///     let loss = ctx.with_workspace(&mut ws, || {
    ///         let out = ctx.cross_entropy(&z, Targets::Labels(&labels), &CrossEntropyOptions::default())?;
    ///         out.read_loss(&ctx)
    ///     })?;
    ///     println!("loss {loss:?}, {} new buffers", ctx.buffers_created() - before);
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub fn with_workspace<T>(
        &self,
        ws: &mut Workspace,
        f: impl FnOnce() -> Result<T>,
    ) -> Result<T> {
        if ws.owner != Some(self.id()) {
            // Another context's buffers are of another device: start afresh.
            ws.slots.clear();
            ws.owner = Some(self.id());
        }
        ACTIVE.with(|s| {
            s.borrow_mut().push(Active {
                ctx: self.id(),
                slots: std::mem::take(&mut ws.slots),
                next: 0,
            })
        });
        let _restore = Restore(ws);
        f()
    }

    /// Whether this thread has a workspace in use for this context.
    pub(crate) fn in_workspace(&self) -> bool {
        ACTIVE.with(|s| s.borrow().iter().any(|a| a.ctx == self.id()))
    }

    /// The next scratch buffer of this thread's workspace for this context, when one is in use:
    /// the workspace's own when it has one of this size and usage at this position (cleared when
    /// `zeroed`), else a new one kept there. Without a workspace, a new buffer.
    pub(crate) fn scratch_buffer(
        &self,
        label: &str,
        bytes: u64,
        usage: wgpu::BufferUsages,
        zeroed: bool,
    ) -> Result<wgpu::Buffer> {
        let size = bytes.max(4).next_multiple_of(4);
        let reused = ACTIVE.with(|s| {
            let mut s = s.borrow_mut();
            let a = s.iter_mut().rev().find(|a| a.ctx == self.id())?;
            let i = a.next;
            a.next += 1;
            Some((
                i,
                a.slots
                    .get(i)
                    .filter(|b| b.size() == size && b.usage() == usage)
                    .cloned(),
            ))
        });
        match reused {
            None => self.create_buffer(label, bytes, usage),
            Some((_, Some(buffer))) => {
                if zeroed {
                    self.checked(|| {
                        self.queue
                            .write_buffer(&buffer, 0, &vec![0u8; size as usize])
                    })?;
                }
                Ok(buffer)
            }
            Some((i, None)) => {
                let buffer = self.create_buffer(label, bytes, usage)?;
                ACTIVE.with(|s| {
                    let mut s = s.borrow_mut();
                    if let Some(a) = s.iter_mut().rev().find(|a| a.ctx == self.id()) {
                        if i < a.slots.len() {
                            a.slots[i] = buffer.clone();
                        } else {
                            a.slots.push(buffer.clone());
                        }
                    }
                });
                Ok(buffer)
            }
        }
    }
}
