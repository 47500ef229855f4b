//! PDUs: the signed events of the room DAG. `Pdu` is our parsed view of one (it implements
//! ruma's state-res `Event`), `build` makes a new, hashed and signed one.

use ruma::{
    CanonicalJsonObject, CanonicalJsonValue, EventId, Int, MilliSecondsSinceUnixEpoch,
    OwnedEventId, OwnedRoomId, OwnedUserId, RoomId, UInt, UserId,
    events::TimelineEventType,
    room_version_rules::{EventIdFormatVersion, EventsReferenceFormatVersion, RoomVersionRules},
};
use serde_json::{Value as JsonValue, value::RawValue as RawJsonValue};

use crate::{
    error::{Error, Result},
    server::keys::ServerKeys,
};

/// Largest whole PDU, signatures included, in bytes: the spec says 65,536; ruma's
/// signing refuses more than 65,535, and we agree with it.
pub const MAX_PDU_BYTES: usize = 65_535;

/// An event of the room DAG as axon holds it.
#[derive(Debug, Clone)]
pub struct Pdu {
    pub event_id: OwnedEventId,
    pub room_id: Option<OwnedRoomId>,
    pub sender: OwnedUserId,
    pub origin_server_ts: MilliSecondsSinceUnixEpoch,
    pub event_type: TimelineEventType,
    pub content: Box<RawJsonValue>,
    pub state_key: Option<String>,
    pub prev_events: Vec<OwnedEventId>,
    pub auth_events: Vec<OwnedEventId>,
    pub redacts: Option<OwnedEventId>,
    pub depth: i64,
    /// The PDU as signed, for federation and for serving.
    pub json: CanonicalJsonObject,
}

impl ruma::state_res::Event for Pdu {
    type Id = OwnedEventId;

    fn event_id(&self) -> &Self::Id {
        &self.event_id
    }
    fn room_id(&self) -> Option<&RoomId> {
        self.room_id.as_deref()
    }
    fn sender(&self) -> &UserId {
        &self.sender
    }
    fn origin_server_ts(&self) -> MilliSecondsSinceUnixEpoch {
        self.origin_server_ts
    }
    fn event_type(&self) -> &TimelineEventType {
        &self.event_type
    }
    fn content(&self) -> &RawJsonValue {
        &self.content
    }
    fn state_key(&self) -> Option<&str> {
        self.state_key.as_deref()
    }
    fn prev_events(&self) -> Box<dyn DoubleEndedIterator<Item = &Self::Id> + '_> {
        Box::new(self.prev_events.iter())
    }
    fn auth_events(&self) -> Box<dyn DoubleEndedIterator<Item = &Self::Id> + '_> {
        Box::new(self.auth_events.iter())
    }
    fn redacts(&self) -> Option<&Self::Id> {
        self.redacts.as_ref()
    }
    fn rejected(&self) -> bool {
        false
    }
}

fn bad(what: &str) -> Error {
    Error::Internal(format!("malformed stored PDU: {what}"))
}

/// Event IDs in `prev_events` / `auth_events`: plain IDs from room v3, `[id, hashes]`
/// pairs before.
fn reference_list(value: Option<&CanonicalJsonValue>) -> Result<Vec<OwnedEventId>> {
    let Some(CanonicalJsonValue::Array(items)) = value else {
        return Ok(Vec::new());
    };
    items
        .iter()
        .map(|item| {
            let id = match item {
                CanonicalJsonValue::String(s) => s.as_str(),
                CanonicalJsonValue::Array(pair) => match pair.first() {
                    Some(CanonicalJsonValue::String(s)) => s.as_str(),
                    _ => return Err(bad("event reference")),
                },
                _ => return Err(bad("event reference")),
            };
            EventId::parse(id).map_err(|_| bad("event ID"))
        })
        .collect()
}

