//! The figures printed side by side, with how many times better the first server is.

use serde_json::Value;

/// The headline figures: (label, JSON pointer, higher is better).
const FIGURES: &[(&str, &str, bool)] = &[
    (
        "send, 1 room: msgs/s",
        "/send_one_room/throughput_per_s",
        true,
    ),
    ("send, 1 room: p50 ms", "/send_one_room/p50_ms", false),
    ("send, 1 room: p99 ms", "/send_one_room/p99_ms", false),
    (
        "send, many rooms: msgs/s",
        "/send_many_rooms/throughput_per_s",
        true,
    ),
    ("send, many rooms: p50 ms", "/send_many_rooms/p50_ms", false),
    ("send, many rooms: p99 ms", "/send_many_rooms/p99_ms", false),
    ("send-to-sync: p50 ms", "/send_to_sync/p50_ms", false),
    ("send-to-sync: p99 ms", "/send_to_sync/p99_ms", false),
    (
        "initial sync: p50 ms",
        "/initial_sync/initial/p50_ms",
        false,
    ),
    (
        "empty incremental sync: p50 ms",
        "/initial_sync/incremental_empty/p50_ms",
        false,
    ),
    (
        "call load: messages/s achieved",
        "/call_load/messages/achieved_per_s",
        true,
    ),
    (
        "call load: message p50 ms",
        "/call_load/messages/p50_ms",
        false,
    ),
    (
        "call load: message p99 ms",
        "/call_load/messages/p99_ms",
        false,
    ),
    (
        "call load: call event p50 ms",
        "/call_load/call_events/p50_ms",
        false,
    ),
    (
        "call load: call event p99 ms",
        "/call_load/call_events/p99_ms",
        false,
    ),
    ("call load: errors", "/call_load/messages/errors", false),
    ("peak RSS MiB", "/resources/peak_rss_mib", false),
    ("database MiB", "/resources/database_mib", false),
];

pub fn table(reports: &[(String, Value)]) -> String {
    let mut out = format!("{:<34}", "");
    for (label, _) in reports {
        out.push_str(&format!("{label:>14}"));
    }
    if reports.len() == 2 {
        out.push_str(&format!("{:>14}", "advantage"));
    }
    out.push('\n');
    for (label, pointer, higher_better) in FIGURES {
        let values: Vec<Option<f64>> = reports
            .iter()
            .map(|(_, r)| r["results"].pointer(pointer).and_then(Value::as_f64))
            .collect();
        if values.iter().all(Option::is_none) {
            continue;
        }
        out.push_str(&format!("{label:<34}"));
        for v in &values {
            match v {
                Some(v) => out.push_str(&format!("{v:>14.1}")),
                None => out.push_str(&format!("{:>14}", "-")),
            }
        }
        // How many times better the first is than the second.
        if let [Some(a), Some(b)] = values[..] {
            let ratio = if *higher_better { a / b } else { b / a };
            if ratio.is_finite() {
                out.push_str(&format!("{:>13.1}x", ratio));
            }
        }
        out.push('\n');
    }
    out
}
