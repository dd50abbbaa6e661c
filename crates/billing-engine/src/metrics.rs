//! The engine's Prometheus metrics. Registered into a registry the caller
//! owns, so that the HTTP layer can add its own and serve them together.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

use billing_domain::Action;

use crate::error::EngineError;
use crate::writer::Outcome;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CommandLabels {
    pub command: &'static str,
    /// `ok` or the contract's error code.
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: &'static str,
}

#[derive(Debug)]
pub struct Metrics {
    pub commands: Family<CommandLabels, Counter>,
    pub replies: Family<RouteLabels, Counter>,
    pub batch_commands: Histogram,
    pub events_committed: Counter,
    pub append_conflicts: Counter,
    pub load_rows_read: Counter,
    pub projected_events: Counter,
    pub projection_lag_events: Gauge,
    pub projection_lag_seconds: Gauge<f64, AtomicU64>,
}

impl Metrics {
    /// Creates the metrics and registers them under `billing_`.
    pub fn new(registry: &mut Registry) -> Metrics {
        let metrics = Metrics::unregistered();
        let r = registry.sub_registry_with_prefix("billing");
        r.register("commands", "Commands by type and outcome", metrics.commands.clone());
        r.register("replies", "Replies served, by route (first answers only)", metrics.replies.clone());
        r.register("batch_commands", "Commands decided per group commit", metrics.batch_commands.clone());
        r.register("events_committed", "Events committed to the log", metrics.events_committed.clone());
        r.register(
            "append_conflicts",
            "Group commits refused because another writer got there first",
            metrics.append_conflicts.clone(),
        );
        r.register("load_rows_read", "Snapshot and event rows read to load workspaces", metrics.load_rows_read.clone());
        r.register("projected_events", "Events applied to the projections", metrics.projected_events.clone());
        r.register(
            "projection_lag_events",
            "Events committed but not yet in the projections",
            metrics.projection_lag_events.clone(),
        );
        r.register(
            "projection_lag_seconds",
            "Age of the oldest event not yet in the projections",
            metrics.projection_lag_seconds.clone(),
        );
        metrics
    }

    /// Metrics nobody will read (tests, benchmarks).
    pub fn unregistered() -> Metrics {
        Metrics {
            commands: Family::default(),
            replies: Family::default(),
            batch_commands: Histogram::new(exponential_buckets(1.0, 2.0, 12)),
            events_committed: Counter::default(),
            append_conflicts: Counter::default(),
            load_rows_read: Counter::default(),
            projected_events: Counter::default(),
            projection_lag_events: Gauge::default(),
            projection_lag_seconds: Gauge::default(),
        }
    }

    pub fn record_outcome(&self, action: &Action, result: Result<&Outcome, &EngineError>) {
        let outcome = match result {
            Ok(_) => "ok",
            Err(err) => err.code(),
        };
        self.commands.get_or_create(&CommandLabels { command: action.name(), outcome }).inc();
        if let Ok(Outcome::Reply(answer)) = result {
            if !answer.repeated {
                self.replies.get_or_create(&RouteLabels { route: answer.route.as_str() }).inc();
            }
        }
    }
}
