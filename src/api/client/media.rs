//! The media repository's endpoints. Uploads and downloads are streamed, so these are
//! plain axum handlers (ruma's request types buffer the body); the config endpoints use
//! ruma's types.

use std::{collections::HashMap, sync::Arc, time::Duration};

use axum::{
    Router,
    body::Body,
    extract::{Request, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post, put},
};
use futures_util::TryStreamExt;
use ruma::api::client::authenticated_media::get_media_config;
use serde_json::json;

use crate::{
    error::{Error, Result},
    http::{
        Ruma,
        error::ApiError,
        extract::{Authed, MatrixPath, MatrixQuery},
        route,
    },
    media::{self as domain, UploadMeta},
    server::Homeserver,
};

pub fn routes(router: Router<Arc<Homeserver>>) -> Router<Arc<Homeserver>> {
    let router = route(router, config);
    router
        .route("/_matrix/media/v3/upload", post(upload))
        .route("/_matrix/media/r0/upload", post(upload))
        .route("/_matrix/media/v1/create", post(create))
        .route(
            "/_matrix/media/v3/upload/{server}/{media_id}",
            put(upload_to),
        )
        .route("/_matrix/media/v3/config", get(legacy_config))
        .route(
            "/_matrix/client/v1/media/download/{server}/{media_id}",
            get(download),
        )
        .route(
            "/_matrix/client/v1/media/download/{server}/{media_id}/{filename}",
            get(download_as),
        )
        .route(
            "/_matrix/media/v3/download/{server}/{media_id}",
            get(legacy_download),
        )
        .route(
            "/_matrix/media/v3/download/{server}/{media_id}/{filename}",
            get(legacy_download_as),
        )
        .route(
            "/_matrix/media/r0/download/{server}/{media_id}",
            get(legacy_download),
        )
        .route(
            "/_matrix/client/v1/media/thumbnail/{server}/{media_id}",
            get(thumbnail),
        )
        .route(
            "/_matrix/media/v3/thumbnail/{server}/{media_id}",
            get(legacy_thumbnail),
        )
        .route("/_matrix/client/v1/media/preview_url", get(preview_url))
        .route("/_matrix/media/v3/preview_url", get(preview_url))
}

async fn preview_url(
    State(hs): State<Arc<Homeserver>>,
    Authed(requester): Authed,
    MatrixQuery(query): MatrixQuery<HashMap<String, String>>,
) -> std::result::Result<Response, ApiError> {
    let url = query
        .get("url")
        .ok_or_else(|| Error::MissingParam("url is required".into()))?;
    let preview = domain::preview::preview_url(&hs, &requester, url).await?;
    Ok(axum::Json(preview).into_response())
}

async fn config(
    hs: Arc<Homeserver>,
    _req: Ruma<get_media_config::v1::Request>,
) -> Result<get_media_config::v1::Response> {
    Ok(get_media_config::v1::Response::new(
        ruma::UInt::try_from(hs.config.media.max_upload_size).unwrap_or(ruma::UInt::MAX),
    ))
}

/// The deprecated `/_matrix/media/v3/config`: the same, for a logged-in user.
async fn legacy_config(State(hs): State<Arc<Homeserver>>, _auth: Authed) -> Response {
    axum::Json(json!({ "m.upload.size": hs.config.media.max_upload_size })).into_response()
}

fn upload_meta<'a>(headers: &'a HeaderMap, query: &'a HashMap<String, String>) -> UploadMeta<'a> {
    UploadMeta {
        content_type: headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty()),
        filename: query
            .get("filename")
            .map(String::as_str)
            .filter(|f| !f.is_empty()),
        declared_len: headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok()),
    }
}

