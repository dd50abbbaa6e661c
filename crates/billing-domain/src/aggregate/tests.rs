//! Given/when/then tests of every rule of the reference page and every
//! error code the aggregate can return.

use chrono::{DateTime, TimeZone, Utc};
use cqrs_es::test::TestFramework;
use std::sync::Arc;

use super::*;
use crate::catalog::{Catalog, ModelProvider};
use crate::error::DomainError;
use crate::ids::*;
use crate::keys::{KeyVault, MasterKey, MasterKeyVault, Provider, ProviderKey};
use crate::money::Credits;
use crate::routing::{Metering, Route};

const OPENAI_KEY: &str = "sk-proj-TESTKEYopenai000000001";
const OPENAI_KEY_2: &str = "sk-proj-TESTKEYopenai000000002";
const ANTHROPIC_KEY: &str = "sk-ant-TESTKEYanthropic0000001";

fn master() -> MasterKey {
    MasterKey::from_base64("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=").unwrap()
}

fn services(metering: Metering) -> WorkspaceServices {
    WorkspaceServices::new(Arc::new(Catalog::shipped()), metering, Arc::new(MasterKeyVault::new(&master())))
}

fn at() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap()
}

fn ws() -> WorkspaceId {
    WorkspaceId::parse("ws1").unwrap()
}
fn user(id: &str) -> UserId {
    UserId::parse(id).unwrap()
}
fn key_id(id: &str) -> KeyId {
    KeyId::parse(id).unwrap()
}

fn cmd(actor: Option<&str>, action: Action) -> WorkspaceCommand {
    WorkspaceCommand { at: at(), actor: actor.map(user), channel: Channel::Platform, action }
}
fn runtime(action: Action) -> WorkspaceCommand {
    WorkspaceCommand { at: at(), actor: None, channel: Channel::Runtime, action }
}

fn ev(by: Actor, change: Change) -> WorkspaceEvent {
    WorkspaceEvent { at: at(), by, change }
}
fn by(id: &str) -> Actor {
    Actor::User(user(id))
}

fn created() -> WorkspaceEvent {
    ev(Actor::Platform, Change::WorkspaceCreated { workspace_id: ws(), owner: user("alice") })
}
fn role_set(id: &str, role: Role) -> WorkspaceEvent {
    ev(by("alice"), Change::MemberRoleSet { user: user(id), role })
}
fn granted(id: &str, amount: u64, balance_after: u64) -> WorkspaceEvent {
    ev(
        Actor::Platform,
        Change::CreditsGranted {
            grant_id: GrantId::parse(id).unwrap(),
            amount: Credits::new(amount),
            reason: "plan".into(),
            balance_after: Credits::new(balance_after),
        },
    )
}
fn key_added(id: &str, provider: Provider, plaintext: &str) -> WorkspaceEvent {
    let key = ProviderKey::parse(provider, plaintext).unwrap();
    let fingerprint = MasterKeyVault::new(&master()).fingerprint(&ws(), &key);
    ev(by("alice"), Change::KeyAdded { key_id: key_id(id), provider, masked: key.masked(), fingerprint })
}
fn byo_on() -> WorkspaceEvent {
    ev(by("alice"), Change::ByoEnabled)
}

fn add_key(id: &str, provider: Provider, plaintext: &str) -> Action {
    Action::AddKey { key_id: key_id(id), provider, key: ProviderKey::parse(provider, plaintext).unwrap() }
}
fn reply(id: &str, model: &str) -> Action {
    Action::ServeReply {
        reply_id: ReplyId::parse(id).unwrap(),
        agent_id: AgentId::parse("agent").unwrap(),
        model: model.into(),
    }
}
fn grant(id: &str, amount: u64) -> Action {
    Action::GrantCredits { grant_id: GrantId::parse(id).unwrap(), amount: Credits::new(amount), reason: "plan".into() }
}

#[allow(clippy::too_many_arguments)]
fn served(
    id: &str,
    model: &str,
    provider: ModelProvider,
    route: Route,
    key: Option<&str>,
    charged: u64,
    list: u64,
    after: u64,
) -> WorkspaceEvent {
    ev(
        Actor::Platform,
        Change::ReplyServed {
            reply_id: ReplyId::parse(id).unwrap(),
            agent_id: AgentId::parse("agent").unwrap(),
            model: model.into(),
            provider,
            route,
            key_id: key.map(key_id),
            credits_charged: Credits::new(charged),
            list_cost: Credits::new(list),
            balance_after: Credits::new(after),
        },
    )
}

