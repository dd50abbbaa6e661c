//! The one fold from events to read models.
//!
//! [`row_ops`] turns one stored event into the row changes it makes to the
//! five projections (keys, billing mode, balance, ledger, usage). The SQL
//! projector executes these operations against its tables; [`ReadModel`]
//! executes the same operations in memory, which is what the audit and the
//! tests compare the tables with. There is no second implementation of
//! "what an event means for a dashboard" anywhere.
//!
//! Every operation is stateless (it needs nothing but the event), so a
//! projector can apply a batch of events with a handful of statements.

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use std::collections::BTreeMap;

use crate::aggregate::{Actor, Change, WorkspaceEvent};
use crate::ids::KeyId;
use crate::keys::Provider;
use crate::money::Credits;
use crate::routing::Route;

/// Status of a key in the masked-key view.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyStatus {
    Active,
    Superseded,
    Removed,
}

impl KeyStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyStatus::Active => "active",
            KeyStatus::Superseded => "superseded",
            KeyStatus::Removed => "removed",
        }
    }

    pub fn parse(raw: &str) -> Option<KeyStatus> {
        match raw {
            "active" => Some(KeyStatus::Active),
            "superseded" => Some(KeyStatus::Superseded),
            "removed" => Some(KeyStatus::Removed),
            _ => None,
        }
    }
}

/// A credit ledger line: a grant (positive) or a charge (negative).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LedgerKind {
    Grant,
    Charge,
}

impl LedgerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            LedgerKind::Grant => "grant",
            LedgerKind::Charge => "charge",
        }
    }

    pub fn parse(raw: &str) -> Option<LedgerKind> {
        match raw {
            "grant" => Some(LedgerKind::Grant),
            "charge" => Some(LedgerKind::Charge),
            _ => None,
        }
    }
}

