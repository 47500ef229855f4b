//! Domain errors to Matrix error responses: the one place errcodes and statuses are chosen.

use axum::{
    Json,
    response::{IntoResponse, Response},
};
use http::StatusCode;
use serde_json::{Value as JsonValue, json};

use crate::error::Error;

/// An error on its way out as a Matrix JSON error response.
#[derive(Debug)]
pub struct ApiError(pub Error);

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        Self(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let message = self.0.to_string();
        let (status, body): (StatusCode, JsonValue) = match self.0 {
            Error::Uia { info, error } => {
                let mut body = serde_json::to_value(&*info).unwrap_or_else(|_| json!({}));
                // ruma leaves out an empty `completed`; clients read it (as Synapse sends it).
                if let Some(obj) = body.as_object_mut() {
                    obj.entry("completed").or_insert_with(|| json!([]));
                }
                if let (Some((errcode, msg)), Some(obj)) = (error, body.as_object_mut()) {
                    obj.insert("errcode".into(), errcode.into());
                    obj.insert("error".into(), msg.into());
                }
                (StatusCode::UNAUTHORIZED, body)
            }
            Error::WrongRoomKeysVersion {
                current_version, ..
            } => (
                StatusCode::FORBIDDEN,
                json!({
                    "errcode": "M_WRONG_ROOM_KEYS_VERSION",
                    "error": message,
                    "current_version": current_version,
                }),
            ),
            Error::IncompatibleRoomVersion(version) => (
                StatusCode::BAD_REQUEST,
                json!({
                    "errcode": "M_INCOMPATIBLE_ROOM_VERSION",
                    "error": message,
                    "room_version": version,
                }),
            ),
            Error::RemoteRefused { status, body } => {
                let status = StatusCode::from_u16(status)
                    .ok()
                    .filter(StatusCode::is_client_error)
                    .unwrap_or(StatusCode::BAD_GATEWAY);
                let mut body = match body {
                    JsonValue::Object(fields) => fields,
                    _ => serde_json::Map::new(),
                };
                if !body.get("errcode").is_some_and(JsonValue::is_string) {
                    body.insert("errcode".into(), "M_UNKNOWN".into());
                }
                if !body.get("error").is_some_and(JsonValue::is_string) {
                    body.insert("error".into(), message.into());
                }
                (status, JsonValue::Object(body))
            }
            Error::UnknownToken { soft_logout } => (
                StatusCode::UNAUTHORIZED,
                json!({ "errcode": "M_UNKNOWN_TOKEN", "error": message, "soft_logout": soft_logout }),
            ),
            // The client should keep its session (the lock may be lifted), as the spec says.
            Error::UserLocked => (
                StatusCode::UNAUTHORIZED,
                json!({ "errcode": "M_USER_LOCKED", "error": message, "soft_logout": true }),
            ),
            Error::LimitExceeded { retry_after_ms } | Error::Unavailable { retry_after_ms } => {
                let (status, errcode) = status_and_code(&self.0);
                let mut response = (
                    status,
                    Json(json!({
                        "errcode": errcode,
                        "error": message,
                        "retry_after_ms": retry_after_ms,
                    })),
                )
                    .into_response();
                let secs = retry_after_ms.div_ceil(1000).max(1);
                if let Ok(v) = http::HeaderValue::from_str(&secs.to_string()) {
                    response.headers_mut().insert(http::header::RETRY_AFTER, v);
                }
                return response;
            }
            Error::Internal(detail) => {
                tracing::error!(%detail, "internal error");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    json!({ "errcode": "M_UNKNOWN", "error": "internal server error" }),
                )
            }
            other => {
                let (status, errcode) = status_and_code(&other);
                (status, json!({ "errcode": errcode, "error": message }))
            }
        };
        (status, Json(body)).into_response()
    }
}

