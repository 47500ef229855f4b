//! URL previews (`/media/preview_url`): the page's OpenGraph data (or its title and
//! description), with its image fetched and stored as media. Off unless
//! `media.url_previews`; every request (and every redirect) goes through the outbound
//! policy, so private addresses are refused; sizes and time are bounded; results are
//! cached for an hour.

use std::time::Duration;

use bytes::Bytes;
use futures_util::{StreamExt, stream};
use serde_json::{Map, Value as JsonValue, json};

use super::{UploadMeta, upload};
use crate::{
    error::{Error, Result},
    server::{Homeserver, now_ms},
    users::Requester,
};

const TIMEOUT: Duration = Duration::from_secs(10);
const MAX_REDIRECTS: usize = 5;
const CACHE_MS: i64 = 3_600_000;

pub(crate) struct Fetched {
    pub(crate) content_type: String,
    pub(crate) body: Vec<u8>,
}

/// GET with the policy checked on the URL and on every redirect; reads at most `max` bytes.
pub(crate) async fn fetch(hs: &Homeserver, url: &str, max: u64) -> Result<Fetched> {
    let client = hs
        .outbound
        .client(TIMEOUT)
        .map_err(|e| Error::Internal(format!("HTTP client: {e}")))?;
    let mut url = reqwest::Url::parse(url).map_err(|_| Error::InvalidParam("not a URL".into()))?;
    for _ in 0..=MAX_REDIRECTS {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(Error::InvalidParam(
                "only http and https URLs can be fetched".into(),
            ));
        }
        hs.outbound
            .check_url_resolved(&url)
            .await
            .map_err(|why| Error::Forbidden(format!("cannot fetch this URL: {why}")))?;
        let mut response = client
            .get(url.clone())
            .header("Accept", "text/html, image/*;q=0.9, */*;q=0.1")
            .send()
            .await
            .map_err(|e| Error::NotFound(format!("cannot fetch the URL: {e}")))?;
        if response.status().is_redirection() {
            let next = response
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|l| l.to_str().ok())
                .and_then(|l| url.join(l).ok())
                .ok_or_else(|| Error::NotFound("a redirect without a location".into()))?;
            url = next;
            continue;
        }
        if !response.status().is_success() {
            return Err(Error::NotFound(format!(
                "the URL answered {}",
                response.status()
            )));
        }
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("application/octet-stream")
            .to_owned();
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| Error::NotFound(format!("reading the URL: {e}")))?
        {
            if (body.len() + chunk.len()) as u64 > max {
                return Err(Error::TooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        return Ok(Fetched { content_type, body });
    }
    Err(Error::NotFound("too many redirects".into()))
}

/// The preview of `url`, from the cache or fetched now.
pub async fn preview_url(hs: &Homeserver, requester: &Requester, url: &str) -> Result<JsonValue> {
    if !hs.config.media.url_previews {
        return Err(Error::Forbidden(
            "URL previews are disabled on this server".into(),
        ));
    }
    let now = now_ms();
    if let Some(cached) = hs.storage.url_preview(url, now - CACHE_MS).await? {
        return Ok(cached);
    }
    let max = hs.config.media.preview_max_bytes;
    let page = fetch(hs, url, max).await?;
    let essence = page
        .content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let mut og = Map::new();
    let image_url = if essence.starts_with("image/") {
        store_image(hs, requester, &mut og, &essence, page.body).await?;
        None
    } else if essence == "text/html" || essence == "application/xhtml+xml" {
        let html = String::from_utf8_lossy(&page.body);
        let meta = parse_html(&html);
        for (k, v) in &meta {
            if k.starts_with("og:") && k != "og:image" {
                og.insert(k.clone(), json!(v));
            }
        }
        let get = |k: &str| {
            meta.iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.clone())
        };
        if !og.contains_key("og:title")
            && let Some(t) = get("title")
        {
            og.insert("og:title".into(), json!(t));
        }
        if !og.contains_key("og:description")
            && let Some(d) = get("description")
        {
            og.insert("og:description".into(), json!(d));
        }
        get("og:image")
    } else {
        None
    };
    if let Some(image) = image_url
        && let Ok(image_url) = reqwest::Url::parse(url).and_then(|base| base.join(&image))
    {
        // A preview without its image is still a preview.
        match fetch(hs, image_url.as_str(), max).await {
            Ok(img) if img.content_type.to_ascii_lowercase().starts_with("image/") => {
                let kind = img
                    .content_type
                    .split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_owned();
                store_image(hs, requester, &mut og, &kind, img.body).await?;
            }
            Ok(_) => {}
            Err(e) => tracing::info!(%image_url, "preview image not fetched: {e}"),
        }
    }
    let preview = JsonValue::Object(og);
    hs.storage.store_url_preview(url, &preview, now).await?;
    Ok(preview)
}

