//! The HTTP fuzzer. Each case is one request built from the route table
//! (or from nothing), then damaged: random methods, paths and segments
//! (too long, percent-encoded invalid UTF-8, raw bytes), tokens and actor
//! headers of every kind, query strings with huge and negative numbers,
//! bodies that are nearly right, deeply nested, over 64 KiB, not UTF-8,
//! or noise. Whatever arrives:
//!
//! - the server answers, and never with a 5xx (with the database stopped:
//!   503 `unavailable` is the only 5xx allowed);
//! - no server thread panics;
//! - an answer that is not a success stores no event;
//! - an error answer of the router is the contract's JSON;
//! - no answer, log line, panic message or table holds a key or a token
//!   (the sweep at the end), though the fuzzer pastes keys everywhere.

use billing_reliability::postgres::ThrowawayPostgres;
use billing_reliability::scale;
use billing_testkit::{Backend, TestDb, ANTHROPIC_KEY, OPENAI_KEY, OPENAI_KEY_2};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed, TestCaseError, TestRunner};
use serde_json::{json, Value};

use crate::harness::*;
use crate::routes::{palette, table, Route};
use proptest::sample::Index;

/// Largest body the fuzzer sends: well past the 64 KiB bound, well inside
/// the 1 MiB the server drains from a refused body.
const BODY_BYTES_MAX: usize = 200 * 1024;

/// Nesting of the deepest body: far past serde_json's recursion limit.
const NESTING_MAX: usize = 20_000;

/// Users of the fuzzed app (see [`populate`]) and one stranger, so that
/// some requests get past the workspace and actor checks.
const USERS: [&str; 4] = ["alice", "mia", "bob", "sam"];

fn known_value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("acme".to_owned()),
        Just("globex".to_owned()),
        Just("alice".to_owned()),
        Just("openai".to_owned()),
        Just("anthropic".to_owned()),
        Just("gpt-4o".to_owned()),
        Just("bookbag-local".to_owned()),
        Just(OPENAI_KEY.to_owned()),
        Just(ANTHROPIC_KEY.to_owned()),
        "[A-Za-z0-9_.:-]{1,12}",
    ]
}

/// A path segment: valid, too long, outside the alphabet, encoded badly.
fn segment() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => known_value().prop_map(String::into_bytes),
        2 => "[A-Za-z0-9_.:-]{120,140}".prop_map(String::into_bytes),
        1 => Just(b"%FF%FE".to_vec()),
        1 => Just(b"%C3%28".to_vec()),
        1 => Just(b"%00".to_vec()),
        1 => Just(b"..".to_vec()),
        1 => Just(Vec::new()),
        1 => Just(format!("%2F{}", OPENAI_KEY).into_bytes()),
        1 => "\\PC{1,8}".prop_map(|s| s.bytes().map(|b| format!("%{b:02X}")).collect::<String>().into_bytes()),
        1 => proptest::collection::vec(any::<u8>(), 1..6),
        1 => "[a-z]{2000,5000}".prop_map(String::into_bytes),
    ]
}

/// A query string of the parameters the routes take (and some they do
/// not), with values from valid to absurd.
fn query() -> impl Strategy<Value = Vec<u8>> {
    let name = prop_oneof![Just("after"), Just("limit"), Just("from"), Just("to"), Just("x"), Just("")];
    let value = prop_oneof![
        Just("0".to_owned()),
        Just("1000".to_owned()),
        Just("1001".to_owned()),
        Just("-1".to_owned()),
        Just("9223372036854775807".to_owned()),
        Just("9223372036854775808".to_owned()),
        Just("99999999999999999999999999999999".to_owned()),
        Just("1e3".to_owned()),
        Just("2026-01-01T00:00:00Z".to_owned()),
        Just("2026-01-01T00:00:00+02:00".to_owned()),
        Just("9999-12-31T23:59:59Z".to_owned()),
        Just("%FF".to_owned()),
        "\\PC{0,12}",
    ];
    proptest::collection::vec((name, value), 0..4).prop_map(|pairs| {
        if pairs.is_empty() {
            return Vec::new();
        }
        let joined: Vec<String> = pairs.iter().map(|(n, v)| format!("{n}={}", v.replace(' ', "+"))).collect();
        format!("?{}", joined.join("&")).into_bytes()
    })
}