impl Pdu {
    /// Parses a stored PDU; `event_id` is stored beside it for room versions whose PDUs do
    /// not carry it.
    pub fn from_json(event_id: OwnedEventId, json: CanonicalJsonObject) -> Result<Self> {
        let str_field = |k: &str| match json.get(k) {
            Some(CanonicalJsonValue::String(s)) => Some(s.as_str()),
            _ => None,
        };
        let content = json
            .get("content")
            .cloned()
            .unwrap_or(CanonicalJsonValue::Object(Default::default()));
        let content = serde_json::value::to_raw_value(&content).map_err(|_| bad("content"))?;
        let redacts = match str_field("redacts") {
            Some(id) => Some(id.to_owned()),
            None => match json.get("content") {
                Some(CanonicalJsonValue::Object(c)) => match c.get("redacts") {
                    Some(CanonicalJsonValue::String(s)) => Some(s.clone()),
                    _ => None,
                },
                _ => None,
            },
        };
        Ok(Self {
            room_id: str_field("room_id")
                .map(RoomId::parse)
                .transpose()
                .map_err(|_| bad("room_id"))?,
            sender: UserId::parse(str_field("sender").ok_or_else(|| bad("sender"))?)
                .map_err(|_| bad("sender"))?,
            origin_server_ts: match json.get("origin_server_ts") {
                Some(CanonicalJsonValue::Integer(i)) => MilliSecondsSinceUnixEpoch(
                    UInt::try_from(i64::from(*i)).map_err(|_| bad("origin_server_ts"))?,
                ),
                _ => return Err(bad("origin_server_ts")),
            },
            event_type: str_field("type").ok_or_else(|| bad("type"))?.into(),
            state_key: str_field("state_key").map(str::to_owned),
            prev_events: reference_list(json.get("prev_events"))?,
            auth_events: reference_list(json.get("auth_events"))?,
            redacts: redacts
                .map(EventId::parse)
                .transpose()
                .map_err(|_| bad("redacts"))?,
            depth: match json.get("depth") {
                Some(CanonicalJsonValue::Integer(i)) => i64::from(*i),
                _ => 0,
            },
            content,
            event_id,
            json,
        })
    }

    pub fn content_json(&self) -> JsonValue {
        serde_json::from_str(self.content.get()).unwrap_or(JsonValue::Null)
    }

    pub fn is_state(&self) -> bool {
        self.state_key.is_some()
    }
}

/// What a local user asks to send.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub event_type: String,
    pub content: JsonValue,
    pub state_key: Option<String>,
    pub redacts: Option<OwnedEventId>,
    /// An application service's `ts` (timestamp massaging); None: now.
    pub origin_server_ts: Option<MilliSecondsSinceUnixEpoch>,
}

/// Where a new event goes in the DAG.
pub struct Placement<'a> {
    /// None only for the create event of a room version that derives the room ID from it.
    pub room_id: Option<&'a RoomId>,
    pub prev_events: &'a [OwnedEventId],
    pub auth_events: &'a [OwnedEventId],
    pub depth: i64,
}

fn to_canonical(value: &JsonValue) -> Result<CanonicalJsonValue> {
    CanonicalJsonValue::try_from(value.clone())
        .map_err(|e| Error::BadJson(format!("content is not canonical JSON: {e}")))
}

/// References as the room version writes them: IDs, or `[id, {}]` pairs in v1-v2 (the
/// hashes object is optional there; Synapse leaves it empty too).
fn references(refs: &[OwnedEventId], rules: &RoomVersionRules) -> CanonicalJsonValue {
    CanonicalJsonValue::Array(
        refs.iter()
            .map(|id| match rules.events_reference_format {
                EventsReferenceFormatVersion::V1 => CanonicalJsonValue::Array(vec![
                    CanonicalJsonValue::String(id.to_string()),
                    CanonicalJsonValue::Object(CanonicalJsonObject::new()),
                ]),
                _ => CanonicalJsonValue::String(id.to_string()),
            })
            .collect(),
    )
}

