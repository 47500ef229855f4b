//! The media repository over HTTP: upload and authenticated download with the safe-serving
//! headers, the size limit, the asynchronous upload flow, the legacy endpoints' freeze,
//! and the error paths.

mod common;

use common::{TestServer, assert_error};
use serde_json::{Value, json};

async fn upload(
    s: &TestServer,
    token: &str,
    content_type: &str,
    name: &str,
    body: Vec<u8>,
) -> (u16, Value) {
    let res = s
        .http
        .post(format!(
            "{}/_matrix/media/v3/upload?filename={name}",
            s.base
        ))
        .bearer_auth(token)
        .header("Content-Type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    (
        res.status().as_u16(),
        res.json().await.unwrap_or(Value::Null),
    )
}

fn media_path(uri: &str) -> String {
    uri.strip_prefix("mxc://").expect("an mxc URI").to_owned()
}

async fn download(s: &TestServer, token: Option<&str>, path: &str) -> reqwest::Response {
    let mut req = s.http.get(format!("{}{path}", s.base));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().await.unwrap()
}

#[tokio::test]
async fn upload_download_and_safe_serving() {
    let s = TestServer::start().await;
    let (alice, _) = s.register("alice", "password-alice").await;
    let (bob, _) = s.register("bob", "password-bob").await;
    let png: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
    let (status, res) = upload(&s, &alice, "image/png", "cat.png", png.clone()).await;
    assert_eq!(status, 200, "{res}");
    let uri = res["content_uri"].as_str().unwrap();
    let path = media_path(uri);
    let (server, id) = path.split_once('/').unwrap();
    assert_eq!(server, "localhost");
    assert_eq!(id.len(), 24, "random 24-character IDs: {id}");

    // Anyone logged in can download it; the bytes and headers are right.
    let res = download(
        &s,
        Some(&bob),
        &format!("/_matrix/client/v1/media/download/{path}"),
    )
    .await;
    assert_eq!(res.status(), 200);
    let h = res.headers().clone();
    assert_eq!(h["content-type"], "image/png");
    assert_eq!(
        h["content-disposition"],
        "inline; filename=\"cat.png\"; filename*=utf-8''cat.png"
    );
    assert!(
        h["content-security-policy"]
            .to_str()
            .unwrap()
            .starts_with("sandbox")
    );
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["cross-origin-resource-policy"], "cross-origin");
    assert_eq!(res.bytes().await.unwrap().to_vec(), png);
    // With a file name in the path, that name.
    let res = download(
        &s,
        Some(&bob),
        &format!("/_matrix/client/v1/media/download/{path}/other.png"),
    )
    .await;
    assert_eq!(
        res.headers()["content-disposition"],
        "inline; filename=\"other.png\"; filename*=utf-8''other.png"
    );

    // HTML is never inline.
    let (_, res) = upload(
        &s,
        &alice,
        "text/html",
        "page.html",
        b"<script>alert(1)</script>".to_vec(),
    )
    .await;
    let html = media_path(res["content_uri"].as_str().unwrap());
    let res = download(
        &s,
        Some(&bob),
        &format!("/_matrix/client/v1/media/download/{html}"),
    )
    .await;
    assert!(
        res.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment")
    );

    // Errors: no token, unknown media, another server's media, no token on upload.
    let res = download(
        &s,
        None,
        &format!("/_matrix/client/v1/media/download/{path}"),
    )
    .await;
    assert_eq!(res.status(), 401);
    assert_eq!(
        res.json::<Value>().await.unwrap()["errcode"],
        "M_MISSING_TOKEN"
    );
    for missing in [
        "localhost/AAAAAAAAAAAAAAAAAAAAAAAA",
        "localhost/..%2F..%2Fetc",
        "elsewhere.example/abc",
    ] {
        let res = download(
            &s,
            Some(&bob),
            &format!("/_matrix/client/v1/media/download/{missing}"),
        )
        .await;
        assert_eq!(res.status(), 404, "{missing}");
        assert_eq!(res.json::<Value>().await.unwrap()["errcode"], "M_NOT_FOUND");
    }
    let res = s
        .http
        .post(format!("{}/_matrix/media/v3/upload", s.base))
        .body(vec![1, 2, 3])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    // The legacy unauthenticated download is frozen.
    let res = download(&s, None, &format!("/_matrix/media/v3/download/{path}")).await;
    assert_eq!(res.status(), 404);
    assert_eq!(res.json::<Value>().await.unwrap()["errcode"], "M_NOT_FOUND");

    // The config, both versions.
    let (status, res) = s.get("/_matrix/client/v1/media/config", Some(&bob)).await;
    assert_eq!(status, 200, "{res}");
    assert_eq!(res["m.upload.size"], 50 * 1024 * 1024);
    let (_, res) = s.get("/_matrix/media/v3/config", Some(&bob)).await;
    assert_eq!(res["m.upload.size"], 50 * 1024 * 1024);
    assert_error(
        &s.get("/_matrix/client/v1/media/config", None).await,
        401,
        "M_MISSING_TOKEN",
    );
}

