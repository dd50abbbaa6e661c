//! `bookbag-billing`: the command line of the billing engine.
//!
//! - [`config`]: the `BILLING_*` settings, a TOML file, flags.
//! - [`secrets`]: tokens and the master key, generated on first start.
//! - [`telemetry`]: the log subscriber.
//! - [`commands`]: one module per subcommand.

mod commands;
mod config;
mod secrets;
mod telemetry;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use std::process::ExitCode;

use config::{Config, SettingsArgs};

/// mimalloc: the hot path allocates many small, short-lived values (events,
/// JSON, answers) across threads, which glibc's allocator serves slowly
/// (it was a sixth of the engine's CPU in the benchmark's profile).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// An event-sourced billing engine for AI agent replies: credits, bring your
/// own keys (BYO) and the Local model. Settings come from the BILLING_*
/// environment variables, a TOML file (--config) and flags, in rising order.
#[derive(Parser)]
#[command(name = "bookbag-billing", version, about, long_about = None)]
struct Cli {
    #[command(flatten)]
    settings: SettingsArgs,
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
    /// Run a standalone projector: NATS JetStream in, projection tables of
    /// BILLING_DATABASE_URL out (exactly once per event).
    Project(commands::project::ProjectArgs),
    /// Measure the engine against out-of-the-box cqrs-es and the raw
    /// database, in throw-away databases (build with --release).
    Bench(commands::bench::BenchArgs),
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Fold a workspace's stored events into a statement: every event with
    /// time, actor and change, each reply's route, model, list cost and
    /// credits, the running balance, and totals per route.
    Replay(commands::audit::ReplayArgs),
    /// Recompute every hash chain and compare every projection with a fresh
    /// fold of the events. Exit 1 when anything is wrong.
    Verify(commands::audit::VerifyArgs),
}

#[derive(Subcommand)]
enum ProjectionsCommand {
    /// Empty every projection table and rebuild it from the events.
    Rebuild,
}

/// Why a command stopped; decides the exit code.
pub enum Failure {
    /// Bad usage or configuration: exit 2.
    Usage(String),
    /// A check found a problem: exit 1.
    Check(String),
    /// The work could not be done (database down, ...): exit 1.
    Runtime(String),
}

fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(err) => err.exit(),
    };
    let config = match Config::load(&cli.settings, &matches) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("bookbag-billing: {err}");
            return ExitCode::from(2);
        }
    };
    telemetry::init(config.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("bookbag-billing: cannot start the runtime: {err}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Migrate => commands::migrate::run(&config).await,
            Command::Projections(ProjectionsCommand::Rebuild) => commands::rebuild::run(&config).await,
            Command::Audit(AuditCommand::Replay(args)) => commands::audit::replay(&config, &args).await,
            Command::Audit(AuditCommand::Verify(args)) => commands::audit::verify(&config, &args).await,
            Command::Project(args) => commands::project::run(&config, &args).await,
            Command::Serve => commands::serve::run(&config).await,
            Command::Bench(args) => commands::bench::run(&args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(message)) => {
            eprintln!("bookbag-billing: {message}");
            ExitCode::from(2)
        }
        Err(Failure::Check(message)) | Err(Failure::Runtime(message)) => {
            eprintln!("bookbag-billing: {message}");
            ExitCode::from(1)
        }
    }
}
