//! Tokens and roles: the authorization matrix is generated from the
//! contract's rules, not listed by hand.

use billing_testkit::{both_backends, Backend, TestDb, OPENAI_KEY};
use reqwest::Method;
use serde_json::json;

use crate::helpers::*;

/// Who `X-Actor-Id` names, seen from workspace `acme` (admin alice,
/// member mia); bob is the admin of another workspace.
#[derive(Clone, Copy, Debug)]
enum Who {
    NoActor,
    Admin,
    Member,
    Stranger,
    OtherAdmin,
}

impl Who {
    const ALL: [Who; 5] = [Who::NoActor, Who::Admin, Who::Member, Who::Stranger, Who::OtherAdmin];

    fn header(self) -> Option<&'static str> {
        match self {
            Who::NoActor => None,
            Who::Admin => Some("alice"),
            Who::Member => Some("mia"),
            Who::Stranger => Some("sam"),
            Who::OtherAdmin => Some("bob"),
        }
    }
}

/// Every role-gated command of the contract.
#[derive(Clone, Copy, Debug)]
enum Gated {
    SetRole,
    RemoveMember,
    AddKey,
    RemoveKey,
    SetByo,
    Train,
}

impl Gated {
    const ALL: [Gated; 6] =
        [Gated::SetRole, Gated::RemoveMember, Gated::AddKey, Gated::RemoveKey, Gated::SetByo, Gated::Train];

    /// "who" of the contract's command table: admin, or member or admin.
    fn members_may(self) -> bool {
        matches!(self, Gated::Train)
    }

    fn success(self) -> u16 {
        match self {
            Gated::SetRole | Gated::SetByo => 200,
            Gated::RemoveMember | Gated::RemoveKey => 204,
            Gated::AddKey => 201,
            Gated::Train => 202,
        }
    }

    /// Makes the command succeed when allowed, with a change to store.
    async fn prepare(self, app: &TestApp) {
        match self {
            Gated::SetRole | Gated::RemoveMember => app.set_role("acme", "alice", "tom", "member").await,
            Gated::AddKey => {
                app.delete("/v1/workspaces/acme/keys/openai").actor("alice").send().await;
            }
            Gated::RemoveKey => {
                app.add_key("acme", "alice", "openai", OPENAI_KEY).await;
            }
            Gated::SetByo => app.set_byo("acme", "alice", false).await,
            Gated::Train => {}
        }
    }

    fn call(self, app: &TestApp) -> Call<'_> {
        match self {
            Gated::SetRole => app.put("/v1/workspaces/acme/members/tom").json(json!({"role": "admin"})),
            Gated::RemoveMember => app.delete("/v1/workspaces/acme/members/tom"),
            Gated::AddKey => app.put("/v1/workspaces/acme/keys/openai").json(json!({"api_key": OPENAI_KEY})),
            Gated::RemoveKey => app.delete("/v1/workspaces/acme/keys/openai"),
            Gated::SetByo => app.put("/v1/workspaces/acme/byo").json(json!({"enabled": true})),
            Gated::Train => app.post("/v1/workspaces/acme/data-sources/docs/trainings"),
        }
    }
}

/// The contract's answer for one cell: `None` as the code means success.
fn expected(token: Token, who: Who, command: Gated) -> (u16, Option<&'static str>) {
    match (token, who) {
        (Token::None | Token::Wrong, _) => (401, Some("unauthorized")),
        (Token::Runtime, _) => (403, Some("forbidden")),
        (Token::Api, Who::NoActor) => (400, Some("missing_actor")),
        (Token::Api, Who::Admin) => (command.success(), None),
        (Token::Api, Who::Member) if command.members_may() => (command.success(), None),
        (Token::Api, Who::Member | Who::Stranger | Who::OtherAdmin) => (403, Some("forbidden")),
    }
}

async fn role_gated_commands_follow_the_matrix(backend: Backend) {
    let db = TestDb::new(backend).await;
    let app = spawn(&db).await;
    app.create("acme", "alice").await;
    app.set_role("acme", "alice", "mia", "member").await;
    app.create("globex", "bob").await;
    let mut cells = 0;
    for command in Gated::ALL {
        for token in Token::ALL {
            for who in Who::ALL {
                command.prepare(&app).await;
                let before = app.event_count("acme").await;
                let mut call = command.call(&app).token(token);
                if let Some(actor) = who.header() {
                    call = call.actor(actor);
                }
                let answer = call.send().await;
                let cell = format!("{command:?} with {token:?} as {who:?}");
                match expected(token, who, command) {
                    (status, Some(code)) => {
                        assert_eq!((answer.status, answer.code()), (status, code), "{cell}: {}", answer.text);
                        assert_eq!(app.event_count("acme").await, before, "{cell} stored something");
                    }
                    (status, None) => {
                        assert_eq!(answer.status, status, "{cell}: {}", answer.text);
                        assert!(app.event_count("acme").await > before, "{cell} stored nothing");
                    }
                }
                cells += 1;
            }
        }
    }
    assert_eq!(cells, 6 * 4 * 5);
    app.stop().await;
}

