//! matrix-sdk helpers shared by the real-client tests (included with `#[path]` by those
//! tests only, so the other test binaries do not link matrix-sdk).
#![allow(dead_code)]

use std::sync::{Arc, Mutex};

use matrix_sdk::{
    Client,
    media::{MediaFormat, MediaRequestParameters, MediaThumbnailSettings},
    ruma::{
        OwnedMxcUri,
        api::client::{
            account::register::v3::Request as RegisterRequest,
            media::get_content_thumbnail::v3::Method,
            uiaa::{self, AuthData},
        },
        events::room::{MediaSource, message::OriginalSyncRoomMessageEvent},
    },
};

pub async fn client(base: &str) -> Client {
    Client::builder()
        .homeserver_url(base)
        .build()
        .await
        .expect("client")
}

/// Registers through user-interactive auth, as Element does: a first request to learn
/// the flows and session, then the dummy stage.
pub async fn register(c: &Client, username: &str, password: &str) {
    let mut request = RegisterRequest::new();
    request.username = Some(username.to_owned());
    request.password = Some(password.to_owned());
    request.initial_device_display_name = Some("sdk test".to_owned());
    let err = c
        .matrix_auth()
        .register(request.clone())
        .await
        .expect_err("UIA first");
    let info = err.as_uiaa_response().expect("a UIA challenge");
    assert!(
        info.flows
            .iter()
            .any(|f| f.stages == vec![uiaa::AuthType::Dummy])
    );
    let mut dummy = uiaa::Dummy::new();
    dummy.session = info.session.clone();
    request.auth = Some(AuthData::Dummy(dummy));
    let response = c.matrix_auth().register(request).await.expect("register");
    assert_eq!(response.user_id.localpart(), username);
    assert!(c.session_meta().is_some(), "register logs the client in");
}

/// Plain-text bodies of the room messages a client's handlers saw (decrypted ones too).
pub fn collect_bodies(c: &Client) -> Arc<Mutex<Vec<String>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    c.add_event_handler(move |ev: OriginalSyncRoomMessageEvent| {
        let sink = sink.clone();
        async move {
            sink.lock().unwrap().push(ev.content.body().to_owned());
        }
    });
    seen
}

/// A file's bytes through the client's media API.
pub async fn download(c: &Client, uri: &OwnedMxcUri) -> Vec<u8> {
    c.media()
        .get_media_content(
            &MediaRequestParameters {
                source: MediaSource::Plain(uri.clone()),
                format: MediaFormat::File,
            },
            false,
        )
        .await
        .expect("download")
}

/// A cropped thumbnail through the client's media API.
pub async fn thumbnail(c: &Client, uri: &OwnedMxcUri, width: u32, height: u32) -> Vec<u8> {
    c.media()
        .get_media_content(
            &MediaRequestParameters {
                source: MediaSource::Plain(uri.clone()),
                format: MediaFormat::Thumbnail(MediaThumbnailSettings::with_method(
                    Method::Crop,
                    width.into(),
                    height.into(),
                )),
            },
            false,
        )
        .await
        .expect("thumbnail")
}