fn given(events: Vec<WorkspaceEvent>) -> cqrs_es::test::AggregateTestExecutor<Workspace> {
    TestFramework::<Workspace>::with(services(Metering::Enabled)).given(events)
}

// --- Workspaces and members -------------------------------------------------

#[test]
fn creating_a_workspace_makes_the_owner_its_first_admin() {
    TestFramework::<Workspace>::with(services(Metering::Enabled))
        .given_no_previous_events()
        .when(cmd(None, Action::CreateWorkspace { workspace_id: ws(), owner: user("alice") }))
        .then_expect_events(vec![created()]);
    let mut state = Workspace::default();
    cqrs_es::Aggregate::apply(&mut state, created());
    assert_eq!(state.role(&user("alice")), Some(Role::Admin));
}

#[test]
fn creating_an_existing_workspace_is_workspace_exists() {
    given(vec![created()])
        .when(cmd(None, Action::CreateWorkspace { workspace_id: ws(), owner: user("bob") }))
        .then_expect_error(DomainError::WorkspaceExists);
}

#[test]
fn any_command_on_a_missing_workspace_is_workspace_not_found() {
    given(vec![])
        .when(cmd(Some("alice"), Action::SetByo { enabled: true }))
        .then_expect_error(DomainError::WorkspaceNotFound);
    given(vec![]).when(cmd(None, reply("r1", "gpt-4o"))).then_expect_error(DomainError::WorkspaceNotFound);
}

#[test]
fn admins_set_roles_and_members_cannot() {
    given(vec![created()])
        .when(cmd(Some("alice"), Action::SetMemberRole { user: user("bob"), role: Role::Member }))
        .then_expect_events(vec![role_set("bob", Role::Member)]);
    given(vec![created(), role_set("bob", Role::Member)])
        .when(cmd(Some("bob"), Action::SetMemberRole { user: user("carol"), role: Role::Admin }))
        .then_expect_error(DomainError::Forbidden("this needs an admin of the workspace".into()));
    given(vec![created()])
        .when(cmd(Some("stranger"), Action::SetMemberRole { user: user("carol"), role: Role::Admin }))
        .then_expect_error(DomainError::Forbidden("this needs an admin of the workspace".into()));
}

#[test]
fn role_gated_commands_without_an_actor_are_missing_actor() {
    for action in [
        Action::SetMemberRole { user: user("bob"), role: Role::Member },
        Action::RemoveMember { user: user("bob") },
        add_key("k1", Provider::Openai, OPENAI_KEY),
        Action::RemoveKey { provider: Provider::Openai },
        Action::SetByo { enabled: true },
        Action::TrainDataSource { data_source_id: DataSourceId::parse("ds").unwrap() },
    ] {
        given(vec![created()]).when(cmd(None, action)).then_expect_error(DomainError::MissingActor);
    }
}

#[test]
fn setting_a_role_it_already_has_stores_nothing() {
    given(vec![created(), role_set("bob", Role::Member)])
        .when(cmd(Some("alice"), Action::SetMemberRole { user: user("bob"), role: Role::Member }))
        .then_expect_events(vec![]);
}

#[test]
fn the_last_admin_cannot_be_demoted_or_removed() {
    given(vec![created()])
        .when(cmd(Some("alice"), Action::SetMemberRole { user: user("alice"), role: Role::Member }))
        .then_expect_error(DomainError::LastAdmin);
    given(vec![created()])
        .when(cmd(Some("alice"), Action::RemoveMember { user: user("alice") }))
        .then_expect_error(DomainError::LastAdmin);
    // With a second admin, either may go.
    given(vec![created(), role_set("bob", Role::Admin)])
        .when(cmd(Some("bob"), Action::RemoveMember { user: user("alice") }))
        .then_expect_events(vec![ev(by("bob"), Change::MemberRemoved { user: user("alice") })]);
}

#[test]
fn removing_a_non_member_is_member_not_found() {
    given(vec![created()])
        .when(cmd(Some("alice"), Action::RemoveMember { user: user("nobody") }))
        .then_expect_error(DomainError::MemberNotFound("nobody".into()));
}

