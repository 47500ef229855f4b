//! The media repository: uploads streamed into an object store (the local file system
//! under `media.path`, or an S3-compatible bucket with `media.s3`), metadata in PostgreSQL, downloads streamed back. Media IDs are 24
//! random alphanumerics (~143 bits), so they cannot be guessed.

pub mod preview;
pub mod thumbnail;

use std::time::Duration;

use bytes::Bytes;
use futures_util::{Stream, StreamExt, TryStreamExt, stream::BoxStream};
use object_store::{ObjectStoreExt, PutPayload, WriteMultipart, path::Path as ObjectPath};
use rand::{Rng, distributions::Alphanumeric};

use crate::{
    error::{Error, Result},
    server::{Homeserver, now_ms},
    storage::media::MediaRow,
    users::Requester,
};

/// URIs from `/create` a user may hold at once, not yet uploaded.
const MAX_PENDING_PER_USER: i64 = 50;
/// Longest a download waits for a `/create`d URI's upload (the spec's default is 20 s).
const MAX_WAIT: Duration = Duration::from_secs(20);
/// Multipart chunks written to the store (bounds the memory one upload holds).
const CHUNK: usize = 5 * 1024 * 1024;

pub(crate) fn store_err(e: object_store::Error) -> Error {
    Error::Internal(format!("media store: {e}"))
}

fn new_media_id() -> String {
    rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(24)
        .map(char::from)
        .collect()
}

fn valid_media_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 255
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// What the uploader says about the file.
pub struct UploadMeta<'a> {
    pub content_type: Option<&'a str>,
    pub filename: Option<&'a str>,
    /// Content-Length, when the client sent one: refused at once when too big.
    pub declared_len: Option<u64>,
}

/// Streams `body` into the store under `media_id`; returns its size. Refuses (and cleans
/// up) past `media.max_upload_size`.
async fn write_object<S, E>(
    hs: &Homeserver,
    media_id: &str,
    meta: &UploadMeta<'_>,
    mut body: S,
) -> Result<i64>
where
    S: Stream<Item = std::result::Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let max = hs.config.media.max_upload_size;
    if meta.declared_len.is_some_and(|n| n > max) {
        return Err(Error::TooLarge);
    }
    let path = ObjectPath::from(media_id);
    let upload = hs
        .media
        .store
        .put_multipart(&path)
        .await
        .map_err(store_err)?;
    let mut writer = WriteMultipart::new_with_chunk_size(upload, CHUNK);
    let mut size: u64 = 0;
    while let Some(chunk) = body.next().await {
        let chunk = match chunk {
            Ok(c) => c,
            Err(e) => {
                let _ = writer.abort().await;
                return Err(Error::BadJson(format!("upload interrupted: {e}")));
            }
        };
        size += chunk.len() as u64;
        if size > max {
            let _ = writer.abort().await;
            return Err(Error::TooLarge);
        }
        writer.wait_for_capacity(2).await.map_err(store_err)?;
        writer.write(&chunk);
    }
    if size == 0 {
        // An empty multipart upload is not valid everywhere: store an empty object.
        let _ = writer.abort().await;
        hs.media
            .store
            .put(&path, PutPayload::new())
            .await
            .map_err(store_err)?;
    } else {
        writer.finish().await.map_err(store_err)?;
    }
    Ok(i64::try_from(size).unwrap_or(i64::MAX))
}

fn mxc(hs: &Homeserver, media_id: &str) -> String {
    format!("mxc://{}/{media_id}", hs.config.server_name)
}

/// `POST /_matrix/media/v3/upload`: returns the content URI.
pub async fn upload<S, E>(
    hs: &Homeserver,
    requester: &Requester,
    meta: &UploadMeta<'_>,
    body: S,
) -> Result<String>
where
    S: Stream<Item = std::result::Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let media_id = new_media_id();
    let size = write_object(hs, &media_id, meta, body).await?;
    hs.storage
        .complete_media(
            &media_id,
            requester.user_id.as_str(),
            meta.content_type,
            meta.filename,
            size,
            now_ms(),
        )
        .await?;
    Ok(mxc(hs, &media_id))
}

/// `POST /_matrix/media/v1/create`: a URI to upload to later; (URI, expiry in ms).
pub async fn create(hs: &Homeserver, requester: &Requester) -> Result<(String, i64)> {
    let now = now_ms();
    let user = requester.user_id.as_str();
    if hs.storage.pending_media_count(user, now).await? >= MAX_PENDING_PER_USER {
        return Err(Error::LimitExceeded {
            retry_after_ms: 60_000,
        });
    }
    let media_id = new_media_id();
    let expires =
        now + i64::try_from(hs.config.media.pending_upload_secs * 1000).unwrap_or(i64::MAX);
    hs.storage
        .reserve_media(&media_id, user, now, expires)
        .await?;
    Ok((mxc(hs, &media_id), expires))
}

