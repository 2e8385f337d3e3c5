//! Prometheus metrics (`[metrics]`, off by default): counters and histograms that the stages
//! bump as they work (an atomic add each, nothing more on the hot path), and gauges computed
//! when Prometheus scrapes (queues, link states, services, the certificate), served on
//! `metrics.listen` at `/metrics` in the text exposition format (`server::metrics`, which also
//! sets the gauges: this module depends on nothing of the server, so every stage may use it).
//!
//! The names are a contract that dashboards and the shipped alert rules
//! (`packaging/prometheus/mailroom-rules.yml`) use: added to, never renamed. `docs/metrics.md`
//! lists them.

use std::sync::LazyLock;

use prometheus::{
    Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts,
    Registry,
};

/// Every metric of the process.
pub struct Metrics {
    registry: Registry,
    /// Messages received, by listener (`smtp`, `submission`, `pickup`) and result (`accepted`,
    /// `refused`, `deferred`: a temporary failure).
    pub received: IntCounterVec,
    /// Recipient outcomes, by status (`sent`, `deferred`, `bounced`, `expired`) and the class
    /// of the status code (`2`, `4`, `5`).
    pub recipients: IntCounterVec,
    /// Sessions started, by protocol (`smtp`, `imap`, `pop3`).
    pub sessions: IntCounterVec,
    /// TLS handshakes completed by this server's listeners, by version.
    pub tls_handshakes: IntCounterVec,
    /// Failed logins, by protocol.
    pub auth_failures: IntCounterVec,
    /// Sender authentication results of mail from outside, by method and result.
    pub sender_auth: IntCounterVec,
    /// Reports (RFC 3464) queued to senders.
    pub reports: IntCounterVec,
    /// Seconds from the end of a message's data to the `250` (durable storage included).
    pub data_to_reply: Histogram,
    /// Seconds from receipt to delivery, per recipient delivered.
    pub receipt_to_delivery: Histogram,
    /// Seconds of an outbound SMTP transaction (connection to the last reply).
    pub outbound_transaction: Histogram,
    /// Seconds of an IMAP command, by command.
    pub imap_command: HistogramVec,
    /// Recipients waiting, per queue (set at each scrape).
    pub queue_recipients: IntGaugeVec,
    /// Age in seconds of the oldest message, per queue (set at each scrape).
    pub queue_oldest_age: GaugeVec,
    /// 1 UP, 0 DOWN, per connector and server of the organization (set at each scrape).
    pub link_up: IntGaugeVec,
    /// 1 for the state each service is in, per service and state (set at each scrape).
    pub service_state: IntGaugeVec,
    /// When the certificate of the TLS listeners expires, in Unix seconds (set at each scrape).
    pub certificate_expiry: Gauge,
}

fn counter(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("a valid metric");
    r.register(Box::new(c.clone())).expect("registered once");
    c
}

fn histogram(r: &Registry, name: &str, help: &str, buckets: Vec<f64>) -> Histogram {
    let h = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets))
        .expect("a valid metric");
    r.register(Box::new(h.clone())).expect("registered once");
    h
}

fn gauge(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("a valid metric");
    r.register(Box::new(g.clone())).expect("registered once");
    g
}

/// Seconds, from a millisecond to ten minutes.
fn latency_buckets() -> Vec<f64> {
    vec![
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
        300.0, 600.0,
    ]
}