/// How an actor is written in projections and statements.
pub fn actor_name(actor: &Actor) -> String {
    match actor {
        Actor::User(user) => user.to_string(),
        Actor::Platform => "platform".to_owned(),
        Actor::Runtime => "runtime".to_owned(),
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct KeyRow {
    pub key_id: KeyId,
    pub provider: Provider,
    pub masked: String,
    pub status: KeyStatus,
    pub added_seq: u64,
    pub added_at: DateTime<Utc>,
    pub added_by: String,
    pub ended_at: Option<DateTime<Utc>>,
    pub ended_by: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LedgerRow {
    pub seq: u64,
    pub at: DateTime<Utc>,
    pub kind: LedgerKind,
    /// Signed: grants positive, charges negative.
    pub amount: i64,
    pub balance_after: Credits,
    pub reply_id: Option<String>,
    pub grant_id: Option<String>,
    pub model: Option<String>,
}

/// The billing-mode row of a workspace.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ModeRow {
    pub byo_enabled: bool,
    pub changed_at: Option<DateTime<Utc>>,
    pub changed_by: Option<String>,
    /// Active key per provider: (key id, masked form).
    pub active: BTreeMap<Provider, (KeyId, String)>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct BalanceRow {
    pub balance: Credits,
    pub granted: Credits,
    pub spent: Credits,
}

/// Key of a usage row: UTC day, route, model.
pub type UsageKey = (NaiveDate, Route, String);

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct UsageRow {
    pub replies: u64,
    pub credits_charged: u64,
    pub list_cost: u64,
}

impl UsageRow {
    /// Adds another row; saturating, because the sums of a workspace can
    /// never reach 2^64 (balances stop at 2^63).
    pub fn add(&mut self, other: &UsageRow) {
        self.replies = self.replies.saturating_add(other.replies);
        self.credits_charged = self.credits_charged.saturating_add(other.credits_charged);
        self.list_cost = self.list_cost.saturating_add(other.list_cost);
    }
}

/// One change to one projection row, derived from one event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RowOp {
    /// The workspace appears: its billing-mode and balance rows exist.
    WorkspaceOpened,
    KeyAdded(KeyRow),
    KeyEnded {
        key_id: KeyId,
        status: KeyStatus,
        at: DateTime<Utc>,
        by: String,
    },
    ActiveKeySet {
        provider: Provider,
        key_id: KeyId,
        masked: String,
    },
    /// Clears the provider's active key if it is still `key_id`.
    ActiveKeyCleared {
        provider: Provider,
        key_id: KeyId,
    },
    ByoSet {
        enabled: bool,
        at: DateTime<Utc>,
        by: String,
    },
    /// Adds to granted / spent and sets the balance the event recorded.
    Credits {
        granted: Credits,
        spent: Credits,
        balance_after: Credits,
    },
    Ledger(LedgerRow),
    Usage {
        key: UsageKey,
        row: UsageRow,
    },
}

/// What event number `sequence` of a workspace does to its projections.
pub fn row_ops(sequence: u64, event: &WorkspaceEvent) -> Vec<RowOp> {
    let at = event.at;
    let by = || actor_name(&event.by);
    match &event.change {
        Change::WorkspaceCreated { .. } => vec![RowOp::WorkspaceOpened],
        Change::MemberRoleSet { .. } | Change::MemberRemoved { .. } | Change::DataSourceTrained { .. } => vec![],
        Change::KeyAdded { key_id, provider, masked, .. } => vec![
            RowOp::KeyAdded(KeyRow {
                key_id: key_id.clone(),
                provider: *provider,
                masked: masked.as_str().to_owned(),
                status: KeyStatus::Active,
                added_seq: sequence,
                added_at: at,
                added_by: by(),
                ended_at: None,
                ended_by: None,
            }),
            RowOp::ActiveKeySet { provider: *provider, key_id: key_id.clone(), masked: masked.as_str().to_owned() },
        ],
        Change::KeySuperseded { key_id, provider, .. } => key_ended(key_id, *provider, KeyStatus::Superseded, at, by()),
        Change::KeyRemoved { key_id, provider } => key_ended(key_id, *provider, KeyStatus::Removed, at, by()),
        Change::ByoEnabled => vec![RowOp::ByoSet { enabled: true, at, by: by() }],
        Change::ByoDisabled => vec![RowOp::ByoSet { enabled: false, at, by: by() }],
        Change::CreditsGranted { grant_id, amount, balance_after, .. } => vec![
            RowOp::Credits { granted: *amount, spent: Credits::ZERO, balance_after: *balance_after },
            RowOp::Ledger(LedgerRow {
                seq: sequence,
                at,
                kind: LedgerKind::Grant,
                amount: amount.as_i64(),
                balance_after: *balance_after,
                reply_id: None,
                grant_id: Some(grant_id.to_string()),
                model: None,
            }),
        ],
        Change::ReplyServed { reply_id, model, route, credits_charged, list_cost, balance_after, .. } => {
            let usage = RowOp::Usage {
                key: (at.date_naive(), *route, model.clone()),
                row: UsageRow { replies: 1, credits_charged: credits_charged.get(), list_cost: list_cost.get() },
            };
            if *route != Route::Credits {
                // Only credit-metered activity is in the ledger and moves
                // the balance; BYO, local and unmetered replies are usage.
                return vec![usage];
            }
            vec![
                RowOp::Credits { granted: Credits::ZERO, spent: *credits_charged, balance_after: *balance_after },
                RowOp::Ledger(LedgerRow {
                    seq: sequence,
                    at,
                    kind: LedgerKind::Charge,
                    amount: -credits_charged.as_i64(),
                    balance_after: *balance_after,
                    reply_id: Some(reply_id.to_string()),
                    grant_id: None,
                    model: Some(model.clone()),
                }),
                usage,
            ]
        }
    }
}

fn key_ended(key_id: &KeyId, provider: Provider, status: KeyStatus, at: DateTime<Utc>, by: String) -> Vec<RowOp> {
    vec![
        RowOp::KeyEnded { key_id: key_id.clone(), status, at, by },
        RowOp::ActiveKeyCleared { provider, key_id: key_id.clone() },
    ]
}

/// The five projections of one workspace, in memory.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ReadModel {
    pub exists: bool,
    pub last_sequence: u64,
    pub keys: BTreeMap<KeyId, KeyRow>,
    pub mode: ModeRow,
    pub balance: BalanceRow,
    pub ledger: BTreeMap<u64, LedgerRow>,
    pub usage: BTreeMap<UsageKey, UsageRow>,
}

impl ReadModel {
    /// Applies event `sequence`; events at or below the last applied one
    /// are ignored, exactly as the SQL projector ignores re-deliveries.
    pub fn apply(&mut self, sequence: u64, event: &WorkspaceEvent) {
        if sequence <= self.last_sequence {
            return;
        }
        for op in row_ops(sequence, event) {
            self.apply_op(op);
        }
        self.last_sequence = sequence;
    }

    pub fn apply_op(&mut self, op: RowOp) {
        match op {
            RowOp::WorkspaceOpened => self.exists = true,
            RowOp::KeyAdded(row) => {
                self.keys.insert(row.key_id.clone(), row);
            }
            RowOp::KeyEnded { key_id, status, at, by } => {
                if let Some(row) = self.keys.get_mut(&key_id) {
                    row.status = status;
                    row.ended_at = Some(at);
                    row.ended_by = Some(by);
                }
            }
            RowOp::ActiveKeySet { provider, key_id, masked } => {
                self.mode.active.insert(provider, (key_id, masked));
            }
            RowOp::ActiveKeyCleared { provider, key_id } => {
                if self.mode.active.get(&provider).is_some_and(|(active, _)| *active == key_id) {
                    self.mode.active.remove(&provider);
                }
            }
            RowOp::ByoSet { enabled, at, by } => {
                self.mode.byo_enabled = enabled;
                self.mode.changed_at = Some(at);
                self.mode.changed_by = Some(by);
            }
            RowOp::Credits { granted, spent, balance_after } => {
                self.balance.granted = Credits::new(self.balance.granted.get().saturating_add(granted.get()));
                self.balance.spent = Credits::new(self.balance.spent.get().saturating_add(spent.get()));
                self.balance.balance = balance_after;
            }
            RowOp::Ledger(row) => {
                self.ledger.insert(row.seq, row);
            }
            RowOp::Usage { key, row } => self.usage.entry(key).or_default().add(&row),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::ModelProvider;
    use crate::ids::{AgentId, GrantId, ReplyId, UserId, WorkspaceId};
    use chrono::TimeZone;

    fn ev(change: Change) -> WorkspaceEvent {
        WorkspaceEvent { at: Utc.with_ymd_and_hms(2026, 5, 1, 12, 0, 0).unwrap(), by: Actor::Platform, change }
    }

    fn reply(route: Route, charged: u64, balance_after: u64) -> Change {
        Change::ReplyServed {
            reply_id: ReplyId::parse("r").unwrap(),
            agent_id: AgentId::parse("a").unwrap(),
            model: "gpt-4o".into(),
            provider: ModelProvider::Openai,
            route,
            key_id: None,
            credits_charged: Credits::new(charged),
            list_cost: Credits::new(5),
            balance_after: Credits::new(balance_after),
        }
    }

    #[test]
    fn only_credit_replies_reach_the_ledger_but_every_reply_is_usage() {
        let mut model = ReadModel::default();
        model.apply(
            1,
            &ev(Change::WorkspaceCreated {
                workspace_id: WorkspaceId::parse("w").unwrap(),
                owner: UserId::parse("o").unwrap(),
            }),
        );
        model.apply(
            2,
            &ev(Change::CreditsGranted {
                grant_id: GrantId::parse("g").unwrap(),
                amount: Credits::new(20),
                reason: String::new(),
                balance_after: Credits::new(20),
            }),
        );
        model.apply(3, &ev(reply(Route::Credits, 5, 15)));
        model.apply(4, &ev(reply(Route::Byo, 0, 15)));
        model.apply(5, &ev(reply(Route::Local, 0, 15)));
        assert_eq!(model.ledger.len(), 2);
        assert_eq!(model.ledger[&3].amount, -5);
        assert_eq!(
            model.balance,
            BalanceRow { balance: Credits::new(15), granted: Credits::new(20), spent: Credits::new(5) }
        );
        let day = Utc.with_ymd_and_hms(2026, 5, 1, 0, 0, 0).unwrap().date_naive();
        assert_eq!(model.usage[&(day, Route::Byo, "gpt-4o".to_owned())].list_cost, 5);
        assert_eq!(model.usage.values().map(|u| u.replies).sum::<u64>(), 3);
    }

    #[test]
    fn a_redelivered_event_is_applied_once() {
        let mut model = ReadModel::default();
        let grant = ev(Change::CreditsGranted {
            grant_id: GrantId::parse("g").unwrap(),
            amount: Credits::new(7),
            reason: String::new(),
            balance_after: Credits::new(7),
        });
        model.apply(1, &grant);
        model.apply(1, &grant);
        assert_eq!(model.balance.granted, Credits::new(7));
    }
}
