//! The `Workspace` aggregate: decides every command from the workspace's own
//! events, and folds events into state.

use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use super::commands::{Action, Channel, Role, WorkspaceCommand, REASON_LEN_MAX};
use super::events::{Actor, Change, WorkspaceEvent};
use super::recent::Recent;
use crate::catalog::{Catalog, ModelProvider};
use crate::error::DomainError;
use crate::ids::{AgentId, GrantId, KeyId, ReplyId, UserId, WorkspaceId};
use crate::keys::{Fingerprint, KeyVault, MaskedKey, Provider, SealedKey};
use crate::money::{Credits, GRANT_CREDITS_MAX};
use crate::routing::{route_reply, Metering, Route};

/// What the aggregate is given besides its events: the catalog, the metering
/// mode and the key vault. Sealed keys produced while deciding a command are
/// left here for the engine to store in the same transaction as the events.
pub struct WorkspaceServices {
    pub catalog: Arc<Catalog>,
    pub metering: Metering,
    pub vault: Arc<dyn KeyVault>,
    sealed: Mutex<Vec<SealedKey>>,
}

impl WorkspaceServices {
    pub fn new(catalog: Arc<Catalog>, metering: Metering, vault: Arc<dyn KeyVault>) -> Self {
        WorkspaceServices { catalog, metering, vault, sealed: Mutex::new(Vec::new()) }
    }

    /// Takes the sealed secret of `key_id`, produced by an `AddKey` command.
    pub fn take_sealed(&self, key_id: &KeyId) -> Option<SealedKey> {
        let mut sealed = self.sealed.lock().unwrap_or_else(|p| p.into_inner());
        let index = sealed.iter().position(|s| &s.key_id == key_id)?;
        Some(sealed.swap_remove(index))
    }

    fn put_sealed(&self, key: SealedKey) {
        self.sealed.lock().unwrap_or_else(|p| p.into_inner()).push(key);
    }
}

/// How many reply ids a workspace keeps in memory (see [`Recent`]): enough
/// for the retries of a busy agent runtime, small enough that 100,000
/// loaded workspaces fit in well under a gigabyte.
pub const REPLIES_REMEMBERED_MAX: usize = 128;