/// A path: a route of the table with its parameters filled by [`segment`],
/// or pieces of routes, or noise.
fn path() -> impl Strategy<Value = Vec<u8>> {
    let templates: Vec<&'static str> = billing_http::routes().into_iter().map(|(_, path)| path).collect();
    let from_table = (proptest::sample::select(templates), proptest::collection::vec(segment(), 3), query()).prop_map(
        |(template, segments, query)| {
            let mut out = Vec::new();
            let mut rest = template;
            let mut segments = segments.into_iter();
            while let Some(open) = rest.find('{') {
                out.extend_from_slice(&rest.as_bytes()[..open]);
                out.extend(segments.next().unwrap_or_default());
                rest = &rest[rest[open..].find('}').map_or(rest.len(), |close| open + close + 1)..];
            }
            out.extend_from_slice(rest.as_bytes());
            out.extend(query);
            out
        },
    );
    let pieces = proptest::collection::vec(
        prop_oneof![Just(b"v1".to_vec()), Just(b"workspaces".to_vec()), Just(b"keys".to_vec()), segment()],
        0..7,
    )
    .prop_map(|parts| {
        let mut out = Vec::new();
        for part in parts {
            out.push(b'/');
            out.extend(part);
        }
        if out.is_empty() {
            out.push(b'/');
        }
        out
    });
    prop_oneof![6 => from_table, 2 => pieces, 1 => Just(b"*".to_vec()), 1 => Just(b"http://127.0.0.1/v1/models".to_vec())]
}

fn method() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        8 => proptest::sample::select(vec!["GET", "POST", "PUT", "DELETE"]).prop_map(|m| m.as_bytes().to_vec()),
        2 => proptest::sample::select(vec!["PATCH", "HEAD", "OPTIONS", "TRACE", "CONNECT"]).prop_map(|m| m.as_bytes().to_vec()),
        1 => "[A-Z]{1,12}".prop_map(String::into_bytes),
        1 => proptest::collection::vec(any::<u8>(), 1..8),
    ]
}

/// Headers as raw lines (name and value bytes).
fn headers() -> impl Strategy<Value = Vec<(Vec<u8>, Vec<u8>)>> {
    let authorization = prop_oneof![
        3 => Just(Some(format!("Bearer {API_TOKEN}").into_bytes())),
        2 => Just(Some(format!("Bearer {RUNTIME_TOKEN}").into_bytes())),
        1 => Just(None),
        1 => Just(Some(b"Bearer not-the-token".to_vec())),
        1 => Just(Some(format!("Basic {API_TOKEN}").into_bytes())),
        1 => Just(Some(format!("bearer {API_TOKEN} ").into_bytes())),
        1 => Just(Some(format!("Bearer {OPENAI_KEY}").into_bytes())),
        1 => "[ -~]{0,3000}".prop_map(|s| Some(format!("Bearer {s}").into_bytes())),
        1 => proptest::collection::vec(any::<u8>(), 0..40).prop_map(Some),
    ];
    let actor = prop_oneof![
        3 => proptest::sample::select(USERS.to_vec()).prop_map(|u| Some(u.as_bytes().to_vec())),
        2 => Just(None),
        1 => Just(Some(b"a b".to_vec())),
        1 => Just(Some(OPENAI_KEY.as_bytes().to_vec())),
        1 => "[a-z]{129,300}".prop_map(|s| Some(s.into_bytes())),
        1 => proptest::collection::vec(any::<u8>(), 0..20).prop_map(Some),
    ];
    let extra = proptest::collection::vec(
        prop_oneof![
            Just((b"authorization".to_vec(), format!("Bearer {API_TOKEN}").into_bytes())),
            Just((b"x-actor-id".to_vec(), b"alice".to_vec())),
            Just((b"content-type".to_vec(), b"text/plain".to_vec())),
            Just((b"content-type".to_vec(), b"application/json; charset=latin1".to_vec())),
            Just((b"transfer-encoding".to_vec(), b"chunked".to_vec())),
            Just((b"content-length".to_vec(), b"-1".to_vec())),
            Just((b"content-length".to_vec(), b"99999999999999999999".to_vec())),
            Just((b"expect".to_vec(), b"100-continue".to_vec())),
            ("[a-z-]{1,20}", "[ -~]{0,200}").prop_map(|(n, v)| (n.into_bytes(), v.into_bytes())),
            (Just(b"x-request-id".to_vec()), proptest::collection::vec(any::<u8>(), 0..200)),
        ],
        0..3,
    );
    (authorization, actor, extra).prop_map(|(authorization, actor, extra)| {
        let mut all = Vec::new();
        if let Some(value) = authorization {
            all.push((b"authorization".to_vec(), value));
        }
        if let Some(value) = actor {
            all.push((b"x-actor-id".to_vec(), value));
        }
        all.extend(extra);
        all
    })
}

