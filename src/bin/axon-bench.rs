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

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use serde_json::{Value, json};

type Res<T> = Result<T, String>;

#[derive(Clone)]
struct Server {
    base: String,
    http: reqwest::Client,
    /// Makes user names unique per run, so a server can be benchmarked again.
    run: String,
    txn: Arc<AtomicU64>,
}

#[derive(Clone)]
struct User {
    id: String,
    token: String,
}

impl Server {
    fn new(base: &str) -> Self {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(512)
            .timeout(Duration::from_secs(120))
            .build()
            .expect("HTTP client");
        let run = format!("{:x}", std::process::id() ^ (now_ms() as u32));
        Self {
            base: base.trim_end_matches('/').to_owned(),
            http,
            run,
            txn: Arc::new(AtomicU64::new(0)),
        }
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Res<(u16, Value)> {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let res = req.send().await.map_err(|e| format!("{path}: {e}"))?;
        let status = res.status().as_u16();
        let body = res.json().await.unwrap_or(Value::Null);
        Ok((status, body))
    }

    async fn ok(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Res<Value> {
        let (status, res) = self.call(method, path, token, body).await?;
        if status == 200 {
            Ok(res)
        } else {
            Err(format!("{path}: {status} {res}"))
        }
    }

    /// Registers through the dummy stage, as a client would.
    async fn register(&self, name: &str) -> Res<User> {
        let username = format!("bench{}{name}", self.run);
        let mut body = json!({ "username": username, "password": "bench-password-1234",
                               "initial_device_display_name": "axon-bench" });
        let (status, res) = self
            .call(
                reqwest::Method::POST,
                "/_matrix/client/v3/register",
                None,
                Some(&body),
            )
            .await?;
        let res = if status == 401 {
            body["auth"] = json!({ "type": "m.login.dummy", "session": res["session"] });
            self.ok(
                reqwest::Method::POST,
                "/_matrix/client/v3/register",
                None,
                Some(&body),
            )
            .await?
        } else if status == 200 {
            res
        } else {
            return Err(format!("register: {status} {res}"));
        };
        Ok(User {
            id: res["user_id"].as_str().unwrap_or_default().to_owned(),
            token: res["access_token"].as_str().unwrap_or_default().to_owned(),
        })
    }

    async fn create_room(&self, u: &User, invite: &[&User]) -> Res<String> {
        let ids: Vec<&str> = invite.iter().map(|i| i.id.as_str()).collect();
        let res = self
            .ok(
                reqwest::Method::POST,
                "/_matrix/client/v3/createRoom",
                Some(&u.token),
                Some(&json!({ "preset": "private_chat", "invite": ids })),
            )
            .await?;
        Ok(res["room_id"].as_str().unwrap_or_default().to_owned())
    }

    async fn join(&self, u: &User, room: &str) -> Res<()> {
        self.ok(
            reqwest::Method::POST,
            &format!("/_matrix/client/v3/join/{room}"),
            Some(&u.token),
            Some(&json!({})),
        )
        .await
        .map(|_| ())
    }

    /// Sends an event; its ID and how long the server took.
    async fn send(
        &self,
        u: &User,
        room: &str,
        event_type: &str,
        content: &Value,
    ) -> Res<(String, Duration)> {
        let txn = self.txn.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        let res = self
            .ok(
                reqwest::Method::PUT,
                &format!(
                    "/_matrix/client/v3/rooms/{room}/send/{event_type}/b{}t{txn}",
                    self.run
                ),
                Some(&u.token),
                Some(content),
            )
            .await?;
        Ok((
            res["event_id"].as_str().unwrap_or_default().to_owned(),
            started.elapsed(),
        ))
    }

    async fn sync(&self, u: &User, since: Option<&str>, timeout_ms: u64) -> Res<Value> {
        let mut path = format!("/_matrix/client/v3/sync?timeout={timeout_ms}");
        if let Some(s) = since {
            path.push_str(&format!("&since={s}"));
        }
        self.ok(reqwest::Method::GET, &path, Some(&u.token), None)
            .await
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn text(i: usize) -> Value {
    json!({ "msgtype": "m.text", "body": format!("benchmark message {i}") })
}

/// Latency percentiles in milliseconds.
fn stats(mut samples: Vec<Duration>) -> Value {
    if samples.is_empty() {
        return json!({ "count": 0 });
    }
    samples.sort();
    let at = |q: f64| {
        let i = ((samples.len() as f64 - 1.0) * q).round() as usize;
        samples[i].as_secs_f64() * 1000.0
    };
    json!({ "count": samples.len(), "p50_ms": at(0.5), "p99_ms": at(0.99), "max_ms": at(1.0) })
}

async fn users(s: &Server, prefix: &str, n: usize) -> Res<Vec<User>> {
    let mut out = Vec::with_capacity(n);
    // A few at a time: registration hashes passwords, which is slow on purpose.
    for chunk in (0..n).collect::<Vec<_>>().chunks(8) {
        let tasks: Vec<_> = chunk
            .iter()
            .map(|i| {
                let s = s.clone();
                let name = format!("{prefix}{i}");
                tokio::spawn(async move { s.register(&name).await })
            })
            .collect();
        for t in tasks {
            out.push(t.await.map_err(|e| e.to_string())??);
        }
    }
    Ok(out)
}

/// Each sender sends `per_sender` messages one after another into its room; all at once.
async fn send_load(s: &Server, senders: &[(User, String)], per_sender: usize) -> Res<Value> {
    let started = Instant::now();
    let tasks: Vec<_> = senders
        .iter()
        .cloned()
        .map(|(u, room)| {
            let s = s.clone();
            tokio::spawn(async move {
                let mut lat = Vec::with_capacity(per_sender);
                let mut errors = 0u64;
                for i in 0..per_sender {
                    match s.send(&u, &room, "m.room.message", &text(i)).await {
                        Ok((_, d)) => lat.push(d),
                        Err(_) => errors += 1,
                    }
                }
                (lat, errors)
            })
        })
        .collect();
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (lat, e) = t.await.map_err(|e| e.to_string())?;
        all.extend(lat);
        errors += e;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let mut out = stats(all.clone());
    out["throughput_per_s"] = json!(all.len() as f64 / elapsed);
    out["errors"] = json!(errors);
    out["senders"] = json!(senders.len());
    Ok(out)
}

async fn send_one_room(s: &Server, n: usize, per_sender: usize) -> Res<Value> {
    let us = users(s, "one", n).await?;
    let room = s.create_room(&us[0], &[]).await?;
    for u in &us[1..] {
        // Public rooms would do too; an invite keeps it the same on every server.
        s.ok(
            reqwest::Method::POST,
            &format!("/_matrix/client/v3/rooms/{room}/invite"),
            Some(&us[0].token),
            Some(&json!({ "user_id": u.id })),
        )
        .await?;
        s.join(u, &room).await?;
    }
    let senders: Vec<(User, String)> = us.into_iter().map(|u| (u, room.clone())).collect();
    send_load(s, &senders, per_sender).await
}

async fn send_many_rooms(s: &Server, n: usize, per_sender: usize) -> Res<Value> {
    let us = users(s, "many", n).await?;
    let mut senders = Vec::new();
    for u in us {
        let room = s.create_room(&u, &[]).await?;
        senders.push((u, room));
    }
    send_load(s, &senders, per_sender).await
}

/// One sender, one receiver long-polling; each message is sent once the previous one was
/// seen, so every sample is a quiet server's answer time.
async fn send_to_sync(s: &Server, count: usize) -> Res<Value> {
    let us = users(s, "s2s", 2).await?;
    let (alice, bob) = (us[0].clone(), us[1].clone());
    let room = s.create_room(&alice, &[&bob]).await?;
    s.join(&bob, &room).await?;
    let mut since = s.sync(&bob, None, 0).await?["next_batch"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let mut samples = Vec::with_capacity(count);
    for i in 0..count {
        let poll = {
            let (s, bob, since, room) = (s.clone(), bob.clone(), since.clone(), room.clone());
            tokio::spawn(async move {
                let mut since = since;
                loop {
                    let res = s.sync(&bob, Some(&since), 30_000).await?;
                    let seen_at = Instant::now();
                    since = res["next_batch"].as_str().unwrap_or_default().to_owned();
                    let events = &res["rooms"]["join"][&room]["timeline"]["events"];
                    let ids: Vec<String> = events
                        .as_array()
                        .map(|es| {
                            es.iter()
                                .filter_map(|e| e["event_id"].as_str().map(str::to_owned))
                                .collect()
                        })
                        .unwrap_or_default();
                    if !ids.is_empty() {
                        return Ok::<_, String>((ids, seen_at, since));
                    }
                }
            })
        };
        // Let the long-poll reach the server before sending.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let (event_id, _) = s.send(&alice, &room, "m.room.message", &text(i)).await?;
        let sent_at = Instant::now();
        let (ids, seen_at, next) = poll.await.map_err(|e| e.to_string())??;
        since = next;
        if ids.contains(&event_id) {
            samples.push(seen_at.saturating_duration_since(sent_at));
        }
    }
    Ok(stats(samples))
}

/// A user in `rooms` rooms of `events` messages each: initial and empty incremental sync.
async fn initial_sync(s: &Server, rooms: usize, events: usize) -> Res<Value> {
    let us = users(s, "init", 1).await?;
    let u = us[0].clone();
    let mut ids = Vec::new();
    for _ in 0..rooms {
        ids.push(s.create_room(&u, &[]).await?);
    }
    // Fill the rooms, 8 at a time.
    for chunk in ids.chunks(8) {
        let tasks: Vec<_> = chunk
            .iter()
            .cloned()
            .map(|room| {
                let (s, u) = (s.clone(), u.clone());
                tokio::spawn(async move {
                    for i in 0..events {
                        s.send(&u, &room, "m.room.message", &text(i)).await?;
                    }
                    Ok::<_, String>(())
                })
            })
            .collect();
        for t in tasks {
            t.await.map_err(|e| e.to_string())??;
        }
    }
    let mut initial = Vec::new();
    let mut incremental = Vec::new();
    for attempt in 0..3 {
        // A different filter each time: Synapse answers a repeated sync from a cache.
        let filter = json!({ "room": { "timeline": { "limit": 10 + attempt } } });
        let started = Instant::now();
        let res = s
            .ok(
                reqwest::Method::GET,
                &format!(
                    "/_matrix/client/v3/sync?timeout=0&filter={}",
                    urlencode(&filter.to_string())
                ),
                Some(&u.token),
                None,
            )
            .await?;
        initial.push(started.elapsed());
        let joined = res["rooms"]["join"].as_object().map_or(0, |r| r.len());
        if joined != rooms {
            return Err(format!("initial sync had {joined} rooms, not {rooms}"));
        }
        let since = res["next_batch"].as_str().unwrap_or_default().to_owned();
        let started = Instant::now();
        s.sync(&u, Some(&since), 0).await?;
        incremental.push(started.elapsed());
    }
    Ok(json!({
        "rooms": rooms, "events_per_room": events,
        "initial": stats(initial), "incremental_empty": stats(incremental),
    }))
}

/// `calls` rooms of two users running call signalling in a loop, while `msg_senders`
/// users send `rate` messages a second in total, for `secs` seconds.
async fn call_load(
    s: &Server,
    calls: usize,
    msg_senders: usize,
    rate: u64,
    secs: u64,
) -> Res<Value> {
    let callers = users(s, "caller", calls * 2).await?;
    let mut call_rooms = Vec::new();
    for pair in callers.chunks(2) {
        let room = s.create_room(&pair[0], &[&pair[1]]).await?;
        s.join(&pair[1], &room).await?;
        call_rooms.push((pair[0].clone(), pair[1].clone(), room));
    }
    let chatters = users(s, "chat", msg_senders).await?;
    let mut chat_rooms = Vec::new();
    for u in &chatters {
        chat_rooms.push((u.clone(), s.create_room(u, &[]).await?));
    }
    let deadline = Instant::now() + Duration::from_secs(secs);

    // Call signalling: each pair runs invite, answer, 4 candidates, hangup, again.
    let call_tasks: Vec<_> = call_rooms
        .into_iter()
        .enumerate()
        .map(|(n, (a, b, room))| {
            let s = s.clone();
            tokio::spawn(async move {
                let mut lat = Vec::new();
                let mut errors = 0u64;
                let mut round = 0;
                while Instant::now() < deadline {
                    let call_id = format!("c{n}r{round}");
                    let steps: Vec<(&User, &str, Value)> = vec![
                        (&a, "m.call.invite", json!({"call_id": call_id, "version": "1", "party_id": "a", "lifetime": 60000, "offer": {"type": "offer", "sdp": "v=0"}})),
                        (&b, "m.call.answer", json!({"call_id": call_id, "version": "1", "party_id": "b", "answer": {"type": "answer", "sdp": "v=0"}})),
                        (&a, "m.call.candidates", json!({"call_id": call_id, "version": "1", "party_id": "a", "candidates": [{"candidate": "candidate:1", "sdpMid": "0", "sdpMLineIndex": 0}]})),
                        (&b, "m.call.candidates", json!({"call_id": call_id, "version": "1", "party_id": "b", "candidates": [{"candidate": "candidate:2", "sdpMid": "0", "sdpMLineIndex": 0}]})),
                        (&a, "m.call.candidates", json!({"call_id": call_id, "version": "1", "party_id": "a", "candidates": [{"candidate": "candidate:3", "sdpMid": "0", "sdpMLineIndex": 0}]})),
                        (&b, "m.call.candidates", json!({"call_id": call_id, "version": "1", "party_id": "b", "candidates": [{"candidate": "candidate:4", "sdpMid": "0", "sdpMLineIndex": 0}]})),
                        (&a, "m.call.hangup", json!({"call_id": call_id, "version": "1", "party_id": "a"})),
                    ];
                    for (u, t, content) in steps {
                        match s.send(u, &room, t, &content).await {
                            Ok((_, d)) => lat.push(d),
                            Err(_) => errors += 1,
                        }
                    }
                    round += 1;
                }
                (lat, errors)
            })
        })
        .collect();

    // Messages, open loop: each sender is due one message every `interval`; a late
    // send does not push the schedule back, so an overloaded server shows as latency.
    let per_sender = (rate as f64 / msg_senders.max(1) as f64).max(0.001);
    let interval = Duration::from_secs_f64(1.0 / per_sender);
    let msg_tasks: Vec<_> = chat_rooms
        .into_iter()
        .map(|(u, room)| {
            let s = s.clone();
            tokio::spawn(async move {
                let mut lat = Vec::new();
                let mut errors = 0u64;
                let mut inflight = Vec::new();
                let mut tick = tokio::time::interval(interval);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
                let mut i = 0;
                while Instant::now() < deadline {
                    tick.tick().await;
                    let (s, u, room) = (s.clone(), u.clone(), room.clone());
                    let scheduled = Instant::now();
                    inflight.push(tokio::spawn(async move {
                        s.send(&u, &room, "m.room.message", &text(i))
                            .await
                            .map(|_| scheduled.elapsed())
                    }));
                    i += 1;
                }
                for t in inflight {
                    match t.await {
                        Ok(Ok(d)) => lat.push(d),
                        _ => errors += 1,
                    }
                }
                (lat, errors)
            })
        })
        .collect();

    let started = Instant::now();
    let (mut call_lat, mut call_errors) = (Vec::new(), 0);
    for t in call_tasks {
        let (l, e) = t.await.map_err(|e| e.to_string())?;
        call_lat.extend(l);
        call_errors += e;
    }
    let (mut msg_lat, mut msg_errors) = (Vec::new(), 0);
    for t in msg_tasks {
        let (l, e) = t.await.map_err(|e| e.to_string())?;
        msg_lat.extend(l);
        msg_errors += e;
    }
    let elapsed = started.elapsed().as_secs_f64().max(secs as f64);
    let mut calls_json = stats(call_lat.clone());
    calls_json["events_per_s"] = json!(call_lat.len() as f64 / elapsed);
    calls_json["errors"] = json!(call_errors);
    let mut msgs_json = stats(msg_lat.clone());
    msgs_json["target_per_s"] = json!(rate);
    msgs_json["achieved_per_s"] = json!(msg_lat.len() as f64 / elapsed);
    msgs_json["errors"] = json!(msg_errors);
    Ok(
        json!({ "call_rooms": calls, "seconds": secs, "call_events": calls_json, "messages": msgs_json }),
    )
}

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

fn table(reports: &[(String, Value)]) -> String {
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
                 \x20      axon-bench compare LABEL=FILE.json [LABEL=FILE.json]\n\
                 \x20      axon-bench wait URL"
            );
            2
        }
    };
    std::process::exit(code);
}