/// `PUT /_matrix/media/v3/upload/{serverName}/{mediaId}`: the upload for a created URI.
pub async fn upload_to<S, E>(
    hs: &Homeserver,
    requester: &Requester,
    server_name: &str,
    media_id: &str,
    meta: &UploadMeta<'_>,
    body: S,
) -> Result<()>
where
    S: Stream<Item = std::result::Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let row = local_row(hs, server_name, media_id).await?;
    if row.user_id != requester.user_id.as_str() {
        return Err(Error::Forbidden(
            "this media ID was created by another user".into(),
        ));
    }
    if row.uploaded_ts.is_some() {
        return Err(Error::CannotOverwriteMedia);
    }
    if row.expires_ts.is_some_and(|t| t <= now_ms()) {
        return Err(Error::NotFound("this media ID has expired".into()));
    }
    let size = write_object(hs, media_id, meta, body).await?;
    let done = hs
        .storage
        .complete_media(
            media_id,
            requester.user_id.as_str(),
            meta.content_type,
            meta.filename,
            size,
            now_ms(),
        )
        .await?;
    if !done {
        return Err(Error::CannotOverwriteMedia);
    }
    Ok(())
}

async fn local_row(hs: &Homeserver, server_name: &str, media_id: &str) -> Result<MediaRow> {
    if server_name != hs.config.server_name.as_str() {
        return Err(Error::NotFound("no such media on this server".into()));
    }
    media_row(hs, server_name, media_id).await
}

/// The row of a local file, or of another server's file fetched before.
async fn media_row(hs: &Homeserver, server_name: &str, media_id: &str) -> Result<MediaRow> {
    let key = storage_key(hs, server_name, media_id)?;
    hs.storage
        .media(&key)
        .await?
        .ok_or_else(|| Error::NotFound("no such media".into()))
}

/// Where a file is kept, in the `media` table and the object store: a local file under
/// its media ID; another server's under `remote/<server>/<media ID>` (its ID chosen by
/// that server, so it never meets a local one: those have no `/`).
pub(crate) fn storage_key(hs: &Homeserver, server_name: &str, media_id: &str) -> Result<String> {
    if !valid_media_id(media_id) {
        return Err(Error::NotFound("no such media".into()));
    }
    if server_name == hs.config.server_name.as_str() {
        return Ok(media_id.to_owned());
    }
    if ruma::ServerName::parse(server_name).is_err() {
        return Err(Error::NotFound("no such media".into()));
    }
    Ok(format!("remote/{server_name}/{media_id}"))
}

/// Whether another server's file is kept here already.
pub async fn have_remote(hs: &Homeserver, server_name: &str, media_id: &str) -> Result<bool> {
    Ok(media_row(hs, server_name, media_id)
        .await
        .is_ok_and(|row| row.uploaded_ts.is_some()))
}

/// Keeps another server's file, fetched over federation, to serve from here on. Refused
/// past `media.max_upload_size`, as a local upload would be.
pub async fn keep_remote(
    hs: &Homeserver,
    server_name: &str,
    media_id: &str,
    content_type: Option<&str>,
    filename: Option<&str>,
    bytes: Bytes,
) -> Result<()> {
    let key = storage_key(hs, server_name, media_id)?;
    if bytes.len() as u64 > hs.config.media.max_upload_size {
        return Err(Error::TooLarge);
    }
    let size = i64::try_from(bytes.len()).unwrap_or(i64::MAX);
    hs.media
        .store
        .put(
            &ObjectPath::from(key.as_str()),
            PutPayload::from_bytes(bytes),
        )
        .await
        .map_err(store_err)?;
    // Another server's file has no local uploader.
    hs.storage
        .complete_media(&key, "", content_type, filename, size, now_ms())
        .await?;
    Ok(())
}

/// A local file's bytes (for another server's federation download), at most
/// `media.max_upload_size`.
pub async fn local_bytes(hs: &Homeserver, file: Download) -> Result<Bytes> {
    let max = hs.config.media.max_upload_size;
    let bytes: Vec<u8> = file
        .body
        .map_err(store_err)
        .try_fold(Vec::new(), |mut acc, chunk| async move {
            if (acc.len() + chunk.len()) as u64 > max {
                return Err(Error::TooLarge);
            }
            acc.extend_from_slice(&chunk);
            Ok(acc)
        })
        .await?;
    Ok(Bytes::from(bytes))
}