/// A JSON value, from meaningful to absurd.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        4 => known_value().prop_map(Value::from),
        1 => Just(json!(null)),
        1 => any::<bool>().prop_map(Value::from),
        2 => prop_oneof![Just(1u64), Just(5), Just(1_000_000_000_000), Just(1_000_000_000_001), Just(u64::MAX)].prop_map(Value::from),
        1 => any::<i64>().prop_map(Value::from),
        1 => any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
        1 => "\\PC{0,40}".prop_map(Value::from),
        1 => "[a-z]{1000,70000}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 12, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            proptest::collection::btree_map("[a-z_]{1,10}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Bodies of the routes' shapes with random values, and worse.
fn body() -> impl Strategy<Value = Option<Vec<u8>>> {
    let fields = proptest::sample::subsequence(
        vec![
            "workspace_id",
            "owner",
            "role",
            "api_key",
            "enabled",
            "grant_id",
            "amount",
            "reason",
            "reply_id",
            "agent_id",
            "model",
        ],
        0..5,
    );
    let shaped = (fields, proptest::collection::vec(json_value(), 5)).prop_map(|(names, values)| {
        let object: serde_json::Map<String, Value> = names.into_iter().map(str::to_owned).zip(values).collect();
        Some(serde_json::to_vec(&Value::Object(object)).expect("JSON"))
    });
    let numbers = prop_oneof![
        Just("1e400"),
        Just("-0"),
        Just("18446744073709551616"),
        Just("1.0"),
        Just("0x10"),
        Just("NaN"),
        Just("1000000000001"),
    ]
    .prop_map(|n| Some(format!("{{\"grant_id\":\"g\",\"amount\":{n}}}").into_bytes()));
    let deep = (1usize..NESTING_MAX, any::<bool>()).prop_map(|(depth, object)| {
        let (open, close) = if object { ("{\"a\":", "}") } else { ("[", "]") };
        Some(format!("{}1{}", open.repeat(depth), close.repeat(depth)).into_bytes())
    });
    let invalid_utf8 = proptest::collection::vec(128u8..=255, 1..8).prop_map(|bad| {
        let mut body = b"{\"reply_id\":\"r".to_vec();
        body.extend(bad);
        body.extend_from_slice(b"\",\"agent_id\":\"a\",\"model\":\"gpt-4o\"}");
        Some(body)
    });
    let oversized = (64 * 1024 - 8..BODY_BYTES_MAX, any::<bool>()).prop_map(|(size, key_inside)| {
        let mut body =
            if key_inside { format!("{{\"api_key\":\"{OPENAI_KEY_2}\"}}") } else { "{}".to_owned() }.into_bytes();
        body.resize(size, b' ');
        Some(body)
    });
    prop_oneof![
        2 => Just(None),
        6 => shaped,
        1 => numbers,
        1 => deep,
        1 => invalid_utf8,
        1 => oversized,
        1 => proptest::collection::vec(any::<u8>(), 0..300).prop_map(Some),
    ]
}

/// One fuzzed request. Its `Debug` (what proptest prints of a failing
/// case) is [`Case::summary`]: the body may hold a key.
#[derive(Clone)]
struct Case {
    method: Vec<u8>,
    path: Vec<u8>,
    headers: Vec<(Vec<u8>, Vec<u8>)>,
    body: Option<Vec<u8>>,
}