/// The upload's bytes; a client that stops sending for `limits.body_read_timeout_secs`
/// ends the stream with an error instead of holding the upload open.
fn body_stream(
    hs: &Homeserver,
    req: Request,
) -> impl futures_util::Stream<Item = std::result::Result<bytes::Bytes, axum::Error>> + Unpin {
    use futures_util::StreamExt as _;
    let stall = Duration::from_secs(hs.config.limits.body_read_timeout_secs);
    let inner = req.into_body().into_data_stream();
    Box::pin(futures_util::stream::unfold(
        Some(inner),
        move |state| async move {
            let mut inner = state?;
            match tokio::time::timeout(stall, inner.next()).await {
                Ok(Some(item)) => Some((item, Some(inner))),
                Ok(None) => None,
                Err(_) => {
                    let stalled =
                        std::io::Error::new(std::io::ErrorKind::TimedOut, "the upload stalled");
                    Some((Err(axum::Error::new(stalled)), None))
                }
            }
        },
    ))
}

async fn upload(
    State(hs): State<Arc<Homeserver>>,
    Authed(requester): Authed,
    MatrixQuery(query): MatrixQuery<HashMap<String, String>>,
    headers: HeaderMap,
    req: Request,
) -> std::result::Result<Response, ApiError> {
    let meta = upload_meta(&headers, &query);
    let uri = domain::upload(&hs, &requester, &meta, body_stream(&hs, req)).await?;
    Ok(axum::Json(json!({ "content_uri": uri })).into_response())
}

async fn create(
    State(hs): State<Arc<Homeserver>>,
    Authed(requester): Authed,
) -> std::result::Result<Response, ApiError> {
    let (uri, expires) = domain::create(&hs, &requester).await?;
    Ok(axum::Json(json!({ "content_uri": uri, "unused_expires_at": expires })).into_response())
}

async fn upload_to(
    State(hs): State<Arc<Homeserver>>,
    Authed(requester): Authed,
    MatrixPath((server, media_id)): MatrixPath<(String, String)>,
    MatrixQuery(query): MatrixQuery<HashMap<String, String>>,
    headers: HeaderMap,
    req: Request,
) -> std::result::Result<Response, ApiError> {
    let meta = upload_meta(&headers, &query);
    domain::upload_to(
        &hs,
        &requester,
        &server,
        &media_id,
        &meta,
        body_stream(&hs, req),
    )
    .await?;
    Ok(axum::Json(json!({})).into_response())
}

/// `timeout_ms` of a download: how long to wait for a created URI's upload.
fn wait_of(query: &HashMap<String, String>) -> Result<Option<Duration>> {
    query
        .get("timeout_ms")
        .map(|t| {
            t.parse::<u64>()
                .map(Duration::from_millis)
                .map_err(|_| Error::InvalidParam("timeout_ms must be an integer".into()))
        })
        .transpose()
}

async fn serve(
    hs: &Homeserver,
    server: &str,
    media_id: &str,
    filename: Option<&str>,
    query: &HashMap<String, String>,
) -> Result<Response> {
    let file = crate::federation::media::download(hs, server, media_id, wait_of(query)?).await?;
    Ok(respond_with(file, filename))
}

/// A file as a response, with the safe-serving headers.
fn respond_with(file: domain::Download, filename: Option<&str>) -> Response {
    let name = filename.or(file.filename.as_deref());
    let disposition = domain::content_disposition(&file.content_type, name);
    let mut response = Response::new(Body::from_stream(file.body.map_err(axum::Error::new)));
    let h = response.headers_mut();
    let value = |s: &str| {
        HeaderValue::from_str(s).unwrap_or(HeaderValue::from_static("application/octet-stream"))
    };
    h.insert(header::CONTENT_TYPE, value(&file.content_type));
    if let Ok(v) = HeaderValue::from_str(&disposition) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    if let Some(size) = file.size
        && let Ok(v) = HeaderValue::from_str(&size.to_string())
    {
        h.insert(header::CONTENT_LENGTH, v);
    }
    // The spec's safe-serving headers: nothing served here runs as a page of this origin.
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "sandbox; default-src 'none'; script-src 'none'; plugin-types application/pdf; \
             style-src 'unsafe-inline'; media-src 'self'; object-src 'self';",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        "Cross-Origin-Resource-Policy",
        HeaderValue::from_static("cross-origin"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=31536000, immutable"),
    );
    *response.status_mut() = StatusCode::OK;
    response
}

