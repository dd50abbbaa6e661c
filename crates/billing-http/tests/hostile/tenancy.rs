//! Tenancy and roles: every route of the router x every token x every actor
//! x every workspace, generated from the route table and its OpenAPI
//! operations (so a new route is in the matrix by default), each cell's
//! expected answer derived from the contract's rules in the contract's
//! order, never listed by hand.
//!
//! Each cell also checks what it stored: a refusal nothing, a command its
//! own workspace's events and no other's; and that an answer about one
//! workspace never names the other.

use billing_reliability::scale;
use billing_testkit::{Backend, TestDb, OPENAI_KEY};
use serde_json::{json, Value};

use crate::harness::*;
use crate::routes::{palette, table, Route};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Token {
    None,
    Wrong,
    Runtime,
    Api,
}

/// Who `X-Actor-Id` names, seen from the own workspace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Who {
    NoActor,
    Admin,
    Member,
    Stranger,
    OtherAdmin,
}

/// Which workspace the request is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Place {
    Own,
    Other,
    Missing,
}

const TOKENS: [Token; 4] = [Token::None, Token::Wrong, Token::Runtime, Token::Api];
const WHOS: [Who; 5] = [Who::NoActor, Who::Admin, Who::Member, Who::Stranger, Who::OtherAdmin];
const PLACES: [Place; 3] = [Place::Own, Place::Other, Place::Missing];

/// Who may call a route: the contract's "who" column as rules. A command
/// route the rules do not name is admin-only (the contract's default for
/// workspace changes, and the safe one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Gate {
    /// Operations outside `/v1`: no token.
    Open,
    /// Queries: the API or the runtime token.
    Query,
    /// Platform commands: the API token; no role.
    Platform,
    /// Replies: either token; no role.
    Reply,
    /// Members or admins of the workspace.
    Member,
    /// Admins of the workspace.
    Admin,
}

fn gate(route: &Route) -> Gate {
    let path = route.template;
    if !path.starts_with("/v1/") {
        Gate::Open
    } else if route.method == "GET" {
        Gate::Query
    } else if path == "/v1/workspaces" || path.ends_with("/credits/grants") {
        Gate::Platform
    } else if path.ends_with("/replies") {
        Gate::Reply
    } else if path.contains("/data-sources/") {
        Gate::Member
    } else {
        Gate::Admin
    }
}

/// The users of a world: the own workspace has admin alice, members mia
/// and tom; the other has admin bob and member tom; sam is nobody.
fn actor(who: Who) -> Option<&'static str> {
    match who {
        Who::NoActor => None,
        Who::Admin => Some("alice"),
        Who::Member => Some("mia"),
        Who::Stranger => Some("sam"),
        Who::OtherAdmin => Some("bob"),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Admin,
    Member,
}

fn role(place: Place, user: &str) -> Option<Role> {
    match (place, user) {
        (Place::Own, "alice") | (Place::Other, "bob") => Some(Role::Admin),
        (Place::Own, "mia" | "tom") | (Place::Other, "tom") => Some(Role::Member),
        _ => None,
    }
}

/// A cell's expected answer: success (one of the route's 2xx) or an error.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Expect {
    Success,
    Error(u16, &'static str),
}

/// The contract's check order, applied to one cell.
fn expected(route: &Route, token: Token, who: Who, place: Place) -> Expect {
    let gate = gate(route);
    if gate == Gate::Open {
        return Expect::Success;
    }
    // 1. the token.
    match token {
        Token::None | Token::Wrong => return Expect::Error(401, "unauthorized"),
        Token::Runtime if !matches!(gate, Gate::Query | Gate::Reply) => return Expect::Error(403, "forbidden"),
        _ => {}
    }
    // 2, 3: every identifier and body of the matrix is valid.
    // 4. the workspace.
    let creates = route.fields.iter().any(|(name, _)| name == "workspace_id");
    if creates {
        return match place {
            Place::Own | Place::Other => Expect::Error(409, "workspace_exists"),
            Place::Missing => Expect::Success,
        };
    }
    if route.params().contains(&"ws") && place == Place::Missing {
        return Expect::Error(404, "workspace_not_found");
    }
    // 5. the actor.
    if matches!(gate, Gate::Admin | Gate::Member) {
        let Some(user) = actor(who) else { return Expect::Error(400, "missing_actor") };
        let allowed = matches!((gate, role(place, user)), (_, Some(Role::Admin)) | (Gate::Member, Some(Role::Member)));
        if !allowed {
            return Expect::Error(403, "forbidden");
        }
    }
    // 6, 7: every id of the matrix is fresh, every rule met by the world.
    Expect::Success
}

/// Two workspaces built alike, so that any cell can be run in any world.
struct World {
    own: String,
    other: String,
}

