//! The `spate` command-line tool. Options follow kcat's where they overlap.

mod dump;
mod format;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "spate",
    version,
    about = "A pure-Rust Kafka client: tools and benchmarks"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Decode Kafka log segments (`*.log`) or files of raw record batches.
    Dump(dump::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Dump(args) => dump::run(&args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("spate: {e}");
            ExitCode::FAILURE
        }
    }
}
