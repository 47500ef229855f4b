//! Media across servers: bob on hs2 downloads and thumbnails an image alice uploaded on
//! hs1 (fetched over the federation media API, a multipart answer, then kept: it is
//! still served with hs1 down). From a server that answers badly (a body larger than
//! the upload limit, an answer that is not multipart) nothing is kept and the client
//! gets a clear error; a server without the federation media API is asked on the legacy
//! endpoint.

mod common;
#[path = "common/fake_remote.rs"]
mod fake_remote;
#[path = "common/federation.rs"]
mod federation;

use common::TestServer;
use fake_remote::FakeRemote;
use federation::start_federated;
use serde_json::{Value, json};

fn png(width: u32, height: u32) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    image::RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([(x % 256) as u8, (y % 256) as u8, 90])
    })
    .write_to(&mut out, image::ImageFormat::Png)
    .unwrap();
    out.into_inner()
}

async fn get(s: &TestServer, token: &str, path: &str) -> reqwest::Response {
    s.http
        .get(format!("{}{path}", s.base))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

async fn remote_rows(s: &TestServer) -> i64 {
    let mut conn: sqlx::PgConnection = sqlx::ConnectOptions::connect(&s.db).await.unwrap();
    sqlx::query_scalar("SELECT count(*) FROM media WHERE media_id LIKE 'remote/%'")
        .fetch_one(&mut conn)
        .await
        .unwrap()
}

#[tokio::test]
async fn an_image_from_another_server_is_fetched_kept_and_thumbnailed() {
    let mut hs1 = start_federated(|_| {}).await;
    let hs2 = start_federated(|_| {}).await;
    let (alice, _) = hs1.register("alice", "correct horse battery").await;
    let (bob, _) = hs2.register("bob", "correct horse battery").await;
    let image = png(500, 400);
    let res = hs1
        .http
        .post(format!(
            "{}/_matrix/media/v3/upload?filename=photo.png",
            hs1.base
        ))
        .bearer_auth(&alice)
        .header("Content-Type", "image/png")
        .body(image.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let uri: Value = res.json().await.unwrap();
    let path = uri["content_uri"]
        .as_str()
        .unwrap()
        .strip_prefix("mxc://")
        .unwrap()
        .to_owned();
    assert!(path.starts_with(&hs1.name()), "{path}");

    let res = get(
        &hs2,
        &bob,
        &format!("/_matrix/client/v1/media/download/{path}"),
    )
    .await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "image/png");
    let disposition = res.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(disposition.contains("photo.png"), "{disposition}");
    assert_eq!(res.bytes().await.unwrap().to_vec(), image);
    assert_eq!(remote_rows(&hs2).await, 1);

    let res = get(
        &hs2,
        &bob,
        &format!("/_matrix/client/v1/media/thumbnail/{path}?width=90&height=90&method=crop"),
    )
    .await;
    assert_eq!(res.status(), 200);
    let thumb = image::load_from_memory(&res.bytes().await.unwrap()).unwrap();
    assert_eq!((thumb.width(), thumb.height()), (96, 96));

    // Something hs1 does not have.
    let (server, _) = path.split_once('/').unwrap();
    let res = get(
        &hs2,
        &bob,
        &format!("/_matrix/client/v1/media/download/{server}/NoSuchMediaHere"),
    )
    .await;
    assert_eq!(res.status(), 404);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["errcode"], "M_NOT_FOUND", "{body}");

    // Kept: served with hs1 gone.
    hs1.shut_down().await;
    let res = get(
        &hs2,
        &bob,
        &format!("/_matrix/client/v1/media/download/{path}"),
    )
    .await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.bytes().await.unwrap().to_vec(), image);
}

#[tokio::test]
async fn bad_media_answers_are_refused_and_legacy_servers_still_asked() {
    let s = start_federated(|env| {
        env.insert("AXON_MEDIA__MAX_UPLOAD_SIZE".into(), "2000".into());
    })
    .await;
    let (token, _) = s.register("alice", "correct horse battery").await;
    let remote = FakeRemote::start().await;
    {
        let mut canned = remote.canned.lock().unwrap();
        // Not multipart at all.
        canned.push((
            "GET".into(),
            "/_matrix/federation/v1/media/download/notmultipart".into(),
            json!({"this": "is not a file"}),
        ));
        // Bigger than this server's upload limit.
        canned.push((
            "GET".into(),
            "/_matrix/federation/v1/media/download/huge".into(),
            json!({"padding": "x".repeat(10_000)}),
        ));
        // The legacy endpoint of a server without the federation media API.
        canned.push((
            "GET".into(),
            format!("/_matrix/media/v3/download/{}/old", remote.name),
            json!({"legacy": true}),
        ));
    }
    let download = |id: &str| format!("/_matrix/client/v1/media/download/{}/{id}", remote.name);

    let res = get(&s, &token, &download("notmultipart")).await;
    assert_eq!(res.status(), 502);
    let body: Value = res.json().await.unwrap();
    assert!(body["errcode"].is_string(), "{body}");
    let res = get(&s, &token, &download("huge")).await;
    assert_eq!(res.status(), 413);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["errcode"], "M_TOO_LARGE", "{body}");
    assert_eq!(remote_rows(&s).await, 0, "nothing kept from bad answers");

    let res = get(&s, &token, &download("old")).await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body, json!({"legacy": true}));
    assert_eq!(remote_rows(&s).await, 1);

    // IDs that could name something else are refused before anything is asked.
    let res = get(
        &s,
        &token,
        &format!("/_matrix/client/v1/media/download/{}/..%2Fetc", remote.name),
    )
    .await;
    assert_eq!(res.status(), 404);
}