// --- Keys -------------------------------------------------------------------

#[test]
fn adding_a_key_stores_only_masked_form_and_fingerprint() {
    let svc = services(Metering::Enabled);
    let events = TestFramework::<Workspace>::with(svc)
        .given(vec![created()])
        .when(cmd(Some("alice"), add_key("k1", Provider::Openai, OPENAI_KEY)))
        .inspect_result()
        .unwrap();
    assert_eq!(events, vec![key_added("k1", Provider::Openai, OPENAI_KEY)]);
    let json = serde_json::to_string(&events).unwrap();
    assert!(!json.contains(OPENAI_KEY) && !json.contains("TESTKEYopenai"), "{json}");
    assert!(json.contains("sk-proj-...0001"));
}

#[test]
fn adding_a_key_leaves_its_sealed_secret_for_the_store() {
    let svc = services(Metering::Enabled);
    let mut state = Workspace::default();
    cqrs_es::Aggregate::apply(&mut state, created());
    state.decide(cmd(Some("alice"), add_key("k1", Provider::Openai, OPENAI_KEY)), &svc).unwrap();
    let sealed = svc.take_sealed(&key_id("k1")).expect("sealed secret");
    assert_eq!(svc.vault.open(&ws(), &sealed).unwrap().expose(), OPENAI_KEY);
    assert!(svc.take_sealed(&key_id("k1")).is_none(), "taken twice");
}

#[test]
fn a_new_key_supersedes_the_active_one_of_its_provider() {
    given(vec![created(), key_added("k1", Provider::Openai, OPENAI_KEY)])
        .when(cmd(Some("alice"), add_key("k2", Provider::Openai, OPENAI_KEY_2)))
        .then_expect_events(vec![
            ev(
                by("alice"),
                Change::KeySuperseded { key_id: key_id("k1"), provider: Provider::Openai, superseded_by: key_id("k2") },
            ),
            key_added("k2", Provider::Openai, OPENAI_KEY_2),
        ]);
    // Another provider's key does not supersede it.
    given(vec![created(), key_added("k1", Provider::Openai, OPENAI_KEY)])
        .when(cmd(Some("alice"), add_key("k2", Provider::Anthropic, ANTHROPIC_KEY)))
        .then_expect_events(vec![key_added("k2", Provider::Anthropic, ANTHROPIC_KEY)]);
}

#[test]
fn adding_the_active_key_again_stores_nothing() {
    given(vec![created(), key_added("k1", Provider::Openai, OPENAI_KEY)])
        .when(cmd(Some("alice"), add_key("k2", Provider::Openai, OPENAI_KEY)))
        .then_expect_events(vec![]);
}

#[test]
fn removing_a_key_needs_an_active_one() {
    given(vec![created(), key_added("k1", Provider::Openai, OPENAI_KEY)])
        .when(cmd(Some("alice"), Action::RemoveKey { provider: Provider::Openai }))
        .then_expect_events(vec![ev(
            by("alice"),
            Change::KeyRemoved { key_id: key_id("k1"), provider: Provider::Openai },
        )]);
    given(vec![created()])
        .when(cmd(Some("alice"), Action::RemoveKey { provider: Provider::Anthropic }))
        .then_expect_error(DomainError::KeyNotFound("anthropic".into()));
}

#[test]
fn only_admins_manage_keys_and_byo() {
    for action in [
        add_key("k1", Provider::Openai, OPENAI_KEY),
        Action::RemoveKey { provider: Provider::Openai },
        Action::SetByo { enabled: true },
    ] {
        given(vec![created(), role_set("bob", Role::Member)])
            .when(cmd(Some("bob"), action))
            .then_expect_error(DomainError::Forbidden("this needs an admin of the workspace".into()));
    }
}

// --- BYO toggle ---------------------------------------------------------------

#[test]
fn byo_toggles_and_repeating_the_value_stores_nothing() {
    given(vec![created()])
        .when(cmd(Some("alice"), Action::SetByo { enabled: true }))
        .then_expect_events(vec![byo_on()]);
    given(vec![created(), byo_on()])
        .when(cmd(Some("alice"), Action::SetByo { enabled: true }))
        .then_expect_events(vec![]);
    given(vec![created(), byo_on()])
        .when(cmd(Some("alice"), Action::SetByo { enabled: false }))
        .then_expect_events(vec![ev(by("alice"), Change::ByoDisabled)]);
    given(vec![created()]).when(cmd(Some("alice"), Action::SetByo { enabled: false })).then_expect_events(vec![]);
}