impl Case {
    fn bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&self.method);
        out.push(b' ');
        out.extend_from_slice(&self.path);
        out.extend_from_slice(b" HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n");
        let mut chunked = false;
        let mut declared = false;
        for (name, value) in &self.headers {
            out.extend_from_slice(name);
            out.extend_from_slice(b": ");
            out.extend_from_slice(value);
            out.extend_from_slice(b"\r\n");
            chunked |= name == b"transfer-encoding";
            declared |= name == b"content-length";
        }
        let body = self.body.clone().unwrap_or_default();
        if !chunked && !declared && self.body.is_some() {
            out.extend_from_slice(format!("content-length: {}\r\n", body.len()).as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        if chunked {
            if !body.is_empty() {
                out.extend_from_slice(format!("{:x}\r\n", body.len()).as_bytes());
                out.extend_from_slice(&body);
                out.extend_from_slice(b"\r\n");
            }
            out.extend_from_slice(b"0\r\n\r\n");
        } else {
            out.extend_from_slice(&body);
        }
        out
    }

    /// What the case is, without its body (which may hold a key).
    fn summary(&self) -> String {
        format!(
            "{} {} ({} headers, {} body bytes)",
            String::from_utf8_lossy(&self.method),
            String::from_utf8_lossy(&self.path.iter().copied().take(200).collect::<Vec<u8>>()),
            self.headers.len(),
            self.body.as_ref().map_or(0, Vec::len)
        )
    }
}

impl std::fmt::Debug for Case {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.summary())
    }
}

/// Any request, of any shape.
fn chaos() -> impl Strategy<Value = Case> {
    (method(), path(), headers(), body()).prop_map(|(method, path, headers, body)| Case { method, path, headers, body })
}

/// A change to a body a real caller would send.
#[derive(Clone, Debug)]
enum Mutation {
    None,
    Replace(Index, Value),
    Drop(Index),
    Add(String, Value),
}

/// A change to the rest of the request.
#[derive(Clone, Debug)]
enum Damage {
    None,
    Segment(Index, Vec<u8>),
    Query(Vec<u8>),
    Method(Vec<u8>),
    Body(Option<Vec<u8>>),
}

/// Known values of each path parameter: existing, missing, wrong.
fn param_values(name: &str) -> &'static [&'static str] {
    match name {
        "ws" => &["acme", "globex", "nope"],
        "user" => &["mia", "tom", "alice", "bob"],
        "provider" => &["openai", "anthropic", "mistral"],
        "id" => &["docs", "d.1"],
        other => panic!("path parameter `{other}` is new: add its values to hostile/fuzz.rs::param_values"),
    }
}

/// A request a real caller could send (a route of the table, its
/// parameters and body from the known values, one of the tokens), then at
/// most one mutation of the body and one damage to the rest: most of these
/// get past the edge's checks into the engine.
fn plausible() -> impl Strategy<Value = Case> {
    let token = prop_oneof![
        5 => Just(Some(API_TOKEN)),
        2 => Just(Some(RUNTIME_TOKEN)),
        1 => Just(None),
        1 => Just(Some("wrong-token-000000000")),
    ];
    let actor = prop_oneof![3 => Just(Some("alice")), 2 => Just(Some("mia")), 1 => Just(Some("bob")), 1 => Just(Some("sam")), 1 => Just(None)];
    let mutation = prop_oneof![
        5 => Just(Mutation::None),
        1 => (any::<Index>(), json_value()).prop_map(|(i, v)| Mutation::Replace(i, v)),
        1 => any::<Index>().prop_map(Mutation::Drop),
        1 => ("[a-z_]{1,12}", json_value()).prop_map(|(n, v)| Mutation::Add(n, v)),
    ];
    let damage = prop_oneof![
        8 => Just(Damage::None),
        1 => (any::<Index>(), segment()).prop_map(|(i, s)| Damage::Segment(i, s)),
        1 => query().prop_map(Damage::Query),
        1 => method().prop_map(Damage::Method),
        1 => body().prop_map(Damage::Body),
    ];
    let picks = proptest::collection::vec(any::<Index>(), 8);
    (proptest::sample::select(table()), picks, "[a-z0-9]{1,3}", token, actor, mutation, damage).prop_map(
        |(route, picks, suffix, token, actor, mutation, damage)| {
            let mut pick = picks.into_iter().cycle();
            let mut segments: Vec<Vec<u8>> = Vec::new();
            let path = route.path(|name| {
                let values = param_values(name);
                let value = values[pick.next().map_or(0, |i| i.index(values.len()))].to_owned();
                segments.push(value.clone().into_bytes());
                value
            });
            let mut body = route.has_body().then(|| plausible_body(&route, &mut pick, &suffix, mutation));
            let (mut method, mut path) = (route.method.clone().into_bytes(), path.into_bytes());
            match damage {
                Damage::None => {}
                Damage::Segment(at, segment) if !segments.is_empty() => {
                    let old = &segments[at.index(segments.len())];
                    let text = String::from_utf8_lossy(&path).replacen(&*String::from_utf8_lossy(old), "\u{0}", 1);
                    let (before, after) = text.split_once('\u{0}').unwrap_or((&text, ""));
                    path = [before.as_bytes(), &segment, after.as_bytes()].concat();
                }
                Damage::Segment(..) => {}
                Damage::Query(query) => path.extend(query),
                Damage::Method(other) => method = other,
                Damage::Body(other) => body = other,
            }
            let mut headers = Vec::new();
            if let Some(token) = token {
                headers.push((b"authorization".to_vec(), format!("Bearer {token}").into_bytes()));
            }
            if let Some(actor) = actor {
                headers.push((b"x-actor-id".to_vec(), actor.as_bytes().to_vec()));
            }
            Case { method, path, headers, body }
        },
    )
}

