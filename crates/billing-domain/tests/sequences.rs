//! Property tests over random sequences of commands: valid and invalid, from
//! admins, members, strangers and the runtime, over several providers,
//! models and ids. After every step the invariants of the reference page
//! are checked against a tally kept from the emitted events alone.

use billing_domain::*;
use chrono::{TimeZone, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use proptest::prelude::*;
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

const USERS: [&str; 5] = ["alice", "bob", "carol", "dave", "mallory"];
const MODELS: [&str; 6] =
    ["gpt-4o", "gpt-4o-mini", "claude-sonnet-4", "claude-haiku-4", "bookbag-local", "no-such-model"];
const OPENAI_KEYS: [&str; 3] =
    ["sk-proj-PLAINopenaiAAAAAAAA01", "sk-PLAINopenaiBBBBBBBBBBBB02", "sk-proj-PLAINopenaiCCCCCCCC03"];
const ANTHROPIC_KEYS: [&str; 3] =
    ["sk-ant-PLAINanthropicAAAAA01", "sk-ant-PLAINanthropicBBBBB02", "sk-ant-PLAINanthropicCCCCC03"];

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(512)
}

#[derive(Clone, Debug)]
enum Op {
    Create(usize),
    SetRole(usize, bool),
    Remove(usize),
    AddKey(Provider, usize),
    RemoveKey(Provider),
    Byo(bool),
    Grant(usize, u64),
    Reply(usize, usize, usize),
    Train,
}

fn provider() -> impl Strategy<Value = Provider> {
    prop_oneof![Just(Provider::Openai), Just(Provider::Anthropic)]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        1 => (0..USERS.len()).prop_map(Op::Create),
        3 => (0..USERS.len(), any::<bool>()).prop_map(|(u, a)| Op::SetRole(u, a)),
        1 => (0..USERS.len()).prop_map(Op::Remove),
        3 => (provider(), 0..3usize).prop_map(|(p, k)| Op::AddKey(p, k)),
        1 => provider().prop_map(Op::RemoveKey),
        3 => any::<bool>().prop_map(Op::Byo),
        3 => (0..5usize, prop_oneof![Just(0u64), 1..40u64, Just(1_000_000_000_001u64)]).prop_map(|(g, a)| Op::Grant(g, a)),
        8 => (0..12usize, 0..2usize, 0..MODELS.len()).prop_map(|(r, a, m)| Op::Reply(r, a, m)),
        1 => Just(Op::Train),
    ]
}

/// A step: the operation, who sends it (index into USERS or none) and
/// through which token.
fn step() -> impl Strategy<Value = (Op, Option<usize>, bool)> {
    (op(), prop::option::weighted(0.9, 0..USERS.len()), prop::bool::weighted(0.15))
}

fn to_command(op: &Op, actor: Option<usize>, runtime: bool, n: usize) -> WorkspaceCommand {
    let user = |i: usize| UserId::parse(USERS[i]).unwrap();
    let action = match op {
        Op::Create(owner) => {
            Action::CreateWorkspace { workspace_id: WorkspaceId::parse("ws").unwrap(), owner: user(*owner) }
        }
        Op::SetRole(u, admin) => {
            Action::SetMemberRole { user: user(*u), role: if *admin { Role::Admin } else { Role::Member } }
        }
        Op::Remove(u) => Action::RemoveMember { user: user(*u) },
        Op::AddKey(p, k) => {
            let raw = match p {
                Provider::Openai => OPENAI_KEYS[*k],
                Provider::Anthropic => ANTHROPIC_KEYS[*k],
            };
            Action::AddKey {
                key_id: KeyId::parse(&format!("key{n}")).unwrap(),
                provider: *p,
                key: ProviderKey::parse(*p, raw).unwrap(),
            }
        }
        Op::RemoveKey(p) => Action::RemoveKey { provider: *p },
        Op::Byo(on) => Action::SetByo { enabled: *on },
        Op::Grant(g, amount) => Action::GrantCredits {
            grant_id: GrantId::parse(&format!("g{g}")).unwrap(),
            amount: Credits::new(*amount),
            reason: String::new(),
        },
        Op::Reply(r, a, m) => Action::ServeReply {
            reply_id: ReplyId::parse(&format!("r{r}")).unwrap(),
            agent_id: AgentId::parse(&format!("agent{a}")).unwrap(),
            model: MODELS[*m].into(),
        },
        Op::Train => Action::TrainDataSource { data_source_id: DataSourceId::parse("ds").unwrap() },
    };
    WorkspaceCommand {
        at: Utc.timestamp_opt(1_700_000_000 + n as i64, 0).unwrap(),
        actor: actor.map(user),
        channel: if runtime { Channel::Runtime } else { Channel::Platform },
        action,
    }
}

/// What the emitted events say, tallied without the aggregate's own code.
#[derive(Default)]
struct Tally {
    roles: BTreeMap<String, Role>,
    active: BTreeMap<Provider, HashSet<String>>,
    byo: bool,
    granted: u64,
    charged: u64,
    replies: HashSet<String>,
    grants: HashSet<String>,
}

fn is_admin_command(action: &Action) -> bool {
    matches!(
        action,
        Action::SetMemberRole { .. }
            | Action::RemoveMember { .. }
            | Action::AddKey { .. }
            | Action::RemoveKey { .. }
            | Action::SetByo { .. }
    )
}

