//! The HTTP layer's Prometheus metrics, registered next to the engine's in
//! the registry the caller owns and `/metrics` serves.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::time::Duration;

/// The `route` label of requests that matched no route, so that scanners
/// probing random paths cannot grow the label set.
pub const UNMATCHED_ROUTE: &str = "unmatched";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub method: String,
    /// The route template (`/v1/workspaces/{ws}/replies`), never the
    /// concrete path: bounded by the route table.
    pub route: String,
    pub status: u16,
}

type LatencyHistogram = Family<RequestLabels, Histogram, fn() -> Histogram>;

#[derive(Debug)]
pub struct HttpMetrics {
    pub request_seconds: LatencyHistogram,
    pub requests_in_flight: Gauge,
}

/// 0.5 ms to ~16 s in 16 doublings: a reply answered from memory is well
/// under a millisecond, one waiting for a group commit a few, and
/// [`crate::telemetry::REQUEST_TIMEOUT`] ends everything before the top.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_5, 2.0, 16))
}

/// Creates the HTTP metrics and registers them under `billing_http_`.
pub fn http_metrics(registry: &mut Registry) -> HttpMetrics {
    let metrics = HttpMetrics {
        request_seconds: Family::new_with_constructor(latency_histogram),
        requests_in_flight: Gauge::default(),
    };
    let r = registry.sub_registry_with_prefix("billing_http");
    r.register(
        "request_duration_seconds",
        "Time to answer a request, by method, route and status",
        metrics.request_seconds.clone(),
    );
    r.register("requests_in_flight", "Requests being answered", metrics.requests_in_flight.clone());
    metrics
}

impl HttpMetrics {
    pub fn observe(&self, labels: &RequestLabels, took: Duration) {
        self.request_seconds.get_or_create(labels).observe(took.as_secs_f64());
    }
}
