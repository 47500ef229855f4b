//! Thumbnails: made on first request at the configured size that best fits the request,
//! then kept in the object store. Images are measured before they are decoded, so a
//! decompression bomb (more pixels than `media.max_image_pixels`) is refused unread.
//! An animated thumbnail of a GIF or WebP is the original file.

use std::{io::Cursor, time::Duration};

use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt, stream};
use image::{ImageFormat, ImageReader, Limits, imageops::FilterType};
use object_store::{ObjectStoreExt, PutPayload, path::Path as ObjectPath};

use super::{Download, download, store_err};
use crate::{
    config::{ThumbnailMethod, ThumbnailSize},
    error::{Error, Result},
    server::Homeserver,
};

const MAX_DIMENSION: u32 = 10_000;
const THUMBNAILABLE: &[&str] = &["image/png", "image/jpeg", "image/gif", "image/webp"];

/// The configured size for a request: the smallest of the requested method at least as
/// big as asked, else the largest of that method (any method if none is configured).
pub fn pick_size(
    sizes: &[ThumbnailSize],
    width: u32,
    height: u32,
    method: ThumbnailMethod,
) -> Option<ThumbnailSize> {
    let same: Vec<ThumbnailSize> = sizes
        .iter()
        .copied()
        .filter(|s| s.method == method)
        .collect();
    let pool = if same.is_empty() {
        sizes.to_vec()
    } else {
        same
    };
    let area = |s: &ThumbnailSize| u64::from(s.width) * u64::from(s.height);
    pool.iter()
        .filter(|s| s.width >= width && s.height >= height)
        .min_by_key(|s| area(s))
        .or_else(|| pool.iter().max_by_key(|s| area(s)))
        .copied()
}

fn object_path(media_id: &str, size: &ThumbnailSize) -> ObjectPath {
    ObjectPath::from(format!(
        "thumbnails/{media_id}/{}x{}-{}",
        size.width,
        size.height,
        size.method.as_str()
    ))
}

fn from_bytes(content_type: &str, bytes: Bytes) -> Download {
    let size = i64::try_from(bytes.len()).ok();
    Download {
        content_type: content_type.to_owned(),
        filename: None,
        size,
        body: stream::once(async move { Ok(bytes) }).boxed(),
    }
}

/// `GET /_matrix/client/v1/media/thumbnail/{serverName}/{mediaId}`.
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
    if !(1..=MAX_DIMENSION).contains(&width) || !(1..=MAX_DIMENSION).contains(&height) {
        return Err(Error::InvalidParam(format!(
            "width and height must be 1 to {MAX_DIMENSION}"
        )));
    }
    let method = match method {
        None | Some("scale") => ThumbnailMethod::Scale,
        Some("crop") => ThumbnailMethod::Crop,
        Some(other) => return Err(Error::InvalidParam(format!("unknown method {other}"))),
    };
    let original = download(hs, server, media_id, wait).await?;
    let essence = original
        .content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if !THUMBNAILABLE.contains(&essence.as_str()) {
        return Err(Error::CannotThumbnail(format!(
            "cannot make a thumbnail of {essence}"
        )));
    }
    if animated && (essence == "image/gif" || essence == "image/webp") {
        return Ok(Download {
            filename: None,
            ..original
        });
    }
    let Some(size) = pick_size(&hs.config.media.thumbnail_sizes, width, height, method) else {
        return Err(Error::CannotThumbnail(
            "no thumbnail sizes are configured".into(),
        ));
    };
    let (w, h) = (
        i32::try_from(size.width).unwrap_or(i32::MAX),
        i32::try_from(size.height).unwrap_or(i32::MAX),
    );
    let key = super::storage_key(hs, server, media_id)?;
    let path = object_path(&key, &size);
    if let Some((content_type, _)) = hs
        .storage
        .thumbnail(&key, w, h, size.method.as_str())
        .await?
    {
        let got = hs.media.store.get(&path).await.map_err(store_err)?;
        return Ok(Download {
            content_type,
            filename: None,
            size: None,
            body: got.into_stream(),
        });
    }
    let bytes: Vec<u8> = original
        .body
        .try_fold(Vec::new(), |mut acc, chunk| async move {
            acc.extend_from_slice(&chunk);
            Ok(acc)
        })
        .await
        .map_err(store_err)?;
    let max_pixels = hs.config.media.max_image_pixels;
    let (content_type, out) = tokio::task::spawn_blocking(move || render(&bytes, size, max_pixels))
        .await
        .map_err(|e| Error::Internal(format!("thumbnailer: {e}")))??;
    let out = Bytes::from(out);
    hs.media
        .store
        .put(&path, PutPayload::from_bytes(out.clone()))
        .await
        .map_err(store_err)?;
    let len = i64::try_from(out.len()).unwrap_or(i64::MAX);
    hs.storage
        .insert_thumbnail(&key, w, h, size.method.as_str(), content_type, len)
        .await?;
    Ok(from_bytes(content_type, out))
}