#[tokio::test]
async fn uploads_over_the_limit_are_refused() {
    let s = TestServer::start_with(|env| {
        env.insert("AXON_MEDIA__MAX_UPLOAD_SIZE".into(), "1024".into());
        env.insert("AXON_MEDIA__LEGACY_UNAUTHENTICATED".into(), "true".into());
    })
    .await;
    let (alice, _) = s.register("alice", "password-alice").await;
    let (status, res) = upload(
        &s,
        &alice,
        "application/octet-stream",
        "big.bin",
        vec![7; 2000],
    )
    .await;
    assert_eq!(status, 413, "{res}");
    assert_eq!(res["errcode"], "M_TOO_LARGE");
    let (status, res) = upload(
        &s,
        &alice,
        "application/octet-stream",
        "ok.bin",
        vec![7; 1024],
    )
    .await;
    assert_eq!(status, 200, "{res}");
    // Here the legacy endpoint is switched on: it serves without a token.
    let path = media_path(res["content_uri"].as_str().unwrap());
    let res = download(&s, None, &format!("/_matrix/media/v3/download/{path}")).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.bytes().await.unwrap().len(), 1024);
}

#[tokio::test]
async fn asynchronous_upload_flow() {
    let s = TestServer::start().await;
    let (alice, _) = s.register("alice", "password-alice").await;
    let (bob, _) = s.register("bob", "password-bob").await;
    let (status, res) = s
        .post("/_matrix/media/v1/create", Some(&alice), json!({}))
        .await;
    assert_eq!(status, 200, "{res}");
    let path = media_path(res["content_uri"].as_str().unwrap());
    assert!(res["unused_expires_at"].as_i64().unwrap() > 0);

    // Not uploaded yet: a download waits, then says so.
    let res = download(
        &s,
        Some(&bob),
        &format!("/_matrix/client/v1/media/download/{path}?timeout_ms=300"),
    )
    .await;
    assert_eq!(res.status(), 504);
    assert_eq!(
        res.json::<Value>().await.unwrap()["errcode"],
        "M_NOT_YET_UPLOADED"
    );
    // A download waiting while the upload happens gets the file.
    let waiting = {
        let (http, url, bob) = (
            s.http.clone(),
            format!(
                "{}/_matrix/client/v1/media/download/{path}?timeout_ms=10000",
                s.base
            ),
            bob.clone(),
        );
        tokio::spawn(async move { http.get(url).bearer_auth(bob).send().await.unwrap() })
    };
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let put = |token: &str, body: &'static [u8]| {
        s.http
            .put(format!(
                "{}/_matrix/media/v3/upload/{path}?filename=note.txt",
                s.base
            ))
            .bearer_auth(token.to_owned())
            .header("Content-Type", "text/plain")
            .body(body)
            .send()
    };
    // Only its creator may upload to it.
    let res = put(&bob, b"not mine").await.unwrap();
    assert_eq!(res.status(), 403);
    let res = put(&alice, b"hello later").await.unwrap();
    assert_eq!(res.status(), 200);
    let got = waiting.await.unwrap();
    assert_eq!(got.status(), 200);
    assert_eq!(got.bytes().await.unwrap().as_ref(), b"hello later");
    // Once uploaded, it stays.
    let res = put(&alice, b"again").await.unwrap();
    assert_eq!(res.status(), 409);
    assert_eq!(
        res.json::<Value>().await.unwrap()["errcode"],
        "M_CANNOT_OVERWRITE_MEDIA"
    );
    // Unknown IDs.
    let res = s
        .http
        .put(format!(
            "{}/_matrix/media/v3/upload/localhost/NOPENOPENOPENOPENOPENOPE",
            s.base
        ))
        .bearer_auth(&alice)
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
}