/// The route's body from the palette of each field, ids made fresh by
/// `suffix` (short, so that ids repeat and idempotency is exercised).
fn plausible_body(route: &Route, pick: &mut impl Iterator<Item = Index>, suffix: &str, mutation: Mutation) -> Vec<u8> {
    let mut object = serde_json::Map::new();
    for (name, _) in &route.fields {
        let values = palette(name);
        let mut value = values[pick.next().map_or(0, |i| i.index(values.len()))].clone();
        if matches!(name.as_str(), "reply_id" | "grant_id") || value == json!("new-ws") {
            value = json!(format!("{}-{suffix}", value.as_str().unwrap_or("id")));
        }
        object.insert(name.clone(), value);
    }
    let names: Vec<String> = object.keys().cloned().collect();
    match mutation {
        Mutation::None => {}
        Mutation::Replace(at, value) if !names.is_empty() => {
            object.insert(names[at.index(names.len())].clone(), value);
        }
        Mutation::Drop(at) if !names.is_empty() => {
            object.remove(&names[at.index(names.len())]);
        }
        Mutation::Add(name, value) => {
            object.insert(name, value);
        }
        Mutation::Replace(..) | Mutation::Drop(..) => {}
    }
    serde_json::to_vec(&Value::Object(object)).expect("JSON")
}

fn case() -> impl Strategy<Value = Case> {
    prop_oneof![3 => plausible(), 2 => chaos()]
}

/// What a run of the fuzzer saw.
#[derive(Debug, Default)]
struct Seen {
    cases: u64,
    successes: u64,
    refusals: u64,
    no_answer: u64,
    unavailable: u64,
    by_status: std::collections::BTreeMap<u16, u64>,
}

/// The state the fuzzed requests meet: two workspaces with admins, a
/// member, credits and a key, BYO on in one of them.
fn populate(app: &Harness) {
    let api = format!("Bearer {API_TOKEN}");
    let call = |method: &str, path: &str, actor: Option<&str>, body: Value| {
        let mut headers = vec![("authorization", api.as_str())];
        if let Some(actor) = actor {
            headers.push(("x-actor-id", actor));
        }
        let answer = app.request(method, path, &headers, Some(&serde_json::to_vec(&body).expect("JSON")));
        assert!(answer.status < 300, "{method} {path}: {}", answer.text());
    };
    call("POST", "/v1/workspaces", None, json!({"workspace_id": "acme", "owner": "alice"}));
    call("POST", "/v1/workspaces", None, json!({"workspace_id": "globex", "owner": "bob"}));
    call("PUT", "/v1/workspaces/acme/members/mia", Some("alice"), json!({"role": "member"}));
    for ws in ["acme", "globex"] {
        call("POST", &format!("/v1/workspaces/{ws}/credits/grants"), None, json!({"grant_id": "seed", "amount": 50}));
    }
    call("PUT", "/v1/workspaces/acme/keys/openai", Some("alice"), json!({"api_key": OPENAI_KEY}));
    call("PUT", "/v1/workspaces/globex/byo", Some("bob"), json!({"enabled": true}));
}

