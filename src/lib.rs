#![warn(missing_docs)]
//! # xent
//!
//! GPU compute kernels, written in WGSL and driven through `wgpu`, for batched softmax and
//! softmax-cross-entropy, forward and backward, with a CPU reference that every kernel is tested
//! against.
//!
//! ```no_run
//! use xent::{Context, ContextOptions, GpuMatrix};
//!
//! # fn main() -> Result<(), xent::XentError> {
//! // A hardware GPU if there is one, else Mesa's lavapipe (Vulkan), else llvmpipe (GL).
//! let ctx = Context::new_blocking(ContextOptions::from_env())?;
//! let logits = GpuMatrix::from_slice(&ctx, &[1.0, 2.0, 3.0, 0.5, 0.5, f32::NEG_INFINITY], 2, 3)?;
//! let probs = ctx.softmax(&logits)?; // stays on the device
//! let p = probs.read_blocking(&ctx)?;
//! assert!((p[0] + p[1] + p[2] - 1.0).abs() < 1e-6);
//! assert_eq!(p[5], 0.0); // a −inf logit is masked out
//! # Ok(())
//! # }
//! ```
//!
//! Module map: [`context`] (adapter, device, pipeline cache, readback), [`matrix`] (device-resident
//! data), [`softmax`], [`cross_entropy`], [`matmul`] and [`sgd`] (the operations), [`options`] (the
//! one validation of every backend), [`mod@reference`] (the f64 CPU oracle), [`cpu`] (the fast CPU
//! path), [`train`], [`data`], [`npy`], [`shaders`] (the kernel table and the WGSL composer).

pub mod context;
pub mod cpu;
pub mod cross_entropy;
pub mod data;
pub mod error;
mod exact_sum;
mod geometry;
mod labels;
mod launch;
pub mod linear_ce;
pub mod matmul;
pub mod matrix;
pub mod npy;
pub mod options;
pub mod record;
pub mod reference;
pub mod sgd;
pub mod shaders;
pub mod softmax;
pub mod train;

pub use context::workspace::Workspace;
pub use context::{AdapterSummary, Context, ContextOptions, list_adapters};
pub use cross_entropy::{CeStats, CrossEntropyOptions, CrossEntropyOutput, Reduction, Targets};
pub use error::{Result, XentError};
pub use half;
pub use matrix::{GpuLabels, GpuMatrix, LabelType};
pub use record::Recorder;
pub use shaders::{Elem, ReducePath};

/// The README's examples, compiled as doc-tests so that they stay true.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
