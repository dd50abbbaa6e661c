//! `audit verify`: recompute every workspace's hash chain and compare every
//! projection row with a fresh fold of the events.

use billing_domain::readmodel::{LedgerRow, ReadModel};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;

use super::statement::REPLAY_PAGE_EVENTS;
use crate::chain;
use crate::error::StoreError;
use crate::projection::read::{read_ledger_range, read_model_without_ledger};
use crate::store::{Store, StoredEvent};

/// Problems a report lists in full; beyond, it only counts them.
pub const PROBLEMS_LISTED_MAX: usize = 1_000;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Problem {
    /// An event's content (payload, type or version) does not match its hash.
    PayloadChanged { workspace: String, sequence: u64 },
    /// A sequence number is absent from the log.
    EventMissing { workspace: String, sequence: u64 },
    /// An event is not chained to the event before it: events were moved,
    /// or one was replaced together with its hash.
    OrderChanged { workspace: String, sequence: u64 },
    /// A stored event cannot be read at all.
    Unreadable { workspace: String, sequence: u64, cause: String },
    /// A projection row is not what the events say.
    ProjectionDisagrees { workspace: String, table: &'static str, row: String, detail: String },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::PayloadChanged { workspace, sequence } => {
                write!(
                    f,
                    "workspace {workspace}, sequence {sequence}: payload changed (its content does not match its hash)"
                )
            }
            Problem::EventMissing { workspace, sequence } => {
                write!(f, "workspace {workspace}, sequence {sequence}: event missing")
            }
            Problem::OrderChanged { workspace, sequence } => write!(
                f,
                "workspace {workspace}, sequence {sequence}: order changed (it is not chained to the event before it)"
            ),
            Problem::Unreadable { workspace, sequence, cause } => {
                write!(f, "workspace {workspace}, sequence {sequence}: unreadable ({cause})")
            }
            Problem::ProjectionDisagrees { workspace, table, row, detail } => {
                write!(f, "workspace {workspace}: projection row disagrees: {table} {row}: {detail}")
            }
        }
    }
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    pub workspaces: u64,
    pub events: u64,
    pub problems: Vec<Problem>,
    /// Problems found beyond [`PROBLEMS_LISTED_MAX`].
    pub more_problems: u64,
    /// Workspaces whose projections have not yet applied every event (a
    /// running projector, not a disagreement): (workspace, events behind).
    pub behind: Vec<(String, u64)>,
}

impl Report {
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty() && self.more_problems == 0
    }

    fn push(&mut self, problem: Problem) {
        if self.problems.len() < PROBLEMS_LISTED_MAX {
            self.problems.push(problem);
        } else {
            self.more_problems += 1;
        }
    }
}

/// Verifies `workspace`, or every workspace with events.
pub async fn verify(
    store: &Store,
    workspace: Option<&str>,
    mut progress: impl FnMut(u64),
) -> Result<Report, StoreError> {
    let workspaces = match workspace {
        Some(w) => vec![w.to_owned()],
        None => store.workspace_ids().await?,
    };
    let mut report = Report::default();
    let offsets = crate::projection::Projector::new(store.clone(), "verify").offsets().await?;
    for workspace in workspaces {
        report.workspaces += 1;
        let offset = offsets.get(&workspace).copied().unwrap_or(0);
        verify_workspace(store, &workspace, offset, &mut report, &mut progress).await?;
    }
    Ok(report)
}

/// Where the chain of one workspace stands while it is walked.
struct Walk {
    expected: u64,
    last_hash: String,
}

fn check_link(workspace: &str, stored: &StoredEvent, walk: &mut Walk, report: &mut Report) {
    let gap = stored.sequence != walk.expected;
    if gap {
        for missing in walk.expected..stored.sequence.min(walk.expected + 1000) {
            report.push(Problem::EventMissing { workspace: workspace.to_owned(), sequence: missing });
        }
    }
    let (Some(hash), Some(prev)) = (stored.hash(), stored.prev_hash()) else {
        report.push(Problem::PayloadChanged { workspace: workspace.to_owned(), sequence: stored.sequence });
        walk.expected = stored.sequence + 1;
        return;
    };
    let recomputed =
        chain::link(prev, workspace, stored.sequence, &stored.event_type, &stored.event_version, &stored.payload);
    if !gap && prev != walk.last_hash {
        report.push(Problem::OrderChanged { workspace: workspace.to_owned(), sequence: stored.sequence });
    } else if recomputed != hash {
        report.push(Problem::PayloadChanged { workspace: workspace.to_owned(), sequence: stored.sequence });
    }
    walk.last_hash = hash.to_owned();
    walk.expected = stored.sequence + 1;
}