fn png(width: u32, height: u32, alpha: bool) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    if alpha {
        image::RgbaImage::from_fn(width, height, |x, y| {
            image::Rgba([(x % 256) as u8, (y % 256) as u8, 90, 128])
        })
        .write_to(&mut out, image::ImageFormat::Png)
        .unwrap();
    } else {
        image::RgbImage::from_fn(width, height, |x, y| {
            image::Rgb([(x % 256) as u8, (y % 256) as u8, 90])
        })
        .write_to(&mut out, image::ImageFormat::Png)
        .unwrap();
    }
    out.into_inner()
}

async fn thumb(s: &TestServer, token: &str, path: &str, query: &str) -> reqwest::Response {
    download(
        s,
        Some(token),
        &format!("/_matrix/client/v1/media/thumbnail/{path}?{query}"),
    )
    .await
}

#[tokio::test]
async fn thumbnails_crop_scale_cache_and_refusals() {
    let s = TestServer::start_with(|env| {
        env.insert("AXON_MEDIA__MAX_IMAGE_PIXELS".into(), "250000".into());
    })
    .await;
    let (alice, _) = s.register("alice", "password-alice").await;
    let (_, res) = upload(&s, &alice, "image/png", "photo.png", png(500, 400, false)).await;
    let path = media_path(res["content_uri"].as_str().unwrap());

    // Crop to the 96x96 size; scale to fit 320x240 (500x400 -> 300x240).
    let res = thumb(&s, &alice, &path, "width=90&height=90&method=crop").await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "image/jpeg");
    let first = res.bytes().await.unwrap();
    let img = image::load_from_memory(&first).unwrap();
    assert_eq!((img.width(), img.height()), (96, 96));
    let res = thumb(&s, &alice, &path, "width=320&height=240&method=scale").await;
    let img = image::load_from_memory(&res.bytes().await.unwrap()).unwrap();
    assert_eq!((img.width(), img.height()), (300, 240));
    // Made once, then served from storage: the same bytes.
    let again = thumb(&s, &alice, &path, "width=96&height=96&method=crop")
        .await
        .bytes()
        .await
        .unwrap();
    assert_eq!(again, first);
    // Transparent images stay PNG.
    let (_, res) = upload(&s, &alice, "image/png", "icon.png", png(64, 64, true)).await;
    let icon = media_path(res["content_uri"].as_str().unwrap());
    let res = thumb(&s, &alice, &icon, "width=32&height=32&method=crop").await;
    assert_eq!(res.headers()["content-type"], "image/png");

    // Animated GIFs: the original when asked for animation.
    let mut gif = std::io::Cursor::new(Vec::new());
    image::RgbImage::from_pixel(40, 40, image::Rgb([1, 2, 3]))
        .write_to(&mut gif, image::ImageFormat::Gif)
        .unwrap();
    let gif = gif.into_inner();
    let (_, res) = upload(&s, &alice, "image/gif", "a.gif", gif.clone()).await;
    let anim = media_path(res["content_uri"].as_str().unwrap());
    let res = thumb(&s, &alice, &anim, "width=32&height=32&animated=true").await;
    assert_eq!(res.headers()["content-type"], "image/gif");
    assert_eq!(res.bytes().await.unwrap().to_vec(), gif);

    // Refusals: bad sizes, unknown method, not an image, too many pixels, no token,
    // the frozen legacy endpoint.
    for (q, status) in [
        ("width=0&height=10", 400),
        ("width=abc&height=10", 400),
        ("height=10", 400),
        ("width=10&height=10&method=zoom", 400),
    ] {
        let res = thumb(&s, &alice, &path, q).await;
        assert_eq!(res.status().as_u16(), status, "{q}");
    }
    let (_, res) = upload(&s, &alice, "text/plain", "a.txt", b"hello".to_vec()).await;
    let text = media_path(res["content_uri"].as_str().unwrap());
    let res = thumb(&s, &alice, &text, "width=32&height=32").await;
    assert_eq!(res.status(), 400);
    let (_, res) = upload(&s, &alice, "image/png", "huge.png", png(600, 600, false)).await;
    let huge = media_path(res["content_uri"].as_str().unwrap());
    let res = thumb(&s, &alice, &huge, "width=32&height=32").await;
    assert_eq!(
        res.status(),
        400,
        "360,000 pixels are over this server's 250,000"
    );
    let res = download(
        &s,
        None,
        &format!("/_matrix/client/v1/media/thumbnail/{path}?width=32&height=32"),
    )
    .await;
    assert_eq!(res.status(), 401);
    let res = download(
        &s,
        None,
        &format!("/_matrix/media/v3/thumbnail/{path}?width=32&height=32"),
    )
    .await;
    assert_eq!(res.status(), 404);
}