impl World {
    fn id(&self, place: Place) -> String {
        match place {
            Place::Own => self.own.clone(),
            Place::Other => self.other.clone(),
            Place::Missing => "mx-missing".to_owned(),
        }
    }

    fn build(app: &Harness, name: &str) -> World {
        let world = World { own: format!("{name}-acme"), other: format!("{name}-globex") };
        for (ws, admin) in [(&world.own, "alice"), (&world.other, "bob")] {
            let call = |method: &str, path: String, actor: Option<&str>, body: Value| {
                let auth = format!("Bearer {API_TOKEN}");
                let mut headers = vec![("authorization", auth.as_str())];
                if let Some(actor) = actor {
                    headers.push(("x-actor-id", actor));
                }
                let answer = app.request(method, &path, &headers, Some(&serde_json::to_vec(&body).expect("JSON")));
                assert!(answer.status < 300, "building the world: {method} {path}: {}", answer.text());
            };
            call("POST", "/v1/workspaces".into(), None, json!({"workspace_id": ws, "owner": admin}));
            let members = if ws == &world.own { &["mia", "tom"][..] } else { &["tom"][..] };
            for member in members {
                call("PUT", format!("/v1/workspaces/{ws}/members/{member}"), Some(admin), json!({"role": "member"}));
            }
            call(
                "POST",
                format!("/v1/workspaces/{ws}/credits/grants"),
                None,
                json!({"grant_id": "seed", "amount": 100}),
            );
            call("PUT", format!("/v1/workspaces/{ws}/keys/openai"), Some(admin), json!({"api_key": OPENAI_KEY}));
        }
        world
    }
}

/// A path parameter's value in a cell: the user and the key exist in both
/// workspaces, so that a permitted change succeeds.
fn param(world: &World, place: Place, name: &str) -> String {
    match name {
        "ws" => world.id(place),
        "user" => "tom".into(),
        "provider" => "openai".into(),
        "id" => "docs".into(),
        other => panic!("path parameter `{other}` is new: give it a value in hostile/tenancy.rs::param"),
    }
}

/// The route's body: the plainest valid value of every field, the ids
/// fresh for the cell, the workspace to create the cell's place.
fn body(route: &Route, world: &World, place: Place, cell: usize) -> Option<Vec<u8>> {
    if !route.has_body() {
        return None;
    }
    let mut object = serde_json::Map::new();
    for (name, _) in &route.fields {
        let value = match name.as_str() {
            "workspace_id" if place == Place::Missing => json!(format!("mx-new-{cell}")),
            "workspace_id" => json!(world.id(place)),
            "reply_id" | "grant_id" => json!(format!("cell-{cell}")),
            _ => palette(name).remove(0),
        };
        object.insert(name.clone(), value);
    }
    Some(serde_json::to_vec(&Value::Object(object)).expect("JSON"))
}

fn token_header(token: Token) -> Option<String> {
    match token {
        Token::None => None,
        Token::Wrong => Some("Bearer wrong-token-0123456789".into()),
        Token::Runtime => Some(format!("Bearer {RUNTIME_TOKEN}")),
        Token::Api => Some(format!("Bearer {API_TOKEN}")),
    }
}

fn every_route_token_actor_and_workspace(backend: Backend) {
    let db = tokio::runtime::Runtime::new().expect("a runtime").block_on(TestDb::new(backend));
    let app = Harness::start(&db.url);
    let routes = table();
    let shared = World::build(&app, "shared");
    let (mut cells, mut successes, mut worlds) = (0usize, 0u64, 1u64);
    for route in &routes {
        for token in TOKENS {
            for who in WHOS {
                for place in PLACES {
                    let expect = expected(route, token, who, place);
                    let changes = expect == Expect::Success && route.method != "GET" && gate(route) != Gate::Open;
                    // A change gets a world of its own: the shared one stays as built.
                    let fresh = changes.then(|| World::build(&app, &format!("c{cell}", cell = cells)));
                    worlds += u64::from(fresh.is_some());
                    let world = fresh.as_ref().unwrap_or(&shared);
                    let path = route.path(|name| param(world, place, name));
                    let auth = token_header(token);
                    let mut headers: Vec<(&str, &str)> = Vec::new();
                    if let Some(auth) = &auth {
                        headers.push(("authorization", auth));
                    }
                    if let Some(user) = actor(who) {
                        headers.push(("x-actor-id", user));
                    }
                    let body = body(route, world, place, cells);
                    let counts = |app: &Harness| {
                        (app.event_count(), app.events_of(&world.own).len(), app.events_of(&world.other).len())
                    };
                    let before = counts(&app);
                    let answer = app.request(&route.method, &path, &headers, body.as_deref());
                    let after = counts(&app);
                    let cell = format!("{} {} with {token:?} as {who:?} on {place:?}", route.method, route.template);
                    check_cell(&cell, route, &expect, &answer, place, world);
                    match (&expect, place) {
                        (Expect::Error(..), _) => assert_eq!(after, before, "{cell} stored something"),
                        _ if !changes => assert_eq!(after, before, "{cell} stored something"),
                        (Expect::Success, Place::Own) => {
                            assert!(after.1 > before.1 && after.2 == before.2, "{cell}: stored {before:?} -> {after:?}")
                        }
                        (Expect::Success, Place::Other) => {
                            assert!(after.2 > before.2 && after.1 == before.1, "{cell}: stored {before:?} -> {after:?}")
                        }
                        (Expect::Success, Place::Missing) => assert!(
                            after.0 > before.0 && (after.1, after.2) == (before.1, before.2),
                            "{cell}: stored {before:?} -> {after:?}"
                        ),
                    }
                    successes += u64::from(expect == Expect::Success);
                    cells += 1;
                }
            }
        }
    }
    assert_eq!(cells, routes.len() * TOKENS.len() * WHOS.len() * PLACES.len());
    let log_lines = app.sweep(&db.url);
    scale::record(
        &format!("tenancy-{}", format!("{backend:?}").to_lowercase()),
        &[
            ("routes", routes.len() as u64),
            ("cells", cells as u64),
            ("successes", successes),
            ("worlds", worlds),
            ("log_lines_swept", log_lines),
            ("leaked", 0),
        ],
    );
}