/// Builds, hashes and signs a PDU, and works out its event ID.
pub fn build(
    keys: &ServerKeys,
    server_name: &ruma::ServerName,
    rules: &RoomVersionRules,
    sender: &UserId,
    new: &NewEvent,
    place: &Placement<'_>,
    origin_server_ts: MilliSecondsSinceUnixEpoch,
) -> Result<Pdu> {
    use crate::limits::MAX_ID_BYTES;
    if new.event_type.len() > MAX_ID_BYTES {
        return Err(Error::EventTooLarge(format!(
            "event type is longer than {MAX_ID_BYTES} bytes"
        )));
    }
    if new
        .state_key
        .as_ref()
        .is_some_and(|k| k.len() > MAX_ID_BYTES)
    {
        return Err(Error::EventTooLarge(format!(
            "state key is longer than {MAX_ID_BYTES} bytes"
        )));
    }
    let mut obj = CanonicalJsonObject::new();
    let mut content = to_canonical(&new.content)?;
    if let (Some(redacts), true, CanonicalJsonValue::Object(c)) = (
        &new.redacts,
        rules.redaction.content_field_redacts,
        &mut content,
    ) {
        c.insert(
            "redacts".into(),
            CanonicalJsonValue::String(redacts.to_string()),
        );
    }
    obj.insert("content".into(), content);
    obj.insert(
        "type".into(),
        CanonicalJsonValue::String(new.event_type.clone()),
    );
    obj.insert(
        "sender".into(),
        CanonicalJsonValue::String(sender.to_string()),
    );
    obj.insert(
        "origin_server_ts".into(),
        CanonicalJsonValue::Integer(Int::from(origin_server_ts.0)),
    );
    obj.insert(
        "depth".into(),
        CanonicalJsonValue::Integer(Int::new_saturating(place.depth)),
    );
    obj.insert("prev_events".into(), references(place.prev_events, rules));
    obj.insert("auth_events".into(), references(place.auth_events, rules));
    if let Some(room_id) = place.room_id {
        obj.insert(
            "room_id".into(),
            CanonicalJsonValue::String(room_id.to_string()),
        );
    }
    if let Some(key) = &new.state_key {
        obj.insert("state_key".into(), CanonicalJsonValue::String(key.clone()));
    }
    if let Some(redacts) = &new.redacts
        && !rules.redaction.content_field_redacts
    {
        obj.insert(
            "redacts".into(),
            CanonicalJsonValue::String(redacts.to_string()),
        );
    }
    // Before room v3 the event ID is chosen by its server and is part of the PDU.
    let legacy_id = match rules.event_id_format {
        EventIdFormatVersion::V1 => {
            let id = format!("${}:{server_name}", crate::secrets::random_id(18));
            obj.insert("event_id".into(), CanonicalJsonValue::String(id.clone()));
            Some(id)
        }
        _ => None,
    };
    ruma::signatures::hash_and_sign_event(
        server_name.as_str(),
        keys.pair(),
        &mut obj,
        &rules.redaction,
    )
    .map_err(|e| match e {
        ruma::signatures::JsonError::PduTooLarge => {
            Error::EventTooLarge(format!("the event would be over {MAX_PDU_BYTES} bytes"))
        }
        e => Error::Internal(format!("signing event: {e}")),
    })?;
    let size = serde_json::to_vec(&obj)
        .map(|v| v.len())
        .unwrap_or(usize::MAX);
    if size > MAX_PDU_BYTES {
        return Err(Error::EventTooLarge(format!(
            "the event would be {size} bytes; at most {MAX_PDU_BYTES} are allowed"
        )));
    }
    let event_id = match legacy_id {
        Some(id) => id,
        None => {
            let hash = ruma::signatures::reference_hash(&obj, rules)
                .map_err(|e| Error::Internal(format!("reference hash: {e}")))?;
            format!("${hash}")
        }
    };
    let event_id =
        EventId::parse(&event_id).map_err(|e| Error::Internal(format!("event ID: {e}")))?;
    Pdu::from_json(event_id, obj)
}