/// A web site served by the test: a page with OpenGraph tags, its image, a redirect to
/// the page, and a plain page with only a title.
async fn website() -> String {
    use axum::{Router, http::header, response::IntoResponse, routing::get};
    let image = png(120, 80, false);
    let app = Router::new()
        .route(
            "/page",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
                    r#"<html><head><title>Ignored</title>
                       <meta property="og:title" content="Axon &amp; friends">
                       <meta property="og:description" content="A homeserver">
                       <meta property="og:image" content="/img.png"></head></html>"#,
                )
            }),
        )
        .route(
            "/plain",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "text/html")],
                    "<html><head><title>Just a title</title><meta name=\"description\" content=\"Words\"></head></html>",
                )
            }),
        )
        .route(
            "/moved",
            get(|| async { (axum::http::StatusCode::FOUND, [(header::LOCATION, "/page")]).into_response() }),
        )
        .route(
            "/img.png",
            get(move || {
                let image = image.clone();
                async move { ([(header::CONTENT_TYPE, "image/png")], image) }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test]
async fn url_previews_of_a_page_and_refusals() {
    let site = website().await;
    let s = TestServer::start_with(|env| {
        env.insert("AXON_MEDIA__URL_PREVIEWS".into(), "true".into());
        env.insert("AXON_OUTBOUND__ALLOW_RANGES".into(), "127.0.0.0/8".into());
    })
    .await;
    let (alice, _) = s.register("alice", "password-alice").await;
    let preview = |url: String| {
        let (s, alice) = (&s, alice.clone());
        async move {
            s.get(
                &format!(
                    "/_matrix/client/v1/media/preview_url?url={}",
                    urlencode(&url)
                ),
                Some(&alice),
            )
            .await
        }
    };
    // Through a redirect; the image fetched and stored as media.
    let (status, res) = preview(format!("{site}/moved")).await;
    assert_eq!(status, 200, "{res}");
    assert_eq!(res["og:title"], "Axon & friends");
    assert_eq!(res["og:description"], "A homeserver");
    assert_eq!(
        (
            res["og:image:width"].as_u64(),
            res["og:image:height"].as_u64()
        ),
        (Some(120), Some(80)),
        "{res}"
    );
    let image = media_path(res["og:image"].as_str().unwrap());
    let got = download(
        &s,
        Some(&alice),
        &format!("/_matrix/client/v1/media/download/{image}"),
    )
    .await;
    assert_eq!(got.status(), 200);
    assert_eq!(got.headers()["content-type"], "image/png");
    // A page without OpenGraph: its title and description.
    let (_, res) = preview(format!("{site}/plain")).await;
    assert_eq!(
        (res["og:title"].as_str(), res["og:description"].as_str()),
        (Some("Just a title"), Some("Words")),
        "{res}"
    );
    // Errors: no URL, not http, nothing there.
    assert_error(
        &s.get("/_matrix/client/v1/media/preview_url", Some(&alice))
            .await,
        400,
        "M_MISSING_PARAM",
    );
    assert_error(
        &preview("file:///etc/passwd".into()).await,
        400,
        "M_INVALID_PARAM",
    );
    assert_error(
        &preview(format!("{site}/nothing-here")).await,
        404,
        "M_NOT_FOUND",
    );

    // Without allow_ranges, the private address is refused; with previews off, all are.
    let strict = TestServer::start_with(|env| {
        env.insert("AXON_MEDIA__URL_PREVIEWS".into(), "true".into());
    })
    .await;
    let (bob, _) = strict.register("bob", "password-bob").await;
    for url in [
        format!("{site}/page"),
        site.replace("127.0.0.1", "localhost") + "/page",
        "http://169.254.169.254/latest/meta-data".to_owned(),
    ] {
        let res = strict
            .get(
                &format!(
                    "/_matrix/client/v1/media/preview_url?url={}",
                    urlencode(&url)
                ),
                Some(&bob),
            )
            .await;
        assert_error(&res, 403, "M_FORBIDDEN");
    }
    let off = TestServer::start().await;
    let (carol, _) = off.register("carol", "password-carol").await;
    let res = off
        .get(
            &format!(
                "/_matrix/client/v1/media/preview_url?url={}",
                urlencode("https://example.org")
            ),
            Some(&carol),
        )
        .await;
    assert_error(&res, 403, "M_FORBIDDEN");
}