fn check_cell(cell: &str, route: &Route, expect: &Expect, answer: &RawAnswer, place: Place, world: &World) {
    match expect {
        Expect::Success => assert!(
            route.successes.contains(&answer.status),
            "{cell}: expected one of {:?}, got {}: {}",
            route.successes,
            answer.status,
            answer.text()
        ),
        Expect::Error(status, code) => {
            assert_eq!((answer.status, answer.code().as_str()), (*status, *code), "{cell}: {}", answer.text())
        }
    }
    // An answer about one workspace never names the other.
    let foreign = match place {
        Place::Own => Some(&world.other),
        Place::Other => Some(&world.own),
        Place::Missing => None,
    };
    if let Some(foreign) = foreign {
        assert!(!answer.text().contains(foreign.as_str()), "{cell}: the answer names {foreign}");
    }
}

#[test]
fn the_matrix_on_sqlite() {
    every_route_token_actor_and_workspace(Backend::Sqlite);
}

#[test]
fn the_matrix_on_postgres() {
    every_route_token_actor_and_workspace(Backend::Postgres);
}

/// The rules themselves, on a few cells a reader can check against the
/// contract by eye.
#[test]
fn the_rules_read_like_the_contract() {
    let routes = table();
    let find = |method: &str, template: &str| {
        routes.iter().find(|r| r.method == method && r.template == template).expect("a route").clone()
    };
    let byo = find("PUT", "/v1/workspaces/{ws}/byo");
    let train = find("POST", "/v1/workspaces/{ws}/data-sources/{id}/trainings");
    let reply = find("POST", "/v1/workspaces/{ws}/replies");
    let create = find("POST", "/v1/workspaces");
    let health = find("GET", "/healthz");
    assert_eq!(expected(&byo, Token::Api, Who::Member, Place::Own), Expect::Error(403, "forbidden"));
    assert_eq!(expected(&byo, Token::Api, Who::OtherAdmin, Place::Own), Expect::Error(403, "forbidden"));
    assert_eq!(expected(&byo, Token::Api, Who::OtherAdmin, Place::Other), Expect::Success);
    assert_eq!(expected(&byo, Token::Runtime, Who::Admin, Place::Missing), Expect::Error(403, "forbidden"));
    assert_eq!(expected(&byo, Token::Api, Who::NoActor, Place::Missing), Expect::Error(404, "workspace_not_found"));
    assert_eq!(expected(&train, Token::Api, Who::Member, Place::Own), Expect::Success);
    assert_eq!(expected(&train, Token::Api, Who::Member, Place::Other), Expect::Error(403, "forbidden"));
    assert_eq!(expected(&reply, Token::Runtime, Who::Stranger, Place::Other), Expect::Success);
    assert_eq!(expected(&reply, Token::Wrong, Who::Admin, Place::Own), Expect::Error(401, "unauthorized"));
    assert_eq!(expected(&create, Token::Api, Who::NoActor, Place::Own), Expect::Error(409, "workspace_exists"));
    assert_eq!(expected(&health, Token::Wrong, Who::Stranger, Place::Missing), Expect::Success);
    assert_eq!(gate(&find("DELETE", "/v1/workspaces/{ws}/members/{user}")), Gate::Admin);
}
