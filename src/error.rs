//! The domain's error type. It says what went wrong in Matrix terms; the HTTP edge
//! (`http::error`) maps each variant to an `errcode` and status code once.

use ruma::api::client::uiaa::UiaaInfo;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Forbidden(String),
    /// An event the room's auth rules do not allow (403 like Forbidden; over federation
    /// the PDU counts as handled, as Synapse answers).
    #[error("{0}")]
    Rejected(String),
    #[error("missing access token")]
    MissingToken,
    #[error("unknown or expired access token")]
    UnknownToken { soft_logout: bool },
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    InvalidUsername(String),
    #[error("user ID already taken")]
    UserInUse,
    #[error("{0}")]
    InvalidParam(String),
    #[error("{0}")]
    MissingParam(String),
    #[error("{0}")]
    InvalidSignature(String),
    #[error("this media has already been uploaded")]
    CannotOverwriteMedia,
    #[error("the media has not been uploaded yet")]
    NotYetUploaded,
    /// The media cannot be thumbnailed (not an image, too big, undecodable).
    #[error("{0}")]
    CannotThumbnail(String),
    /// A key backup operation named a version that is not the current one.
    #[error("{error}")]
    WrongRoomKeysVersion {
        error: String,
        current_version: Option<String>,
    },
    #[error("{0}")]
    BadJson(String),
    /// A sliding sync `pos` this server no longer has (or never gave): start over.
    #[error("unknown or expired position; start the connection again without `pos`")]
    UnknownPos,
    #[error("{0}")]
    NotJson(String),
    #[error("{0}")]
    Unrecognized(String),
    #[error("request too large")]
    TooLarge,
    /// An event over the spec's size limits (whole event, type or state key).
    #[error("{0}")]
    EventTooLarge(String),
    /// A per-user store is full (account data entries, pushers).
    #[error("{0}")]
    QuotaExceeded(String),
    #[error("too many requests")]
    LimitExceeded { retry_after_ms: u64 },
    /// The client stopped sending its request body.
    #[error("timed out reading the request body")]
    RequestTimeout,
    /// The database cannot be reached (restarting, or gone): try again shortly.
    #[error("the server is temporarily unavailable; try again shortly")]
    Unavailable { retry_after_ms: u64 },
    #[error("this account has been deactivated")]
    UserDeactivated,
    #[error("guest access is not allowed")]
    GuestAccessForbidden,
    #[error("this account has been suspended: it may read and leave rooms, not take part")]
    UserSuspended,
    #[error("this account has been locked by the server's admins")]
    UserLocked,
    /// An application service did not answer as it should (its ping): the spec's status
    /// and errcode for what went wrong.
    #[error("{message}")]
    AppserviceFailed {
        status: u16,
        errcode: &'static str,
        message: String,
    },
    /// An application service claims it alone.
    #[error("{0}")]
    Exclusive(String),
    #[error("{0}")]
    ThreepidDenied(String),
    #[error("{0}")]
    ThreepidMediumNotSupported(String),
    #[error("that third-party identifier is already in use")]
    ThreepidInUse,
    #[error("{0}")]
    ThreepidNotFound(String),
    #[error("{0}")]
    ThreepidAuthFailed(String),
    /// An identity server refused (its HTTP status) or could not be reached (502).
    #[error("{message}")]
    IdentityServer { status: u16, message: String },
    #[error("{0}")]
    UnsupportedRoomVersion(String),
    #[error("room alias already in use")]
    RoomInUse,
    #[error("{0}")]
    BadState(String),
    #[error("{0}")]
    BadAlias(String),
    #[error("a room alias with that name already exists")]
    AliasInUse,
    #[error("server-controlled account data cannot be set by clients")]
    ServerControlledAccountData,
    #[error("{0}")]
    TooLargeField(String),
    /// User-interactive authentication must continue (401 with flows). `error` is the
    /// errcode and message of a failed stage, if one failed.
    #[error("user-interactive authentication required")]
    Uia {
        info: Box<UiaaInfo>,
        error: Option<(&'static str, String)>,
    },
    /// Events a PDU refers to (prev or auth events) that are not here yet: federation
    /// fetches them and tries again.
    #[error("unknown events: {}", .0.join(", "))]
    UnknownEvents(Vec<String>),
    /// A request from another server whose X-Matrix signature, key or destination does
    /// not check out.
    #[error("{0}")]
    Unauthorized(String),
    /// An X-Matrix Authorization header that cannot be read (400, as Synapse answers).
    #[error("{0}")]
    BadAuthorization(String),
    /// Another server cannot join a room of this version (make_join's `ver`).
    #[error("the room's version {0} is not one the joining server supports")]
    IncompatibleRoomVersion(String),
    /// Another server could not be reached or gave no usable answer.
    #[error("{0}")]
    RemoteUnavailable(String),
    /// Another server refused a request made for the client (a 4xx): its answer passed
    /// through, with its status, errcode and fields, as Synapse does.
    #[error("{}", .body["error"].as_str().unwrap_or("refused by the other server"))]
    RemoteRefused {
        status: u16,
        body: serde_json::Value,
    },
    #[error("internal error: {0}")]
    Internal(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<crate::storage::StorageError> for Error {
    fn from(err: crate::storage::StorageError) -> Self {
        if err.is_unavailable() {
            return Error::Unavailable {
                retry_after_ms: 2000,
            };
        }
        Error::Internal(err.to_string())
    }
}