async fn store_image(
    hs: &Homeserver,
    requester: &Requester,
    og: &mut Map<String, JsonValue>,
    content_type: &str,
    body: Vec<u8>,
) -> Result<()> {
    let size = body.len();
    let dims = image::ImageReader::new(std::io::Cursor::new(&body))
        .with_guessed_format()
        .ok()
        .and_then(|r| r.into_dimensions().ok());
    let meta = UploadMeta {
        content_type: Some(content_type),
        filename: None,
        declared_len: Some(size as u64),
    };
    let chunks =
        stream::once(async move { Ok::<_, std::convert::Infallible>(Bytes::from(body)) }).boxed();
    let uri = upload(hs, requester, &meta, chunks).await?;
    og.insert("og:image".into(), json!(uri));
    og.insert("og:image:type".into(), json!(content_type));
    og.insert("matrix:image:size".into(), json!(size));
    if let Some((w, h)) = dims {
        og.insert("og:image:width".into(), json!(w));
        og.insert("og:image:height".into(), json!(h));
    }
    Ok(())
}

/// `<meta property|name=... content=...>` pairs (keys lowercased) and `title`.
fn parse_html(html: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let lower = html.to_ascii_lowercase();
    let mut at = 0;
    while let Some(start) = lower[at..].find("<meta") {
        let start = at + start;
        let Some(end) = lower[start..].find('>') else {
            break;
        };
        let tag = &html[start..start + end];
        let key = attr(tag, "property").or_else(|| attr(tag, "name"));
        if let (Some(k), Some(v)) = (key, attr(tag, "content")) {
            out.push((k.to_ascii_lowercase(), decode_entities(&v)));
        }
        at = start + end;
    }
    if let Some(t0) = lower.find("<title")
        && let Some(open_end) = lower[t0..].find('>')
        && let Some(t1) = lower[t0 + open_end..].find("</title>")
    {
        let text = &html[t0 + open_end + 1..t0 + open_end + t1];
        out.push(("title".into(), decode_entities(text.trim())));
    }
    out
}

/// An attribute's value in a tag, quoted with " or '.
fn attr(tag: &str, name: &str) -> Option<String> {
    let lower = tag.to_ascii_lowercase();
    let mut from = 0;
    while let Some(i) = lower[from..].find(name) {
        let i = from + i;
        let before_ok = i > 0 && lower.as_bytes()[i - 1].is_ascii_whitespace();
        let rest = lower[i + name.len()..].trim_start();
        if before_ok && rest.starts_with('=') {
            let value_start = tag.len() - rest.len() + 1;
            let v = tag[value_start..].trim_start();
            let quote = v.chars().next()?;
            if quote == '"' || quote == '\'' {
                let body = &v[1..];
                return body.find(quote).map(|e| body[..e].to_owned());
            }
            return v
                .split_whitespace()
                .next()
                .map(|s| s.trim_end_matches('/').to_owned());
        }
        from = i + name.len();
    }
    None
}

fn decode_entities(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&apos;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_opengraph_and_title() {
        let html = r#"<html><head><TITLE> A &amp; B </TITLE>
            <meta property="og:title" content="The title">
            <meta name='description' content='About &quot;it&quot;' />
            <meta content="https://x/img.png" property="og:image">
            <meta charset="utf-8"></head></html>"#;
        let got = parse_html(html);
        let get = |k: &str| {
            got.iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("og:title"), Some("The title"));
        assert_eq!(get("description"), Some("About \"it\""));
        assert_eq!(get("og:image"), Some("https://x/img.png"));
        assert_eq!(get("title"), Some("A & B"));
    }
}