/// The query of a thumbnail request: width, height, method, animated, timeout_ms.
async fn thumbnail_of(
    hs: &Homeserver,
    server: &str,
    media_id: &str,
    query: &HashMap<String, String>,
) -> Result<Response> {
    let dim = |k: &str| -> Result<u32> {
        query
            .get(k)
            .ok_or_else(|| Error::MissingParam(format!("{k} is required")))?
            .parse::<u32>()
            .map_err(|_| Error::InvalidParam(format!("{k} must be a positive integer")))
    };
    let (width, height) = (dim("width")?, dim("height")?);
    let animated = query.get("animated").is_some_and(|a| a == "true");
    let file = crate::federation::media::thumbnail(
        hs,
        server,
        media_id,
        width,
        height,
        query.get("method").map(String::as_str),
        animated,
        wait_of(query)?,
    )
    .await?;
    Ok(respond_with(file, None))
}

async fn thumbnail(
    State(hs): State<Arc<Homeserver>>,
    _auth: Authed,
    MatrixPath((server, media_id)): MatrixPath<(String, String)>,
    MatrixQuery(query): MatrixQuery<HashMap<String, String>>,
) -> std::result::Result<Response, ApiError> {
    Ok(thumbnail_of(&hs, &server, &media_id, &query).await?)
}

async fn legacy_thumbnail(
    State(hs): State<Arc<Homeserver>>,
    MatrixPath((server, media_id)): MatrixPath<(String, String)>,
    MatrixQuery(query): MatrixQuery<HashMap<String, String>>,
) -> std::result::Result<Response, ApiError> {
    legacy_allowed(&hs)?;
    Ok(thumbnail_of(&hs, &server, &media_id, &query).await?)
}

async fn download(
    State(hs): State<Arc<Homeserver>>,
    _auth: Authed,
    MatrixPath((server, media_id)): MatrixPath<(String, String)>,
    MatrixQuery(query): MatrixQuery<HashMap<String, String>>,
) -> std::result::Result<Response, ApiError> {
    Ok(serve(&hs, &server, &media_id, None, &query).await?)
}

async fn download_as(
    State(hs): State<Arc<Homeserver>>,
    _auth: Authed,
    MatrixPath((server, media_id, filename)): MatrixPath<(String, String, String)>,
    MatrixQuery(query): MatrixQuery<HashMap<String, String>>,
) -> std::result::Result<Response, ApiError> {
    Ok(serve(&hs, &server, &media_id, Some(&filename), &query).await?)
}

/// The unauthenticated endpoints are frozen (spec v1.11): 404 unless configured to serve.
fn legacy_allowed(hs: &Homeserver) -> Result<()> {
    if hs.config.media.legacy_unauthenticated {
        Ok(())
    } else {
        Err(Error::NotFound(
            "unauthenticated media downloads are disabled: use /_matrix/client/v1/media".into(),
        ))
    }
}

async fn legacy_download(
    State(hs): State<Arc<Homeserver>>,
    MatrixPath((server, media_id)): MatrixPath<(String, String)>,
    MatrixQuery(query): MatrixQuery<HashMap<String, String>>,
) -> std::result::Result<Response, ApiError> {
    legacy_allowed(&hs)?;
    Ok(serve(&hs, &server, &media_id, None, &query).await?)
}

async fn legacy_download_as(
    State(hs): State<Arc<Homeserver>>,
    MatrixPath((server, media_id, filename)): MatrixPath<(String, String, String)>,
    MatrixQuery(query): MatrixQuery<HashMap<String, String>>,
) -> std::result::Result<Response, ApiError> {
    legacy_allowed(&hs)?;
    Ok(serve(&hs, &server, &media_id, Some(&filename), &query).await?)
}
