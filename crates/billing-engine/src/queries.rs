//! The contract's queries, read from the projection tables. Each answer is
//! a plain serializable view whose JSON is the contract's shape.

use billing_domain::readmodel::{KeyStatus, LedgerKind};
use billing_domain::{Metering, Provider, Route};
use chrono::{DateTime, Days, NaiveDate, NaiveTime, Utc};
use serde::Serialize;
use sqlx::Row;
use std::collections::BTreeMap;
use utoipa::ToSchema;

use crate::error::StoreError;
use crate::on_pool;
use crate::store::Store;

/// Largest ledger page.
pub const LEDGER_PAGE_MAX: u32 = 1_000;
/// Ledger page when the caller names none.
pub const LEDGER_PAGE_DEFAULT: u32 = 100;
/// Largest page of `GET .../events`.
pub const EVENTS_PAGE_MAX: u32 = 1_000;
/// Keys a workspace lists at most in one answer (newest first).
pub const KEYS_LISTED_MAX: i64 = 1_000;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct KeyView {
    pub provider: String,
    pub key_id: String,
    pub masked: String,
    #[schema(value_type = String)]
    pub status: KeyStatus,
    pub added_at: DateTime<Utc>,
    pub added_by: String,
    pub ended_at: Option<DateTime<Utc>>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct KeysView {
    pub keys: Vec<KeyView>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct ProviderMode {
    /// The masked active key, or null.
    pub active_key: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct BillingModeView {
    pub byo_enabled: bool,
    pub changed_at: Option<DateTime<Utc>>,
    pub changed_by: Option<String>,
    #[schema(value_type = String)]
    pub metering: Metering,
    pub providers: BTreeMap<String, ProviderMode>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct CreditsView {
    pub balance: u64,
    pub granted: u64,
    pub spent: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct LedgerEntry {
    pub seq: u64,
    pub at: DateTime<Utc>,
    #[schema(value_type = String)]
    pub kind: LedgerKind,
    /// Signed: grants positive, charges negative.
    pub amount: i64,
    pub balance_after: u64,
    pub reply_id: Option<String>,
    pub grant_id: Option<String>,
    pub model: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct LedgerPage {
    pub entries: Vec<LedgerEntry>,
    pub next_after: Option<u64>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct UsageCounts {
    pub replies: u64,
    pub credits_charged: u64,
    pub list_cost: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct UsageView {
    /// Start of the first UTC day counted (null: from the beginning).
    pub from: Option<DateTime<Utc>>,
    /// End (exclusive) of the last UTC day counted (null: up to now).
    pub to: Option<DateTime<Utc>>,
    pub routes: BTreeMap<String, UsageCounts>,
    pub models: BTreeMap<String, UsageCounts>,
}

/// The whole UTC days a `[from, to)` range of instants touches: usage is
/// kept per day, so a range is widened to the days it overlaps.
pub fn usage_days(from: Option<DateTime<Utc>>, to: Option<DateTime<Utc>>) -> (Option<NaiveDate>, Option<NaiveDate>) {
    let first = from.map(|t| t.date_naive());
    let end = to.map(|t| {
        let day = t.date_naive();
        if t.time() == NaiveTime::MIN {
            day
        } else {
            day.checked_add_days(Days::new(1)).unwrap_or(day)
        }
    });
    (first, end)
}

fn day_start(day: NaiveDate) -> DateTime<Utc> {
    day.and_time(NaiveTime::MIN).and_utc()
}

fn unsigned(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

impl Store {
    /// True when the projections know `workspace`.
    pub async fn projected_workspace_exists(&self, workspace: &str) -> Result<bool, StoreError> {
        on_pool!(self.db(), reader, |pool| {
            let row = sqlx::query("SELECT 1 FROM billing_mode WHERE workspace_id = $1")
                .bind(workspace)
                .fetch_optional(pool)
                .await?;
            Ok(row.is_some())
        })
    }

    pub async fn query_keys(&self, workspace: &str) -> Result<KeysView, StoreError> {
        on_pool!(self.db(), reader, |pool| {
            let rows = sqlx::query(
                "SELECT provider, key_id, masked, status, added_at, added_by, ended_at FROM key_view \
                 WHERE workspace_id = $1 ORDER BY added_seq DESC LIMIT $2",
            )
            .bind(workspace)
            .bind(KEYS_LISTED_MAX)
            .fetch_all(pool)
            .await?;
            let mut keys = Vec::with_capacity(rows.len());
            for row in rows {
                let status: String = row.try_get(3)?;
                keys.push(KeyView {
                    provider: row.try_get(0)?,
                    key_id: row.try_get(1)?,
                    masked: row.try_get(2)?,
                    status: KeyStatus::parse(&status).ok_or_else(|| StoreError::Corrupt(format!("status {status}")))?,
                    added_at: row.try_get(4)?,
                    added_by: row.try_get(5)?,
                    ended_at: row.try_get(6)?,
                });
            }
            Ok(KeysView { keys })
        })
    }

    pub async fn query_billing_mode(
        &self,
        workspace: &str,
        metering: Metering,
    ) -> Result<Option<BillingModeView>, StoreError> {
        on_pool!(self.db(), reader, |pool| {
            let row = sqlx::query(
                "SELECT byo_enabled, changed_at, changed_by, openai_masked, anthropic_masked FROM billing_mode \
                 WHERE workspace_id = $1",
            )
            .bind(workspace)
            .fetch_optional(pool)
            .await?;
            let Some(row) = row else { return Ok(None) };
            let mut providers = BTreeMap::new();
            for (provider, column) in [(Provider::Openai, 3), (Provider::Anthropic, 4)] {
                providers.insert(provider.as_str().to_owned(), ProviderMode { active_key: row.try_get(column)? });
            }
            Ok(Some(BillingModeView {
                byo_enabled: row.try_get(0)?,
                changed_at: row.try_get(1)?,
                changed_by: row.try_get(2)?,
                metering,
                providers,
            }))
        })
    }

    pub async fn query_credits(&self, workspace: &str) -> Result<CreditsView, StoreError> {
        on_pool!(self.db(), reader, |pool| {
            let row = sqlx::query("SELECT balance, granted, spent FROM credit_balances WHERE workspace_id = $1")
                .bind(workspace)
                .fetch_optional(pool)
                .await?;
            Ok(match row {
                Some(row) => CreditsView {
                    balance: unsigned(row.try_get(0)?),
                    granted: unsigned(row.try_get(1)?),
                    spent: unsigned(row.try_get(2)?),
                },
                None => CreditsView::default(),
            })
        })
    }

    /// Ledger entries with `seq > after`, at most `limit`, oldest first.
    pub async fn query_ledger(&self, workspace: &str, after: u64, limit: u32) -> Result<LedgerPage, StoreError> {
        let limit = limit.clamp(1, LEDGER_PAGE_MAX);
        let after = i64::try_from(after).unwrap_or(i64::MAX);
        on_pool!(self.db(), reader, |pool| {
            // One row more than asked tells whether anything follows.
            let rows = sqlx::query(
                "SELECT seq, at, kind, amount, balance_after, reply_id, grant_id, model FROM credit_ledger \
                 WHERE workspace_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
            )
            .bind(workspace)
            .bind(after)
            .bind(i64::from(limit) + 1)
            .fetch_all(pool)
            .await?;
            let more = rows.len() > limit as usize;
            let mut entries = Vec::with_capacity(rows.len());
            for row in rows.into_iter().take(limit as usize) {
                let kind: String = row.try_get(2)?;
                entries.push(LedgerEntry {
                    seq: unsigned(row.try_get(0)?),
                    at: row.try_get(1)?,
                    kind: LedgerKind::parse(&kind).ok_or_else(|| StoreError::Corrupt(format!("kind {kind}")))?,
                    amount: row.try_get(3)?,
                    balance_after: unsigned(row.try_get(4)?),
                    reply_id: row.try_get(5)?,
                    grant_id: row.try_get(6)?,
                    model: row.try_get(7)?,
                });
            }
            let next_after = if more { entries.last().map(|e| e.seq) } else { None };
            Ok(LedgerPage { entries, next_after })
        })
    }

    /// Usage per route and per model over the UTC days `[from, to)` touches.
    pub async fn query_usage(
        &self,
        workspace: &str,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
    ) -> Result<UsageView, StoreError> {
        let (first, end) = usage_days(from, to);
        // Four-digit years compare correctly as SQLite text and as dates.
        let first_bound = first.unwrap_or(NaiveDate::from_ymd_opt(1, 1, 1).unwrap_or_default());
        let end_bound = end.unwrap_or(NaiveDate::from_ymd_opt(9999, 12, 31).unwrap_or_default());
        on_pool!(self.db(), reader, |pool| {
            let rows = sqlx::query(
                "SELECT route, model, CAST(SUM(replies) AS bigint), CAST(SUM(credits_charged) AS bigint), \
                 CAST(SUM(list_cost) AS bigint) FROM usage_daily \
                 WHERE workspace_id = $1 AND day >= $2 AND day < $3 GROUP BY route, model",
            )
            .bind(workspace)
            .bind(first_bound)
            .bind(end_bound)
            .fetch_all(pool)
            .await?;
            let mut routes: BTreeMap<String, UsageCounts> =
                Route::ALL.iter().map(|r| (r.as_str().to_owned(), UsageCounts::default())).collect();
            let mut models: BTreeMap<String, UsageCounts> = BTreeMap::new();
            for row in rows {
                let route: String = row.try_get(0)?;
                let model: String = row.try_get(1)?;
                let counts = UsageCounts {
                    replies: unsigned(row.try_get(2)?),
                    credits_charged: unsigned(row.try_get(3)?),
                    list_cost: unsigned(row.try_get(4)?),
                };
                for target in [routes.entry(route).or_default(), models.entry(model).or_default()] {
                    target.replies = target.replies.saturating_add(counts.replies);
                    target.credits_charged = target.credits_charged.saturating_add(counts.credits_charged);
                    target.list_cost = target.list_cost.saturating_add(counts.list_cost);
                }
            }
            Ok(UsageView { from: first.map(day_start), to: end.map(day_start), routes, models })
        })
    }
}
