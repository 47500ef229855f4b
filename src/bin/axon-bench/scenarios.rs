//! The load scenarios; each returns its figures as JSON.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::client::{Res, Server, User, urlencode};

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

pub async fn send_one_room(s: &Server, n: usize, per_sender: usize) -> Res<Value> {
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

pub async fn send_many_rooms(s: &Server, n: usize, per_sender: usize) -> Res<Value> {
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
pub async fn send_to_sync(s: &Server, count: usize) -> Res<Value> {
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
pub async fn initial_sync(s: &Server, rooms: usize, events: usize) -> Res<Value> {
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
pub async fn call_load(
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

    let msg_tasks = open_loop_messages(s, chat_rooms, rate, deadline);

    let started = Instant::now();
    let (mut call_lat, mut call_errors) = (Vec::new(), 0);
    for t in call_tasks {
        let (l, e) = t.await.map_err(|e| e.to_string())?;
        call_lat.extend(l);
        call_errors += e;
    }
    let (msg_lat, msg_errors) = join_open_loop(msg_tasks).await?;
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

type OpenLoopTask = tokio::task::JoinHandle<(Vec<Duration>, u64)>;

/// Messages, open loop: each sender is due one message every `interval` until `deadline`;
/// a late send does not push the schedule back, so an overloaded server shows as latency.
fn open_loop_messages(
    s: &Server,
    senders: Vec<(User, String)>,
    rate: u64,
    deadline: Instant,
) -> Vec<OpenLoopTask> {
    let n = senders.len().max(1);
    let per_sender = (rate as f64 / n as f64).max(0.001);
    let interval = Duration::from_secs_f64(1.0 / per_sender);
    let start = tokio::time::Instant::now();
    senders
        .into_iter()
        .enumerate()
        .map(|(k, (u, room))| {
            let s = s.clone();
            // Senders are spread over the interval, not all due at the same instant: the
            // load is `rate` a second, not bursts of `n`.
            let first = start + interval.mul_f64(k as f64 / n as f64);
            tokio::spawn(async move {
                let mut lat = Vec::new();
                let mut errors = 0u64;
                let mut inflight = Vec::new();
                let mut tick = tokio::time::interval_at(first, interval);
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
        .collect()
}

async fn join_open_loop(tasks: Vec<OpenLoopTask>) -> Res<(Vec<Duration>, u64)> {
    let (mut lat, mut errors) = (Vec::new(), 0);
    for t in tasks {
        let (l, e) = t.await.map_err(|e| e.to_string())?;
        lat.extend(l);
        errors += e;
    }
    Ok((lat, errors))
}

/// Send latency against offered load: `senders` users, each in their own room, send open
/// loop at each rate for `secs` seconds. Stops after the first rate the server cannot
/// keep up with (under 90 % achieved): beyond it latency only measures the queue.
pub async fn latency_sweep(s: &Server, senders: usize, rates: &[u64], secs: u64) -> Res<Value> {
    let us = users(s, "sweep", senders).await?;
    let mut rooms = Vec::new();
    for u in &us {
        rooms.push((u.clone(), s.create_room(u, &[]).await?));
    }
    let mut points = Vec::new();
    for &rate in rates {
        let started = Instant::now();
        let deadline = started + Duration::from_secs(secs);
        let tasks = open_loop_messages(s, rooms.clone(), rate, deadline);
        let (lat, errors) = join_open_loop(tasks).await?;
        let elapsed = started.elapsed().as_secs_f64().max(secs as f64);
        let achieved = lat.len() as f64 / elapsed;
        let mut point = stats(lat);
        point["target_per_s"] = json!(rate);
        point["achieved_per_s"] = json!(achieved);
        point["errors"] = json!(errors);
        eprintln!("axon-bench: latency_sweep {rate}/s: {point}");
        points.push(point);
        if achieved < 0.9 * rate as f64 {
            break;
        }
    }
    Ok(json!({ "senders": senders, "seconds_per_rate": secs, "points": points }))
}
