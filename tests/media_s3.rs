//! The media repository on an S3-compatible store: `s3s-fs`, a real S3 server that checks
//! request signatures, started here on a temporary directory (`scripts/test` installs it).
//! Uploads (multipart), downloads, thumbnails and the asynchronous flow go through it; a
//! wrong secret stops start-up with a clear error.

mod common;

use std::{
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use axon::config::Config;
use common::{TestServer, test_env};
use serde_json::Value;

const ACCESS_KEY: &str = "axon-test-key";
const SECRET_KEY: &str = "axon-test-secret-0123456789";
const BUCKET: &str = "media";

/// An `s3s-fs` process serving `root`; killed on drop.
struct S3Server {
    child: Child,
    endpoint: String,
    root: PathBuf,
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

fn s3s_fs_binary() -> PathBuf {
    if let Ok(path) = std::env::var("AXON_TEST_S3S_FS") {
        return path.into();
    }
    let home = std::env::var("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(std::env::var("HOME").unwrap()).join(".cargo"));
    let installed = home.join("bin/s3s-fs");
    if installed.exists() {
        installed
    } else {
        "s3s-fs".into()
    }
}

async fn start_s3() -> S3Server {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let root = std::env::temp_dir().join(format!("axon-s3-{}-{port}", std::process::id()));
    // s3s-fs keeps each bucket as a directory of its root.
    std::fs::create_dir_all(root.join(BUCKET)).unwrap();
    let child = Command::new(s3s_fs_binary())
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
        .arg(&root)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("s3s-fs (install it with scripts/test, or set AXON_TEST_S3S_FS)");
    let server = S3Server {
        child,
        endpoint: format!("http://127.0.0.1:{port}"),
        root,
    };
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return server;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("s3s-fs did not start on port {port}");
}

fn s3_env(env: &mut std::collections::BTreeMap<String, String>, s3: &S3Server, secret: &str) {
    for (k, v) in [
        ("AXON_MEDIA__S3__BUCKET", BUCKET),
        ("AXON_MEDIA__S3__ENDPOINT", &s3.endpoint),
        ("AXON_MEDIA__S3__ACCESS_KEY_ID", ACCESS_KEY),
        ("AXON_MEDIA__S3__SECRET_ACCESS_KEY", secret),
        ("AXON_MEDIA__S3__PATH_STYLE", "true"),
        ("AXON_MEDIA__S3__PREFIX", "axon/media"),
    ] {
        env.insert(k.to_owned(), v.to_owned());
    }
    // The local directory must stay untouched when S3 is configured.
    env.remove("AXON_MEDIA__PATH");
}

/// The object's bytes as the S3 server keeps them on its disk.
fn stored_object(s3: &S3Server, key: &str) -> Option<Vec<u8>> {
    std::fs::read(s3.root.join(BUCKET).join("axon/media").join(key)).ok()
}

fn objects_under(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| {
                    if e.path().is_dir() {
                        objects_under(&e.path())
                    } else {
                        1
                    }
                })
                .sum()
        })
        .unwrap_or(0)
}

