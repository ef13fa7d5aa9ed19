pub mod common;
mod cross_entropy;
mod fixtures;
mod reference;
mod shaders;
mod softmax;