// --- Credits ----------------------------------------------------------------

#[test]
fn grants_add_to_the_balance_and_are_idempotent_by_id() {
    given(vec![created()]).when(cmd(None, grant("g1", 100))).then_expect_events(vec![granted("g1", 100, 100)]);
    given(vec![created(), granted("g1", 100, 100)]).when(cmd(None, grant("g1", 100))).then_expect_events(vec![]);
    given(vec![created(), granted("g1", 100, 100)])
        .when(cmd(None, grant("g1", 50)))
        .then_expect_error(DomainError::IdempotencyConflict("grant g1 was made with another amount".into()));
}

#[test]
fn grants_of_zero_or_absurd_size_are_invalid_amount() {
    for amount in [0, 1_000_000_000_001, u64::MAX] {
        let err = given(vec![created()]).when(cmd(None, grant("g", amount))).inspect_result().unwrap_err();
        assert_eq!(err.code(), "invalid_amount");
    }
}

#[test]
fn grants_that_would_overflow_are_invalid_amount() {
    // Reaching 2^64 with grants of at most 10^12 would take 18 million
    // events; one stored event with a large amount puts the state there.
    let near_top = i64::MAX as u64 - 5;
    let err = given(vec![created(), granted("big", near_top, near_top)])
        .when(cmd(None, grant("g", 10)))
        .inspect_result()
        .unwrap_err();
    assert_eq!(err.code(), "invalid_amount");
}

// --- Reply routing --------------------------------------------------------------

#[test]
fn credits_route_charges_the_catalog_cost() {
    given(vec![created(), granted("g1", 10, 10)])
        .when(cmd(None, reply("r1", "gpt-4o")))
        .then_expect_events(vec![served("r1", "gpt-4o", ModelProvider::Openai, Route::Credits, None, 5, 5, 5)]);
}

#[test]
fn a_reply_that_costs_more_than_the_balance_is_insufficient_credits() {
    given(vec![created(), granted("g1", 4, 4)])
        .when(cmd(None, reply("r1", "gpt-4o")))
        .then_expect_error(DomainError::InsufficientCredits { cost: 5, balance: 4 });
}

#[test]
fn local_replies_are_never_metered_whatever_byo_says() {
    for history in [vec![created()], vec![created(), byo_on()]] {
        given(history).when(cmd(None, reply("r1", "bookbag-local"))).then_expect_events(vec![served(
            "r1",
            "bookbag-local",
            ModelProvider::Local,
            Route::Local,
            None,
            0,
            1,
            0,
        )]);
    }
}

#[test]
fn byo_replies_use_the_active_key_and_skip_metering() {
    given(vec![created(), granted("g1", 10, 10), key_added("k1", Provider::Anthropic, ANTHROPIC_KEY), byo_on()])
        .when(runtime(reply("r1", "claude-sonnet-4")))
        .then_expect_events(vec![ev(
            Actor::Runtime,
            Change::ReplyServed {
                reply_id: ReplyId::parse("r1").unwrap(),
                agent_id: AgentId::parse("agent").unwrap(),
                model: "claude-sonnet-4".into(),
                provider: ModelProvider::Anthropic,
                route: Route::Byo,
                key_id: Some(key_id("k1")),
                credits_charged: Credits::ZERO,
                list_cost: Credits::new(6),
                balance_after: Credits::new(10),
            },
        )]);
}

#[test]
fn byo_without_a_key_for_the_provider_never_falls_back_to_credits() {
    given(vec![created(), granted("g1", 100, 100), key_added("k1", Provider::Openai, OPENAI_KEY), byo_on()])
        .when(cmd(None, reply("r1", "claude-haiku-4")))
        .then_expect_error(DomainError::NoKeyForProvider("anthropic".into()));
}

#[test]
fn switching_byo_off_goes_back_to_credits() {
    given(vec![
        created(),
        granted("g1", 10, 10),
        key_added("k1", Provider::Openai, OPENAI_KEY),
        byo_on(),
        ev(by("alice"), Change::ByoDisabled),
    ])
    .when(cmd(None, reply("r1", "gpt-4o-mini")))
    .then_expect_events(vec![served("r1", "gpt-4o-mini", ModelProvider::Openai, Route::Credits, None, 1, 1, 9)]);
}