async fn platform_commands_need_the_api_token(backend: Backend) {
    let db = TestDb::new(backend).await;
    let app = spawn(&db).await;
    app.create("acme", "alice").await;
    for token in Token::ALL {
        let n = format!("{token:?}").to_lowercase();
        let create =
            app.post("/v1/workspaces").token(token).json(json!({"workspace_id": format!("ws-{n}"), "owner": "o"}));
        let grant = app
            .post("/v1/workspaces/acme/credits/grants")
            .token(token)
            .json(json!({"grant_id": format!("g-{n}"), "amount": 5}));
        for call in [create, grant] {
            let answer = call.send().await;
            match token {
                Token::None | Token::Wrong => answer.expect_error(401, "unauthorized"),
                Token::Runtime => answer.expect_error(403, "forbidden"),
                Token::Api => answer.expect(201),
            };
        }
    }
    // Only the API token's grant landed.
    assert_eq!(app.get("/v1/workspaces/acme/credits").send().await.body["granted"], 5);
    app.stop().await;
}

async fn replies_take_either_token(backend: Backend) {
    let db = TestDb::new(backend).await;
    let app = spawn(&db).await;
    app.create("acme", "alice").await;
    for (i, token) in Token::ALL.into_iter().enumerate() {
        let answer = app.reply("acme", &format!("r{i}"), "bookbag-local", token).await;
        match token {
            Token::None | Token::Wrong => answer.expect_error(401, "unauthorized"),
            Token::Runtime | Token::Api => answer.expect(200),
        };
    }
    app.stop().await;
}

/// Every GET route of the router, with its parameters filled in.
fn query_paths() -> Vec<String> {
    billing_http::routes()
        .into_iter()
        .filter(|(method, path)| *method == Method::GET && path.starts_with("/v1/"))
        .map(|(_, path)| path.replace("{ws}", "acme"))
        .collect()
}

async fn queries_take_either_token_and_nothing_else(backend: Backend) {
    let db = TestDb::new(backend).await;
    let app = spawn(&db).await;
    app.create("acme", "alice").await;
    let paths = query_paths();
    assert_eq!(paths.len(), 8, "{paths:?}");
    for path in &paths {
        for token in Token::ALL {
            let answer = app.get(path).token(token).send().await;
            match token {
                Token::None | Token::Wrong => answer.expect_error(401, "unauthorized"),
                Token::Runtime | Token::Api => answer.expect(200),
            };
        }
    }
    app.stop().await;
}

async fn a_bad_token_hides_everything_else(backend: Backend) {
    let db = TestDb::new(backend).await;
    let app = spawn(&db).await;
    for token in [Token::None, Token::Wrong] {
        // Unknown routes, wrong methods, bad ids and bad bodies: all 401.
        app.get("/v1/no-such-route").token(token).send().await.expect_error(401, "unauthorized");
        app.call(Method::PATCH, "/v1/workspaces").token(token).send().await.expect_error(401, "unauthorized");
        app.put("/v1/workspaces/a%20b/byo").token(token).raw("nope").send().await.expect_error(401, "unauthorized");
        let answer = app.get("/v1/models").token(token).send().await.expect_error(401, "unauthorized");
        assert_eq!(answer.headers["www-authenticate"], "Bearer");
    }
    for scheme in ["Basic", "Token"] {
        let answer = app.get("/v1/models").token(Token::None).header("authorization", &format!("{scheme} {API_TOKEN}"));
        answer.send().await.expect_error(401, "unauthorized");
    }
    // The scheme is case-insensitive (RFC 7235).
    app.get("/v1/models")
        .token(Token::None)
        .header("authorization", &format!("bearer {API_TOKEN}"))
        .send()
        .await
        .expect(200);
    // Operations need no token.
    for path in ["/healthz", "/readyz", "/metrics", "/openapi.json"] {
        app.get(path).token(Token::None).send().await.expect(200);
    }
    app.stop().await;
}

async fn the_runtime_token_is_refused_before_any_other_check(backend: Backend) {
    let db = TestDb::new(backend).await;
    let app = spawn(&db).await;
    let calls = [
        app.post("/v1/workspaces").raw("not json"),
        app.put("/v1/workspaces/a%20b/byo").actor("a b").raw("{}"),
        app.put("/v1/workspaces/nope/keys/mistral").json(json!({"api_key": "x"})),
        app.delete("/v1/workspaces/nope/members/x"),
        app.post("/v1/workspaces/nope/credits/grants").raw(vec![b' '; 70_000]),
        app.post("/v1/workspaces/nope/data-sources/d/trainings"),
    ];
    for call in calls {
        call.token(Token::Runtime).send().await.expect_error(403, "forbidden");
    }
    app.stop().await;
}

both_backends!(
    role_gated_commands_follow_the_matrix,
    platform_commands_need_the_api_token,
    replies_take_either_token,
    queries_take_either_token_and_nothing_else,
    a_bad_token_hides_everything_else,
    the_runtime_token_is_refused_before_any_other_check,
);