/// A file to serve.
pub struct Download {
    pub content_type: String,
    pub filename: Option<String>,
    pub size: Option<i64>,
    pub body: BoxStream<'static, std::result::Result<Bytes, object_store::Error>>,
}

/// Downloads a local file, or another server's kept here. A created URI not uploaded
/// yet is waited for, up to `wait` (at most 20 s), then 504 `M_NOT_YET_UPLOADED`.
pub async fn download(
    hs: &Homeserver,
    server_name: &str,
    media_id: &str,
    wait: Option<Duration>,
) -> Result<Download> {
    let wait = wait.unwrap_or(MAX_WAIT).min(MAX_WAIT);
    let deadline = tokio::time::Instant::now() + wait;
    let key = storage_key(hs, server_name, media_id)?;
    let row = loop {
        let row = media_row(hs, server_name, media_id).await?;
        if row.uploaded_ts.is_some() {
            break row;
        }
        if row.expires_ts.is_some_and(|t| t <= now_ms()) {
            return Err(Error::NotFound("no such media".into()));
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(Error::NotYetUploaded);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let got = hs
        .media
        .store
        .get(&ObjectPath::from(key.as_str()))
        .await
        .map_err(|e| match e {
            object_store::Error::NotFound { .. } => Error::NotFound("no such media".into()),
            other => store_err(other),
        })?;
    Ok(Download {
        content_type: row
            .content_type
            .clone()
            .unwrap_or_else(|| "application/octet-stream".into()),
        filename: row.filename.clone(),
        size: row.size,
        body: got.into_stream(),
    })
}

/// Content types a browser may show inline (the spec's list); anything else is served
/// as an attachment, so uploaded HTML or SVG never runs in the server's origin.
const INLINE_TYPES: &[&str] = &[
    "text/css",
    "text/plain",
    "text/csv",
    "application/json",
    "application/ld+json",
    "image/jpeg",
    "image/gif",
    "image/png",
    "image/apng",
    "image/webp",
    "image/avif",
    "video/mp4",
    "video/webm",
    "video/ogg",
    "video/quicktime",
    "audio/mp4",
    "audio/webm",
    "audio/aac",
    "audio/mpeg",
    "audio/ogg",
    "audio/wave",
    "audio/wav",
    "audio/x-wav",
    "audio/x-pn-wav",
    "audio/flac",
    "audio/x-flac",
];

/// The `Content-Disposition` of a download: inline for safe types, attachment otherwise,
/// with the file name (RFC 6266: an ASCII `filename` and a UTF-8 `filename*`).
pub fn content_disposition(content_type: &str, filename: Option<&str>) -> String {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let kind = if INLINE_TYPES.contains(&essence.as_str()) {
        "inline"
    } else {
        "attachment"
    };
    match filename.filter(|f| !f.is_empty()) {
        None => kind.to_owned(),
        Some(name) => {
            let ascii: String = name
                .chars()
                .map(|c| {
                    if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                        c
                    } else {
                        '_'
                    }
                })
                .collect();
            let encoded: String = name
                .bytes()
                .map(|b| {
                    if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
                        (b as char).to_string()
                    } else {
                        format!("%{b:02X}")
                    }
                })
                .collect();
            format!("{kind}; filename=\"{ascii}\"; filename*=utf-8''{encoded}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dispositions() {
        assert_eq!(content_disposition("image/png", None), "inline");
        assert_eq!(content_disposition("text/html", None), "attachment");
        assert_eq!(content_disposition("image/svg+xml", None), "attachment");
        assert_eq!(
            content_disposition("text/plain; charset=utf-8", None),
            "inline"
        );
        assert_eq!(
            content_disposition("application/pdf", Some("ré sumé.pdf")),
            "attachment; filename=\"r_ sum_.pdf\"; filename*=utf-8''r%C3%A9%20sum%C3%A9.pdf"
        );
        assert_eq!(
            content_disposition("image/png", Some("a\"b.png")),
            "inline; filename=\"a_b.png\"; filename*=utf-8''a%22b.png"
        );
    }

    #[test]
    fn media_ids() {
        let id = new_media_id();
        assert_eq!(id.len(), 24);
        assert!(valid_media_id(&id));
        assert_ne!(id, new_media_id());
        assert!(!valid_media_id("../etc/passwd"));
        assert!(!valid_media_id(""));
    }
}