fn status_and_code(e: &Error) -> (StatusCode, &'static str) {
    use StatusCode as S;
    match e {
        Error::Forbidden(_) | Error::Rejected(_) | Error::QuotaExceeded(_) => {
            (S::FORBIDDEN, "M_FORBIDDEN")
        }
        Error::MissingToken => (S::UNAUTHORIZED, "M_MISSING_TOKEN"),
        Error::NotFound(_) => (S::NOT_FOUND, "M_NOT_FOUND"),
        Error::InvalidUsername(_) => (S::BAD_REQUEST, "M_INVALID_USERNAME"),
        Error::UserInUse => (S::BAD_REQUEST, "M_USER_IN_USE"),
        Error::InvalidParam(_) => (S::BAD_REQUEST, "M_INVALID_PARAM"),
        Error::InvalidSignature(_) => (S::BAD_REQUEST, "M_INVALID_SIGNATURE"),
        Error::CannotOverwriteMedia => (S::CONFLICT, "M_CANNOT_OVERWRITE_MEDIA"),
        Error::NotYetUploaded => (S::GATEWAY_TIMEOUT, "M_NOT_YET_UPLOADED"),
        Error::CannotThumbnail(_) => (S::BAD_REQUEST, "M_UNKNOWN"),
        Error::WrongRoomKeysVersion { .. } => (S::FORBIDDEN, "M_WRONG_ROOM_KEYS_VERSION"),
        Error::MissingParam(_) => (S::BAD_REQUEST, "M_MISSING_PARAM"),
        Error::BadJson(_) => (S::BAD_REQUEST, "M_BAD_JSON"),
        Error::UnknownPos => (S::BAD_REQUEST, "M_UNKNOWN_POS"),
        Error::NotJson(_) => (S::BAD_REQUEST, "M_NOT_JSON"),
        Error::Unrecognized(_) => (S::BAD_REQUEST, "M_UNRECOGNIZED"),
        Error::TooLarge | Error::EventTooLarge(_) => (S::PAYLOAD_TOO_LARGE, "M_TOO_LARGE"),
        Error::UserDeactivated => (S::FORBIDDEN, "M_USER_DEACTIVATED"),
        Error::GuestAccessForbidden => (S::FORBIDDEN, "M_GUEST_ACCESS_FORBIDDEN"),
        Error::UserSuspended => (S::FORBIDDEN, "M_USER_SUSPENDED"),
        Error::UserLocked => (S::UNAUTHORIZED, "M_USER_LOCKED"),
        Error::ThreepidDenied(_) => (S::FORBIDDEN, "M_THREEPID_DENIED"),
        Error::Exclusive(_) => (S::BAD_REQUEST, "M_EXCLUSIVE"),
        Error::AppserviceFailed {
            status, errcode, ..
        } => (S::from_u16(*status).unwrap_or(S::BAD_GATEWAY), errcode),
        Error::ThreepidMediumNotSupported(_) => (S::BAD_REQUEST, "M_THREEPID_MEDIUM_NOT_SUPPORTED"),
        Error::ThreepidInUse => (S::BAD_REQUEST, "M_THREEPID_IN_USE"),
        Error::ThreepidNotFound(_) => (S::BAD_REQUEST, "M_THREEPID_NOT_FOUND"),
        Error::ThreepidAuthFailed(_) => (S::BAD_REQUEST, "M_THREEPID_AUTH_FAILED"),
        // What the identity server refused is the client's to fix (a bad session or
        // token); an unreachable or failing one is not.
        Error::IdentityServer { status, .. } if *status < 500 => (S::BAD_REQUEST, "M_UNKNOWN"),
        Error::IdentityServer { .. } => (S::BAD_GATEWAY, "M_UNKNOWN"),
        Error::UnsupportedRoomVersion(_) => (S::BAD_REQUEST, "M_UNSUPPORTED_ROOM_VERSION"),
        Error::RoomInUse => (S::BAD_REQUEST, "M_ROOM_IN_USE"),
        Error::AliasInUse => (S::CONFLICT, "M_UNKNOWN"),
        Error::BadState(_) => (S::BAD_REQUEST, "M_BAD_STATE"),
        Error::BadAlias(_) => (S::BAD_REQUEST, "M_BAD_ALIAS"),
        Error::ServerControlledAccountData => (S::METHOD_NOT_ALLOWED, "M_BAD_JSON"),
        Error::TooLargeField(_) => (S::BAD_REQUEST, "M_PROFILE_TOO_LARGE"),
        Error::UnknownEvents(_) => (S::NOT_FOUND, "M_NOT_FOUND"),
        // Handled with their extra fields in into_response.
        Error::UnknownToken { .. } => (S::UNAUTHORIZED, "M_UNKNOWN_TOKEN"),
        Error::LimitExceeded { .. } => (S::TOO_MANY_REQUESTS, "M_LIMIT_EXCEEDED"),
        Error::Unavailable { .. } => (S::SERVICE_UNAVAILABLE, "M_UNKNOWN"),
        Error::RequestTimeout => (S::REQUEST_TIMEOUT, "M_UNKNOWN"),
        Error::Uia { .. } => (S::UNAUTHORIZED, "M_FORBIDDEN"),
        Error::Unauthorized(_) => (S::UNAUTHORIZED, "M_UNAUTHORIZED"),
        Error::BadAuthorization(_) => (S::BAD_REQUEST, "M_UNAUTHORIZED"),
        Error::IncompatibleRoomVersion(_) => (S::BAD_REQUEST, "M_INCOMPATIBLE_ROOM_VERSION"),
        Error::RemoteUnavailable(_) | Error::RemoteRefused { .. } => (S::BAD_GATEWAY, "M_UNKNOWN"),
        Error::Internal(_) => (S::INTERNAL_SERVER_ERROR, "M_UNKNOWN"),
    }
}

/// 404 M_UNRECOGNIZED for paths no endpoint serves.
pub async fn not_found() -> Response {
    unrecognized(StatusCode::NOT_FOUND, "unrecognized endpoint")
}

/// 405 M_UNRECOGNIZED for a known path with the wrong method.
pub async fn method_not_allowed() -> Response {
    unrecognized(
        StatusCode::METHOD_NOT_ALLOWED,
        "method not allowed for this endpoint",
    )
}

fn unrecognized(status: StatusCode, message: &str) -> Response {
    let mut r = ApiError(Error::Unrecognized(message.into())).into_response();
    *r.status_mut() = status;
    r
}