fn check_step(
    tally: &mut Tally,
    cmd: &WorkspaceCommand,
    events: &[WorkspaceEvent],
    metering: Metering,
) -> Result<(), TestCaseError> {
    if !events.is_empty() && is_admin_command(&cmd.action) {
        let actor = cmd.actor.as_ref().map(|a| a.to_string()).unwrap_or_default();
        prop_assert_eq!(
            tally.roles.get(&actor),
            Some(&Role::Admin),
            "(f) non-admin {} changed {:?}",
            actor,
            cmd.action.name()
        );
    }
    for event in events {
        match &event.change {
            Change::WorkspaceCreated { owner, .. } => {
                tally.roles.insert(owner.to_string(), Role::Admin);
            }
            Change::MemberRoleSet { user, role } => {
                tally.roles.insert(user.to_string(), *role);
            }
            Change::MemberRemoved { user } => {
                tally.roles.remove(user.as_str());
            }
            Change::KeyAdded { key_id, provider, .. } => {
                tally.active.entry(*provider).or_default().insert(key_id.to_string());
            }
            Change::KeySuperseded { key_id, provider, .. } | Change::KeyRemoved { key_id, provider } => {
                prop_assert!(
                    tally.active.entry(*provider).or_default().remove(key_id.as_str()),
                    "ended a key that was not active"
                );
            }
            Change::ByoEnabled => tally.byo = true,
            Change::ByoDisabled => tally.byo = false,
            Change::CreditsGranted { grant_id, amount, balance_after, .. } => {
                prop_assert!(tally.grants.insert(grant_id.to_string()), "(g) grant {} granted twice", grant_id);
                tally.granted += amount.get();
                prop_assert_eq!(balance_after.get(), tally.granted - tally.charged);
            }
            Change::ReplyServed {
                reply_id,
                route,
                provider,
                key_id,
                credits_charged,
                list_cost,
                balance_after,
                ..
            } => {
                prop_assert!(tally.replies.insert(reply_id.to_string()), "(g) reply {} served twice", reply_id);
                // The contract's routing, re-derived from the tally.
                let expected = match provider {
                    ModelProvider::Local => Route::Local,
                    _ if tally.byo => Route::Byo,
                    _ if metering == Metering::Disabled => Route::Unmetered,
                    _ => Route::Credits,
                };
                prop_assert_eq!(*route, expected);
                if *route == Route::Byo {
                    let p = provider.key_provider().unwrap();
                    let active = tally.active.get(&p).cloned().unwrap_or_default();
                    prop_assert!(tally.byo, "(d) byo reply while BYO off");
                    prop_assert!(
                        key_id.as_ref().is_some_and(|k| active.contains(k.as_str())),
                        "(d) byo reply without the active key"
                    );
                } else {
                    prop_assert!(key_id.is_none());
                }
                if *route != Route::Credits {
                    prop_assert_eq!(credits_charged.get(), 0, "(c) a {} reply charged credits", route);
                } else {
                    prop_assert_eq!(credits_charged, list_cost);
                }
                tally.charged += credits_charged.get();
                prop_assert_eq!(balance_after.get(), tally.granted - tally.charged);
            }
            Change::DataSourceTrained { .. } => {}
        }
    }
    for keys in tally.active.values() {
        prop_assert!(keys.len() <= 1, "(a) {} active keys for one provider", keys.len());
    }
    Ok(())
}

fn run_sequence(steps: Vec<(Op, Option<usize>, bool)>, disabled: bool) -> Result<(), TestCaseError> {
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let metering = if disabled { Metering::Disabled } else { Metering::Enabled };
    let vault = Arc::new(MasterKeyVault::new(&MasterKey::generate()));
    let services = WorkspaceServices::new(Arc::new(Catalog::shipped()), metering, vault);
    let mut state = Workspace::default();
    let mut all_events = Vec::new();
    let mut tally = Tally::default();
    for (n, (op, actor, runtime)) in steps.into_iter().enumerate() {
        // Most sequences begin with a workspace, so that rules get exercised.
        let cmd = to_command(if n == 0 && actor != Some(4) { &Op::Create(0) } else { &op }, actor, runtime, n);
        let before = state.clone();
        let sink = EventSink::default();
        let result = rt.block_on(state.handle(cmd.clone(), &services, &sink));
        let events = rt.block_on(sink.collect());
        if let Err(err) = &result {
            prop_assert!(events.is_empty(), "(e) rejected command emitted {:?}", events);
            prop_assert_eq!(&state, &before, "(e) rejected command {} changed state", err.code());
        }
        check_step(&mut tally, &cmd, &events, metering)?;
        prop_assert_eq!(state.balance().get(), tally.granted - tally.charged, "(b) balance != granted - charged");
        prop_assert_eq!(state.granted().get(), tally.granted);
        prop_assert_eq!(state.spent().get(), tally.charged);
        all_events.extend(events);
    }
    let mut fresh = Workspace::default();
    for event in &all_events {
        fresh.apply(event.clone());
    }
    prop_assert_eq!(&fresh, &state, "(h) folding the events gives another state");
    let json = serde_json::to_string(&all_events).unwrap();
    for key in OPENAI_KEYS.iter().chain(ANTHROPIC_KEYS.iter()) {
        prop_assert!(!json.contains(key), "(i) plaintext key in an event");
        prop_assert!(!json.contains(&key[8..]), "(i) key body in an event");
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn invariants_hold_over_random_command_sequences(
        steps in prop::collection::vec(step(), 1..64),
        disabled in prop::bool::weighted(0.2),
    ) {
        run_sequence(steps, disabled)?;
    }
}
