//! A stored event as read back, its place in the global order, and the
//! upcasters that bring old payload shapes to the current one.

use billing_domain::WorkspaceEvent;
use chrono::{DateTime, Utc};
use cqrs_es::persist::{EventUpcaster, SemanticVersionEventUpcaster, SerializedEvent};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::Row;
use std::sync::LazyLock;

use crate::db::Backend;
use crate::error::StoreError;

/// A place in the global order of the log: `(tx_id, position)`. On SQLite
/// `tx_id` is always 0 and `position` alone orders the log.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Cursor {
    pub tx_id: i64,
    pub position: i64,
}

impl Cursor {
    pub const START: Cursor = Cursor { tx_id: 0, position: 0 };
}

/// One row of `events`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StoredEvent {
    pub workspace_id: String,
    pub sequence: u64,
    pub event_type: String,
    pub event_version: String,
    pub payload: Value,
    pub metadata: Value,
    pub position: i64,
    pub tx_id: i64,
    pub recorded_at: DateTime<Utc>,
}

/// The columns every event read selects, in [`StoredEvent::from_row`]'s order.
pub(crate) fn event_columns(backend: Backend) -> &'static str {
    match backend {
        Backend::Postgres => {
            "aggregate_id, sequence, event_type, event_version, payload, metadata, position, \
             (tx_id::text)::bigint AS tx_id, recorded_at"
        }
        Backend::Sqlite => {
            "aggregate_id, sequence, event_type, event_version, payload, metadata, position, tx_id, recorded_at"
        }
    }
}

impl StoredEvent {
    pub(crate) fn from_row<'r, R>(row: &'r R) -> Result<StoredEvent, StoreError>
    where
        R: Row,
        usize: sqlx::ColumnIndex<R>,
        String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
        i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
        Value: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
        DateTime<Utc>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    {
        let sequence: i64 = row.try_get(1)?;
        Ok(StoredEvent {
            workspace_id: row.try_get(0)?,
            sequence: u64::try_from(sequence).map_err(|_| StoreError::Corrupt(format!("sequence {sequence}")))?,
            event_type: row.try_get(2)?,
            event_version: row.try_get(3)?,
            payload: row.try_get(4)?,
            metadata: row.try_get(5)?,
            position: row.try_get(6)?,
            tx_id: row.try_get(7)?,
            recorded_at: row.try_get(8)?,
        })
    }

    pub fn cursor(&self) -> Cursor {
        Cursor { tx_id: self.tx_id, position: self.position }
    }

    /// The event in its current shape (upcast when it was stored older).
    pub fn decode(&self) -> Result<WorkspaceEvent, StoreError> {
        decode_payload(&self.event_type, &self.event_version, self.payload.clone())
    }

    /// `metadata.hash`, if present.
    pub fn hash(&self) -> Option<&str> {
        self.metadata.get("hash").and_then(Value::as_str)
    }

    /// `metadata.prev_hash`, if present.
    pub fn prev_hash(&self) -> Option<&str> {
        self.metadata.get("prev_hash").and_then(Value::as_str)
    }
}

/// The upcasters of this build, oldest shape first. Each rewrites a payload
/// of an older `event_version` into the next shape; cqrs-es's
/// `SemanticVersionEventUpcaster` applies one when the stored version is
/// older than its own.
pub fn upcasters() -> &'static [Box<dyn EventUpcaster>] {
    static UPCASTERS: LazyLock<Vec<Box<dyn EventUpcaster>>> = LazyLock::new(|| {
        vec![Box::new(SemanticVersionEventUpcaster::new("CreditsGranted", "2", Box::new(credits_granted_v1_to_v2)))]
    });
    &UPCASTERS
}

/// Version 1 of `CreditsGranted` (before the grant reason was recorded)
/// had no `reason`; version 2 always has one. Old grants read as having
/// an empty reason, so a statement never has to guess.
fn credits_granted_v1_to_v2(mut payload: Value) -> Value {
    if let Value::Object(map) = &mut payload {
        map.entry("reason").or_insert_with(|| Value::String(String::new()));
    }
    payload
}

/// Decodes a stored payload of `event_type` / `event_version` into the
/// current event shape.
pub fn decode_payload(event_type: &str, event_version: &str, payload: Value) -> Result<WorkspaceEvent, StoreError> {
    let serialized = SerializedEvent {
        aggregate_id: String::new(),
        sequence: 0,
        aggregate_type: String::new(),
        event_type: event_type.to_owned(),
        event_version: event_version.to_owned(),
        payload,
        metadata: Value::Null,
    };
    let upcast = upcasters().iter().fold(serialized, |event, upcaster| {
        if upcaster.can_upcast(&event.event_type, &event.event_version) {
            upcaster.upcast(event)
        } else {
            event
        }
    });
    let event: WorkspaceEvent = serde_json::from_value(upcast.payload)?;
    if event.change.event_type() != event_type {
        return Err(StoreError::Corrupt(format!(
            "event_type column says {event_type}, payload says {}",
            event.change.event_type()
        )));
    }
    Ok(event)
}
