//! Outages under load. The database: a Postgres cluster of the test's own,
//! stopped with `pg_ctl stop -m immediate` (every backend killed at once)
//! and started again, while the careful clients keep sending. While it is
//! down every command answers 503 `unavailable` and `/readyz` says so;
//! nothing refused then is ever stored; service resumes by itself within
//! seconds of its return. NATS: killed under load, commands do not notice,
//! and the stream ends with every event, none twice and none out of order.

use billing_reliability::books;
use billing_reliability::load::{self, Load, Mix, Op, Target, Token, Workspace};
use billing_reliability::nats::{OwnNats, TestStream};
use billing_reliability::postgres::ThrowawayPostgres;
use billing_reliability::scale;
use billing_reliability::serve::readyz;
use reqwest::Method;
use serde_json::json;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::helpers::*;

/// The contract's "resumes by itself within seconds": the bound asserted
/// between the database accepting connections again and the first command
/// answered 200.
const RESUME_WITHIN: Duration = Duration::from_secs(10);

/// The least time the database stays down. One round of probes takes
/// longer anyway: a command waits up to the engine's 3 s acquire timeout
/// (twice when it queues behind a batch that waits too) before its 503.
const DOWN_FOR_MIN: Duration = Duration::from_millis(1_500);

fn workspaces(prefix: &str) -> Vec<Workspace> {
    (0..3).map(|i| Workspace { id: format!("{prefix}-w{i}"), admin: format!("admin-{i}") }).collect()
}

/// What the prober saw while the database was down.
#[derive(Default)]
struct Probed {
    commands: u64,
    queries: u64,
    readyz: u64,
    /// The slowest 503 while down: how long a caller waits to learn it.
    answer_ms_max: u64,
    /// Reply and grant ids refused while down: never to be stored.
    ids: Vec<String>,
}

/// One round of requests, all at once, while the database is down, each
/// answered before it comes back: every one must be 503 `unavailable`.
async fn probe_while_down(target: &Arc<Target>, port: u16, ws: &Workspace, round: &str, probed: &mut Probed) {
    let n = probed.commands;
    let reply_id = format!("down-{round}-r{n}");
    let grant_id = format!("down-{round}-g{n}");
    let requests = [
        (Method::POST, "replies", Some(json!({"reply_id": reply_id, "agent_id": "a", "model": "gpt-4o"})), None),
        (Method::POST, "credits/grants", Some(json!({"grant_id": grant_id, "amount": 7})), None),
        (Method::PUT, "byo", Some(json!({"enabled": true})), Some(ws.admin.clone())),
        (Method::PUT, "keys/openai", Some(json!({"api_key": billing_testkit::OPENAI_KEY_2})), Some(ws.admin.clone())),
        (Method::GET, "credits", None, None),
    ];
    let ids = [reply_id, grant_id];
    let mut tasks = tokio::task::JoinSet::new();
    for (method, tail, body, actor) in requests {
        let target = Arc::clone(target);
        let path = format!("/v1/workspaces/{}/{tail}", ws.id);
        tasks.spawn(async move {
            let sent = Instant::now();
            let answer = target.send(method.clone(), &path, body.as_ref(), Token::Api, actor.as_deref()).await;
            (method, path, answer, load::millis_since(sent))
        });
    }
    let ready = tokio::task::spawn_blocking(move || readyz(port));
    while let Some(joined) = tasks.join_next().await {
        let (method, path, answer, ms) = joined.expect("a probe");
        let answer = answer.unwrap_or_else(|| panic!("{method} {path}: no answer while the database is down"));
        assert_eq!((answer.status, answer.code()), (503, "unavailable"), "{method} {path} while down: {}", answer.text);
        // The one 503 that may still commit later is the 30 s request
        // timeout (docs/api.md); every other one promises nothing was stored.
        let stored_nothing = answer.body["error"]["message"].as_str().is_some_and(|m| m.contains("nothing was stored"));
        if stored_nothing && method == Method::POST {
            let id = if path.ends_with("/replies") { &ids[0] } else { &ids[1] };
            probed.ids.push(id.clone());
        }
        println!("while down: {method} {path} answered 503 after {ms} ms");
        probed.answer_ms_max = probed.answer_ms_max.max(ms);
        if method == Method::GET {
            probed.queries += 1;
        } else {
            probed.commands += 1;
        }
    }
    assert_eq!(ready.await.expect("readyz"), Some(503), "/readyz while the database is down");
    probed.readyz += 1;
}

