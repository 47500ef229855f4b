//! axon-bench: drives any Matrix homeserver through its client API and measures what
//! users feel. It registers its own users (open registration with the dummy stage, rate
//! limits off), makes its rooms, then runs:
//!
//! - `send_one_room`: N concurrent senders in one room (throughput, latency p50/p99);
//! - `send_many_rooms`: N concurrent senders, each in their own room;
//! - `send_to_sync`: from a send's response to the other user's long-polling /sync
//!   returning it;
//! - `initial_sync`: a user in R rooms with E events each: initial /sync, then an
//!   incremental /sync with nothing new;
//! - `call_load`: C rooms running call signalling (invite, answer, candidates, hangup)
//!   while other users send a fixed rate of messages: achieved rate and latency.
//!
//! `axon-bench run --url URL --out FILE.json` prints a table and writes JSON;
//! `axon-bench compare A.json B.json` prints both side by side with ratios;
//! `axon-bench wait URL` waits until a server answers.

mod client;
mod report;
mod scenarios;

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use client::{Res, Server, now_ms};
use report::table;
use scenarios::{
    call_load, initial_sync, latency_sweep, send_many_rooms, send_one_room, send_to_sync,
};

struct Options {
    url: String,
    out: Option<String>,
    senders: usize,
    per_sender: usize,
    sync_samples: usize,
    rooms: usize,
    events: usize,
    calls: usize,
    rate: u64,
    secs: u64,
    only: Option<Vec<String>>,
    sweep_rates: Vec<u64>,
    sweep_secs: u64,
}

fn parse_options(args: &[String]) -> Res<Options> {
    let mut o = Options {
        url: String::new(),
        out: None,
        senders: 16,
        per_sender: 50,
        sync_samples: 200,
        rooms: 100,
        events: 100,
        calls: 100,
        rate: 1000,
        secs: 20,
        only: None,
        sweep_rates: vec![50, 100, 200, 400, 600, 800, 1000, 1500, 2000],
        sweep_secs: 5,
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = || it.next().cloned().ok_or(format!("{flag} needs a value"));
        let num = |v: String| {
            v.parse::<u64>()
                .map_err(|_| format!("{flag}: not a number"))
        };
        match flag.as_str() {
            "--url" => o.url = value()?,
            "--out" => o.out = Some(value()?),
            "--senders" => o.senders = num(value()?)? as usize,
            "--per-sender" => o.per_sender = num(value()?)? as usize,
            "--sync-samples" => o.sync_samples = num(value()?)? as usize,
            "--rooms" => o.rooms = num(value()?)? as usize,
            "--events" => o.events = num(value()?)? as usize,
            "--calls" => o.calls = num(value()?)? as usize,
            "--rate" => o.rate = num(value()?)?,
            "--seconds" => o.secs = num(value()?)?,
            "--only" => o.only = Some(value()?.split(',').map(str::to_owned).collect()),
            "--sweep-rates" => {
                o.sweep_rates = value()?
                    .split(',')
                    .map(|r| num(r.to_owned()))
                    .collect::<Res<_>>()?
            }
            "--sweep-seconds" => o.sweep_secs = num(value()?)?,
            other => return Err(format!("unknown option {other}")),
        }
    }
    if o.url.is_empty() {
        return Err("--url is required".into());
    }
    Ok(o)
}

