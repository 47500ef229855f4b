//! Other servers' media: the client media endpoints serve `mxc://` URIs of other servers
//! by fetching the file once over the federation media API (`/federation/v1/media/
//! download`, a multipart answer, or a redirect to where the file is), falling back to
//! the legacy `/_matrix/media/v3/download` of servers without it, and keeping it in the
//! media store; thumbnails are then made here from the kept original. Answers are read
//! up to `media.max_upload_size` and taken only as what they say they are.

use std::time::Duration;

use bytes::Bytes;
use ruma::{
    ServerName,
    api::federation::authenticated_media::{FileOrLocation, get_content},
};

use super::client::SendError;
use crate::{
    error::{Error, Result},
    media::{self, Download},
    server::Homeserver,
};

/// `GET /_matrix/client/v1/media/download/{serverName}/{mediaId}` (and the legacy ones).
pub async fn download(
    hs: &Homeserver,
    server: &str,
    media_id: &str,
    wait: Option<Duration>,
) -> Result<Download> {
    fetch_if_remote(hs, server, media_id, wait).await?;
    media::download(hs, server, media_id, wait).await
}

/// `GET /_matrix/client/v1/media/thumbnail/{serverName}/{mediaId}`: made here from the
/// original, fetched first when it is another server's.
#[allow(clippy::too_many_arguments)]
pub async fn thumbnail(
    hs: &Homeserver,
    server: &str,
    media_id: &str,
    width: u32,
    height: u32,
    method: Option<&str>,
    animated: bool,
    wait: Option<Duration>,
) -> Result<Download> {
    fetch_if_remote(hs, server, media_id, wait).await?;
    media::thumbnail::thumbnail(hs, server, media_id, width, height, method, animated, wait).await
}

async fn fetch_if_remote(
    hs: &Homeserver,
    server: &str,
    media_id: &str,
    wait: Option<Duration>,
) -> Result<()> {
    if server == hs.config.server_name().as_str() {
        return Ok(());
    }
    // Checks the server name and media ID before anything is asked.
    media::storage_key(hs, server, media_id)?;
    if media::have_remote(hs, server, media_id).await? {
        return Ok(());
    }
    if !hs.config.federation_enabled() {
        return Err(Error::NotFound(
            "this server does not federate: other servers' media is not available".into(),
        ));
    }
    let destination =
        ServerName::parse(server).map_err(|_| Error::NotFound("no such media".into()))?;
    let fetched = fetch(hs, &destination, media_id, wait).await?;
    media::keep_remote(
        hs,
        server,
        media_id,
        fetched.content_type.as_deref(),
        fetched.filename.as_deref(),
        fetched.bytes,
    )
    .await
}

struct Fetched {
    content_type: Option<String>,
    filename: Option<String>,
    bytes: Bytes,
}

fn max_bytes(hs: &Homeserver) -> usize {
    usize::try_from(hs.config.media.max_upload_size).unwrap_or(usize::MAX)
}

/// The file from its server: the federation media API, else the legacy endpoint.
async fn fetch(
    hs: &Homeserver,
    server: &ServerName,
    media_id: &str,
    wait: Option<Duration>,
) -> Result<Fetched> {
    let federation = super::state(hs)?;
    let mut request = get_content::v1::Request::new(media_id.to_owned());
    if let Some(wait) = wait {
        request.timeout_ms = wait.min(Duration::from_secs(20));
    }
    match federation
        .client
        .send_limited(hs.keys.pair(), server, request, max_bytes(hs))
        .await
    {
        Ok(answer) => match answer.content {
            FileOrLocation::File(content) => Ok(Fetched {
                content_type: content.content_type,
                filename: content.content_disposition.and_then(|d| d.filename),
                bytes: Bytes::from(content.file),
            }),
            FileOrLocation::Location(url) => {
                let got = media::preview::fetch(hs, &url, hs.config.media.max_upload_size).await?;
                Ok(Fetched {
                    content_type: Some(got.content_type),
                    filename: None,
                    bytes: Bytes::from(got.body),
                })
            }
            _ => Err(Error::RemoteUnavailable(
                "the media's server answered in a form this server does not know".into(),
            )),
        },
        // A server without the federation media API (older than spec v1.11).
        Err(SendError::Refused { status, body })
            if matches!(status, 400 | 405 | 501)
                || (status == 404 && body.contains("M_UNRECOGNIZED")) =>
        {
            legacy_fetch(hs, server, media_id).await
        }
        Err(SendError::Refused { status: 404, .. }) => {
            Err(Error::NotFound("no such media on its server".into()))
        }
        Err(SendError::BadResponse(why)) if why.contains("larger than") => Err(Error::TooLarge),
        Err(e) => Err(Error::RemoteUnavailable(format!(
            "the media's server did not give it: {e}"
        ))),
    }
}

async fn legacy_fetch(hs: &Homeserver, server: &ServerName, media_id: &str) -> Result<Fetched> {
    let federation = super::state(hs)?;
    let path = format!("/_matrix/media/v3/download/{server}/{media_id}?allow_remote=false");
    let (headers, body) = federation
        .client
        .get_unsigned(server, &path, max_bytes(hs))
        .await
        .map_err(|e| match e {
            SendError::Refused { status: 404, .. } => {
                Error::NotFound("no such media on its server".into())
            }
            SendError::BadResponse(why) if why.contains("larger than") => Error::TooLarge,
            other => {
                Error::RemoteUnavailable(format!("the media's server did not give it: {other}"))
            }
        })?;
    let header = |name: reqwest::header::HeaderName| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let filename = header(reqwest::header::CONTENT_DISPOSITION)
        .and_then(|d| d.parse::<ruma::http_headers::ContentDisposition>().ok())
        .and_then(|d| d.filename);
    Ok(Fetched {
        content_type: header(reqwest::header::CONTENT_TYPE),
        filename,
        bytes: Bytes::from(body),
    })
}
