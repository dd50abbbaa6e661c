//! Property test on the real databases: random command sequences over
//! several workspaces, sent in concurrent groups (so that group commits
//! hold many workspaces), then the projection tables equal a fresh fold of
//! the stored events, and a full rebuild gives identical tables. The
//! projector's flushes are cut into chunks of a random size, so that a
//! workspace's events often span several projection transactions.

use billing_domain::*;
use billing_engine::projection::{Projector, IN_PROCESS_PROJECTOR};
use billing_engine::Engine;
use billing_testkit::{Backend, TestDb, ANTHROPIC_KEY, ANTHROPIC_KEY_2, OPENAI_KEY, OPENAI_KEY_2};
use proptest::prelude::*;

use crate::tables::{fold_of_stored, projected};

const WORKSPACES: [&str; 3] = ["w1", "w2", "w3"];
const USERS: [&str; 3] = ["alice", "bob", "mallory"];
const MODELS: [&str; 5] = ["gpt-4o", "gpt-4o-mini", "claude-haiku-4", "bookbag-local", "nope"];

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).map(|n: u32| n.clamp(1, 64)).unwrap_or(12)
}

#[derive(Clone, Debug)]
enum Op {
    Create,
    Role(usize, bool),
    Key(Provider, bool),
    RemoveKey(Provider),
    Byo(bool),
    Grant(u8, u64),
    Reply(u8, usize),
    Train,
}

fn op() -> impl Strategy<Value = Op> {
    let provider = || prop_oneof![Just(Provider::Openai), Just(Provider::Anthropic)];
    prop_oneof![
        1 => Just(Op::Create),
        2 => (0..USERS.len(), any::<bool>()).prop_map(|(u, a)| Op::Role(u, a)),
        2 => (provider(), any::<bool>()).prop_map(|(p, k)| Op::Key(p, k)),
        1 => provider().prop_map(Op::RemoveKey),
        2 => any::<bool>().prop_map(Op::Byo),
        3 => (0..6u8, 1..30u64).prop_map(|(g, a)| Op::Grant(g, a)),
        9 => (0..20u8, 0..MODELS.len()).prop_map(|(r, m)| Op::Reply(r, m)),
        1 => Just(Op::Train),
    ]
}

/// A step: which workspace, which operation, who sends it.
fn step() -> impl Strategy<Value = (usize, Op, usize)> {
    (0..WORKSPACES.len(), op(), 0..USERS.len())
}

fn action(workspace: &str, op: &Op) -> Action {
    match op {
        Op::Create => Action::CreateWorkspace {
            workspace_id: WorkspaceId::parse(workspace).unwrap(),
            owner: UserId::parse("alice").unwrap(),
        },
        Op::Role(u, admin) => Action::SetMemberRole {
            user: UserId::parse(USERS[*u]).unwrap(),
            role: if *admin { Role::Admin } else { Role::Member },
        },
        Op::Key(provider, second) => {
            let raw = match (provider, second) {
                (Provider::Openai, false) => OPENAI_KEY,
                (Provider::Openai, true) => OPENAI_KEY_2,
                (Provider::Anthropic, false) => ANTHROPIC_KEY,
                (Provider::Anthropic, true) => ANTHROPIC_KEY_2,
            };
            Action::AddKey {
                key_id: Engine::new_key_id(),
                provider: *provider,
                key: ProviderKey::parse(*provider, raw).unwrap(),
            }
        }
        Op::RemoveKey(provider) => Action::RemoveKey { provider: *provider },
        Op::Byo(on) => Action::SetByo { enabled: *on },
        Op::Grant(g, amount) => Action::GrantCredits {
            grant_id: GrantId::parse(&format!("g{g}")).unwrap(),
            amount: Credits::new(*amount),
            reason: String::new(),
        },
        Op::Reply(r, m) => Action::ServeReply {
            reply_id: ReplyId::parse(&format!("r{r}")).unwrap(),
            agent_id: AgentId::parse("agent").unwrap(),
            model: MODELS[*m].to_owned(),
        },
        Op::Train => Action::TrainDataSource { data_source_id: DataSourceId::parse("ds").unwrap() },
    }
}

async fn run(backend: Backend, steps: Vec<(usize, Op, usize)>, group: usize, chunk: usize) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let mut config = billing_testkit::engine_config(&store, Metering::Enabled);
    config.projector_chunk_events = chunk;
    let engine = Engine::start(store, config).await.unwrap();
    for w in WORKSPACES {
        // Most workspaces exist, so that rules get exercised.
        let _ = engine.execute(WorkspaceId::parse(w).unwrap(), None, Channel::Platform, action(w, &Op::Create)).await;
    }
    for chunk in steps.chunks(group.max(1)) {
        let tasks: Vec<_> = chunk
            .iter()
            .map(|(w, op, u)| {
                let engine = engine.clone();
                let workspace = WorkspaceId::parse(WORKSPACES[*w]).unwrap();
                let action = action(WORKSPACES[*w], op);
                let actor = Some(UserId::parse(USERS[*u]).unwrap());
                tokio::spawn(async move { engine.execute(workspace, actor, Channel::Platform, action).await })
            })
            .collect();
        for task in tasks {
            let _ = task.await.unwrap();
        }
    }
    let store = engine.store().clone();
    let mut before = Vec::new();
    for w in WORKSPACES {
        engine.read_your_writes().await.unwrap();
        let tables = projected(&store, w).await;
        assert_eq!(tables, fold_of_stored(&store, w).await, "projections of {w} differ from the events");
        before.push(tables);
    }
    engine.shutdown().await;

    let projector = Projector::new(store.clone(), IN_PROCESS_PROJECTOR);
    projector.reset().await.unwrap();
    projector.catch_up(&store, |_| {}).await.unwrap();
    for (w, tables) in WORKSPACES.iter().zip(before) {
        assert_eq!(projected(&store, w).await, tables, "a rebuild of {w} differs");
    }
}

/// Events per projection transaction: a few, or a whole flush in one.
fn chunk() -> impl Strategy<Value = usize> {
    prop_oneof![3 => 1usize..6, 1 => Just(usize::MAX)]
}

fn check(backend: Backend, steps: Vec<(usize, Op, usize)>, group: usize, chunk: usize) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(run(backend, steps, group, chunk));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), max_shrink_iters: 32, ..ProptestConfig::default() })]

    #[test]
    fn projections_equal_the_fold_of_the_events_on_sqlite(
        steps in prop::collection::vec(step(), 1..80), group in 1usize..12, chunk in chunk(),
    ) {
        check(Backend::Sqlite, steps, group, chunk);
    }

    #[test]
    fn projections_equal_the_fold_of_the_events_on_postgres(
        steps in prop::collection::vec(step(), 1..80), group in 1usize..12, chunk in chunk(),
    ) {
        check(Backend::Postgres, steps, group, chunk);
    }
}
