//! This server's media for other servers: `/federation/v1/media/download` and
//! `/thumbnail`, answered as `multipart/mixed` (an empty metadata part, then the file).
//! Only local files are served: another server's, kept here, are for local users.

use std::sync::Arc;

use ruma::{
    api::federation::authenticated_media::{
        Content, ContentMetadata, FileOrLocation, get_content, get_content_thumbnail,
    },
    http_headers::ContentDisposition,
};

use super::events::origin;
use crate::{
    error::Result,
    http::Ruma,
    media::{self, Download},
    server::Homeserver,
};

async fn content(hs: &Homeserver, file: Download) -> Result<FileOrLocation> {
    let disposition = media::content_disposition(&file.content_type, file.filename.as_deref());
    let content_type = file.content_type.clone();
    let bytes = media::local_bytes(hs, file).await?;
    let disposition = disposition
        .parse::<ContentDisposition>()
        .unwrap_or_default();
    Ok(FileOrLocation::File(Content::new(
        bytes.to_vec(),
        content_type,
        disposition,
    )))
}

pub async fn download(
    hs: Arc<Homeserver>,
    req: Ruma<get_content::v1::Request>,
) -> Result<get_content::v1::Response> {
    origin(&req)?;
    let b = &req.body;
    let server = hs.config.server_name().to_string();
    let file = media::download(&hs, &server, &b.media_id, Some(b.timeout_ms)).await?;
    Ok(get_content::v1::Response::new(
        ContentMetadata::new(),
        content(&hs, file).await?,
    ))
}

pub async fn thumbnail(
    hs: Arc<Homeserver>,
    req: Ruma<get_content_thumbnail::v1::Request>,
) -> Result<get_content_thumbnail::v1::Response> {
    origin(&req)?;
    let b = &req.body;
    let server = hs.config.server_name().to_string();
    let file = media::thumbnail::thumbnail(
        &hs,
        &server,
        &b.media_id,
        u32::try_from(b.width).unwrap_or(u32::MAX),
        u32::try_from(b.height).unwrap_or(u32::MAX),
        b.method.as_ref().map(|m| m.as_str()),
        b.animated.unwrap_or(false),
        Some(b.timeout_ms),
    )
    .await?;
    Ok(get_content_thumbnail::v1::Response::new(
        ContentMetadata::new(),
        content(&hs, file).await?,
    ))
}