async fn upload(s: &TestServer, token: &str, content_type: &str, body: Vec<u8>) -> String {
    let res = s
        .http
        .post(format!("{}/_matrix/media/v3/upload?filename=f.bin", s.base))
        .bearer_auth(token)
        .header("Content-Type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    body["content_uri"]
        .as_str()
        .unwrap()
        .strip_prefix("mxc://")
        .unwrap()
        .to_owned()
}

async fn get_bytes(s: &TestServer, token: &str, path: &str) -> (u16, Vec<u8>) {
    let res = s
        .http
        .get(format!("{}{path}", s.base))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    (status, res.bytes().await.unwrap().to_vec())
}

fn png(width: u32, height: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([(x % 256) as u8, (y % 256) as u8, 90])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

#[tokio::test]
async fn media_on_an_s3_store() {
    let s3 = start_s3().await;
    let s = TestServer::start_with(|env| s3_env(env, &s3, SECRET_KEY)).await;
    let (alice, _) = s.register("alice", "password-alice").await;

    // 12 MiB: more than two 5 MiB parts, so the multipart path is taken.
    let big: Vec<u8> = (0..12 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(31) % 253) as u8)
        .collect();
    let path = upload(&s, &alice, "application/octet-stream", big.clone()).await;
    let id = path.split_once('/').unwrap().1;
    assert_eq!(
        stored_object(&s3, id).map(|b| b.len()),
        Some(big.len()),
        "the object is in the bucket, under the prefix"
    );
    let (status, body) = get_bytes(
        &s,
        &alice,
        &format!("/_matrix/client/v1/media/download/{path}"),
    )
    .await;
    assert_eq!(status, 200);
    assert!(body == big, "downloaded bytes differ from the upload");

    // An empty file is an object too.
    let empty = upload(&s, &alice, "text/plain", Vec::new()).await;
    let (status, body) = get_bytes(
        &s,
        &alice,
        &format!("/_matrix/client/v1/media/download/{empty}"),
    )
    .await;
    assert_eq!((status, body.len()), (200, 0));

    // A thumbnail is made from the object and kept in the bucket.
    let image = upload(&s, &alice, "image/png", png(640, 480)).await;
    let before = objects_under(&s3.root.join(BUCKET));
    let thumb_path =
        format!("/_matrix/client/v1/media/thumbnail/{image}?width=96&height=96&method=crop");
    let (status, thumb) = get_bytes(&s, &alice, &thumb_path).await;
    assert_eq!(status, 200);
    let decoded = image::load_from_memory(&thumb).unwrap();
    assert_eq!((decoded.width(), decoded.height()), (96, 96));
    assert_eq!(
        objects_under(&s3.root.join(BUCKET)),
        before + 1,
        "the thumbnail is stored in the bucket"
    );
    let (status, again) = get_bytes(&s, &alice, &thumb_path).await;
    assert_eq!((status, &again), (200, &thumb));

    // The asynchronous flow: create, then PUT the bytes, then download.
    let (status, created) = s
        .post(
            "/_matrix/media/v1/create",
            Some(&alice),
            serde_json::json!({}),
        )
        .await;
    assert_eq!(status, 200, "{created}");
    let uri = created["content_uri"].as_str().unwrap();
    let later = uri.strip_prefix("mxc://").unwrap();
    let res = s
        .http
        .put(format!("{}/_matrix/media/v3/upload/{later}", s.base))
        .bearer_auth(&alice)
        .header("Content-Type", "text/plain")
        .body("uploaded later")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let (status, body) = get_bytes(
        &s,
        &alice,
        &format!("/_matrix/client/v1/media/download/{later}"),
    )
    .await;
    assert_eq!((status, body.as_slice()), (200, &b"uploaded later"[..]));

    // Nothing went to the local media directory.
    let local = std::env::temp_dir().join(format!("axon-test-media-{}", std::process::id()));
    assert_eq!(
        objects_under(&local),
        0,
        "no local media files with S3 configured"
    );

    // The media survive a restart: the metadata is in PostgreSQL, the bytes in S3.
    let s = s.restart().await;
    let (status, body) = get_bytes(
        &s,
        &alice,
        &format!("/_matrix/client/v1/media/download/{path}"),
    )
    .await;
    assert_eq!(status, 200);
    assert!(body == big);
}

#[tokio::test]
async fn a_wrong_secret_stops_start_up() {
    let s3 = start_s3().await;
    let mut env = test_env();
    s3_env(&mut env, &s3, "not-the-secret");
    let config = Config::load_from(None, &env).unwrap();
    let err = axon::server::media_store::MediaStore::open(&config)
        .await
        .expect_err("a signature made with the wrong secret is refused");
    let message = err.to_string();
    assert!(
        message.contains("bucket `media`") && message.contains("not usable"),
        "{message}"
    );

    // So is an endpoint where nothing listens (after a few quick retries).
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut env = test_env();
    s3_env(&mut env, &s3, SECRET_KEY);
    env.insert(
        "AXON_MEDIA__S3__ENDPOINT".into(),
        format!("http://{closed}"),
    );
    let config = Config::load_from(None, &env).unwrap();
    let err = axon::server::media_store::MediaStore::open(&config)
        .await
        .expect_err("nothing listens there");
    assert!(err.to_string().contains("not usable"), "{err}");

    // And half a credential pair is a configuration error naming its key.
    let mut env = test_env();
    s3_env(&mut env, &s3, SECRET_KEY);
    env.remove("AXON_MEDIA__S3__SECRET_ACCESS_KEY");
    let err = Config::load_from(None, &env).unwrap_err();
    assert_eq!(err.key, "media.s3.secret_access_key");
}
