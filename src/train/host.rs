//! The same trainer on the host: the f64 reference or the fast CPU path, step for step.

use super::{CpuPath, TrainConfig, check_data, check_indices};
use crate::cross_entropy::CrossEntropyOptions;
use crate::data::Dataset;
use crate::error::Result;
use crate::reference::{self, RefTargets};

/// The same training on the CPU, step for step (f32 parameters like the GPU's).
pub struct CpuTrainer<'d> {
    train: &'d Dataset,
    path: CpuPath,
    /// Weights W (d × N).
    pub w: Vec<f32>,
    /// Bias b (N).
    pub b: Vec<f32>,
    vw: Vec<f32>,
    vb: Vec<f32>,
}

impl<'d> CpuTrainer<'d> {
    /// A zero-initialised model on the reference path.
    pub fn new(train: &'d Dataset) -> Result<Self> {
        Self::with_path(train, CpuPath::Reference)
    }

    /// A zero-initialised model on the given path.
    pub fn with_path(train: &'d Dataset, path: CpuPath) -> Result<Self> {
        check_data(train, None)?;
        let (d, c) = (train.d, train.classes);
        Ok(Self {
            train,
            path,
            w: vec![0.0; d * c],
            b: vec![0.0; c],
            vw: vec![0.0; d * c],
            vb: vec![0.0; c],
        })
    }

    /// One step on rows `idx`; returns (batch mean loss, batch accuracy) before the step. An index
    /// outside the training set is an error.
    pub fn step(&mut self, idx: &[u32], cfg: &TrainConfig) -> Result<(f64, f64)> {
        check_indices(idx, self.train.n)?;
        let (d, c, rows) = (self.train.d, self.train.classes, idx.len());
        let x: Vec<f32> = idx
            .iter()
            .flat_map(|&i| {
                self.train.features[i as usize * d..(i as usize + 1) * d]
                    .iter()
                    .copied()
            })
            .collect();
        let y: Vec<i64> = idx.iter().map(|&i| self.train.labels[i as usize]).collect();
        let f32s = |v: Vec<f64>| -> Vec<f32> { v.into_iter().map(|x| x as f32).collect() };
        let (loss, acc, dw, db) = match self.path {
            CpuPath::Reference => {
                let z = f32s(reference::linear(&x, &self.w, Some(&self.b), d, c));
                let ce = reference::cross_entropy(
                    &z,
                    c,
                    RefTargets::Labels(&y),
                    &CrossEntropyOptions::default(),
                );
                let correct = ce
                    .argmax
                    .iter()
                    .zip(&y)
                    .filter(|(a, y)| **a as i64 == **y)
                    .count();
                let g = f32s(ce.grad);
                let (dw, db) = (
                    reference::weight_grad(&x, &g, d, c),
                    reference::bias_grad(&g, c),
                );
                (ce.loss, correct as f64 / rows as f64, f32s(dw), f32s(db))
            }
            CpuPath::Fast => {
                let z = crate::cpu::linear(&x, &self.w, Some(&self.b), rows, d, c)?;
                let mut g = vec![0f32; z.len()];
                let ce = crate::cpu::cross_entropy(
                    &z,
                    c,
                    crate::cpu::CpuTargets::Labels(&y),
                    &CrossEntropyOptions::default(),
                    Some(&mut g),
                )?;
                let dw = crate::cpu::weight_grad(&x, &g, rows, d, c)?;
                let db = crate::cpu::bias_grad(&g, c)?;
                (ce.loss as f64, ce.accuracy as f64, dw, db)
            }
        };
        let update = |w: &mut [f32], v: &mut [f32], g: &[f32], l2: f32| {
            for ((w, v), &g) in w.iter_mut().zip(v.iter_mut()).zip(g) {
                let step = cfg.momentum * *v + (g + l2 * *w);
                *v = step;
                *w -= cfg.learning_rate * step;
            }
        };
        update(&mut self.w, &mut self.vw, &dw, cfg.l2);
        update(&mut self.b, &mut self.vb, &db, 0.0);
        Ok((loss, acc))
    }

    /// Accuracy of the current model on `data`.
    pub fn accuracy(&self, data: &Dataset) -> f32 {
        let z = reference::linear(
            &data.features,
            &self.w,
            Some(&self.b),
            data.d,
            self.train.classes,
        );
        let correct = z
            .chunks_exact(self.train.classes)
            .zip(&data.labels)
            .filter(|(row, y)| {
                let row32: Vec<f32> = row.iter().map(|&v| v as f32).collect();
                reference::first_argmax(&row32) as i64 == **y
            })
            .count();
        correct as f32 / data.n.max(1) as f32
    }
}
