//! `xent train`: softmax regression by minibatch SGD (or full-batch gradient descent) on the embedded
//! digits data set or a user's CSV / .npy data, on the GPU or the CPU reference.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;
use xent::XentError;
use xent::data::{self, Dataset};
use xent::train::{self, EpochStats, TrainConfig, TrainOutcome};

use super::DeviceArgs;

#[derive(Args, Debug)]
pub struct TrainArgs {
    /// A CSV file (numeric features, the integer label last; .csv.gz read too). Default: the embedded
    /// UCI digits, split 1,438 train / 359 test.
    #[arg(long, conflicts_with_all = ["features", "labels"])]
    pub csv: Option<PathBuf>,
    /// Features, float32 [n, d] .npy (with --labels).
    #[arg(long, requires = "labels")]
    pub features: Option<PathBuf>,
    /// Labels, int64/int32 [n] .npy (with --features).
    #[arg(long, requires = "features")]
    pub labels: Option<PathBuf>,
    /// Fraction of a user's data held out for testing (seeded split).
    #[arg(long, default_value_t = 0.2, allow_negative_numbers = true)]
    pub test_fraction: f64,
    /// Passes over the training set.
    #[arg(long, default_value_t = TrainConfig::default().epochs)]
    pub epochs: usize,
    /// Rows per minibatch; 0 for full-batch gradient descent.
    #[arg(long, default_value_t = TrainConfig::default().batch_size)]
    pub batch_size: usize,
    /// Learning rate.
    #[arg(long, default_value_t = TrainConfig::default().learning_rate, allow_negative_numbers = true)]
    pub lr: f32,
    /// Momentum.
    #[arg(long, default_value_t = TrainConfig::default().momentum, allow_negative_numbers = true)]
    pub momentum: f32,
    /// L2 penalty on the weights.
    #[arg(long, default_value_t = TrainConfig::default().l2, allow_negative_numbers = true)]
    pub l2: f32,
    /// Seed of the minibatch shuffles (and of a user data split).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[command(flatten)]
    pub device: DeviceArgs,
    /// Print one JSON summary object instead of the text report.
    #[arg(long)]
    pub json: bool,
    /// Write the loss and accuracy curves as SVG.
    #[arg(long)]
    pub plot: Option<PathBuf>,
}

fn load(args: &TrainArgs) -> Result<(Dataset, Dataset, String), XentError> {
    let (data, name) = match (&args.csv, &args.features, &args.labels) {
        (Some(csv), _, _) => (Dataset::from_csv(csv)?, csv.display().to_string()),
        (_, Some(f), Some(l)) => (Dataset::from_npy(f, l)?, f.display().to_string()),
        _ => {
            let (train, test) = data::digits_split()?;
            return Ok((train, test, "digits (embedded UCI optical digits)".into()));
        }
    };
    let (train, test) = data.split(args.test_fraction, args.seed);
    Ok((train, test, name))
}