/// How many grant ids a workspace keeps in memory; grants are rare.
pub const GRANTS_REMEMBERED_MAX: usize = 32;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActiveKey {
    pub key_id: KeyId,
    pub masked: MaskedKey,
    pub fingerprint: Fingerprint,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantRecord {
    pub amount: Credits,
    pub balance_after: Credits,
}

/// What a reply was decided as: enough to answer a repeated `reply_id`
/// exactly as the first time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplyRecord {
    pub agent_id: AgentId,
    pub model: String,
    pub provider: ModelProvider,
    pub route: Route,
    pub key_id: Option<KeyId>,
    pub credits_charged: Credits,
    pub list_cost: Credits,
    pub balance_after: Credits,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Workspace {
    id: Option<WorkspaceId>,
    members: BTreeMap<UserId, Role>,
    active_keys: BTreeMap<Provider, ActiveKey>,
    byo_enabled: bool,
    granted: Credits,
    spent: Credits,
    grants: Recent<GrantId, GrantRecord>,
    replies: Recent<ReplyId, ReplyRecord>,
}

impl Workspace {
    pub fn id(&self) -> Option<&WorkspaceId> {
        self.id.as_ref()
    }
    pub fn exists(&self) -> bool {
        self.id.is_some()
    }
    pub fn role(&self, user: &UserId) -> Option<Role> {
        self.members.get(user).copied()
    }
    pub fn members(&self) -> &BTreeMap<UserId, Role> {
        &self.members
    }
    pub fn active_key(&self, provider: Provider) -> Option<&ActiveKey> {
        self.active_keys.get(&provider)
    }
    pub fn byo_enabled(&self) -> bool {
        self.byo_enabled
    }
    pub fn granted(&self) -> Credits {
        self.granted
    }
    pub fn spent(&self) -> Credits {
        self.spent
    }
    /// `granted - spent`; never negative because a charge is only decided
    /// when the balance covers it.
    pub fn balance(&self) -> Credits {
        self.granted.checked_sub(self.spent).unwrap_or(Credits::ZERO)
    }
    pub fn grant(&self, id: &GrantId) -> Option<&GrantRecord> {
        self.grants.get(id)
    }
    pub fn reply(&self, id: &ReplyId) -> Option<&ReplyRecord> {
        self.replies.get(id)
    }

    /// Teaches the aggregate the first answer to a reply id that is older
    /// than its memory (the store found it). Not an event: the event that
    /// decided it is already in the log.
    pub fn remember_reply(&mut self, id: ReplyId, record: ReplyRecord) {
        self.replies.insert(id, record, REPLIES_REMEMBERED_MAX);
    }

    /// As [`Workspace::remember_reply`], for grant ids.
    pub fn remember_grant(&mut self, id: GrantId, record: GrantRecord) {
        self.grants.insert(id, record, GRANTS_REMEMBERED_MAX);
    }

    fn admins(&self) -> usize {
        self.members.values().filter(|r| **r == Role::Admin).count()
    }

    fn require_admin(&self, actor: &Option<UserId>) -> Result<UserId, DomainError> {
        let actor = actor.as_ref().ok_or(DomainError::MissingActor)?;
        match self.role(actor) {
            Some(Role::Admin) => Ok(actor.clone()),
            _ => Err(DomainError::Forbidden("this needs an admin of the workspace".into())),
        }
    }

    fn require_member(&self, actor: &Option<UserId>) -> Result<UserId, DomainError> {
        let actor = actor.as_ref().ok_or(DomainError::MissingActor)?;
        match self.role(actor) {
            Some(_) => Ok(actor.clone()),
            None => Err(DomainError::Forbidden("this needs a member of the workspace".into())),
        }
    }

    /// Decides a command: every check first, then the events. A rejected
    /// command therefore never emits anything, and `handle` never leaves
    /// the aggregate half-changed.
    pub fn decide(
        &self,
        cmd: WorkspaceCommand,
        services: &WorkspaceServices,
    ) -> Result<Vec<WorkspaceEvent>, DomainError> {
        if cmd.channel == Channel::Runtime && !matches!(cmd.action, Action::ServeReply { .. }) {
            return Err(DomainError::Forbidden("the runtime token may only serve replies".into()));
        }
        let at = cmd.at;
        let event = |by: Actor, change: Change| WorkspaceEvent { at, by, change };
        let channel_actor = match cmd.channel {
            Channel::Platform => Actor::Platform,
            Channel::Runtime => Actor::Runtime,
        };
        if let Action::GrantCredits { amount, .. } = &cmd.action {
            // A body check: no state needed, so it answers before existence.
            if amount.get() == 0 || amount.get() > GRANT_CREDITS_MAX {
                return Err(DomainError::InvalidAmount(format!("amount must be from 1 to {GRANT_CREDITS_MAX}")));
            }
        }
        if let Action::GrantCredits { reason, .. } = &cmd.action {
            if reason.len() > REASON_LEN_MAX {
                return Err(DomainError::InvalidInput(format!("reason is longer than {REASON_LEN_MAX} bytes")));
            }
        }
        if let Action::CreateWorkspace { workspace_id, owner } = cmd.action {
            if self.exists() {
                return Err(DomainError::WorkspaceExists);
            }
            return Ok(vec![event(channel_actor, Change::WorkspaceCreated { workspace_id, owner })]);
        }
        if !self.exists() {
            return Err(DomainError::WorkspaceNotFound);
        }
        match cmd.action {
            Action::CreateWorkspace { .. } => unreachable!("answered above"),
            Action::SetMemberRole { user, role } => {
                let by = self.require_admin(&cmd.actor)?;
                let current = self.role(&user);
                if current == Some(role) {
                    return Ok(vec![]);
                }
                if current == Some(Role::Admin) && self.admins() == 1 {
                    return Err(DomainError::LastAdmin);
                }
                Ok(vec![event(Actor::User(by), Change::MemberRoleSet { user, role })])
            }
            Action::RemoveMember { user } => {
                let by = self.require_admin(&cmd.actor)?;
                match self.role(&user) {
                    None => Err(DomainError::MemberNotFound(user.to_string())),
                    Some(Role::Admin) if self.admins() == 1 => Err(DomainError::LastAdmin),
                    Some(_) => Ok(vec![event(Actor::User(by), Change::MemberRemoved { user })]),
                }
            }
            Action::AddKey { key_id, provider, key } => {
                let by = self.require_admin(&cmd.actor)?;
                let workspace = self.id.as_ref().expect("exists");
                let fingerprint = services.vault.fingerprint(workspace, &key);
                let current = self.active_key(provider);
                if current.is_some_and(|k| k.fingerprint == fingerprint) {
                    // The same key again: it is already the active one.
                    return Ok(vec![]);
                }
                let sealed = services.vault.seal(workspace, &key_id, &key)?;
                let mut events = Vec::with_capacity(2);
                if let Some(old) = current {
                    events.push(event(
                        Actor::User(by.clone()),
                        Change::KeySuperseded { key_id: old.key_id.clone(), provider, superseded_by: key_id.clone() },
                    ));
                }
                events.push(event(
                    Actor::User(by),
                    Change::KeyAdded { key_id, provider, masked: key.masked(), fingerprint },
                ));
                services.put_sealed(sealed);
                Ok(events)
            }
            Action::RemoveKey { provider } => {
                let by = self.require_admin(&cmd.actor)?;
                let key = self.active_key(provider).ok_or_else(|| DomainError::KeyNotFound(provider.to_string()))?;
                Ok(vec![event(Actor::User(by), Change::KeyRemoved { key_id: key.key_id.clone(), provider })])
            }
            Action::SetByo { enabled } => {
                let by = self.require_admin(&cmd.actor)?;
                if enabled == self.byo_enabled {
                    return Ok(vec![]);
                }
                let change = if enabled { Change::ByoEnabled } else { Change::ByoDisabled };
                Ok(vec![event(Actor::User(by), change)])
            }
            Action::GrantCredits { grant_id, amount, reason } => {
                if let Some(first) = self.grant(&grant_id) {
                    return if first.amount == amount {
                        Ok(vec![])
                    } else {
                        Err(DomainError::IdempotencyConflict(format!("grant {grant_id} was made with another amount")))
                    };
                }
                let balance_after = self
                    .balance()
                    .checked_add(amount)
                    .filter(|_| self.granted.checked_add(amount).is_some())
                    .ok_or_else(|| DomainError::InvalidAmount("the grant would overflow the balance".into()))?;
                Ok(vec![event(channel_actor, Change::CreditsGranted { grant_id, amount, reason, balance_after })])
            }
            Action::ServeReply { reply_id, agent_id, model } => {
                if let Some(first) = self.reply(&reply_id) {
                    return if first.agent_id == agent_id && first.model == model {
                        Ok(vec![])
                    } else {
                        Err(DomainError::IdempotencyConflict(format!(
                            "reply {reply_id} was served with another agent or model"
                        )))
                    };
                }
                let spec = services.catalog.get(&model).ok_or(DomainError::UnknownModel)?;
                let active = spec.provider.key_provider().and_then(|p| self.active_key(p)).map(|k| &k.key_id);
                let decision = route_reply(spec, self.byo_enabled, active, services.metering, self.balance())?;
                let balance_after =
                    self.balance().checked_sub(decision.credits_charged).expect("routing checked the balance");
                Ok(vec![event(
                    channel_actor,
                    Change::ReplyServed {
                        reply_id,
                        agent_id,
                        model,
                        provider: spec.provider,
                        route: decision.route,
                        key_id: decision.key_id,
                        credits_charged: decision.credits_charged,
                        list_cost: decision.list_cost,
                        balance_after,
                    },
                )])
            }
            Action::TrainDataSource { data_source_id } => {
                let by = self.require_member(&cmd.actor)?;
                Ok(vec![event(Actor::User(by), Change::DataSourceTrained { data_source_id })])
            }
        }
    }
}

impl Aggregate for Workspace {
    const TYPE: &'static str = "Workspace";
    type Command = WorkspaceCommand;
    type Event = WorkspaceEvent;
    type Error = DomainError;
    type Services = WorkspaceServices;

    async fn handle(
        &mut self,
        command: Self::Command,
        services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        for event in self.decide(command, services)? {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event.change {
            Change::WorkspaceCreated { workspace_id, owner } => {
                self.id = Some(workspace_id);
                self.members.insert(owner, Role::Admin);
            }
            Change::MemberRoleSet { user, role } => {
                self.members.insert(user, role);
            }
            Change::MemberRemoved { user } => {
                self.members.remove(&user);
            }
            Change::KeyAdded { key_id, provider, masked, fingerprint } => {
                self.active_keys.insert(provider, ActiveKey { key_id, masked, fingerprint });
            }
            Change::KeySuperseded { key_id, provider, .. } | Change::KeyRemoved { key_id, provider } => {
                if self.active_keys.get(&provider).is_some_and(|k| k.key_id == key_id) {
                    self.active_keys.remove(&provider);
                }
            }
            Change::ByoEnabled => self.byo_enabled = true,
            Change::ByoDisabled => self.byo_enabled = false,
            Change::CreditsGranted { grant_id, amount, balance_after, .. } => {
                // `apply` is total: the decision checked for overflow, so
                // saturation here is never reached by a decided event.
                self.granted = Credits::new(self.granted.get().saturating_add(amount.get()));
                self.grants.insert(grant_id, GrantRecord { amount, balance_after }, GRANTS_REMEMBERED_MAX);
            }
            Change::ReplyServed {
                reply_id,
                agent_id,
                model,
                provider,
                route,
                key_id,
                credits_charged,
                list_cost,
                balance_after,
            } => {
                self.spent = Credits::new(self.spent.get().saturating_add(credits_charged.get()));
                self.replies.insert(
                    reply_id,
                    ReplyRecord { agent_id, model, provider, route, key_id, credits_charged, list_cost, balance_after },
                    REPLIES_REMEMBERED_MAX,
                );
            }
            Change::DataSourceTrained { .. } => {}
        }
    }
}
