//! Commands in one line each, for tests that run many.

use billing_domain::*;
use billing_engine::{Engine, EngineError, Outcome};

pub fn ws(id: &str) -> WorkspaceId {
    WorkspaceId::parse(id).unwrap()
}

pub fn user(id: &str) -> UserId {
    UserId::parse(id).unwrap()
}

pub async fn create(engine: &Engine, workspace: &str, owner: &str) -> Result<Outcome, EngineError> {
    let action = Action::CreateWorkspace { workspace_id: ws(workspace), owner: user(owner) };
    engine.execute(ws(workspace), None, Channel::Platform, action).await
}

pub async fn grant(engine: &Engine, workspace: &str, grant_id: &str, amount: u64) -> Result<Outcome, EngineError> {
    let action = Action::GrantCredits {
        grant_id: GrantId::parse(grant_id).unwrap(),
        amount: Credits::new(amount),
        reason: "test".into(),
    };
    engine.execute(ws(workspace), None, Channel::Platform, action).await
}

pub async fn reply(engine: &Engine, workspace: &str, reply_id: &str, model: &str) -> Result<Outcome, EngineError> {
    reply_as(engine, workspace, reply_id, model, Channel::Platform).await
}

pub async fn reply_as(
    engine: &Engine,
    workspace: &str,
    reply_id: &str,
    model: &str,
    channel: Channel,
) -> Result<Outcome, EngineError> {
    let action = Action::ServeReply {
        reply_id: ReplyId::parse(reply_id).unwrap(),
        agent_id: AgentId::parse("agent").unwrap(),
        model: model.into(),
    };
    engine.execute(ws(workspace), None, channel, action).await
}

pub async fn add_key(
    engine: &Engine,
    workspace: &str,
    actor: &str,
    provider: Provider,
    key: &str,
) -> Result<Outcome, EngineError> {
    let action =
        Action::AddKey { key_id: Engine::new_key_id(), provider, key: ProviderKey::parse(provider, key).unwrap() };
    engine.execute(ws(workspace), Some(user(actor)), Channel::Platform, action).await
}

pub async fn remove_key(
    engine: &Engine,
    workspace: &str,
    actor: &str,
    provider: Provider,
) -> Result<Outcome, EngineError> {
    engine.execute(ws(workspace), Some(user(actor)), Channel::Platform, Action::RemoveKey { provider }).await
}

pub async fn set_byo(engine: &Engine, workspace: &str, actor: &str, enabled: bool) -> Result<Outcome, EngineError> {
    engine.execute(ws(workspace), Some(user(actor)), Channel::Platform, Action::SetByo { enabled }).await
}

pub fn answer(outcome: Outcome) -> billing_engine::ReplyAnswer {
    match outcome {
        Outcome::Reply(answer) => answer,
        other => panic!("not a reply: {other:?}"),
    }
}

pub fn code(result: Result<Outcome, EngineError>) -> &'static str {
    match result {
        Ok(outcome) => panic!("expected an error, got {outcome:?}"),
        Err(err) => err.code(),
    }
}
