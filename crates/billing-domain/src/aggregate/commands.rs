//! Commands to a workspace. Every value in them is already parsed at the
//! edge; the aggregate decides only the rules that need state.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ids::{AgentId, DataSourceId, GrantId, KeyId, ReplyId, UserId, WorkspaceId};
use crate::keys::{Provider, ProviderKey};
use crate::money::Credits;

/// Longest grant reason kept in an event.
pub const REASON_LEN_MAX: usize = 1024;

/// A workspace member's role.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Admin,
    Member,
}

/// Which bearer token the command came with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    /// The platform backend and dashboards (`BILLING_API_TOKEN`).
    Platform,
    /// The agent runtime (`BILLING_RUNTIME_TOKEN`): replies only.
    Runtime,
}

#[derive(Clone, Debug)]
pub struct WorkspaceCommand {
    /// When the engine received the command; recorded on every event.
    pub at: DateTime<Utc>,
    /// The `X-Actor-Id`, if the caller sent one.
    pub actor: Option<UserId>,
    pub channel: Channel,
    pub action: Action,
}

#[derive(Clone, Debug)]
pub enum Action {
    CreateWorkspace {
        workspace_id: WorkspaceId,
        owner: UserId,
    },
    SetMemberRole {
        user: UserId,
        role: Role,
    },
    RemoveMember {
        user: UserId,
    },
    /// `key_id` is chosen by the engine for the key, should it be stored.
    AddKey {
        key_id: KeyId,
        provider: Provider,
        key: ProviderKey,
    },
    RemoveKey {
        provider: Provider,
    },
    SetByo {
        enabled: bool,
    },
    GrantCredits {
        grant_id: GrantId,
        amount: Credits,
        reason: String,
    },
    /// `model` is the raw model id the agent asked for: an id the catalog
    /// does not know is `unknown_model`, whatever its characters.
    ServeReply {
        reply_id: ReplyId,
        agent_id: AgentId,
        model: String,
    },
    TrainDataSource {
        data_source_id: DataSourceId,
    },
}

impl Action {
    /// A short name for logs and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Action::CreateWorkspace { .. } => "create_workspace",
            Action::SetMemberRole { .. } => "set_member_role",
            Action::RemoveMember { .. } => "remove_member",
            Action::AddKey { .. } => "add_key",
            Action::RemoveKey { .. } => "remove_key",
            Action::SetByo { .. } => "set_byo",
            Action::GrantCredits { .. } => "grant_credits",
            Action::ServeReply { .. } => "serve_reply",
            Action::TrainDataSource { .. } => "train_data_source",
        }
    }
}
