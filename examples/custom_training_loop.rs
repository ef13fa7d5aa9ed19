//! A custom training loop on xent's Rust API: softmax regression on the embedded digits, written out
//! step by step (logits, fused cross-entropy, weight and bias gradients, plain SGD), everything on the
//! device; the loss is read back once per epoch.
//!
//! Run: `cargo run --release --example custom_training_loop`

use xent::data::digits_split;
use xent::{
    Context, ContextOptions, CrossEntropyOptions, GpuLabels, GpuMatrix, Targets, XentError,
};

fn main() -> Result<(), XentError> {
    let ctx = Context::new_blocking(ContextOptions::from_env())?;
    println!(
        "adapter: {} ({:?})",
        ctx.adapter().name,
        ctx.adapter().backend
    );
    let (train, test) = digits_split()?;
    let (d, classes) = (train.d, train.classes);

    let x = GpuMatrix::from_slice(&ctx, &train.features, train.n, d)?;
    let y = GpuLabels::from_slice(&ctx, &train.labels)?;
    let mut w = vec![0f32; d * classes];
    let mut b = vec![0f32; classes];
    let opts = CrossEntropyOptions::default(); // mean over rows

    for epoch in 0..50 {
        // Full-batch gradient descent: Z = XW + b → (loss, G = (P̂ − P)/n) → dW = XᵀG, db = 1ᵀG.
        let wm = GpuMatrix::from_slice(&ctx, &w, d, classes)?;
        let bm = GpuMatrix::from_slice(&ctx, &b, 1, classes)?;
        let z = ctx.linear(&x, &wm, Some(&bm))?;
        let out = ctx.cross_entropy_fwd_bwd_in_place(z, Targets::Labels(&y), &opts)?;
        let g = out.grad.as_ref().expect("gradient");
        let dw = ctx.weight_grad(&x, g)?.read_blocking(&ctx)?;
        let db = ctx.bias_grad(g)?.read_blocking(&ctx)?;
        // The update on the host here, to show the pieces; `xent::train` keeps it on the device.
        let lr = 1.0;
        w.iter_mut().zip(&dw).for_each(|(w, g)| *w -= lr * g);
        b.iter_mut().zip(&db).for_each(|(b, g)| *b -= lr * g);
        if epoch % 10 == 9 {
            let stats = out.read_stats_blocking(&ctx)?;
            println!(
                "epoch {:>2}: loss {:.4}, train accuracy {:.3}",
                epoch + 1,
                stats.loss,
                stats.accuracy
            );
        }
    }

    let xt = GpuMatrix::from_slice(&ctx, &test.features, test.n, d)?;
    let yt = GpuLabels::from_slice(&ctx, &test.labels)?;
    let wm = GpuMatrix::from_slice(&ctx, &w, d, classes)?;
    let bm = GpuMatrix::from_slice(&ctx, &b, 1, classes)?;
    let zt = ctx.linear(&xt, &wm, Some(&bm))?;
    let acc = ctx
        .cross_entropy(&zt, Targets::Labels(&yt), &opts)?
        .read_stats_blocking(&ctx)?
        .accuracy;
    println!("test accuracy {acc:.4}");
    Ok(())
}