pub fn run(args: &TrainArgs) -> Result<ExitCode, XentError> {
    let (train_set, test_set, name) = load(args)?;
    let cfg = TrainConfig {
        epochs: args.epochs,
        batch_size: args.batch_size,
        learning_rate: args.lr,
        momentum: args.momentum,
        l2: args.l2,
        seed: args.seed,
    };
    cfg.validate()?;
    let bar = super::progress(cfg.epochs as u64, "train");
    if args.json {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let on_epoch = |s: &EpochStats| {
        bar.set_message(format!(
            "loss {:.4}  train acc {:.3}  test acc {}",
            s.loss,
            s.train_accuracy,
            s.test_accuracy.map_or("-".into(), |a| format!("{a:.3}"))
        ));
        bar.inc(1);
    };
    let test = (test_set.n > 0).then_some(&test_set);
    let (outcome, adapter): (TrainOutcome, String) = if let Some(path) = args.device.host() {
        let name = match path {
            train::CpuPath::Reference => "reference (f64 oracle)",
            train::CpuPath::Fast => "cpu (fast CPU path)",
        };
        (
            train::train_host(path, &train_set, test, &cfg, on_epoch)?,
            name.into(),
        )
    } else {
        let ctx = args.device.context()?;
        let adapter = format!("{} ({:?})", ctx.adapter().name, ctx.adapter().backend);
        (
            train::train_gpu(&ctx, &train_set, test, &cfg, on_epoch)?,
            adapter,
        )
    };
    bar.finish_and_clear();
    let last = outcome.epochs.last();
    let final_loss = last.map(|e| e.loss);
    let train_acc = last.map(|e| e.train_accuracy);
    let test_acc = last.and_then(|e| e.test_accuracy);
    if args.json {
        let obj = serde_json::json!({
            "data": name,
            "train_rows": train_set.n, "test_rows": test_set.n,
            "features": train_set.d, "classes": train_set.classes,
            "epochs": cfg.epochs, "batch_size": cfg.batch_size, "learning_rate": cfg.learning_rate,
            "momentum": cfg.momentum, "l2": cfg.l2, "seed": cfg.seed,
            "final_loss": final_loss, "train_accuracy": train_acc, "test_accuracy": test_acc,
            "seconds": outcome.seconds, "adapter": adapter,
            "loss_curve": outcome.epochs.iter().map(|e| e.loss).collect::<Vec<_>>(),
        });
        println!("{obj}");
    } else {
        println!(
            "data: {name}: {} train / {} test rows, {} features, {} classes",
            train_set.n, test_set.n, train_set.d, train_set.classes
        );
        println!("on: {adapter}");
        println!(
            "{} epochs, batch {}, lr {}, momentum {}, l2 {}, seed {}",
            cfg.epochs, cfg.batch_size, cfg.learning_rate, cfg.momentum, cfg.l2, cfg.seed
        );
        for e in &outcome.epochs {
            if e.epoch == 1 || e.epoch % 5 == 0 || e.epoch == cfg.epochs {
                println!(
                    "  epoch {:>3}  loss {:.4}  train acc {:.4}  test acc {}",
                    e.epoch,
                    e.loss,
                    e.train_accuracy,
                    e.test_accuracy.map_or("-".into(), |a| format!("{a:.4}"))
                );
            }
        }
        println!(
            "final: loss {:.4}, train accuracy {:.4}, test accuracy {}, {:.2} s",
            final_loss.unwrap_or(f32::NAN),
            train_acc.unwrap_or(f32::NAN),
            test_acc.map_or("-".into(), |a| format!("{a:.4}")),
            outcome.seconds
        );
    }
    if let Some(path) = &args.plot {
        plot(path, &outcome.epochs, &adapter)?;
        eprintln!("wrote {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// Loss (left axis) and accuracies (right axis) per epoch, as SVG.
fn plot(path: &Path, epochs: &[EpochStats], adapter: &str) -> Result<(), XentError> {
    use plotters::prelude::*;
    let err = |e: &dyn std::fmt::Display| XentError::Io {
        path: path.display().to_string(),
        reason: e.to_string(),
    };
    let root = SVGBackend::new(path, (900, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let n = epochs.len().max(1) as f64;
    let lmax = epochs.iter().map(|e| e.loss as f64).fold(0.0, f64::max) * 1.1 + 1e-6;
    let mut chart = ChartBuilder::on(&root)
        .caption(format!("xent train — {adapter}"), ("sans-serif", 20))
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(56)
        .right_y_label_area_size(56)
        .build_cartesian_2d(1.0..n.max(2.0), 0.0..lmax)
        .map_err(|e| err(&e))?
        .set_secondary_coord(1.0..n.max(2.0), 0.0..1.0);
    chart
        .configure_mesh()
        .x_desc("epoch")
        .y_desc("loss")
        .draw()
        .map_err(|e| err(&e))?;
    chart
        .configure_secondary_axes()
        .y_desc("accuracy")
        .draw()
        .map_err(|e| err(&e))?;
    let pts = |f: &dyn Fn(&EpochStats) -> Option<f32>| -> Vec<(f64, f64)> {
        epochs
            .iter()
            .filter_map(|e| f(e).map(|v| (e.epoch as f64, v as f64)))
            .collect()
    };
    chart
        .draw_series(LineSeries::new(pts(&|e| Some(e.loss)), RED.stroke_width(2)))
        .map_err(|e| err(&e))?
        .label("train loss")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], RED.stroke_width(2)));
    chart
        .draw_secondary_series(LineSeries::new(
            pts(&|e| Some(e.train_accuracy)),
            BLUE.stroke_width(2),
        ))
        .map_err(|e| err(&e))?
        .label("train accuracy")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], BLUE.stroke_width(2)));
    chart
        .draw_secondary_series(LineSeries::new(
            pts(&|e| e.test_accuracy),
            GREEN.stroke_width(2),
        ))
        .map_err(|e| err(&e))?
        .label("test accuracy")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], GREEN.stroke_width(2)));
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::MiddleRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))
}
