//! The public room directory across servers: this server's list served to others (when
//! `federation.public_rooms` allows it), and another server's asked for a client's
//! `/publicRooms?server=`.

use ruma::{
    ServerName,
    api::federation::directory::{get_public_rooms, get_public_rooms_filtered},
    directory::Filter,
};
use serde_json::Value as JsonValue;

use crate::{
    error::{Error, Result},
    rooms::directory::{self, Listing},
    server::Homeserver,
};

/// Most rooms one page asks another server for.
const MAX_REMOTE_LIMIT: usize = 500;

/// The client `/publicRooms`: this server's list, or `server`'s.
pub async fn public_rooms(
    hs: &Homeserver,
    server: Option<&ServerName>,
    limit: Option<usize>,
    since: Option<&str>,
    search: Option<&str>,
    network: &ruma::directory::RoomNetwork,
) -> Result<Listing> {
    let Some(server) = server.filter(|s| *s != hs.config.server_name()) else {
        return directory::public_rooms(hs, limit, since, search, network).await;
    };
    if !hs.config.federation_enabled() {
        return Err(Error::InvalidParam(
            "other servers' room directories need federation, which is off here".into(),
        ));
    }
    let federation = super::state(hs)?;
    let limit = limit.map(|l| l.clamp(1, MAX_REMOTE_LIMIT) as u32);
    let refused = |e: super::client::SendError| match e {
        super::client::SendError::Refused { status: 403, .. } => {
            Error::Forbidden(format!("{server} does not share its public room list"))
        }
        other => other.into(),
    };
    let (chunk, next_batch, prev_batch, total) = if let Some(term) = search {
        let mut request = get_public_rooms_filtered::v1::Request::new();
        request.limit = limit.map(Into::into);
        request.since = since.map(str::to_owned);
        let mut filter = Filter::new();
        filter.generic_search_term = Some(term.to_owned());
        request.filter = filter;
        let a = federation
            .client
            .send(hs.keys.pair(), server, request)
            .await
            .map_err(refused)?;
        (
            a.chunk,
            a.next_batch,
            a.prev_batch,
            a.total_room_count_estimate,
        )
    } else {
        let mut request = get_public_rooms::v1::Request::new();
        request.limit = limit.map(Into::into);
        request.since = since.map(str::to_owned);
        let a = federation
            .client
            .send(hs.keys.pair(), server, request)
            .await
            .map_err(refused)?;
        (
            a.chunk,
            a.next_batch,
            a.prev_batch,
            a.total_room_count_estimate,
        )
    };
    let chunk: Vec<JsonValue> = chunk
        .iter()
        .filter_map(|c| serde_json::to_value(c).ok())
        .collect();
    Ok(Listing {
        total: total
            .and_then(|t| usize::try_from(u64::from(t)).ok())
            .unwrap_or(chunk.len()),
        chunk,
        next_batch,
        prev_batch,
    })
}

/// `GET/POST /_matrix/federation/v1/publicRooms`: this server's list, when it is shared.
pub async fn public_rooms_for_server(
    hs: &Homeserver,
    limit: Option<usize>,
    since: Option<&str>,
    search: Option<&str>,
) -> Result<Listing> {
    if !hs.config.federation.public_rooms {
        return Err(Error::Forbidden(
            "this server does not share its public room list".into(),
        ));
    }
    directory::public_rooms(
        hs,
        limit,
        since,
        search,
        &ruma::directory::RoomNetwork::Matrix,
    )
    .await
}