async fn verify_workspace(
    store: &Store,
    workspace: &str,
    offset: u64,
    report: &mut Report,
    progress: &mut impl FnMut(u64),
) -> Result<(), StoreError> {
    let mut walk = Walk { expected: 1, last_hash: chain::GENESIS_HASH.to_owned() };
    let mut fold = ReadModel::default();
    let mut ledger_checked = 0;
    let mut after = 0;
    loop {
        let page = store.workspace_events(workspace, after, REPLAY_PAGE_EVENTS).await?;
        let Some(last) = page.last() else { break };
        after = last.sequence;
        progress(page.len() as u64);
        report.events += page.len() as u64;
        for stored in &page {
            check_link(workspace, stored, &mut walk, report);
            if stored.sequence > offset {
                continue;
            }
            match stored.decode() {
                Ok(event) => fold.apply(stored.sequence, &event),
                Err(err) => report.push(Problem::Unreadable {
                    workspace: workspace.to_owned(),
                    sequence: stored.sequence,
                    cause: err.to_string(),
                }),
            }
        }
        // Compare the ledger page by page, so memory stays flat.
        let upto = after.min(offset);
        if upto > ledger_checked {
            compare_ledger(store, workspace, ledger_checked, upto, &std::mem::take(&mut fold.ledger), report).await?;
            ledger_checked = upto;
        }
    }
    let last_event = walk.expected - 1;
    if offset > last_event {
        // The projections applied events the log no longer has: the newest
        // were deleted (a chain cannot see its own tail cut off).
        for missing in last_event + 1..=offset.min(last_event + 1000) {
            report.push(Problem::EventMissing { workspace: workspace.to_owned(), sequence: missing });
        }
    } else if offset < last_event {
        report.behind.push((workspace.to_owned(), last_event - offset));
    }
    if offset > ledger_checked {
        compare_ledger(store, workspace, ledger_checked, offset, &BTreeMap::new(), report).await?;
    }
    let tables = read_model_without_ledger(store, workspace).await?;
    compare_tables(workspace, &tables, &fold, report);
    Ok(())
}

async fn compare_ledger(
    store: &Store,
    workspace: &str,
    after: u64,
    upto: u64,
    folded: &BTreeMap<u64, LedgerRow>,
    report: &mut Report,
) -> Result<(), StoreError> {
    let stored = read_ledger_range(store, workspace, after, upto).await?;
    let mut seqs: Vec<&u64> = folded.keys().chain(stored.keys()).collect();
    seqs.sort_unstable();
    seqs.dedup();
    for seq in seqs {
        let (table, events) = (stored.get(seq), folded.get(seq));
        if table != events {
            report.push(Problem::ProjectionDisagrees {
                workspace: workspace.to_owned(),
                table: "credit_ledger",
                row: format!("seq {seq}"),
                detail: format!("the table has {}, the events say {}", describe(table), describe(events)),
            });
        }
    }
    Ok(())
}

fn describe<T: fmt::Debug>(row: Option<&T>) -> String {
    row.map_or_else(|| "no row".to_owned(), |r| format!("{r:?}"))
}

fn compare_tables(workspace: &str, tables: &ReadModel, fold: &ReadModel, report: &mut Report) {
    let mut disagree = |table: &'static str, row: String, detail: String| {
        report.push(Problem::ProjectionDisagrees { workspace: workspace.to_owned(), table, row, detail });
    };
    if tables.balance != fold.balance {
        disagree(
            "credit_balances",
            workspace.to_owned(),
            format!("the table has {:?}, the events say {:?}", tables.balance, fold.balance),
        );
    }
    if tables.mode != fold.mode || tables.exists != fold.exists {
        disagree(
            "billing_mode",
            workspace.to_owned(),
            format!("the table has {:?}, the events say {:?}", tables.mode, fold.mode),
        );
    }
    let key_ids: std::collections::BTreeSet<_> = tables.keys.keys().chain(fold.keys.keys()).collect();
    for key in key_ids {
        let (t, e) = (tables.keys.get(key), fold.keys.get(key));
        if t != e {
            disagree(
                "key_view",
                key.to_string(),
                format!("the table has {}, the events say {}", describe(t), describe(e)),
            );
        }
    }
    let usage_keys: std::collections::BTreeSet<_> = tables.usage.keys().chain(fold.usage.keys()).collect();
    for key in usage_keys {
        let (t, e) = (tables.usage.get(key), fold.usage.get(key));
        if t != e {
            disagree(
                "usage_daily",
                format!("{} {} {}", key.0, key.1, key.2),
                format!("the table has {}, the events say {}", describe(t), describe(e)),
            );
        }
    }
}
