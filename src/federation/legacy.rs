//! The v1 forms of `PUT /invite`, `/send_join` and `/send_leave`, which ruma no longer types: the
//! spec deprecates them, but older servers only speak them and Synapse still serves them.
//! The v1 invite's body is the event itself (its room state in
//! `unsigned.invite_room_state`); both answer `[200, {...}]`. Served beside the v2 forms,
//! and used when another server answers a v2 request 404.
//!
//! ruma's endpoint macros cannot be used from this crate, so the request and response
//! traits are implemented here by hand, for one shape: a PUT with the room and event IDs
//! in the path and a JSON body, answered with JSON.

use std::{convert::Infallible, marker::PhantomData};

use bytes::BufMut;
use ruma::{
    OwnedEventId, OwnedRoomId,
    api::{
        IncomingRequest, IncomingResponse, Metadata, OutgoingBody, OutgoingRequest,
        OutgoingResponse,
        error::{DeserializationError, Error as MatrixError, IntoHttpError},
        federation::authentication::ServerSignatures,
        path_builder::SinglePath,
    },
};
use serde_json::{Value as JsonValue, value::RawValue as RawJsonValue};

/// Which v1 endpoint: its path.
pub trait V1Path: Send + Sync + 'static {
    const PATH: SinglePath;
}

/// `PUT /_matrix/federation/v1/invite/{roomId}/{eventId}`: the body is the invite event.
#[derive(Debug, Clone, Copy)]
pub struct InvitePath;
impl V1Path for InvitePath {
    const PATH: SinglePath = SinglePath::new("/_matrix/federation/v1/invite/{room_id}/{event_id}");
}

/// `PUT /_matrix/federation/v1/send_join/{roomId}/{eventId}`: the body is the join event.
#[derive(Debug, Clone, Copy)]
pub struct SendJoinPath;
impl V1Path for SendJoinPath {
    const PATH: SinglePath =
        SinglePath::new("/_matrix/federation/v1/send_join/{room_id}/{event_id}");
}

/// `PUT /_matrix/federation/v1/send_leave/{roomId}/{eventId}`: the body is the leave event.
#[derive(Debug, Clone, Copy)]
pub struct SendLeavePath;
impl V1Path for SendLeavePath {
    const PATH: SinglePath =
        SinglePath::new("/_matrix/federation/v1/send_leave/{room_id}/{event_id}");
}

pub type InviteV1 = V1Request<InvitePath>;
pub type SendJoinV1 = V1Request<SendJoinPath>;
pub type SendLeaveV1 = V1Request<SendLeavePath>;

#[derive(Debug)]
pub struct V1Request<P> {
    pub room_id: OwnedRoomId,
    pub event_id: OwnedEventId,
    /// The event.
    pub event: Box<RawJsonValue>,
    path: PhantomData<P>,
}

impl<P> Clone for V1Request<P> {
    fn clone(&self) -> Self {
        Self {
            room_id: self.room_id.clone(),
            event_id: self.event_id.clone(),
            event: self.event.clone(),
            path: PhantomData,
        }
    }
}

impl<P> V1Request<P> {
    pub fn new(room_id: OwnedRoomId, event_id: OwnedEventId, event: Box<RawJsonValue>) -> Self {
        Self {
            room_id,
            event_id,
            event,
            path: PhantomData,
        }
    }
}

/// A v1 answer: `[200, {...}]`.
#[derive(Debug, Clone)]
pub struct V1Response {
    pub body: JsonValue,
}

impl V1Response {
    /// `[200, object]`.
    pub fn new(object: JsonValue) -> Self {
        Self {
            body: JsonValue::Array(vec![200.into(), object]),
        }
    }

    /// The object of the answer (also taken bare, as some servers send it).
    pub fn object(&self) -> Option<&JsonValue> {
        match &self.body {
            JsonValue::Array(items) if items.len() == 2 && items[0] == 200 => Some(&items[1]),
            JsonValue::Object(_) => Some(&self.body),
            _ => None,
        }
    }
}

/// A JSON body, already serialized.
pub struct JsonBody(Vec<u8>);

impl OutgoingBody for JsonBody {
    type Error = Infallible;

    fn content_type(&self) -> Option<http::HeaderValue> {
        Some(http::HeaderValue::from_static("application/json"))
    }

    fn try_into_buf<T: Default + BufMut + AsRef<[u8]>>(self) -> Result<T, Infallible> {
        let mut buf = T::default();
        buf.put_slice(&self.0);
        Ok(buf)
    }
}

impl<P: V1Path> Metadata for V1Request<P> {
    const METHOD: http::Method = http::Method::PUT;
    const RATE_LIMITED: bool = false;
    type Authentication = ServerSignatures;
    type PathBuilder = SinglePath;
    const PATH_BUILDER: SinglePath = P::PATH;
}

impl<P: V1Path> IncomingRequest for V1Request<P> {
    type EndpointError = MatrixError;
    type OutgoingResponse = V1Response;

    fn try_from_http_request_inner(
        request: http::Request<&[u8]>,
        path_args: &[&str],
    ) -> Result<Self, DeserializationError> {
        let [room_id, event_id] = path_args else {
            return Err(DeserializationError::Json(serde::de::Error::custom(
                "the path needs a room ID and an event ID",
            )));
        };
        Ok(Self::new(
            OwnedRoomId::try_from(*room_id)?,
            OwnedEventId::try_from(*event_id)?,
            serde_json::from_slice(request.body())?,
        ))
    }
}

impl<P: V1Path> OutgoingRequest for V1Request<P> {
    type Body = JsonBody;
    type EndpointError = MatrixError;
    type IncomingResponse = V1Response;

    fn try_into_http_request_inner(
        self,
        base_url: &str,
        path_builder_input: (),
    ) -> Result<http::Request<JsonBody>, IntoHttpError> {
        let url = Self::make_endpoint_url(
            path_builder_input,
            base_url,
            &[&self.room_id, &self.event_id],
            "",
        )?;
        Ok(http::Request::builder()
            .method(http::Method::PUT)
            .uri(url)
            .body(JsonBody(self.event.get().as_bytes().to_vec()))?)
    }
}

impl OutgoingResponse for V1Response {
    type Body = JsonBody;

    fn try_into_http_response_inner(self) -> Result<http::Response<JsonBody>, IntoHttpError> {
        Ok(http::Response::new(JsonBody(serde_json::to_vec(
            &self.body,
        )?)))
    }
}

impl IncomingResponse for V1Response {
    type EndpointError = MatrixError;

    fn try_from_http_response_inner(
        response: http::Response<&[u8]>,
    ) -> Result<Self, DeserializationError> {
        Ok(Self {
            body: serde_json::from_slice(response.body())?,
        })
    }
}
