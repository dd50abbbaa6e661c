//! Events of a workspace: the immutable record of every billing decision.
//! Every event says who did it and when, and carries a version for
//! upcasting. No event holds a plaintext key or anything it can be
//! recomputed from without the master key.

use chrono::{DateTime, Utc};
use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};

use super::commands::Role;
use crate::catalog::ModelProvider;
use crate::ids::{AgentId, DataSourceId, GrantId, KeyId, ReplyId, UserId, WorkspaceId};
use crate::keys::{Fingerprint, MaskedKey, Provider};
use crate::money::Credits;
use crate::routing::Route;

/// The version of an event type's payload shape. A type's version moves
/// when its shape changes; the store keeps an upcaster from every older
/// version, so events stored years ago still replay.
///
/// `CreditsGranted` 2 added `reason`; every other type is at its first shape.
pub fn event_version_of(event_type: &str) -> &'static str {
    match event_type {
        "CreditsGranted" => "2",
        _ => "1",
    }
}

/// Who caused an event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Actor {
    User(UserId),
    Platform,
    Runtime,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkspaceEvent {
    pub at: DateTime<Utc>,
    pub by: Actor,
    #[serde(flatten)]
    pub change: Change,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum Change {
    WorkspaceCreated {
        workspace_id: WorkspaceId,
        owner: UserId,
    },
    MemberRoleSet {
        user: UserId,
        role: Role,
    },
    MemberRemoved {
        user: UserId,
    },
    KeyAdded {
        key_id: KeyId,
        provider: Provider,
        masked: MaskedKey,
        fingerprint: Fingerprint,
    },
    KeySuperseded {
        key_id: KeyId,
        provider: Provider,
        superseded_by: KeyId,
    },
    KeyRemoved {
        key_id: KeyId,
        provider: Provider,
    },
    ByoEnabled,
    ByoDisabled,
    CreditsGranted {
        grant_id: GrantId,
        amount: Credits,
        reason: String,
        balance_after: Credits,
    },
    ReplyServed {
        reply_id: ReplyId,
        agent_id: AgentId,
        model: String,
        provider: ModelProvider,
        route: Route,
        key_id: Option<KeyId>,
        credits_charged: Credits,
        list_cost: Credits,
        balance_after: Credits,
    },
    DataSourceTrained {
        data_source_id: DataSourceId,
    },
}

impl Change {
    pub fn event_type(&self) -> &'static str {
        match self {
            Change::WorkspaceCreated { .. } => "WorkspaceCreated",
            Change::MemberRoleSet { .. } => "MemberRoleSet",
            Change::MemberRemoved { .. } => "MemberRemoved",
            Change::KeyAdded { .. } => "KeyAdded",
            Change::KeySuperseded { .. } => "KeySuperseded",
            Change::KeyRemoved { .. } => "KeyRemoved",
            Change::ByoEnabled => "ByoEnabled",
            Change::ByoDisabled => "ByoDisabled",
            Change::CreditsGranted { .. } => "CreditsGranted",
            Change::ReplyServed { .. } => "ReplyServed",
            Change::DataSourceTrained { .. } => "DataSourceTrained",
        }
    }
}

impl DomainEvent for WorkspaceEvent {
    fn event_type(&self) -> String {
        self.change.event_type().to_owned()
    }

    fn event_version(&self) -> String {
        event_version_of(self.change.event_type()).to_owned()
    }
}
