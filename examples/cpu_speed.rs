//! Temporary: GB/s of the CPU path.
use std::time::Instant;
use xent::CrossEntropyOptions;
use xent::cpu::{self, CpuTargets};

fn stats(mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    (v[v.len() / 2], v[0])
}

fn rnd(seed: &mut u64, len: usize) -> Vec<f32> {
    (0..len)
        .map(|_| {
            *seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((*seed >> 40) as f32 / (1u64 << 24) as f32) * 8.0 - 4.0
        })
        .collect()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let which = args.get(1).map(String::as_str).unwrap_or("all");
    let reps: usize = args.get(2).map_or(7, |s| s.parse().unwrap());
    let mut seed = 1u64;
    eprintln!("avx2+fma: {}", cpu::uses_avx2_fma());
    let report = |name: &str, t: Vec<f64>, bytes: usize| {
        let (m, b) = stats(t);
        println!(
            "{name}: median {:.3} ms = {:.2} GB/s (best {:.2} GB/s)",
            m * 1e3,
            bytes as f64 / m / 1e9,
            bytes as f64 / b / 1e9
        );
    };
    if which == "all" || which == "ce" || which == "ce1" {
        let shapes = [
            (4096usize, 1000usize),
            (1024, 32000),
            (256, 128256),
            (65536, 10),
        ];
        let shapes = if which == "ce1" {
            &shapes[..1]
        } else {
            &shapes[..]
        };
        for &(n, c) in shapes {
            let z = rnd(&mut seed, n * c);
            let labels: Vec<i64> = (0..n).map(|i| ((i * 7919) % c) as i64).collect();
            let mut g = vec![0f32; n * c];
            let opts = CrossEntropyOptions::default();
            let mut t = Vec::new();
            let warm: usize = std::env::var("WARM").map_or(5, |v| v.parse().unwrap());
            for _ in 0..warm {
                std::hint::black_box(
                    cpu::cross_entropy(&z, c, CpuTargets::Labels(&labels), &opts, Some(&mut g))
                        .unwrap(),
                );
            }
            for _ in 0..reps {
                let s = Instant::now();
                let r = cpu::cross_entropy(&z, c, CpuTargets::Labels(&labels), &opts, Some(&mut g))
                    .unwrap();
                t.push(s.elapsed().as_secs_f64());
                if std::env::var_os("SHOW").is_some() {
                    eprint!("{:.2} ", t.last().unwrap() * 1e3);
                }
                std::hint::black_box(r);
            }
            report(&format!("ce fwd+bwd {n}x{c}"), t, n * c * 8);
        }
    }
    if which == "all" || which == "sm" {
        let (n, c) = (4096usize, 32000usize);
        let z = rnd(&mut seed, n * c);
        let mut out = vec![0f32; n * c];
        let (mut t, mut t2) = (Vec::new(), Vec::new());
        let warm: usize = std::env::var("WARM").map_or(5, |v| v.parse().unwrap());
        for _ in 0..warm {
            cpu::softmax_into(&z, c, &mut out).unwrap();
            std::hint::black_box(cpu::softmax(&z, c).unwrap());
        }
        for _ in 0..reps {
            let s = Instant::now();
            cpu::softmax_into(&z, c, &mut out).unwrap();
            t.push(s.elapsed().as_secs_f64());
            let s = Instant::now();
            let o = cpu::softmax(&z, c).unwrap();
            t2.push(s.elapsed().as_secs_f64());
            std::hint::black_box(o);
        }
        report(&format!("softmax_into {n}x{c}"), t, n * c * 8);
        report(&format!("softmax (new Vec) {n}x{c}"), t2, n * c * 8);
    }
    if which == "copy" {
        use rayon::prelude::*;
        for len in [4096usize * 1000, 1024 * 32000] {
            let a = rnd(&mut seed, len);
            let mut b = vec![0f32; len];
            let mut t = Vec::new();
            for _ in 0..reps {
                let s = Instant::now();
                b.par_chunks_mut(len / 8)
                    .zip(a.par_chunks(len / 8))
                    .for_each(|(b, a)| b.copy_from_slice(a));
                t.push(s.elapsed().as_secs_f64());
            }
            report(&format!("parallel copy {len}"), t, len * 8);
        }
    }
}
