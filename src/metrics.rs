//! Prometheus metrics: counters and histograms kept in process, rendered in the text
//! exposition format on the metrics listener (`listen.metrics`, off by default). The few
//! series axon has do not need a metrics library.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    sync::{
        Mutex,
        atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering},
    },
    time::Duration,
};

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 13] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

#[derive(Debug, Default, Clone)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    fn observe(&mut self, seconds: f64) {
        for (bound, count) in BUCKETS.iter().zip(self.counts.iter_mut()) {
            if seconds <= *bound {
                *count += 1;
            }
        }
        self.count += 1;
        self.sum += seconds;
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        for (bound, count) in BUCKETS.iter().zip(self.counts.iter()) {
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {count}");
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}",
            self.count
        );
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(out, "{name}_sum{braces} {}", self.sum);
        let _ = writeln!(out, "{name}_count{braces} {}", self.count);
    }
}

/// (method, route pattern) of a request; the route is the matched pattern, never the
/// raw path, so the number of series stays bounded.
type Endpoint = (String, String);

/// The process's metrics.
#[derive(Debug, Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(Endpoint, u16), u64>>,
    request_seconds: Mutex<BTreeMap<Endpoint, Histogram>>,
    event_persist_seconds: Mutex<Histogram>,
    sync_wakeup_seconds: Mutex<Histogram>,
    /// Client connections open now (the connection loop keeps it).
    pub connections_open: AtomicUsize,
    /// Times the embedded PostgreSQL was found dead and started again.
    pub embedded_restarts: AtomicU64,
    /// The embedded PostgreSQL: 0 not used, 1 running, 2 down (set by the supervisor).
    pub embedded_state: AtomicU8,
}

/// Values read at scrape time by the caller (database pool, queues, health).
#[derive(Debug, Default)]
pub struct Gauges {
    pub db_pool_size: u32,
    pub db_pool_idle: usize,
    pub db_pool_max: u32,
    pub db_up: bool,
    pub push_queue_depth: i64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Metrics {
    pub fn observe_request(&self, method: &str, route: &str, status: u16, took: Duration) {
        let endpoint = (method.to_owned(), route.to_owned());
        *lock(&self.requests)
            .entry((endpoint.clone(), status))
            .or_default() += 1;
        lock(&self.request_seconds)
            .entry(endpoint)
            .or_default()
            .observe(took.as_secs_f64());
    }

    /// An event written through the one persistence path (lock wait included).
    pub fn observe_event_persist(&self, took: Duration) {
        lock(&self.event_persist_seconds).observe(took.as_secs_f64());
    }

    /// A long poll woken by a wake-up, until its answer was built.
    pub fn observe_sync_wakeup(&self, took: Duration) {
        lock(&self.sync_wakeup_seconds).observe(took.as_secs_f64());
    }

    /// The text exposition format.
    pub fn render(&self, gauges: &Gauges) -> String {
        let mut out = String::new();
        out.push_str("# HELP axon_http_requests_total HTTP requests answered, by endpoint and status.\n# TYPE axon_http_requests_total counter\n");
        for (((method, route), status), n) in lock(&self.requests).iter() {
            let _ = writeln!(
                out,
                "axon_http_requests_total{{method=\"{method}\",route=\"{}\",status=\"{status}\"}} {n}",
                escape(route)
            );
        }
        out.push_str("# HELP axon_http_request_duration_seconds Time to answer a request, by endpoint.\n# TYPE axon_http_request_duration_seconds histogram\n");
        for ((method, route), h) in lock(&self.request_seconds).iter() {
            let labels = format!("method=\"{method}\",route=\"{}\"", escape(route));
            h.render(&mut out, "axon_http_request_duration_seconds", &labels);
        }
        out.push_str("# HELP axon_event_persist_duration_seconds Time to build, check and commit a local event.\n# TYPE axon_event_persist_duration_seconds histogram\n");
        lock(&self.event_persist_seconds).render(
            &mut out,
            "axon_event_persist_duration_seconds",
            "",
        );
        out.push_str("# HELP axon_sync_wakeup_duration_seconds From a long poll's wake-up to its answer.\n# TYPE axon_sync_wakeup_duration_seconds histogram\n");
        lock(&self.sync_wakeup_seconds).render(&mut out, "axon_sync_wakeup_duration_seconds", "");
        let gauge = |out: &mut String, name: &str, help: &str, value: String| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
            );
        };
        gauge(
            &mut out,
            "axon_connections_open",
            "Client connections open.",
            self.connections_open.load(Ordering::Relaxed).to_string(),
        );
        gauge(
            &mut out,
            "axon_db_pool_connections",
            "Database connections in the pool.",
            gauges.db_pool_size.to_string(),
        );
        gauge(
            &mut out,
            "axon_db_pool_idle_connections",
            "Idle database connections in the pool.",
            gauges.db_pool_idle.to_string(),
        );
        gauge(
            &mut out,
            "axon_db_pool_max_connections",
            "The pool's size limit (database.max_connections).",
            gauges.db_pool_max.to_string(),
        );
        gauge(
            &mut out,
            "axon_db_up",
            "1 while the database answers.",
            u8::from(gauges.db_up).to_string(),
        );
        let embedded = self.embedded_state.load(Ordering::Relaxed);
        if embedded != 0 {
            gauge(
                &mut out,
                "axon_embedded_postgres_running",
                "1 while the embedded PostgreSQL's postmaster runs.",
                u8::from(embedded == 1).to_string(),
            );
        }
        let _ = writeln!(
            out,
            "# HELP axon_embedded_postgres_restarts_total Times the embedded PostgreSQL was started again after dying.\n# TYPE axon_embedded_postgres_restarts_total counter\naxon_embedded_postgres_restarts_total {}",
            self.embedded_restarts.load(Ordering::Relaxed)
        );
        gauge(
            &mut out,
            "axon_push_queue_depth",
            "Notifications waiting for delivery to push gateways.",
            gauges.push_queue_depth.to_string(),
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_cumulative_buckets() {
        let m = Metrics::default();
        m.observe_request("GET", "/a", 200, Duration::from_millis(3));
        m.observe_request("GET", "/a", 200, Duration::from_millis(300));
        m.observe_request("GET", "/a", 404, Duration::from_millis(3));
        let text = m.render(&Gauges::default());
        assert!(
            text.contains("axon_http_requests_total{method=\"GET\",route=\"/a\",status=\"200\"} 2")
        );
        assert!(text.contains(
            "axon_http_request_duration_seconds_bucket{method=\"GET\",route=\"/a\",le=\"0.005\"} 2"
        ));
        assert!(text.contains(
            "axon_http_request_duration_seconds_bucket{method=\"GET\",route=\"/a\",le=\"0.5\"} 3"
        ));
        assert!(
            text.contains(
                "axon_http_request_duration_seconds_count{method=\"GET\",route=\"/a\"} 3"
            )
        );
        assert!(text.contains("axon_db_up 0"));
    }
}
