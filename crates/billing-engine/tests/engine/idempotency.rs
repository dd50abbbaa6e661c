//! Idempotency forever: a reply or grant id is answered as the first time
//! however long ago it was decided and whatever the engine's memory holds.

use billing_domain::{Action, Channel, Credits, GrantId, REPLIES_REMEMBERED_MAX};
use billing_testkit::{both_backends, engine, Backend, TestDb};

use crate::helpers::*;

async fn a_reply_id_older_than_memory_is_still_answered_once(backend: Backend) {
    let db = TestDb::new(backend).await;
    let engine = engine(&db).await;
    create(&engine, "ws", "alice").await.unwrap();
    grant(&engine, "ws", "g", 10_000).await.unwrap();
    let first = answer(reply(&engine, "ws", "old", "gpt-4o").await.unwrap());
    for i in 0..(REPLIES_REMEMBERED_MAX + 20) {
        reply(&engine, "ws", &format!("r{i}"), "gpt-4o-mini").await.unwrap();
    }
    let balance_before = engine.credits(&ws("ws")).await.unwrap().balance;
    let again = answer(reply(&engine, "ws", "old", "gpt-4o").await.unwrap());
    assert!(again.repeated);
    assert_eq!(
        (again.balance, again.credits_charged, again.route),
        (first.balance, first.credits_charged, first.route)
    );
    assert_eq!(engine.credits(&ws("ws")).await.unwrap().balance, balance_before, "charged twice");
    assert_eq!(code(reply(&engine, "ws", "old", "claude-haiku-4").await), "idempotency_conflict");
    // A fresh engine (empty memory) on the same database agrees.
    engine.shutdown().await;
    let restarted = billing_testkit::engine(&db).await;
    assert!(answer(reply(&restarted, "ws", "old", "gpt-4o").await.unwrap()).repeated);
    assert_eq!(restarted.credits(&ws("ws")).await.unwrap().balance, balance_before);
    restarted.shutdown().await;
}

async fn a_repeat_inside_one_large_batch_is_answered_once(backend: Backend) {
    let db = TestDb::new(backend).await;
    let engine = engine(&db).await;
    create(&engine, "ws", "alice").await.unwrap();
    grant(&engine, "ws", "g", 100_000).await.unwrap();
    // Enough concurrent replies that one group commit holds more distinct
    // ids than the aggregate remembers, each id sent twice.
    let count = REPLIES_REMEMBERED_MAX * 3;
    let tasks: Vec<_> = (0..count * 2)
        .map(|i| {
            let engine = engine.clone();
            tokio::spawn(async move { reply(&engine, "ws", &format!("r{}", i % count), "gpt-4o-mini").await })
        })
        .collect();
    let mut firsts = 0;
    for task in tasks {
        if !answer(task.await.unwrap().unwrap()).repeated {
            firsts += 1;
        }
    }
    assert_eq!(firsts, count);
    assert_eq!(engine.credits(&ws("ws")).await.unwrap().spent, count as u64);
    engine.shutdown().await;
}

async fn a_grant_id_is_granted_once_and_answers_as_the_first_time(backend: Backend) {
    let db = TestDb::new(backend).await;
    let engine = engine(&db).await;
    create(&engine, "ws", "alice").await.unwrap();
    let first = grant(&engine, "ws", "g1", 40).await.unwrap();
    grant(&engine, "ws", "g2", 2).await.unwrap();
    let again = grant(&engine, "ws", "g1", 40).await.unwrap();
    match (first, again) {
        (
            billing_engine::Outcome::Granted { balance: a, repeated: false },
            billing_engine::Outcome::Granted { balance: b, repeated: true },
        ) => assert_eq!(a, b),
        other => panic!("{other:?}"),
    }
    let conflict = engine
        .execute(
            ws("ws"),
            None,
            Channel::Platform,
            Action::GrantCredits {
                grant_id: GrantId::parse("g1").unwrap(),
                amount: Credits::new(41),
                reason: String::new(),
            },
        )
        .await;
    assert_eq!(code(conflict), "idempotency_conflict");
    assert_eq!(engine.credits(&ws("ws")).await.unwrap().granted, 42);
    engine.shutdown().await;
}

both_backends!(
    a_reply_id_older_than_memory_is_still_answered_once,
    a_repeat_inside_one_large_batch_is_answered_once,
    a_grant_id_is_granted_once_and_answers_as_the_first_time
);
