//! `bookbag-billing bench`: the performance scenarios (docs/performance.md),
//! each beside its baseline measured in the same run, with progress bars,
//! ending with the correctness checks. Each scenario creates a database of
//! its own on the Postgres of --postgres-admin-url and drops it afterwards;
//! nothing of BILLING_DATABASE_URL is touched. Build with --release.

use billing_bench::{Options, Scenario};
use clap::Args;

use crate::Failure;

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Scenarios to run, comma-separated: postgres, choices, history,
    /// sqlite, http, replay, memory, latency (default: all).
    #[arg(long, value_delimiter = ',', value_name = "NAMES")]
    pub scenarios: Vec<String>,
    /// Multiplies every request count (1.0 is the documented run; 0.1 is a
    /// quick look).
    #[arg(long, default_value_t = 1.0, value_name = "FACTOR")]
    pub scale: f64,
    /// Postgres server the scenarios create their databases on.
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/postgres", value_name = "URL")]
    pub postgres_admin_url: String,
}

pub async fn run(args: &BenchArgs) -> Result<(), Failure> {
    let scenarios = if args.scenarios.is_empty() {
        Scenario::ALL.to_vec()
    } else {
        args.scenarios
            .iter()
            .map(|name| {
                Scenario::parse(name).ok_or_else(|| Failure::Usage(format!("--scenarios: unknown scenario {name:?}")))
            })
            .collect::<Result<Vec<_>, _>>()?
    };
    if !(args.scale > 0.0 && args.scale <= 10.0) {
        return Err(Failure::Usage("--scale must be above 0 and at most 10".into()));
    }
    if cfg!(debug_assertions) {
        eprintln!("warning: this is a debug build; figures mean nothing without --release");
    }
    let executable = std::env::current_exe().map_err(|e| Failure::Runtime(e.to_string()))?;
    let options =
        Options { postgres_admin_url: args.postgres_admin_url.clone(), scenarios, scale: args.scale, executable };
    let started = std::time::Instant::now();
    let report = billing_bench::run(&options).await.map_err(Failure::Runtime)?;
    println!("\n{report}");
    println!(
        "(machine: {} cores; run took {:.0} s)",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        started.elapsed().as_secs_f64()
    );
    if report.failures.is_empty() {
        Ok(())
    } else {
        Err(Failure::Check("a correctness check failed".into()))
    }
}
