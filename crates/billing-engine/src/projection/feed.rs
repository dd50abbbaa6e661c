//! The hand-off of committed batches from the shard writers to the
//! in-process projector, in memory: the projector applies what the writers
//! just committed without reading it back from the database, and batches
//! as much as has piled up (so the busier it is, the more each of its
//! transactions carries).
//!
//! The hand-off is an optimisation, never the source of truth: the
//! projector also follows the log itself (at start-up, every few seconds,
//! and whenever the hand-off overflowed or left something out), so nothing
//! committed is ever missed.

use std::sync::Mutex;
use tokio::sync::mpsc;

use super::ProjectedEvent;

/// Committed batches the hand-off holds before it overflows (the projector
/// then reads the log instead; writers never wait for it).
pub const FEED_BATCHES_MAX: usize = 4_096;

/// One committed batch, numbered in commit order.
pub struct Fed {
    pub number: u64,
    pub events: Vec<ProjectedEvent>,
    pub committed_at: std::time::Instant,
}

/// The writers' side of the hand-off.
pub struct Feed {
    state: Mutex<FeedState>,
    /// Events handed over and not yet taken by the projector.
    queued_events: std::sync::atomic::AtomicU64,
}

struct FeedState {
    /// Batches committed so far (the projector's start-up catch-up counts
    /// as the first).
    committed: u64,
    sender: Option<mpsc::Sender<Fed>>,
    overflowed: bool,
}

impl Feed {
    /// A hand-off of `capacity` batches to a projector (`None`: no
    /// projector runs; batches are only counted).
    pub fn new(projector: bool, capacity: usize) -> (Feed, Option<mpsc::Receiver<Fed>>) {
        let (sender, receiver) = if projector {
            let (tx, rx) = mpsc::channel(capacity.max(1));
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        (
            Feed {
                state: Mutex::new(FeedState { committed: 1, sender, overflowed: false }),
                queued_events: std::sync::atomic::AtomicU64::new(0),
            },
            receiver,
        )
    }

    /// A writer committed `events`. Numbering and sending happen under one
    /// lock, so batches reach the projector in the order of their numbers.
    pub fn committed(&self, events: Vec<ProjectedEvent>) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.committed += 1;
        let number = state.committed;
        if let Some(sender) = &state.sender {
            let count = events.len() as u64;
            let fed = Fed { number, events, committed_at: std::time::Instant::now() };
            if sender.try_send(fed).is_ok() {
                self.queued_events.fetch_add(count, std::sync::atomic::Ordering::Relaxed);
            } else {
                state.overflowed = true;
            }
        }
    }

    /// How many batches have been committed (what a query waits for).
    pub fn committed_count(&self) -> u64 {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).committed
    }

    /// The projector took `count` events off the hand-off.
    pub fn taken(&self, count: u64) {
        self.queued_events.fetch_sub(count, std::sync::atomic::Ordering::Relaxed);
    }

    /// Events handed over and not yet taken.
    pub fn queued_events(&self) -> u64 {
        self.queued_events.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// True once since the last call if a batch could not be handed over.
    pub fn take_overflow(&self) -> bool {
        std::mem::take(&mut self.state.lock().unwrap_or_else(|p| p.into_inner()).overflowed)
    }
}