/// Runs `cases` fuzzed requests against `app`. `db_down`: the database is
/// stopped, so 503 `unavailable` is allowed (and nothing can be stored).
fn fuzz(app: &Harness, cases: u32, seed: u64, db_down: bool) -> Seen {
    let config = Config { cases, failure_persistence: None, rng_seed: RngSeed::Fixed(seed), ..Config::default() };
    let mut runner = TestRunner::new(config);
    let seen = std::cell::RefCell::new(Seen::default());
    let result = runner.run(&case(), |case| {
        let before = if db_down { 0 } else { app.event_count() };
        let answer = app.raw(&case.bytes());
        let mut seen = seen.borrow_mut();
        seen.cases += 1;
        let Some(answer) = answer else {
            seen.no_answer += 1;
            return Ok(());
        };
        *seen.by_status.entry(answer.status).or_default() += 1;
        let what = format!(
            "{} answered {}: {}",
            case.summary(),
            answer.status,
            answer.text().chars().take(300).collect::<String>()
        );
        if answer.status == 503 {
            prop_assert!(db_down, "{what}");
            // A HEAD answer carries no body to hold the code.
            if case.method != b"HEAD" {
                prop_assert_eq!(answer.code(), "unavailable", "{}", what);
            }
            seen.unavailable += 1;
        } else {
            prop_assert!(answer.status < 500, "{what}");
        }
        // A HEAD answer has the headers of a GET and no body.
        let json_error =
            answer.status >= 400 && case.method != b"HEAD" && answer.header("content-type") == Some("application/json");
        if json_error {
            let body = answer.json();
            let fields = body["error"].as_object().map(|o| o.keys().cloned().collect::<Vec<_>>());
            prop_assert_eq!(fields, Some(vec!["code".to_owned(), "message".to_owned()]), "{}", what);
            prop_assert_eq!(body.as_object().map(|o| o.len()), Some(1), "{}", what);
        }
        if (200..300).contains(&answer.status) {
            seen.successes += 1;
        } else {
            seen.refusals += 1;
            if !db_down {
                let after = app.event_count();
                prop_assert_eq!(after, before, "a refused request stored events: {}", what);
            }
        }
        let panics = app.panics();
        if !panics.is_empty() {
            return Err(TestCaseError::fail(format!("the server panicked on {}", case.summary())));
        }
        Ok(())
    });
    if let Err(err) = result {
        panic!("the fuzzer found a failure (seed {seed}): {err}");
    }
    seen.into_inner()
}

fn fuzz_backend(backend: Backend) {
    let cases = scale::pick(300, 6_000);
    let seed = billing_reliability::load::seed();
    let db = tokio::runtime::Runtime::new().expect("a runtime").block_on(TestDb::new(backend));
    let app = Harness::start(&db.url);
    populate(&app);
    let seen = fuzz(&app, cases, seed, false);
    // Still alive and still right after it all.
    let health = app.request("GET", "/healthz", &[], None);
    assert_eq!(health.status, 200);
    assert!(seen.refusals > seen.cases / 2 && seen.successes > 0, "{seen:?}");
    let log_lines = app.sweep(&db.url);
    scale::record(
        &format!("fuzz-{}", format!("{backend:?}").to_lowercase()),
        &[
            ("cases", seen.cases),
            ("successes", seen.successes),
            ("refusals", seen.refusals),
            ("no_answer", seen.no_answer),
            ("server_errors", 0),
            ("log_lines_swept", log_lines),
            ("panics", 0),
            ("leaked", 0),
        ],
    );
    println!("statuses: {:?}", seen.by_status);
}

#[test]
fn fuzzed_requests_on_sqlite() {
    fuzz_backend(Backend::Sqlite);
}

#[test]
fn fuzzed_requests_on_postgres() {
    fuzz_backend(Backend::Postgres);
}

/// The same fuzzer while the database is stopped: 503 `unavailable` is the
/// only 5xx, and once it is back nothing of it was stored.
#[test]
fn fuzzed_requests_with_the_database_stopped() {
    let cases = scale::pick(40, 200);
    let seed = billing_reliability::load::seed();
    let mut cluster = ThrowawayPostgres::start();
    let app = Harness::start(&cluster.url());
    populate(&app);
    let before = app.event_count();
    cluster.stop_immediate();
    let seen = fuzz(&app, cases, seed, true);
    cluster.start_again();
    let mut after = None;
    for _ in 0..100 {
        if let Ok(count) = app.runtime.block_on(app.store.event_count()) {
            after = Some(count);
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(after, Some(before), "events were stored while the database was down");
    assert!(seen.unavailable > 0, "{seen:?}");
    let log_lines = app.sweep(&cluster.url());
    scale::record(
        "fuzz-database-stopped",
        &[("cases", seen.cases), ("unavailable", seen.unavailable), ("log_lines_swept", log_lines), ("leaked", 0)],
    );
}
