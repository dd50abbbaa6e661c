//! The books check: what the journal of a load says was acknowledged,
//! against what the server stored.
//!
//! - every reply acknowledged with 200 is in the events exactly once, with
//!   the credits its answer said (none lost, none charged twice);
//! - no reply or grant refused with a definite answer (402, 409, 422...) is
//!   stored, nor any reply or grant id the load never sent;
//! - the balance equals the acknowledged grants minus the acknowledged
//!   charges, and `granted` / `spent` say the same;
//! - at most one active key per provider.

use serde_json::Value;
use std::collections::{BTreeMap, HashMap};

use crate::load::{Journal, Op, Target};

/// Events asked per page (the contract's maximum).
const EVENTS_PAGE: u32 = 1_000;

/// What the check counted, and every problem it found.
#[derive(Debug, Default)]
pub struct Books {
    pub replies_acknowledged: u64,
    pub replies_refused: u64,
    pub grants_acknowledged: u64,
    pub credits_granted: u64,
    pub credits_charged: u64,
    pub events: u64,
    /// Operations the load never got a definite answer for.
    pub unanswered: Vec<String>,
    /// Acknowledged but not stored.
    pub lost: Vec<String>,
    /// Stored more than once.
    pub double_charged: Vec<String>,
    /// Stored although refused, or never sent by the load.
    pub stored_without_ack: Vec<String>,
    /// Anything else that disagrees.
    pub mismatches: Vec<String>,
}

impl Books {
    pub fn problems(&self) -> Vec<String> {
        let mut all = Vec::new();
        for (what, list) in [
            ("unanswered", &self.unanswered),
            ("lost", &self.lost),
            ("double-charged", &self.double_charged),
            ("stored without an acknowledgement", &self.stored_without_ack),
            ("mismatch", &self.mismatches),
        ] {
            all.extend(list.iter().take(20).map(|p| format!("{what}: {p}")));
        }
        all
    }

    #[track_caller]
    pub fn assert_balanced(&self) {
        let problems = self.problems();
        assert!(problems.is_empty(), "the books do not balance:\n{}", problems.join("\n"));
    }
}

/// Every event of `ws`, through `GET .../events` pages.
pub async fn events(target: &Target, ws: &str) -> Vec<Value> {
    let mut all = Vec::new();
    let mut after = 0u64;
    loop {
        let page = target.get_ok(&format!("/v1/workspaces/{ws}/events?after={after}&limit={EVENTS_PAGE}")).await;
        let events = page["events"].as_array().cloned().unwrap_or_default();
        let Some(last) = events.last() else { break };
        after = last["sequence"].as_u64().expect("a sequence");
        let full = events.len() as u32 == EVENTS_PAGE;
        all.extend(events);
        if !full {
            break;
        }
    }
    all
}

/// Checks the journal against the server's events and queries, for every
/// workspace the journal touched. `never_stored` are reply ids that must not
/// be in the events (refused while the database was down).
pub async fn check(target: &Target, journal: &Journal, never_stored: &[String]) -> Books {
    let records = journal.records();
    let mut books = Books::default();
    let mut by_ws: BTreeMap<String, Vec<&crate::load::Record>> = BTreeMap::new();
    for record in &records {
        by_ws.entry(record.op.workspace().to_owned()).or_default().push(record);
    }
    for (ws, records) in by_ws {
        check_workspace(target, &ws, &records, never_stored, &mut books).await;
    }
    books
}

/// Stored replies (credits charged, one per event) and grants (amounts) by id.
#[derive(Default)]
struct Stored {
    replies: HashMap<String, Vec<u64>>,
    grants: HashMap<String, Vec<u64>>,
}

fn stored(events: &[Value]) -> Stored {
    let mut stored = Stored::default();
    for event in events {
        let payload = &event["payload"];
        match event["event_type"].as_str() {
            Some("ReplyServed") => stored
                .replies
                .entry(payload["reply_id"].as_str().unwrap_or_default().to_owned())
                .or_default()
                .push(payload["credits_charged"].as_u64().unwrap_or(u64::MAX)),
            Some("CreditsGranted") => stored
                .grants
                .entry(payload["grant_id"].as_str().unwrap_or_default().to_owned())
                .or_default()
                .push(payload["amount"].as_u64().unwrap_or(u64::MAX)),
            _ => {}
        }
    }
    stored
}

async fn check_workspace(
    target: &Target,
    ws: &str,
    records: &[&crate::load::Record],
    never_stored: &[String],
    books: &mut Books,
) {
    let events = events(target, ws).await;
    books.events += events.len() as u64;
    let mut stored = stored(&events);
    let (mut granted, mut charged) = (0u64, 0u64);
    for record in records {
        let Some(answer) = &record.answer else {
            books.unanswered.push(format!("{:?}", record.op));
            continue;
        };
        match &record.op {
            Op::Reply { reply_id, .. } => {
                let copies = stored.replies.remove(reply_id).unwrap_or_default();
                if answer.status == 200 {
                    books.replies_acknowledged += 1;
                    let said = answer.body["credits_charged"].as_u64().unwrap_or(u64::MAX);
                    charged += said;
                    match copies.as_slice() {
                        [] => books.lost.push(format!("{ws}/{reply_id}")),
                        [one] if *one == said => {}
                        [one] => books.mismatches.push(format!("{ws}/{reply_id}: answered {said}, stored {one}")),
                        _ => books.double_charged.push(format!("{ws}/{reply_id}: {} events", copies.len())),
                    }
                } else {
                    books.replies_refused += 1;
                    if !copies.is_empty() {
                        books.stored_without_ack.push(format!("{ws}/{reply_id} answered {}", answer.status));
                    }
                }
            }
            Op::Grant { grant_id, amount, .. } => {
                let copies = stored.grants.remove(grant_id).unwrap_or_default();
                if answer.status == 201 {
                    books.grants_acknowledged += 1;
                    granted += amount;
                    if copies.len() != 1 {
                        books.double_charged.push(format!("{ws}/grant {grant_id}: {} events", copies.len()));
                    }
                } else if !copies.is_empty() {
                    books.stored_without_ack.push(format!("{ws}/grant {grant_id} answered {}", answer.status));
                }
            }
            _ => {}
        }
    }
    for (id, copies) in stored.replies.iter().chain(stored.grants.iter()) {
        let place =
            if never_stored.contains(id) { "refused while the database was down" } else { "never acknowledged" };
        books.stored_without_ack.push(format!("{ws}/{id} ({place}): {} events", copies.len()));
    }
    books.credits_granted += granted;
    books.credits_charged += charged;
    check_queries(target, ws, granted, charged, books).await;
}

async fn check_queries(target: &Target, ws: &str, granted: u64, charged: u64, books: &mut Books) {
    let credits = target.get_ok(&format!("/v1/workspaces/{ws}/credits")).await;
    let expected = serde_json::json!({"balance": granted - charged.min(granted), "granted": granted, "spent": charged});
    if credits != expected || charged > granted {
        books.mismatches.push(format!("{ws}: credits {credits}, the journal says {expected}"));
    }
    let keys = target.get_ok(&format!("/v1/workspaces/{ws}/keys")).await;
    for provider in ["openai", "anthropic"] {
        let active = keys["keys"]
            .as_array()
            .map(|all| all.iter().filter(|k| k["provider"] == provider && k["status"] == "active").count())
            .unwrap_or(0);
        if active > 1 {
            books.mismatches.push(format!("{ws}: {active} active {provider} keys"));
        }
    }
}