async fn run(o: Options) -> Res<Value> {
    let s = Server::new(&o.url);
    let versions = s
        .ok(reqwest::Method::GET, "/_matrix/client/versions", None, None)
        .await?;
    if versions["versions"].as_array().is_none() {
        return Err(format!("{} does not look like a homeserver", o.url));
    }
    let wanted = |name: &str| o.only.as_ref().is_none_or(|l| l.iter().any(|x| x == name));
    let mut results = serde_json::Map::new();
    type Scenario<'a> = (
        &'a str,
        std::pin::Pin<Box<dyn std::future::Future<Output = Res<Value>> + 'a>>,
    );
    let scenarios: Vec<Scenario<'_>> = vec![
        (
            "send_one_room",
            Box::pin(send_one_room(&s, o.senders, o.per_sender)),
        ),
        (
            "send_many_rooms",
            Box::pin(send_many_rooms(&s, o.senders, o.per_sender)),
        ),
        ("send_to_sync", Box::pin(send_to_sync(&s, o.sync_samples))),
        (
            "initial_sync",
            Box::pin(initial_sync(&s, o.rooms, o.events)),
        ),
        // Before the call load: an overloaded server may still be working off its queue.
        (
            "latency_sweep",
            Box::pin(latency_sweep(&s, 20, &o.sweep_rates, o.sweep_secs)),
        ),
        (
            "call_load",
            Box::pin(call_load(&s, o.calls, 20, o.rate, o.secs)),
        ),
    ];
    for (name, fut) in scenarios {
        if !wanted(name) {
            continue;
        }
        eprintln!("axon-bench: {name} ...");
        let started = Instant::now();
        let value = fut.await.map_err(|e| format!("{name}: {e}"))?;
        eprintln!(
            "axon-bench: {name} done in {:.1}s",
            started.elapsed().as_secs_f64()
        );
        results.insert(name.to_owned(), value);
    }
    Ok(json!({ "server": o.url, "at_ms": now_ms(), "results": results }))
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let code = match args.first().map(String::as_str) {
        Some("run") => match parse_options(&args[1..]) {
            Ok(o) => {
                let out = o.out.clone();
                match run(o).await {
                    Ok(report) => {
                        println!("{}", table(&[("server".into(), report.clone())]));
                        if let Some(path) = out {
                            let text = serde_json::to_string_pretty(&report).unwrap_or_default();
                            if let Err(e) = std::fs::write(&path, text) {
                                eprintln!("axon-bench: cannot write {path}: {e}");
                            }
                        }
                        0
                    }
                    Err(e) => {
                        eprintln!("axon-bench: {e}");
                        1
                    }
                }
            }
            Err(e) => {
                eprintln!("axon-bench: {e}");
                2
            }
        },
        Some("wait") if args.len() == 2 => {
            // Until the server answers /versions (five minutes at most).
            let s = Server::new(&args[1]);
            let mut code = 1;
            for _ in 0..600 {
                let ok = s
                    .ok(reqwest::Method::GET, "/_matrix/client/versions", None, None)
                    .await;
                if ok.is_ok() {
                    code = 0;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            if code != 0 {
                eprintln!("axon-bench: {} never answered", args[1]);
            }
            code
        }
        Some("compare") if args.len() >= 2 => {
            let mut reports = Vec::new();
            for path in &args[1..] {
                let (label, file) = path.split_once('=').unwrap_or((path, path));
                match std::fs::read_to_string(file)
                    .map_err(|e| e.to_string())
                    .and_then(|t| serde_json::from_str::<Value>(&t).map_err(|e| e.to_string()))
                {
                    Ok(v) => reports.push((label.to_owned(), v)),
                    Err(e) => {
                        eprintln!("axon-bench: {file}: {e}");
                        std::process::exit(1);
                    }
                }
            }
            println!("{}", table(&reports));
            0
        }
        _ => {
            eprintln!(
                "usage: axon-bench run --url URL [--out FILE] [--senders N] [--per-sender N]\n\
                 \x20                 [--sync-samples N] [--rooms N] [--events N] [--calls N]\n\
                 \x20                 [--rate MSGS_PER_S] [--seconds N] [--only a,b]\n\
                 \x20                 [--sweep-rates R1,R2,..] [--sweep-seconds N]\n\
                 \x20      axon-bench compare LABEL=FILE.json [LABEL=FILE.json]\n\
                 \x20      axon-bench wait URL"
            );
            2
        }
    };
    std::process::exit(code);
}