/// After the database is back: the time until `/readyz` says 200, and until
/// a new command is answered 200.
async fn time_to_resume(target: &Target, port: u16, ws: &Workspace, round: &str) -> (u64, u64) {
    let back = Instant::now();
    let mut ready_ms = None;
    let body = json!({"reply_id": format!("up-{round}"), "agent_id": "a", "model": "bookbag-local"});
    while back.elapsed() < RESUME_WITHIN {
        if ready_ms.is_none() && tokio::task::block_in_place(|| readyz(port)) == Some(200) {
            ready_ms = Some(load::millis_since(back));
        }
        let path = format!("/v1/workspaces/{}/replies", ws.id);
        if let Some(answer) = target.send(Method::POST, &path, Some(&body), Token::Api, None).await {
            if answer.status == 200 && ready_ms.is_some() {
                return (ready_ms.unwrap_or_default(), load::millis_since(back));
            }
            assert!(answer.status == 503 || answer.status == 200, "after the outage: {}", answer.text);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("service did not resume within {RESUME_WITHIN:?} of the database's return (ready after {ready_ms:?} ms)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_outages_under_load() {
    let outages = scale::pick(1, 6);
    let clients = scale::pick(4, 8);
    let seed = load::seed();
    let mut cluster = tokio::task::block_in_place(ThrowawayPostgres::start);
    let settings = Settings::new(&cluster.url(), None);
    let mut server = settings.start();
    let load = Arc::new(Load {
        target: settings.target(&server),
        journal: Default::default(),
        sweep: settings.sweep(),
        workspaces: workspaces("outage"),
        mix: Mix::default(),
        prefix: "outage".into(),
    });
    load::set_up(&load.target, &load.journal, &load.sweep, &load.workspaces, 300).await;
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let tasks = load.spawn_clients(clients, seed, &stop);
    let mut probed = Probed::default();
    let (mut ready_ms_max, mut resume_ms_max, mut down_ms_total) = (0, 0, 0);
    let port = server.base().rsplit(':').next().and_then(|p| p.parse().ok()).expect("a port");
    for round in 0..outages {
        tokio::time::sleep(Duration::from_millis(700)).await;
        tokio::task::block_in_place(|| cluster.stop_immediate());
        let down = Instant::now();
        let ws = &load.workspaces[round % load.workspaces.len()];
        probe_while_down(&load.target, port, ws, &round.to_string(), &mut probed).await;
        if let Some(rest) = DOWN_FOR_MIN.checked_sub(down.elapsed()) {
            tokio::time::sleep(rest).await;
        }
        down_ms_total += load::millis_since(down);
        tokio::task::block_in_place(|| cluster.start_again());
        let (ready_ms, resume_ms) = time_to_resume(&load.target, port, ws, &round.to_string()).await;
        ready_ms_max = ready_ms_max.max(ready_ms);
        resume_ms_max = resume_ms_max.max(resume_ms);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.expect("a load client");
    }
    let load_ms = load::millis_since(started);
    // The replies that timed the recovery, journaled (same ids, same
    // bodies: they answer as the first time) so that the books count them.
    for round in 0..outages {
        let ws = &load.workspaces[round % load.workspaces.len()];
        let op = Op::Reply {
            ws: ws.id.clone(),
            reply_id: format!("up-{round}"),
            agent_id: "a".into(),
            model: "bookbag-local".into(),
            token: Token::Api,
        };
        load::send_carefully(&load.target, &load.journal, &load.sweep, op).await;
    }

    let books = books::check(&load.target, &load.journal, &probed.ids).await;
    books.assert_balanced();
    assert_eq!(server.terminate(), Some(0), "serve did not shut down cleanly");
    audit_verify(&server);
    let swept = sweep_everything(&settings, &server, &load.journal, None).await;
    let journal = &load.journal;
    scale::record(
        "outage-postgres",
        &[
            ("outages", outages as u64),
            ("clients", clients),
            ("load_ms", load_ms),
            ("down_ms_total", down_ms_total),
            ("requests", journal.requests.load(Ordering::Relaxed) + probed.commands + probed.queries),
            ("refused_503_while_down", probed.commands + probed.queries),
            ("readyz_503_while_down", probed.readyz),
            ("answer_503_ms_max", probed.answer_ms_max),
            ("client_retries_503", journal.unavailable.load(Ordering::Relaxed)),
            ("replies_acked", books.replies_acknowledged),
            ("ready_ms_max", ready_ms_max),
            ("resume_ms_max", resume_ms_max),
            ("events", books.events),
            ("log_lines_swept", swept.log_lines),
            ("rows_swept", swept.rows),
            ("lost", books.lost.len() as u64),
            ("double_charged", books.double_charged.len() as u64),
            ("half_written", books.stored_without_ack.len() as u64),
            ("leaked", 0),
        ],
    );
}

/// NATS killed and restarted under load: no command fails for it, and the
/// stream ends with every event, none twice and none out of order.
async fn nats_outages(outages: u64) {
    let seed = load::seed();
    let db = billing_testkit::TestDb::new(billing_testkit::Backend::Sqlite).await;
    let mut nats = tokio::task::block_in_place(OwnNats::start);
    let stream = TestStream::on(&nats.url());
    let settings = Settings::new(&db.url, Some(&stream));
    let mut server = settings.start();
    let load = Arc::new(Load {
        target: settings.target(&server),
        journal: Default::default(),
        sweep: settings.sweep(),
        workspaces: workspaces("nats"),
        mix: Mix::default(),
        prefix: "nats".into(),
    });
    load::set_up(&load.target, &load.journal, &load.sweep, &load.workspaces, 300).await;
    let stop = Arc::new(AtomicBool::new(false));
    let tasks = load.spawn_clients(4, seed, &stop);
    for _ in 0..outages {
        tokio::time::sleep(Duration::from_millis(600)).await;
        nats.stop();
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        tokio::task::block_in_place(|| nats.start_again());
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.expect("a load client");
    }
    let journal = &load.journal;
    assert_eq!(journal.unavailable.load(Ordering::Relaxed), 0, "a command answered 503 while only NATS was down");
    assert_eq!(journal.no_answer.load(Ordering::Relaxed), 0);
    let books = books::check(&load.target, &load.journal, &[]).await;
    books.assert_balanced();
    let ids: Vec<String> = load.workspaces.iter().map(|w| w.id.clone()).collect();
    let check = compare_stream(&stream, &load.target, &ids).await;
    check.assert_complete();
    assert_eq!(server.terminate(), Some(0));
    audit_verify(&server);
    let swept = sweep_everything(&settings, &server, &load.journal, Some(&stream)).await;
    scale::record(
        "outage-nats",
        &[
            ("outages", outages),
            ("requests", journal.requests.load(Ordering::Relaxed)),
            ("replies_acked", books.replies_acknowledged),
            ("events", books.events),
            ("nats_messages", swept.messages),
            ("nats_missing", check.missing),
            ("lost", books.lost.len() as u64),
            ("leaked", 0),
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_outage_under_load() {
    nats_outages(scale::pick(1, 4)).await;
}

/// The relay's contract: every committed event on the stream, through any
/// outage. Killing NATS while the relay has a window of publishes in flight
/// once left a hole of a few hundred events in every workspace (seen in 2 of
/// 5 runs of 4 outages, before publishes carried the expected last
/// sequence): the client re-sent its buffered publishes to the restarted
/// server, the unacknowledged ones before them were lost with the old one,
/// and the relay restarted from the stream's newest message, past the hole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_reaches_the_stream_through_nats_kills() {
    nats_outages(8).await;
}

/// Workspace `acme` with nine grants: ten events, all on `stream`.
async fn ten_events_on_the_stream(target: &Target, stream: &TestStream) {
    let create = json!({"workspace_id": "acme", "owner": "alice"});
    assert_eq!(
        target.send(Method::POST, "/v1/workspaces", Some(&create), Token::Api, None).await.map(|a| a.status),
        Some(201)
    );
    for i in 0..9 {
        let grant = json!({"grant_id": format!("g{i}"), "amount": 1});
        let path = "/v1/workspaces/acme/credits/grants";
        assert_eq!(target.send(Method::POST, path, Some(&grant), Token::Api, None).await.map(|a| a.status), Some(201));
    }
    assert_eq!(stream.wait_for(10, Duration::from_secs(20)).await, 10);
}

/// The state a server crash leaves, built on purpose: JetStream
/// acknowledged the newest events and then lost them (they were not yet on
/// its disk), while the relay's cursor had already moved past them. A
/// restarted relay must publish them again, in order, once. (A message
/// lost in the middle of a window cannot leave a hole: every message
/// expects its predecessor's stream sequence, so the later ones are
/// refused too.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_restarting_on_a_stream_that_lost_its_newest_messages_republishes_them() {
    let db = billing_testkit::TestDb::new(billing_testkit::Backend::Sqlite).await;
    let stream = TestStream::on(billing_reliability::nats::SHARED_NATS_URL);
    stream.create_with_duplicate_window(Duration::from_millis(200)).await;
    let settings = Settings::new(&db.url, Some(&stream));
    let mut server = settings.start();
    let target = settings.target(&server);
    ten_events_on_the_stream(&target, &stream).await;
    assert_eq!(server.terminate(), Some(0));
    for sequence in [8, 9, 10] {
        stream.delete_message(sequence).await;
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    // The relay's own cursor says everything was acknowledged.
    let cursor = billing_reliability::dump::execute(
        &db.url,
        "UPDATE relay_cursors SET tx_id = 0, position = \
         (SELECT position FROM events WHERE aggregate_id = 'acme' AND sequence = 10)",
    );
    cursor.await;
    tokio::task::block_in_place(|| server.start_again());
    let target = settings.target(&server);
    let check = compare_stream(&stream, &target, &["acme".to_owned()]).await;
    assert_eq!(server.terminate(), Some(0));
    check.assert_complete();
}

/// The state the long NATS outage runs found: NATS killed right after it
/// acknowledged the newest messages comes back without them, while the
/// relay, which has nothing more to publish, believes they are on the
/// stream. The running relay must notice and publish them again, in order,
/// once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_relay_republishes_what_a_restarted_nats_lost() {
    let db = billing_testkit::TestDb::new(billing_testkit::Backend::Sqlite).await;
    let stream = TestStream::on(billing_reliability::nats::SHARED_NATS_URL);
    let settings = Settings::new(&db.url, Some(&stream));
    let mut server = settings.start();
    let target = settings.target(&server);
    ten_events_on_the_stream(&target, &stream).await;
    stream.keep_only_first(7).await;
    assert_eq!(stream.held().await, 7);
    assert_eq!(stream.wait_for(10, Duration::from_secs(20)).await, 10, "the lost messages came back");
    let check = compare_stream(&stream, &target, &["acme".to_owned()]).await;
    assert_eq!(server.terminate(), Some(0));
    check.assert_complete();
}
