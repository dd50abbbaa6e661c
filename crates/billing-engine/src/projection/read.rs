//! Reading one workspace's projection rows back into the domain's
//! [`ReadModel`], so that the audit and the tests can compare the tables
//! with a fresh fold of the events, field by field.

use billing_domain::readmodel::{BalanceRow, KeyRow, KeyStatus, LedgerKind, LedgerRow, ReadModel, UsageRow};
use billing_domain::{Credits, KeyId, Provider, Route};
use chrono::{DateTime, NaiveDate, Utc};
use sqlx::Row;
use std::collections::BTreeMap;

use crate::error::StoreError;
use crate::on_pool;
use crate::store::Store;

fn count(value: i64, what: &str) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| StoreError::Corrupt(format!("negative {what}: {value}")))
}

fn key_id(raw: String) -> Result<KeyId, StoreError> {
    KeyId::parse(&raw).map_err(|_| StoreError::Corrupt(format!("key id {raw:?}")))
}

fn provider(raw: &str) -> Result<Provider, StoreError> {
    Provider::parse(raw).map_err(|_| StoreError::Corrupt(format!("provider {raw:?}")))
}

/// The projection rows of `workspace` as a [`ReadModel`].
pub async fn read_model(store: &Store, workspace: &str) -> Result<ReadModel, StoreError> {
    let mut model = read_model_without_ledger(store, workspace).await?;
    model.ledger = read_ledger_range(store, workspace, 0, u64::MAX).await?;
    Ok(model)
}

/// Ledger rows of `workspace` with `after < seq <= upto`.
pub async fn read_ledger_range(
    store: &Store,
    workspace: &str,
    after: u64,
    upto: u64,
) -> Result<BTreeMap<u64, LedgerRow>, StoreError> {
    let after = i64::try_from(after).unwrap_or(i64::MAX);
    let upto = i64::try_from(upto).unwrap_or(i64::MAX);
    on_pool!(store.db(), reader, |pool| {
        let rows = sqlx::query(
            "SELECT seq, at, kind, amount, balance_after, reply_id, grant_id, model FROM credit_ledger \
             WHERE workspace_id = $1 AND seq > $2 AND seq <= $3",
        )
        .bind(workspace)
        .bind(after)
        .bind(upto)
        .fetch_all(pool)
        .await?;
        let mut ledger = BTreeMap::new();
        for row in rows {
            let kind: String = row.try_get(2)?;
            let entry = LedgerRow {
                seq: count(row.try_get(0)?, "seq")?,
                at: row.try_get(1)?,
                kind: LedgerKind::parse(&kind).ok_or_else(|| StoreError::Corrupt(format!("kind {kind:?}")))?,
                amount: row.try_get(3)?,
                balance_after: Credits::new(count(row.try_get(4)?, "balance")?),
                reply_id: row.try_get(5)?,
                grant_id: row.try_get(6)?,
                model: row.try_get(7)?,
            };
            ledger.insert(entry.seq, entry);
        }
        Ok(ledger)
    })
}

/// Every projection of `workspace` but its ledger (which can be as long as
/// its history; [`read_ledger_range`] reads it in parts).
pub async fn read_model_without_ledger(store: &Store, workspace: &str) -> Result<ReadModel, StoreError> {
    on_pool!(store.db(), reader, |pool| {
        let mut model = ReadModel::default();
        let offset = sqlx::query("SELECT last_sequence FROM projection_offsets WHERE workspace_id = $1")
            .bind(workspace)
            .fetch_optional(pool)
            .await?;
        if let Some(row) = offset {
            model.last_sequence = count(row.try_get(0)?, "offset")?;
        }
        let mode = sqlx::query(
            "SELECT byo_enabled, changed_at, changed_by, openai_key_id, openai_masked, anthropic_key_id, \
             anthropic_masked FROM billing_mode WHERE workspace_id = $1",
        )
        .bind(workspace)
        .fetch_optional(pool)
        .await?;
        if let Some(row) = mode {
            model.exists = true;
            model.mode.byo_enabled = row.try_get(0)?;
            model.mode.changed_at = row.try_get(1)?;
            model.mode.changed_by = row.try_get(2)?;
            for (p, id_col, masked_col) in [(Provider::Openai, 3, 4), (Provider::Anthropic, 5, 6)] {
                let id: Option<String> = row.try_get(id_col)?;
                let masked: Option<String> = row.try_get(masked_col)?;
                if let (Some(id), Some(masked)) = (id, masked) {
                    model.mode.active.insert(p, (key_id(id)?, masked));
                }
            }
        }
        let balance = sqlx::query("SELECT balance, granted, spent FROM credit_balances WHERE workspace_id = $1")
            .bind(workspace)
            .fetch_optional(pool)
            .await?;
        if let Some(row) = balance {
            model.balance = BalanceRow {
                balance: Credits::new(count(row.try_get(0)?, "balance")?),
                granted: Credits::new(count(row.try_get(1)?, "granted")?),
                spent: Credits::new(count(row.try_get(2)?, "spent")?),
            };
        }
        let keys = sqlx::query(
            "SELECT key_id, provider, masked, status, added_seq, added_at, added_by, ended_at, ended_by \
             FROM key_view WHERE workspace_id = $1",
        )
        .bind(workspace)
        .fetch_all(pool)
        .await?;
        for row in keys {
            let status: String = row.try_get(3)?;
            let provider_raw: String = row.try_get(1)?;
            let key = KeyRow {
                key_id: key_id(row.try_get(0)?)?,
                provider: provider(&provider_raw)?,
                masked: row.try_get(2)?,
                status: KeyStatus::parse(&status).ok_or_else(|| StoreError::Corrupt(format!("status {status:?}")))?,
                added_seq: count(row.try_get(4)?, "sequence")?,
                added_at: row.try_get::<DateTime<Utc>, _>(5)?,
                added_by: row.try_get(6)?,
                ended_at: row.try_get(7)?,
                ended_by: row.try_get(8)?,
            };
            model.keys.insert(key.key_id.clone(), key);
        }
        let usage = sqlx::query(
            "SELECT day, route, model, replies, credits_charged, list_cost FROM usage_daily WHERE workspace_id = $1",
        )
        .bind(workspace)
        .fetch_all(pool)
        .await?;
        for row in usage {
            let route_raw: String = row.try_get(1)?;
            let route = Route::parse(&route_raw).ok_or_else(|| StoreError::Corrupt(format!("route {route_raw:?}")))?;
            let day: NaiveDate = row.try_get(0)?;
            let counts = UsageRow {
                replies: count(row.try_get(3)?, "replies")?,
                credits_charged: count(row.try_get(4)?, "credits")?,
                list_cost: count(row.try_get(5)?, "list cost")?,
            };
            model.usage.insert((day, route, row.try_get(2)?), counts);
        }
        Ok(model)
    })
}
