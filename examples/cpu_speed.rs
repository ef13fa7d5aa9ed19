//! Temporary: GB/s of the CPU path.
use std::time::Instant;
use xent::CrossEntropyOptions;
use xent::cpu::{self, CpuTargets};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let which = args.get(1).map(String::as_str).unwrap_or("all");
    let mut seed = 1u64;
    let mut rnd = |len: usize| -> Vec<f32> {
        (0..len)
            .map(|_| {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((seed >> 40) as f32 / (1u64 << 24) as f32) * 8.0 - 4.0
            })
            .collect()
    };
    println!("avx2+fma: {}", cpu::uses_avx2_fma());
    if which == "all" || which == "ce" {
        for (n, c) in [
            (4096usize, 1000usize),
            (1024, 32000),
            (256, 128256),
            (65536, 10),
        ] {
            let z = rnd(n * c);
            let labels: Vec<i64> = (0..n).map(|i| ((i * 7919) % c) as i64).collect();
            let mut g = vec![0f32; n * c];
            let opts = CrossEntropyOptions::default();
            let mut t = Vec::new();
            for _ in 0..9 {
                let s = Instant::now();
                let r = cpu::cross_entropy(&z, c, CpuTargets::Labels(&labels), &opts, Some(&mut g))
                    .unwrap();
                t.push(s.elapsed().as_secs_f64());
                std::hint::black_box(r);
            }
            let m = median(t);
            println!(
                "ce fwd+bwd {n}x{c}: {:.3} ms, {:.2} GB/s",
                m * 1e3,
                (n * c * 8) as f64 / m / 1e9
            );
        }
    }
    if which == "all" || which == "sm" {
        let (n, c) = (4096usize, 32000usize);
        let z = rnd(n * c);
        let mut out = vec![0f32; n * c];
        let mut t = Vec::new();
        let mut t2 = Vec::new();
        for _ in 0..7 {
            let s = Instant::now();
            cpu::softmax_into(&z, c, &mut out).unwrap();
            t.push(s.elapsed().as_secs_f64());
            let s = Instant::now();
            let o = cpu::softmax(&z, c).unwrap();
            t2.push(s.elapsed().as_secs_f64());
            std::hint::black_box(o);
        }
        let m = median(t);
        let m2 = median(t2);
        println!(
            "softmax_into {n}x{c}: {:.3} ms, {:.2} GB/s",
            m * 1e3,
            (n * c * 8) as f64 / m / 1e9
        );
        println!(
            "softmax (alloc) {n}x{c}: {:.3} ms, {:.2} GB/s",
            m2 * 1e3,
            (n * c * 8) as f64 / m2 / 1e9
        );
    }
}
