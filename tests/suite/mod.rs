mod cli;
pub mod common;
mod cpu;
pub mod cross_entropy;
mod fixtures;
mod matmul;
mod reference;
mod shaders;
mod softmax;
