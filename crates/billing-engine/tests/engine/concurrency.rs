//! Concurrent callers: the balance never goes below zero and an id is
//! never charged twice, however many tasks (or engines) race.

use billing_domain::Route;
use billing_engine::{Engine, Outcome};
use billing_testkit::{both_backends, engine, engine_config, Backend, TestDb};
use std::collections::HashSet;

use crate::helpers::*;

async fn sixty_four_callers_and_a_balance_for_twenty(backend: Backend) {
    let db = TestDb::new(backend).await;
    let engine = engine(&db).await;
    create(&engine, "ws", "alice").await.unwrap();
    // gpt-4o costs 5: a balance of 100 covers exactly 20 replies.
    grant(&engine, "ws", "g", 100).await.unwrap();
    let tasks: Vec<_> = (0..64)
        .map(|i| {
            let engine = engine.clone();
            tokio::spawn(async move { reply(&engine, "ws", &format!("r{i}"), "gpt-4o").await })
        })
        .collect();
    let mut served = 0;
    let mut refused = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(Outcome::Reply(answer)) => {
                assert_eq!(answer.route, Route::Credits);
                served += 1;
            }
            Err(err) => {
                assert_eq!(err.code(), "insufficient_credits");
                refused += 1;
            }
            Ok(other) => panic!("{other:?}"),
        }
    }
    assert_eq!((served, refused), (20, 44));
    let credits = engine.credits(&ws("ws")).await.unwrap();
    assert_eq!((credits.balance, credits.spent), (0, 100));
    let ledger = engine.ledger(&ws("ws"), 0, 1000).await.unwrap();
    assert_eq!(ledger.entries.iter().filter(|e| e.amount < 0).count(), 20);
    engine.shutdown().await;
}

async fn thirty_two_callers_with_one_reply_id(backend: Backend) {
    let db = TestDb::new(backend).await;
    let engine = engine(&db).await;
    create(&engine, "ws", "alice").await.unwrap();
    grant(&engine, "ws", "g", 50).await.unwrap();
    let tasks: Vec<_> = (0..32)
        .map(|_| {
            let engine = engine.clone();
            tokio::spawn(async move { answer(reply(&engine, "ws", "same", "gpt-4o").await.unwrap()) })
        })
        .collect();
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.unwrap());
    }
    assert_eq!(answers.iter().filter(|a| !a.repeated).count(), 1, "exactly one first answer");
    let shapes: HashSet<_> = answers
        .iter()
        .map(|a| (a.route, a.credits_charged, a.list_cost, a.balance, a.model.clone(), a.key_id.clone()))
        .collect();
    assert_eq!(shapes.len(), 1, "every caller got the same answer: {shapes:?}");
    assert_eq!(engine.credits(&ws("ws")).await.unwrap().balance, 45);
    let stored = engine.store().workspace_events("ws", 0, 1000).await.unwrap();
    assert_eq!(stored.iter().filter(|e| e.event_type == "ReplyServed").count(), 1);
    engine.shutdown().await;
}

/// Two engine processes on one database: each keeps its own memory, and
/// the store's optimistic check makes them agree anyway.
async fn two_engines_on_one_database(backend: Backend) {
    let db = TestDb::new(backend).await;
    let first = engine(&db).await;
    let store = db.store().await;
    let second = Engine::start(store.clone(), engine_config(&store, billing_domain::Metering::Enabled)).await.unwrap();
    create(&first, "ws", "alice").await.unwrap();
    grant(&second, "ws", "g", 60).await.unwrap();
    let tasks: Vec<_> = (0..40)
        .map(|i| {
            let engine = if i % 2 == 0 { first.clone() } else { second.clone() };
            tokio::spawn(async move { reply(&engine, "ws", &format!("r{}", i % 25), "gpt-4o-mini").await })
        })
        .collect();
    let mut first_answers = 0;
    for task in tasks {
        let answer = answer(task.await.unwrap().expect("served"));
        if !answer.repeated {
            first_answers += 1;
        }
    }
    // 25 distinct ids at 1 credit each: charged exactly once per id.
    assert_eq!(first_answers, 25);
    let stored = store.workspace_events("ws", 0, 1000).await.unwrap();
    assert_eq!(stored.iter().filter(|e| e.event_type == "ReplyServed").count(), 25);
    first.shutdown().await;
    second.shutdown().await;
    // Each engine promises read-your-writes for its own answers; a third
    // one, started after both, sees them all.
    let third = engine(&db).await;
    let credits = third.credits(&ws("ws")).await.unwrap();
    assert_eq!((credits.balance, credits.spent), (35, 25));
    third.shutdown().await;
}

/// Read-your-writes holds while the hand-off to the projector overflows
/// (room for one batch here, so most batches find it full and reach the
/// projector only through the log): after each reply, its caller's next
/// query shows the balance that reply answered.
async fn a_query_after_a_reply_shows_it_while_the_hand_off_overflows(backend: Backend) {
    const CALLERS: usize = 24;
    const ROUNDS: usize = 12;
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let mut config = engine_config(&store, billing_domain::Metering::Enabled);
    config.feed_batches_max = 1;
    let engine = Engine::start(store, config).await.unwrap();
    for c in 0..CALLERS {
        create(&engine, &format!("w{c}"), "alice").await.unwrap();
        grant(&engine, &format!("w{c}"), "g", 1_000).await.unwrap();
    }
    let tasks: Vec<_> = (0..CALLERS)
        .map(|c| {
            let engine = engine.clone();
            tokio::spawn(async move {
                let workspace = format!("w{c}");
                for i in 0..ROUNDS {
                    let answered = answer(reply(&engine, &workspace, &format!("r{i}"), "gpt-4o").await.unwrap());
                    let shown = engine.credits(&ws(&workspace)).await.unwrap();
                    assert_eq!(
                        shown.balance,
                        answered.balance.get(),
                        "{workspace}: the query after reply {i} does not show it"
                    );
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    engine.shutdown().await;
}

both_backends!(
    a_query_after_a_reply_shows_it_while_the_hand_off_overflows,
    sixty_four_callers_and_a_balance_for_twenty,
    thirty_two_callers_with_one_reply_id,
    two_engines_on_one_database
);
