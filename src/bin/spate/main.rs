//! The `spate` command-line tool. Options follow kcat's where they overlap.

mod bench;
mod common;
mod consume;
mod cpu;
mod dump;
mod format;
mod group;
mod metadata;
mod pipe;
mod produce;
mod serdes;
mod serve;
mod share_consume;
mod topic;

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
    /// Produce, consume and pipeline throughput, on an embedded cluster (default) or `-b`.
    Bench(bench::Args),
    /// Print the records of a topic (like `kcat -C`).
    Consume(consume::Args),
    /// Decode Kafka log segments (`*.log`) or files of raw record batches.
    Dump(dump::Args),
    /// List, describe, reset the offsets of, or delete consumer groups (like
    /// kafka-consumer-groups.sh).
    Group {
        #[command(subcommand)]
        action: group::Action,
    },
    /// Show brokers, topics, partitions and leaders (like `kcat -L`).
    Metadata(metadata::Args),
    /// Read a topic, transform every record (uppercase, filter, JSON field, join with a table,
    /// windows), write another.
    Pipe(Box<pipe::Args>),
    /// Produce messages from stdin or files, one per line (like `kcat -P`).
    Produce(produce::Args),
    /// Serve the embedded cluster as a standalone broker on 127.0.0.1 (a Kafka for tests of
    /// other services; memory only); prints the bootstrap list first.
    Serve(serve::Args),
    /// Read as a member of a share group (KIP-932): records shared out among members.
    ShareConsume(share_consume::Args),
    /// Create, delete or list topics.
    Topic {
        #[command(subcommand)]
        action: topic::Action,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Bench(args) => bench::run(&args),
        Command::Consume(args) => consume::run(&args),
        Command::Dump(args) => dump::run(&args),
        Command::Group { action } => group::run(&action).map(|()| ExitCode::SUCCESS),
        Command::Metadata(args) => metadata::run(&args).map(|()| ExitCode::SUCCESS),
        Command::Pipe(args) => pipe::run(&args),
        Command::Produce(args) => produce::run(&args),
        Command::Serve(args) => serve::run(&args),
        Command::ShareConsume(args) => share_consume::run(&args),
        Command::Topic { action } => topic::run(&action).map(|()| ExitCode::SUCCESS),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("spate: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// clap's own checks of every command's arguments (unique names, groups, conflicts), which
    /// otherwise run only when a command is first parsed.
    #[test]
    fn the_command_line_is_well_formed() {
        super::Cli::command().debug_assert();
    }
}
