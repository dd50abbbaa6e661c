//! A workspace's statement: every event in order with who did what, the
//! route, model, list cost and credits of every reply, and the running
//! balance; totals per route; and the state at any instant. Folded from the
//! stored events (never the projections), page by page, in memory that does
//! not grow with the history.

use billing_domain::readmodel::actor_name;
use billing_domain::{Change, Route, Workspace, WorkspaceEvent};
use chrono::{DateTime, Utc};
use cqrs_es::Aggregate;
use serde::Serialize;
use std::collections::BTreeMap;
use utoipa::ToSchema;

use crate::error::StoreError;
use crate::store::Store;

/// Events read per page while folding.
pub const REPLAY_PAGE_EVENTS: u32 = 1_000;

/// One event of a statement.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct StatementLine {
    pub sequence: u64,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub event_type: String,
    /// What changed, in words.
    pub change: String,
    pub route: Option<String>,
    pub model: Option<String>,
    pub list_cost: Option<u64>,
    /// Signed change of the balance: grants positive, charges negative.
    pub credits: i64,
    pub balance_after: u64,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct RouteTotals {
    pub replies: u64,
    pub credits_charged: u64,
    pub list_cost: u64,
}

/// Totals over the lines of a statement.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct Totals {
    pub events: u64,
    pub granted: u64,
    pub routes: BTreeMap<String, RouteTotals>,
}

impl Totals {
    fn new() -> Totals {
        Totals {
            routes: Route::ALL.iter().map(|r| (r.as_str().to_owned(), RouteTotals::default())).collect(),
            ..Totals::default()
        }
    }

    fn add(&mut self, event: &WorkspaceEvent) {
        self.events += 1;
        match &event.change {
            Change::CreditsGranted { amount, .. } => self.granted = self.granted.saturating_add(amount.get()),
            Change::ReplyServed { route, credits_charged, list_cost, .. } => {
                let totals = self.routes.entry(route.as_str().to_owned()).or_default();
                totals.replies += 1;
                totals.credits_charged = totals.credits_charged.saturating_add(credits_charged.get());
                totals.list_cost = totals.list_cost.saturating_add(list_cost.get());
            }
            _ => {}
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct ActiveKeyState {
    pub provider: String,
    pub key_id: String,
    pub masked: String,
}

/// A workspace as it was at an instant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct WorkspaceState {
    pub at: DateTime<Utc>,
    /// The last event folded in (0: the workspace did not exist yet).
    pub sequence: u64,
    pub exists: bool,
    pub byo_enabled: bool,
    pub balance: u64,
    pub granted: u64,
    pub spent: u64,
    pub keys: Vec<ActiveKeyState>,
    /// Members and their roles.
    pub members: BTreeMap<String, String>,
}

impl WorkspaceState {
    /// The state of `workspace` (after `sequence` events) as of `at`.
    pub fn of(workspace: &Workspace, sequence: u64, at: DateTime<Utc>) -> WorkspaceState {
        WorkspaceState {
            at,
            sequence,
            exists: workspace.exists(),
            byo_enabled: workspace.byo_enabled(),
            balance: workspace.balance().get(),
            granted: workspace.granted().get(),
            spent: workspace.spent().get(),
            keys: billing_domain::Provider::ALL
                .iter()
                .filter_map(|p| {
                    workspace.active_key(*p).map(|k| ActiveKeyState {
                        provider: p.as_str().to_owned(),
                        key_id: k.key_id.to_string(),
                        masked: k.masked.as_str().to_owned(),
                    })
                })
                .collect(),
            members: workspace
                .members()
                .iter()
                .map(|(u, r)| (u.to_string(), format!("{r:?}").to_lowercase()))
                .collect(),
        }
    }
}

/// Which part of the history a statement covers.
#[derive(Clone, Copy, Debug, Default)]
pub struct Range {
    /// Lines at or after this instant.
    pub from: Option<DateTime<Utc>>,
    /// Lines before this instant (exclusive).
    pub to: Option<DateTime<Utc>>,
    /// Fold only events at or before this instant, and report the state then.
    pub as_of: Option<DateTime<Utc>>,
}

impl Range {
    /// True once `at` is past what the statement covers. A workspace's
    /// events are in time order (the writer never stamps an event before its
    /// predecessor), so the fold can stop there.
    fn ended_by(&self, at: DateTime<Utc>) -> bool {
        self.as_of.is_some_and(|t| at > t) || self.to.is_some_and(|t| at >= t)
    }

    fn started_by(&self, at: DateTime<Utc>) -> bool {
        self.from.is_none_or(|f| at >= f)
    }
}

/// What a replay ends with (the lines went to the visitor on the way).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct StatementSummary {
    pub workspace_id: String,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    /// The balance before the first line of the range.
    pub opening_balance: u64,
    /// The balance after the last line of the range.
    pub closing_balance: u64,
    pub totals: Totals,
    /// The state at `as_of` (or after the last event folded).
    pub state: WorkspaceState,
}

/// Most lines one statement answer holds (`GET .../statement`); a longer
/// range says where to continue.
pub const STATEMENT_LINES_MAX: usize = 10_000;

/// A statement as the HTTP API answers it: the summary and the lines.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct StatementView {
    #[serde(flatten)]
    pub summary: StatementSummary,
    pub lines: Vec<StatementLine>,
    /// True when the range held more than [`STATEMENT_LINES_MAX`] lines.
    pub lines_truncated: bool,
    /// When truncated: the time of the first line left out; ask again with
    /// `from` set to it (lines of that same instant may repeat).
    pub next_from: Option<DateTime<Utc>>,
}

