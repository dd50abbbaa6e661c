//! `bookbag-billing audit replay` and `audit verify`.

use billing_engine::audit::{self, Format, Range, Renderer};
use chrono::{DateTime, Utc};
use clap::Args;
use std::io::IsTerminal;

use crate::config::Config;
use crate::Failure;

#[derive(Args, Debug)]
pub struct ReplayArgs {
    /// The workspace whose history to replay.
    #[arg(long, value_name = "WS")]
    pub workspace: String,
    /// Fold only what happened at or before this instant (RFC 3339), and show
    /// the state then: keys (masked), BYO flag, balance, members.
    #[arg(long, value_name = "T")]
    pub as_of: Option<String>,
    /// List only events at or after this instant (RFC 3339).
    #[arg(long, value_name = "T")]
    pub from: Option<String>,
    /// List only events before this instant (RFC 3339).
    #[arg(long, value_name = "T")]
    pub to: Option<String>,
    /// Output: table (people), csv (spreadsheets) or json (programs).
    #[arg(long, default_value = "table", value_name = "table|json|csv")]
    pub format: String,
}

#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// Verify only this workspace (default: every workspace).
    #[arg(long, value_name = "WS")]
    pub workspace: Option<String>,
}

fn instant(flag: &str, raw: &Option<String>) -> Result<Option<DateTime<Utc>>, Failure> {
    raw.as_deref()
        .map(|r| {
            DateTime::parse_from_rfc3339(r).map(|t| t.with_timezone(&Utc)).map_err(|_| {
                Failure::Usage(format!("--{flag} must be an RFC 3339 instant like 2026-03-01T09:00:00Z; got {r:?}"))
            })
        })
        .transpose()
}

fn workspace_id(raw: &str) -> Result<(), Failure> {
    billing_domain::WorkspaceId::parse(raw).map(|_| ()).map_err(|e| Failure::Usage(format!("--workspace: {e}")))
}

pub async fn replay(config: &Config, args: &ReplayArgs) -> Result<(), Failure> {
    workspace_id(&args.workspace)?;
    let format = Format::parse(&args.format)
        .ok_or_else(|| Failure::Usage(format!("--format must be table, json or csv; got {:?}", args.format)))?;
    let range = Range {
        from: instant("from", &args.from)?,
        to: instant("to", &args.to)?,
        as_of: instant("as-of", &args.as_of)?,
    };
    let store = super::open_store(config).await?;
    let total = store.versions(&[args.workspace.as_str()]).await.map_err(runtime)?.get(&args.workspace).copied();
    let Some(total) = total else {
        return Err(Failure::Usage(format!("workspace {} has no events", args.workspace)));
    };
    let bar = super::progress(total, "replaying");
    if !std::io::stderr().is_terminal() {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let stdout = std::io::BufWriter::new(std::io::stdout().lock());
    let mut renderer = Renderer::new(stdout, format);
    renderer.begin(&args.workspace).map_err(io)?;
    let mut write_error = None;
    let summary = audit::replay(
        &store,
        &args.workspace,
        range,
        |line| {
            if write_error.is_none() {
                write_error = renderer.line(line).err();
            }
        },
        |n| bar.inc(n),
    )
    .await
    .map_err(runtime)?;
    bar.finish_and_clear();
    if let Some(err) = write_error {
        return Err(io(err));
    }
    renderer.end(&summary).map_err(io)?;
    Ok(())
}

pub async fn verify(config: &Config, args: &VerifyArgs) -> Result<(), Failure> {
    if let Some(w) = &args.workspace {
        workspace_id(w)?;
    }
    let store = super::open_store(config).await?;
    let total = store.event_count().await.map_err(runtime)?;
    let bar = super::progress(total, "verifying");
    if !std::io::stderr().is_terminal() {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let report = audit::verify(&store, args.workspace.as_deref(), |n| bar.inc(n)).await.map_err(runtime)?;
    bar.finish_and_clear();
    for problem in &report.problems {
        println!("{problem}");
    }
    if report.more_problems > 0 {
        println!("... and {} more problems", report.more_problems);
    }
    for (workspace, behind) in &report.behind {
        println!("note: workspace {workspace}: projections are {behind} events behind (a projector is still working)");
    }
    println!(
        "verified {} workspaces, {} events: {}",
        report.workspaces,
        report.events,
        if report.is_clean() {
            "no problem found".to_owned()
        } else {
            format!("{} problems", report.problems.len() as u64 + report.more_problems)
        }
    );
    if report.is_clean() {
        Ok(())
    } else {
        Err(Failure::Check("audit verify found problems".into()))
    }
}

fn runtime(err: billing_engine::StoreError) -> Failure {
    Failure::Runtime(err.to_string())
}

fn io(err: std::io::Error) -> Failure {
    Failure::Runtime(format!("cannot write the statement: {err}"))
}
