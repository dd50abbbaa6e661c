//! What the writer adds to each event before it is stored: the canonical
//! text of its payload and its link in the workspace's hash chain.
//!
//!     cargo bench -p billing-engine --bench chain
//!
//! `baseline/serde_json_to_string` (the plain serialization of the same
//! payload, measured in the same run) is what the ratios in
//! docs/performance.md are against.

use billing_engine::chain::{canonical, link_canonical, metadata_text, GENESIS_HASH};
use criterion::{criterion_group, criterion_main, Criterion};
use serde_json::json;
use std::hint::black_box;

fn chain(c: &mut Criterion) {
    // A ReplyServed payload as the engine stores it.
    let payload = json!({
        "ReplyServed": {
            "reply_id": "reply-000000123456",
            "agent_id": "support-agent",
            "model": "gpt-4o",
            "provider": "openai",
            "route": "credits",
            "key_id": null,
            "credits_charged": 5,
            "list_cost": 5,
            "balance_after": 999_995
        },
        "at": "2026-12-04T03:00:00.123456Z",
        "by": "Runtime"
    });
    let text = canonical(&payload);
    c.bench_function("baseline/serde_json_to_string", |b| b.iter(|| serde_json::to_string(black_box(&payload))));
    c.bench_function("chain/canonical", |b| b.iter(|| canonical(black_box(&payload))));
    c.bench_function("chain/link", |b| {
        b.iter(|| link_canonical(GENESIS_HASH, "workspace-0001", black_box(123_456), "ReplyServed", "1", &text))
    });
    let hash = link_canonical(GENESIS_HASH, "workspace-0001", 123_456, "ReplyServed", "1", &text);
    c.bench_function("chain/metadata_text", |b| b.iter(|| metadata_text(GENESIS_HASH, black_box(&hash))));
}

criterion_group!(benches, chain);
criterion_main!(benches);