impl Metrics {
    fn new() -> Metrics {
        let r = Registry::new();
        let queue_oldest_age = GaugeVec::new(
            Opts::new(
                "mailroom_queue_oldest_message_age_seconds",
                "Age of the oldest message in each queue.",
            ),
            &["queue"],
        )
        .expect("a valid metric");
        r.register(Box::new(queue_oldest_age.clone()))
            .expect("registered once");
        let certificate_expiry = Gauge::new(
            "mailroom_tls_certificate_expiry_timestamp_seconds",
            "When the certificate of the TLS listeners expires (Unix time).",
        )
        .expect("a valid metric");
        r.register(Box::new(certificate_expiry.clone()))
            .expect("registered once");
        let imap_command = HistogramVec::new(
            HistogramOpts::new(
                "mailroom_imap_command_duration_seconds",
                "Time to answer an IMAP command, by command.",
            )
            .buckets(latency_buckets()),
            &["command"],
        )
        .expect("a valid metric");
        r.register(Box::new(imap_command.clone()))
            .expect("registered once");
        Metrics {
            received: counter(
                &r,
                "mailroom_messages_received_total",
                "Messages received, by listener and result.",
                &["listener", "result"],
            ),
            recipients: counter(
                &r,
                "mailroom_recipients_total",
                "Recipient outcomes, by status and status class.",
                &["status", "class"],
            ),
            sessions: counter(
                &r,
                "mailroom_sessions_total",
                "Sessions started, by protocol.",
                &["protocol"],
            ),
            tls_handshakes: counter(
                &r,
                "mailroom_tls_handshakes_total",
                "TLS handshakes completed on this server's listeners, by version.",
                &["version"],
            ),
            auth_failures: counter(
                &r,
                "mailroom_auth_failures_total",
                "Failed logins, by protocol.",
                &["protocol"],
            ),
            sender_auth: counter(
                &r,
                "mailroom_sender_auth_total",
                "SPF, DKIM and DMARC results of mail from outside.",
                &["method", "result"],
            ),
            reports: counter(
                &r,
                "mailroom_reports_total",
                "Delivery status reports queued to senders.",
                &["kind"],
            ),
            data_to_reply: histogram(
                &r,
                "mailroom_smtp_data_to_reply_seconds",
                "Time from the end of a message's data to the 250 reply (durable storage included).",
                latency_buckets(),
            ),
            receipt_to_delivery: histogram(
                &r,
                "mailroom_receipt_to_delivery_seconds",
                "Time from a message's receipt to a recipient's delivery.",
                latency_buckets(),
            ),
            outbound_transaction: histogram(
                &r,
                "mailroom_outbound_transaction_seconds",
                "Time of an outbound SMTP transaction.",
                latency_buckets(),
            ),
            imap_command,
            queue_recipients: gauge(
                &r,
                "mailroom_queue_recipients",
                "Recipients waiting in each queue.",
                &["queue"],
            ),
            queue_oldest_age,
            link_up: gauge(
                &r,
                "mailroom_link_up",
                "1 when a connector or server of the organization is UP, 0 when DOWN.",
                &["kind", "name"],
            ),
            service_state: gauge(
                &r,
                "mailroom_service_state",
                "1 for the state each service is in.",
                &["service", "state"],
            ),
            certificate_expiry,
            registry: r,
        }
    }

    /// The series that dashboards and alerts compare, made at 0 so that they exist from the
    /// start (a rate over a series that appears later misses its first increase).
    fn with_zeros(self) -> Metrics {
        for listener in ["smtp", "submission", "pickup"] {
            for result in ["accepted", "refused", "deferred"] {
                self.received.with_label_values(&[listener, result]);
            }
        }
        for (status, class) in [
            ("sent", "2"),
            ("deferred", "4"),
            ("bounced", "5"),
            ("expired", "5"),
        ] {
            self.recipients.with_label_values(&[status, class]);
        }
        for protocol in ["smtp", "imap", "pop3"] {
            self.sessions.with_label_values(&[protocol]);
        }
        for protocol in ["imap", "pop3", "submission"] {
            self.auth_failures.with_label_values(&[protocol]);
        }
        for kind in ["failure", "delay", "success"] {
            self.reports.with_label_values(&[kind]);
        }
        self
    }

    /// Everything, in the text exposition format.
    pub fn encode(&self) -> String {
        use prometheus::Encoder as _;
        let mut out = Vec::new();
        let _ = prometheus::TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

static METRICS: LazyLock<Metrics> = LazyLock::new(|| Metrics::new().with_zeros());

/// The process's metrics.
pub fn get() -> &'static Metrics {
    &METRICS
}

/// Counts a message's result on a listener.
pub fn received(listener: &str, code: u16) {
    let result = match code {
        200..=299 => "accepted",
        400..=499 => "deferred",
        _ => "refused",
    };
    get().received.with_label_values(&[listener, result]).inc();
}

#[cfg(test)]
mod tests {
    #[test]
    fn counters_appear_in_the_exposition_with_their_labels() {
        super::received("smtp", 250);
        super::received("smtp", 554);
        let text = super::get().encode();
        assert!(
            text.contains(
                "mailroom_messages_received_total{listener=\"smtp\",result=\"accepted\"}"
            ),
            "{text}"
        );
        assert!(text.contains("# TYPE mailroom_smtp_data_to_reply_seconds histogram"));
    }
}
