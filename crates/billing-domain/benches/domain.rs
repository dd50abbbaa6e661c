//! The pure parts of the hot path, one reply at a time: what a shard writer
//! spends deciding a reply before it talks to the database.
//!
//!     cargo bench -p billing-domain --bench domain
//!
//! Each figure is read beside `baseline/clone_command`, the cost of copying
//! the command the writer decides (measured in the same run): the ratios
//! in docs/performance.md are against it.

use billing_domain::aggregate::{Action, Channel, Workspace, WorkspaceCommand, WorkspaceEvent, WorkspaceServices};
use billing_domain::catalog::Catalog;
use billing_domain::ids::{AgentId, GrantId, KeyId, ReplyId, UserId, WorkspaceId};
use billing_domain::keys::{KeyVault, MasterKey, MasterKeyVault, Provider, ProviderKey};
use billing_domain::money::Credits;
use billing_domain::readmodel::row_ops;
use billing_domain::routing::Metering;
use chrono::Utc;
use cqrs_es::Aggregate;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use std::hint::black_box;
use std::sync::Arc;

const OPENAI_KEY: &str = "sk-proj-BENCHKEYopenai0000000001";

fn vault() -> Arc<MasterKeyVault> {
    Arc::new(MasterKeyVault::new(&MasterKey::from_base64("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=").unwrap()))
}

fn command(actor: Option<&str>, action: Action) -> WorkspaceCommand {
    WorkspaceCommand {
        at: Utc::now(),
        actor: actor.map(|a| UserId::parse(a).unwrap()),
        channel: Channel::Platform,
        action,
    }
}

fn decide(workspace: &Workspace, services: &WorkspaceServices, cmd: WorkspaceCommand) -> Vec<WorkspaceEvent> {
    workspace.decide(cmd, services).expect("a command the workspace accepts")
}

/// A workspace with an owner, a million credits, an OpenAI key, and 128
/// replies already served (the most it remembers), as a busy one is.
fn busy_workspace(services: &WorkspaceServices) -> Workspace {
    let mut workspace = Workspace::default();
    let ws = WorkspaceId::parse("bench").unwrap();
    let owner = UserId::parse("owner").unwrap();
    let key = ProviderKey::parse(Provider::Openai, OPENAI_KEY).unwrap();
    let setup = [
        command(None, Action::CreateWorkspace { workspace_id: ws, owner }),
        command(
            None,
            Action::GrantCredits {
                grant_id: GrantId::parse("g1").unwrap(),
                amount: Credits::new(1_000_000),
                reason: "bench".into(),
            },
        ),
        command(Some("owner"), Action::AddKey { key_id: KeyId::parse("k1").unwrap(), provider: Provider::Openai, key }),
    ];
    for cmd in setup {
        for event in decide(&workspace, services, cmd) {
            workspace.apply(event);
        }
    }
    for i in 0..128 {
        for event in decide(&workspace, services, reply(i, "gpt-4o")) {
            workspace.apply(event);
        }
    }
    workspace
}

fn reply(i: u64, model: &str) -> WorkspaceCommand {
    command(
        None,
        Action::ServeReply {
            reply_id: ReplyId::parse(&format!("r{i}")).unwrap(),
            agent_id: AgentId::parse("agent").unwrap(),
            model: model.into(),
        },
    )
}

fn hot_path(c: &mut Criterion) {
    let services = WorkspaceServices::new(Arc::new(Catalog::shipped()), Metering::Enabled, vault());
    let workspace = busy_workspace(&services);
    let fresh = reply(1_000_000, "gpt-4o");
    let repeated = reply(127, "gpt-4o");

    c.bench_function("baseline/clone_command", |b| b.iter(|| black_box(fresh.clone())));
    c.bench_function("decide/metered_reply", |b| {
        b.iter_batched(|| fresh.clone(), |cmd| decide(&workspace, &services, cmd), BatchSize::SmallInput)
    });
    c.bench_function("decide/local_reply", |b| {
        let local = reply(1_000_000, "bookbag-local");
        b.iter_batched(|| local.clone(), |cmd| decide(&workspace, &services, cmd), BatchSize::SmallInput)
    });
    c.bench_function("decide/repeated_reply", |b| {
        b.iter_batched(|| repeated.clone(), |cmd| decide(&workspace, &services, cmd), BatchSize::SmallInput)
    });
    let event = decide(&workspace, &services, fresh.clone()).remove(0);
    c.bench_function("apply/reply_served", |b| {
        b.iter_batched(
            || (workspace.clone(), event.clone()),
            |(mut w, e)| {
                w.apply(e);
                w
            },
            BatchSize::SmallInput,
        )
    });
    c.bench_function("serialize/reply_served", |b| b.iter(|| serde_json::to_value(black_box(&event)).unwrap()));
    c.bench_function("readmodel/row_ops_reply_served", |b| b.iter(|| row_ops(black_box(129), black_box(&event))));
}

fn keys(c: &mut Criterion) {
    let vault = vault();
    let ws = WorkspaceId::parse("bench").unwrap();
    let key_id = KeyId::parse("k1").unwrap();
    let key = ProviderKey::parse(Provider::Openai, OPENAI_KEY).unwrap();
    let sealed = vault.seal(&ws, &key_id, &key).unwrap();
    c.bench_function("keys/parse_and_mask", |b| {
        b.iter(|| ProviderKey::parse(Provider::Openai, black_box(OPENAI_KEY)).unwrap().masked())
    });
    c.bench_function("keys/fingerprint", |b| b.iter(|| vault.fingerprint(&ws, black_box(&key))));
    c.bench_function("keys/seal", |b| b.iter(|| vault.seal(&ws, &key_id, black_box(&key)).unwrap()));
    c.bench_function("keys/open (a runtime byo reply)", |b| b.iter(|| vault.open(&ws, black_box(&sealed)).unwrap()));
}

criterion_group!(benches, hot_path, keys);
criterion_main!(benches);