/// The statement of `workspace` over `range`, its lines capped.
pub async fn statement(store: &Store, workspace: &str, range: Range) -> Result<StatementView, StoreError> {
    let mut lines = Vec::new();
    let mut next_from = None;
    let summary = replay(
        store,
        workspace,
        range,
        |line| {
            if lines.len() < STATEMENT_LINES_MAX {
                lines.push(line.clone());
            } else if next_from.is_none() {
                next_from = Some(line.at);
            }
        },
        |_| {},
    )
    .await?;
    Ok(StatementView { summary, lines, lines_truncated: next_from.is_some(), next_from })
}

/// The words of one event's change.
pub fn describe(change: &Change) -> String {
    match change {
        Change::WorkspaceCreated { owner, .. } => format!("workspace created; {owner} is its first admin"),
        Change::MemberRoleSet { user, role } => format!("{user} is now {}", format!("{role:?}").to_lowercase()),
        Change::MemberRemoved { user } => format!("{user} removed"),
        Change::KeyAdded { key_id, provider, masked, .. } => {
            format!("{provider} key {} added ({key_id})", masked.as_str())
        }
        Change::KeySuperseded { key_id, provider, superseded_by } => {
            format!("{provider} key {key_id} superseded by {superseded_by}")
        }
        Change::KeyRemoved { key_id, provider } => format!("{provider} key {key_id} removed"),
        Change::ByoEnabled => "bring-your-own-keys enabled".to_owned(),
        Change::ByoDisabled => "bring-your-own-keys disabled".to_owned(),
        Change::CreditsGranted { grant_id, amount, reason, .. } if reason.is_empty() => {
            format!("grant {grant_id}: {amount} credits")
        }
        Change::CreditsGranted { grant_id, amount, reason, .. } => {
            format!("grant {grant_id}: {amount} credits ({reason})")
        }
        Change::ReplyServed { reply_id, agent_id, route, provider, key_id, .. } => match key_id {
            Some(key) => format!("reply {reply_id} of {agent_id} on {} via {route} ({key})", provider.as_str()),
            None => format!("reply {reply_id} of {agent_id} on {} via {route}", provider.as_str()),
        },
        Change::DataSourceTrained { data_source_id } => format!("data source {data_source_id} trained (free)"),
    }
}

fn line(sequence: u64, event: &WorkspaceEvent, balance_after: u64) -> StatementLine {
    let (route, model, list_cost, credits) = match &event.change {
        Change::ReplyServed { route, model, list_cost, credits_charged, .. } => {
            (Some(route.as_str().to_owned()), Some(model.clone()), Some(list_cost.get()), -credits_charged.as_i64())
        }
        Change::CreditsGranted { amount, .. } => (None, None, None, amount.as_i64()),
        _ => (None, None, None, 0),
    };
    StatementLine {
        sequence,
        at: event.at,
        actor: actor_name(&event.by),
        event_type: event.change.event_type().to_owned(),
        change: describe(&event.change),
        route,
        model,
        list_cost,
        credits,
        balance_after,
    }
}

/// Folds `workspace`'s events in order, calling `visit` with every line in
/// `range`, and returns the summary. Reads page by page: memory stays flat
/// however long the history. `progress` is told how many events each page
/// held.
pub async fn replay(
    store: &Store,
    workspace: &str,
    range: Range,
    mut visit: impl FnMut(&StatementLine),
    mut progress: impl FnMut(u64),
) -> Result<StatementSummary, StoreError> {
    let mut state = Workspace::default();
    let mut totals = Totals::new();
    let mut last_sequence = 0;
    let mut opening: Option<u64> = None;
    let mut after = 0;
    'pages: loop {
        let page = store.workspace_events(workspace, after, REPLAY_PAGE_EVENTS).await?;
        let Some(last) = page.last() else { break };
        after = last.sequence;
        progress(page.len() as u64);
        for stored in page {
            let event = stored.decode()?;
            if range.ended_by(event.at) {
                break 'pages;
            }
            let before = state.balance().get();
            state.apply(event.clone());
            last_sequence = stored.sequence;
            if range.started_by(event.at) {
                opening.get_or_insert(before);
                totals.add(&event);
                visit(&line(stored.sequence, &event, state.balance().get()));
            }
        }
    }
    let closing = state.balance().get();
    let at = range.as_of.unwrap_or_else(Utc::now);
    Ok(StatementSummary {
        workspace_id: workspace.to_owned(),
        from: range.from,
        to: range.to,
        opening_balance: opening.unwrap_or(closing),
        closing_balance: closing,
        totals,
        state: WorkspaceState::of(&state, last_sequence, at),
    })
}
