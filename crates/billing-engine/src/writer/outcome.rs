//! What a decided command answers, built from the events it emitted and the
//! state after them, so that a repeated command answers exactly as the
//! first time.

use billing_domain::{
    Action, Change, Channel, Credits, KeyId, MaskedKey, ModelProvider, Provider, ProviderKey, ReplyId, Route,
    SealedKey, WorkspaceEvent,
};

use super::entry::Entry;

/// The answer to one command.
#[derive(Clone, Debug)]
pub enum Outcome {
    Created,
    /// `changed` is false when the member already had that role.
    RoleSet {
        changed: bool,
    },
    MemberRemoved,
    /// `changed` is false when the same key was already active.
    KeyAdded {
        key_id: KeyId,
        provider: Provider,
        masked: MaskedKey,
        superseded_key_id: Option<KeyId>,
        changed: bool,
    },
    KeyRemoved {
        key_id: KeyId,
    },
    Byo {
        enabled: bool,
        changed: bool,
    },
    /// `balance` is the balance right after this grant (the first time).
    Granted {
        balance: Credits,
        repeated: bool,
    },
    Reply(ReplyAnswer),
    Trained,
}

#[derive(Clone, Debug)]
pub struct ReplyAnswer {
    pub reply_id: ReplyId,
    pub route: Route,
    pub provider: ModelProvider,
    pub model: String,
    pub credits_charged: Credits,
    pub list_cost: Credits,
    /// The balance right after the reply was first decided.
    pub balance: Credits,
    pub key_id: Option<KeyId>,
    pub repeated: bool,
    /// The decrypted key: only for the runtime token, only on `byo`, only
    /// while the key that served the reply is still active.
    pub api_key: Option<ProviderKey>,
    /// The sealed key the engine opens into `api_key` outside the writer.
    pub(crate) sealed: Option<SealedKey>,
}

/// The answer of `action` given the `events` it emitted and `entry` after
/// them. `None` only if the aggregate broke its own contract (a success
/// without the state it implies): the engine logs it and answers 503
/// rather than panic in a writer.
pub(crate) fn outcome_of(
    action: &Action,
    channel: Channel,
    events: &[WorkspaceEvent],
    entry: &Entry,
) -> Option<Outcome> {
    let changed = !events.is_empty();
    Some(match action {
        Action::CreateWorkspace { .. } => Outcome::Created,
        Action::SetMemberRole { .. } => Outcome::RoleSet { changed },
        Action::RemoveMember { .. } => Outcome::MemberRemoved,
        Action::AddKey { provider, .. } => key_added(*provider, events, entry)?,
        Action::RemoveKey { .. } => Outcome::KeyRemoved {
            key_id: events.iter().find_map(|e| match &e.change {
                Change::KeyRemoved { key_id, .. } => Some(key_id.clone()),
                _ => None,
            })?,
        },
        Action::SetByo { enabled } => Outcome::Byo { enabled: *enabled, changed },
        Action::GrantCredits { grant_id, .. } => {
            Outcome::Granted { balance: entry.state.grant(grant_id)?.balance_after, repeated: !changed }
        }
        Action::ServeReply { reply_id, .. } => Outcome::Reply(reply_answer(reply_id, channel, !changed, entry)?),
        Action::TrainDataSource { .. } => Outcome::Trained,
    })
}

fn key_added(provider: Provider, events: &[WorkspaceEvent], entry: &Entry) -> Option<Outcome> {
    let superseded_key_id = events.iter().find_map(|e| match &e.change {
        Change::KeySuperseded { key_id, .. } => Some(key_id.clone()),
        _ => None,
    });
    let active = entry.state.active_key(provider)?;
    Some(Outcome::KeyAdded {
        key_id: active.key_id.clone(),
        provider,
        masked: active.masked.clone(),
        superseded_key_id,
        changed: !events.is_empty(),
    })
}

fn reply_answer(reply_id: &ReplyId, channel: Channel, repeated: bool, entry: &Entry) -> Option<ReplyAnswer> {
    let record = entry.state.reply(reply_id)?;
    let sealed = match (channel, record.route, record.provider.key_provider()) {
        (Channel::Runtime, Route::Byo, Some(provider)) => {
            entry.sealed.get(&provider).filter(|s| Some(&s.key_id) == record.key_id.as_ref()).cloned()
        }
        _ => None,
    };
    Some(ReplyAnswer {
        reply_id: reply_id.clone(),
        route: record.route,
        provider: record.provider,
        model: record.model.clone(),
        credits_charged: record.credits_charged,
        list_cost: record.list_cost,
        balance: record.balance_after,
        key_id: record.key_id.clone(),
        repeated,
        api_key: None,
        sealed,
    })
}
