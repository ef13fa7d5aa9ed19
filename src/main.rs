//! The `xent` command line: `info`, `check`, `eval`, `bench`, `train`.

mod cli;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "xent",
    version,
    about = "GPU softmax and cross-entropy kernels (WGSL on wgpu)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List the adapters with the backend, device type, features and limits xent uses.
    Info(cli::DeviceArgs),
    /// Run every kernel on a realistic batch, compare with the CPU reference, print a table.
    Check(cli::check::CheckArgs),
    /// Cross-entropy, softmax, entropy and gradients of .npy inputs, written as .npy files.
    Eval(cli::eval::EvalArgs),
    /// Throughput of the kernels against the copy roofline and the CPU, as a table, JSON or a plot.
    Bench(cli::bench::BenchArgs),
    /// Train softmax regression (minibatch SGD) on the embedded digits or your data.
    Train(cli::train::TrainArgs),
}

fn main() -> ExitCode {
    restore_sigpipe();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Info(args) => cli::info(&args),
        Command::Check(args) => cli::check::run(&args),
        Command::Eval(args) => cli::eval::run(&args),
        Command::Bench(args) => cli::bench::run(&args),
        Command::Train(args) => cli::train::run(&args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("xent: error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Rust ignores SIGPIPE, so a `println!` into a closed pipe (`xent info | head -1`) panics. A command
/// line tool should end quietly instead, as Unix tools do: restore the default action, which ends the
/// process when the reader has gone.
fn restore_sigpipe() {
    #[cfg(unix)]
    // SAFETY: called first thing in main, before any thread exists; SIG_DFL is a valid action.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