#[test]
fn a_removed_key_cannot_serve_byo() {
    given(vec![
        created(),
        key_added("k1", Provider::Openai, OPENAI_KEY),
        byo_on(),
        ev(by("alice"), Change::KeyRemoved { key_id: key_id("k1"), provider: Provider::Openai }),
    ])
    .when(cmd(None, reply("r1", "gpt-4o")))
    .then_expect_error(DomainError::NoKeyForProvider("openai".into()));
}

#[test]
fn metering_disabled_serves_unmetered_unless_byo_is_on() {
    TestFramework::<Workspace>::with(services(Metering::Disabled))
        .given(vec![created()])
        .when(cmd(None, reply("r1", "gpt-4o")))
        .then_expect_events(vec![served("r1", "gpt-4o", ModelProvider::Openai, Route::Unmetered, None, 0, 5, 0)]);
    TestFramework::<Workspace>::with(services(Metering::Disabled))
        .given(vec![created(), key_added("k1", Provider::Openai, OPENAI_KEY), byo_on()])
        .when(cmd(None, reply("r1", "gpt-4o")))
        .then_expect_events(vec![served("r1", "gpt-4o", ModelProvider::Openai, Route::Byo, Some("k1"), 0, 5, 0)]);
}

#[test]
fn an_unknown_model_is_unknown_model() {
    given(vec![created(), granted("g1", 10, 10)])
        .when(cmd(None, reply("r1", "gpt-99")))
        .then_expect_error(DomainError::UnknownModel);
}

#[test]
fn a_repeated_reply_id_charges_once_and_another_body_conflicts() {
    let first = served("r1", "gpt-4o", ModelProvider::Openai, Route::Credits, None, 5, 5, 5);
    given(vec![created(), granted("g1", 10, 10), first.clone()])
        .when(cmd(None, reply("r1", "gpt-4o")))
        .then_expect_events(vec![]);
    given(vec![created(), granted("g1", 10, 10), first.clone()])
        .when(cmd(None, reply("r1", "gpt-4o-mini")))
        .then_expect_error(DomainError::IdempotencyConflict("reply r1 was served with another agent or model".into()));
    // Idempotency is checked before the rules: a repeat answers even when the
    // balance no longer covers the reply.
    given(vec![
        created(),
        granted("g1", 5, 5),
        served("r1", "gpt-4o", ModelProvider::Openai, Route::Credits, None, 5, 5, 0),
    ])
    .when(cmd(None, reply("r1", "gpt-4o")))
    .then_expect_events(vec![]);
}

// --- Data sources and the runtime token --------------------------------------------

#[test]
fn training_a_data_source_is_free_for_members_and_closed_to_strangers() {
    let train = || Action::TrainDataSource { data_source_id: DataSourceId::parse("ds1").unwrap() };
    given(vec![created(), role_set("bob", Role::Member)]).when(cmd(Some("bob"), train())).then_expect_events(vec![ev(
        by("bob"),
        Change::DataSourceTrained { data_source_id: DataSourceId::parse("ds1").unwrap() },
    )]);
    given(vec![created()])
        .when(cmd(Some("mallory"), train()))
        .then_expect_error(DomainError::Forbidden("this needs a member of the workspace".into()));
}

#[test]
fn the_runtime_token_may_only_serve_replies() {
    given(vec![created()])
        .when(runtime(grant("g1", 10)))
        .then_expect_error(DomainError::Forbidden("the runtime token may only serve replies".into()));
    given(vec![created()])
        .when(WorkspaceCommand { actor: Some(user("alice")), ..runtime(Action::SetByo { enabled: true }) })
        .then_expect_error(DomainError::Forbidden("the runtime token may only serve replies".into()));
}

#[test]
fn events_round_trip_through_json_with_contract_type_names() {
    let events = vec![created(), key_added("k1", Provider::Openai, OPENAI_KEY), byo_on(), granted("g", 1, 1)];
    for event in events {
        let json = serde_json::to_value(&event).unwrap();
        assert_eq!(json["type"], cqrs_es::DomainEvent::event_type(&event));
        let back: WorkspaceEvent = serde_json::from_value(json).unwrap();
        assert_eq!(back, event);
    }
}
