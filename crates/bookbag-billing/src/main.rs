//! `bookbag-billing`: the command line of the billing engine.

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// An event-sourced billing engine for AI agent replies: credits, bring your
/// own keys (BYO) and the Local model.
#[derive(Parser)]
#[command(name = "bookbag-billing", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the HTTP API (applies the database migrations first).
    Serve,
    /// Apply the database migrations and exit.
    Migrate,
    /// Replay or verify a workspace's billing history from its events.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Maintain the read models (projections).
    #[command(subcommand)]
    Projections(ProjectionsCommand),
    /// Run a standalone projector fed from NATS JetStream.
    Project,
    /// Measure the engine against out-of-the-box cqrs-es and the raw database.
    Bench,
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Fold a workspace's events into a statement.
    Replay,
    /// Check every hash chain and every projection against the events.
    Verify,
}

#[derive(Subcommand)]
enum ProjectionsCommand {
    /// Rebuild every projection from the events.
    Rebuild,
}

fn main() -> ExitCode {
    let _cli = Cli::parse();
    eprintln!("bookbag-billing: this subcommand is not built yet");
    ExitCode::from(2)
}
