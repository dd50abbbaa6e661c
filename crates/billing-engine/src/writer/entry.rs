//! A workspace held in memory by its shard writer: the aggregate, the
//! version it is at, the head of its hash chain and its active keys'
//! sealed secrets. Built from a snapshot plus the tail of events after it.

use billing_domain::{Provider, SealedKey, Workspace};
use chrono::{DateTime, Utc};
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use crate::chain::GENESIS_HASH;
use crate::error::StoreError;
use crate::store::LoadedWorkspace;

/// A snapshot is written every this many events of a workspace, so that
/// loading one reads at most this many events whatever its history.
pub const SNAPSHOT_EVERY_EVENTS: u64 = 500;

/// Format of `workspace_snapshots.payload`; a snapshot of another format
/// is ignored and the workspace is rebuilt from its events.
const SNAPSHOT_FORMAT: u32 = 1;

#[derive(Debug)]
pub(crate) struct Entry {
    pub state: Workspace,
    pub version: u64,
    pub last_hash: String,
    pub last_at: DateTime<Utc>,
    pub sealed: BTreeMap<Provider, SealedKey>,
    pub snapshot_version: u64,
}

#[derive(Serialize, Deserialize)]
struct SnapshotPayload {
    format: u32,
    aggregate: Workspace,
    last_hash: String,
    last_at: DateTime<Utc>,
}

impl Entry {
    pub fn empty() -> Entry {
        Entry {
            state: Workspace::default(),
            version: 0,
            last_hash: GENESIS_HASH.to_owned(),
            last_at: DateTime::<Utc>::MIN_UTC,
            sealed: BTreeMap::new(),
            snapshot_version: 0,
        }
    }

    /// Folds what the store returned. `Ok(None)` when the snapshot is of
    /// another shape (an older build wrote it): load again without it.
    /// `Err` when the stored history is not contiguous or not readable: the
    /// workspace then takes no command until someone looks (never guess
    /// with money).
    pub fn from_loaded(loaded: LoadedWorkspace) -> Result<Option<Entry>, StoreError> {
        let mut entry = Entry::empty();
        if let Some((sequence, payload)) = loaded.snapshot {
            let Ok(snapshot) = serde_json::from_value::<SnapshotPayload>(payload) else { return Ok(None) };
            if snapshot.format != SNAPSHOT_FORMAT {
                return Ok(None);
            }
            entry.state = snapshot.aggregate;
            entry.version = sequence;
            entry.snapshot_version = sequence;
            entry.last_hash = snapshot.last_hash;
            entry.last_at = snapshot.last_at;
        }
        for stored in loaded.events {
            if stored.sequence != entry.version + 1 {
                return Err(StoreError::Corrupt(format!(
                    "workspace {} jumps from sequence {} to {}",
                    stored.workspace_id, entry.version, stored.sequence
                )));
            }
            let event = stored.decode()?;
            entry.last_at = event.at;
            entry.state.apply(event);
            entry.version = stored.sequence;
            entry.last_hash = stored.hash().unwrap_or(GENESIS_HASH).to_owned();
        }
        for (key_id, provider, sealed) in loaded.secrets {
            let Ok(provider) = Provider::parse(&provider) else { continue };
            let active = entry.state.active_key(provider).map(|k| k.key_id.as_str()) == Some(key_id.as_str());
            if active {
                let key_id = billing_domain::KeyId::parse(&key_id).map_err(|e| StoreError::Corrupt(e.to_string()))?;
                entry.sealed.insert(provider, SealedKey { key_id, sealed });
            }
        }
        Ok(Some(entry))
    }

    /// True when a snapshot is due.
    pub fn snapshot_due(&self) -> bool {
        self.version - self.snapshot_version >= SNAPSHOT_EVERY_EVENTS
    }

    pub fn snapshot_payload(&self) -> Result<serde_json::Value, StoreError> {
        Ok(serde_json::to_value(SnapshotPayload {
            format: SNAPSHOT_FORMAT,
            aggregate: self.state.clone(),
            last_hash: self.last_hash.clone(),
            last_at: self.last_at,
        })?)
    }
}
