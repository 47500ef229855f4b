//! The object store that holds media bytes: the local file system or an S3 bucket.

use std::{sync::Arc, time::Duration};

use object_store::{
    ObjectStore, ObjectStoreExt, PutPayload, RetryConfig, aws::AmazonS3Builder,
    local::LocalFileSystem, path::Path as ObjectPath, prefix::PrefixStore,
};

use crate::{
    config::{Config, S3Config},
    error::{Error, Result},
};

#[derive(Debug)]
pub struct MediaStore {
    pub(crate) store: Arc<dyn ObjectStore>,
}

impl MediaStore {
    /// The S3 bucket of `media.s3` when configured, else the local file system under
    /// `media.path` (default `<data_dir>/media`).
    pub async fn open(config: &Config) -> Result<Self> {
        if let Some(s3) = &config.media.s3 {
            let media = Self::open_s3(s3)?;
            media.probe(s3).await?;
            return Ok(media);
        }
        let path = config
            .media
            .path
            .clone()
            .unwrap_or_else(|| config.data_dir.join("media"));
        std::fs::create_dir_all(&path).map_err(|e| {
            Error::Internal(format!(
                "cannot create media directory {}: {e}",
                path.display()
            ))
        })?;
        let store = LocalFileSystem::new_with_prefix(&path)
            .map_err(|e| Error::Internal(format!("media store at {}: {e}", path.display())))?;
        Ok(Self {
            store: Arc::new(store),
        })
    }

    fn open_s3(s3: &S3Config) -> Result<Self> {
        // Environment first (AWS_* variables), then what the config says wins.
        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(&s3.bucket)
            .with_region(&s3.region)
            .with_virtual_hosted_style_request(!s3.path_style)
            // A store that is down fails a request within half a minute, not three.
            .with_retry(RetryConfig {
                max_retries: 4,
                retry_timeout: Duration::from_secs(30),
                ..Default::default()
            });
        if let Some(endpoint) = &s3.endpoint {
            builder = builder
                .with_endpoint(endpoint)
                .with_allow_http(endpoint.starts_with("http://"));
        }
        if let (Some(id), Some(secret)) = (&s3.access_key_id, &s3.secret_access_key) {
            builder = builder
                .with_access_key_id(id)
                .with_secret_access_key(secret);
        }
        let store = builder
            .build()
            .map_err(|e| Error::Internal(format!("media S3 store {}: {e}", s3.bucket)))?;
        let store: Arc<dyn ObjectStore> = match s3.prefix.as_deref().map(|p| p.trim_matches('/')) {
            Some(prefix) if !prefix.is_empty() => Arc::new(PrefixStore::new(store, prefix)),
            _ => Arc::new(store),
        };
        Ok(Self { store })
    }

    /// Fails start-up on a wrong endpoint, bucket or credentials, rather than on the
    /// first upload: writes and deletes a small object.
    async fn probe(&self, s3: &S3Config) -> Result<()> {
        let key = ObjectPath::from(".axon-probe");
        let checked = async {
            self.store
                .put(&key, PutPayload::from_static(b"axon"))
                .await?;
            self.store.delete(&key).await
        };
        checked.await.map_err(|e| {
            Error::Internal(format!(
                "media S3 store (bucket `{}`) is not usable: {e}",
                s3.bucket
            ))
        })
    }
}
