//! Media through a real client: matrix-sdk 0.18 uploads a file and an image (directly
//! and to a preallocated URI) and another user's client downloads them, and a thumbnail,
//! through the authenticated media endpoints.

mod common;
#[path = "common/sdk.rs"]
mod sdk;

use common::TestServer;
use matrix_sdk::Client;
use sdk::{client, download, register, thumbnail};

async fn user(server: &TestServer, name: &str) -> Client {
    let c = client(&server.base).await;
    register(&c, name, &format!("{name}-password")).await;
    c
}

#[tokio::test]
async fn sdk_uploads_and_downloads_files_and_images() {
    let server = TestServer::start().await;
    let alice = user(&server, "alice").await;
    let bob = user(&server, "bob").await;

    let image: Vec<u8> = (0..50_000u32).map(|i| (i * 7 % 256) as u8).collect();
    let png: mime::Mime = "image/png".parse().unwrap();
    let uploaded = alice
        .media()
        .upload(&png, image.clone(), None)
        .await
        .expect("upload an image");
    assert_eq!(download(&bob, &uploaded.content_uri).await, image);

    let text: mime::Mime = "text/plain".parse().unwrap();
    let file = b"minutes of the meeting".to_vec();
    let uploaded = alice
        .media()
        .upload(&text, file.clone(), None)
        .await
        .expect("upload a file");
    assert_eq!(download(&bob, &uploaded.content_uri).await, file);

    // A real picture and its thumbnail, as a timeline shows it.
    let mut photo = std::io::Cursor::new(Vec::new());
    image::RgbImage::from_fn(640, 480, |x, y| {
        image::Rgb([(x % 256) as u8, (y % 256) as u8, 7])
    })
    .write_to(&mut photo, image::ImageFormat::Png)
    .unwrap();
    let uploaded = alice
        .media()
        .upload(&png, photo.into_inner(), None)
        .await
        .expect("upload a photo");
    let thumb = thumbnail(&bob, &uploaded.content_uri, 96, 96).await;
    let thumb = image::load_from_memory(&thumb).expect("a decodable thumbnail");
    assert_eq!((thumb.width(), thumb.height()), (96, 96));

    // The asynchronous flow: a URI first, the bytes after.
    let pre = alice.media().create_content_uri().await.expect("create");
    let uri = pre.uri.clone();
    alice
        .media()
        .upload_preallocated(pre, &text, b"later".to_vec())
        .await
        .expect("upload to the preallocated URI");
    assert_eq!(download(&bob, &uri).await, b"later");
}
