//! SIGKILL at random moments under load. Requests in flight when the server
//! dies may or may not have committed; the careful client sends them again
//! with the same ids after the restart, so in the end every operation has
//! exactly one definite answer, and the books must balance to the credit.

use billing_reliability::books;
use billing_reliability::load::{self, Load, Mix, Workspace};
use billing_reliability::nats::{TestStream, SHARED_NATS_URL};
use billing_reliability::scale;
use billing_testkit::{Backend, TestDb};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::helpers::*;

/// Credits each workspace starts with: enough for a few hundred replies, so
/// that a run sees both charges and 402s as grants come and go.
const INITIAL_CREDITS: u64 = 400;

async fn survives_sigkill_under_load(backend: Backend) {
    let kills = scale::pick(3, 25);
    let clients = scale::pick(6, 12);
    // The long run holds the load longer between kills, too.
    let pause_ms_max = scale::pick(1_000, 2_500);
    let seed = load::seed();
    let mut rng = StdRng::seed_from_u64(seed);
    let db = TestDb::new(backend).await;
    let stream = TestStream::on(SHARED_NATS_URL);
    let settings = Settings::new(&db.url, Some(&stream));
    let mut server = settings.start();
    let workspaces: Vec<Workspace> =
        (0..4).map(|i| Workspace { id: format!("crash-w{i}"), admin: format!("admin-{i}") }).collect();
    let load = Arc::new(Load {
        target: settings.target(&server),
        journal: Default::default(),
        sweep: settings.sweep(),
        workspaces,
        mix: Mix::default(),
        prefix: "crash".into(),
    });
    load::set_up(&load.target, &load.journal, &load.sweep, &load.workspaces, INITIAL_CREDITS).await;

    let started = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let tasks = load.spawn_clients(clients, seed, &stop);
    let mut restart_ms_max = 0;
    for _ in 0..kills {
        // Mostly after a while of load; sometimes right after a start,
        // while the engine is still loading and catching up.
        let pause_ms = if rng.gen_bool(0.2) { rng.gen_range(0..60) } else { rng.gen_range(150..pause_ms_max) };
        tokio::time::sleep(Duration::from_millis(pause_ms)).await;
        server.kill();
        tokio::time::sleep(Duration::from_millis(rng.gen_range(0..150))).await;
        let restarting = Instant::now();
        tokio::task::block_in_place(|| server.start_again());
        restart_ms_max = restart_ms_max.max(load::millis_since(restarting));
        load.target.set_base(&server.base());
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.expect("a load client");
    }
    let load_ms = load::millis_since(started);

    let books = books::check(&load.target, &load.journal, &[]).await;
    books.assert_balanced();
    let mismatches = load.journal.repeat_mismatches.lock().unwrap_or_else(|p| p.into_inner()).clone();
    assert!(mismatches.is_empty(), "repeated replies answered differently: {mismatches:?}");
    assert!(books.replies_acknowledged > 0, "{books:?}");
    let ids: Vec<String> = load.workspaces.iter().map(|w| w.id.clone()).collect();
    compare_stream(&stream, &load.target, &ids).await.assert_complete();
    assert_eq!(server.terminate(), Some(0), "serve did not shut down cleanly");
    audit_verify(&server);
    let swept = sweep_everything(&settings, &server, &load.journal, Some(&stream)).await;

    let journal = &load.journal;
    scale::record(
        &format!("crash-{}", format!("{backend:?}").to_lowercase()),
        &[
            ("kills", u64::from(server.starts - 1)),
            ("clients", clients),
            ("load_ms", load_ms),
            ("requests", journal.requests.load(Ordering::Relaxed)),
            ("no_answer", journal.no_answer.load(Ordering::Relaxed)),
            ("unavailable", journal.unavailable.load(Ordering::Relaxed)),
            ("replies_acked", books.replies_acknowledged),
            ("replies_refused", books.replies_refused),
            ("grants_acked", books.grants_acknowledged),
            ("repeats", journal.repeats.load(Ordering::Relaxed)),
            ("events", books.events),
            ("nats_messages", swept.messages),
            ("restart_ms_max", restart_ms_max),
            ("log_lines_swept", swept.log_lines),
            ("rows_swept", swept.rows),
            ("lost", books.lost.len() as u64),
            ("double_charged", books.double_charged.len() as u64),
            ("leaked", 0),
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_survives_sigkill_under_load() {
    survives_sigkill_under_load(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_survives_sigkill_under_load() {
    survives_sigkill_under_load(Backend::Postgres).await;
}