/// Decodes (within limits), resizes and encodes one thumbnail: PNG when the image has
/// transparency, JPEG otherwise.
fn render(bytes: &[u8], size: ThumbnailSize, max_pixels: u64) -> Result<(&'static str, Vec<u8>)> {
    let undecodable =
        |e: image::ImageError| Error::CannotThumbnail(format!("cannot decode the image: {e}"));
    let reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| Error::CannotThumbnail(e.to_string()))?;
    let (ow, oh) = reader.into_dimensions().map_err(undecodable)?;
    if u64::from(ow) * u64::from(oh) > max_pixels {
        return Err(Error::CannotThumbnail(format!(
            "the image is {ow}x{oh}, more pixels than this server decodes"
        )));
    }
    let mut reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| Error::CannotThumbnail(e.to_string()))?;
    let mut limits = Limits::default();
    limits.max_image_width = Some(ow);
    limits.max_image_height = Some(oh);
    limits.max_alloc = Some(max_pixels.saturating_mul(16));
    reader.limits(limits);
    let image = reader.decode().map_err(undecodable)?;
    let (tw, th) = (size.width.min(ow), size.height.min(oh));
    let thumb = match size.method {
        ThumbnailMethod::Crop => image.resize_to_fill(tw, th, FilterType::Triangle),
        // Fit inside, keep the aspect ratio, never enlarge.
        ThumbnailMethod::Scale if ow <= size.width && oh <= size.height => image,
        ThumbnailMethod::Scale => image.resize(size.width, size.height, FilterType::Triangle),
    };
    let mut out = Cursor::new(Vec::new());
    let (content_type, format) = if thumb.color().has_alpha() {
        ("image/png", ImageFormat::Png)
    } else {
        ("image/jpeg", ImageFormat::Jpeg)
    };
    let thumb = if format == ImageFormat::Jpeg {
        image::DynamicImage::ImageRgb8(thumb.to_rgb8())
    } else {
        thumb
    };
    thumb
        .write_to(&mut out, format)
        .map_err(|e| Error::Internal(format!("encoding a thumbnail: {e}")))?;
    Ok((content_type, out.into_inner()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_picked_like_synapse() {
        let sizes = crate::config::MediaConfig::default().thumbnail_sizes;
        let pick = |w, h, m| pick_size(&sizes, w, h, m).map(|s| (s.width, s.height));
        assert_eq!(pick(32, 32, ThumbnailMethod::Crop), Some((32, 32)));
        assert_eq!(pick(50, 50, ThumbnailMethod::Crop), Some((96, 96)));
        assert_eq!(
            pick(500, 500, ThumbnailMethod::Crop),
            Some((96, 96)),
            "largest crop"
        );
        assert_eq!(pick(300, 200, ThumbnailMethod::Scale), Some((320, 240)));
        assert_eq!(pick(700, 500, ThumbnailMethod::Scale), Some((800, 600)));
        assert_eq!(pick(2000, 2000, ThumbnailMethod::Scale), Some((800, 600)));
    }
}
