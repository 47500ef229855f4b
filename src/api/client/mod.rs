//! Client-Server API handlers, one file per area of the spec.

use std::sync::Arc;

use axum::Router;

use crate::server::Homeserver;

mod account;
mod account_data;
mod admin;
mod appservice;
mod backup;
mod dehydrated;
mod devices;
mod directory;
mod discovery;
mod events;
pub(crate) mod keys;
mod legacy;
mod media;
mod presence;
mod profile;
mod push;
mod receipts;
mod relations;
mod reporting;
mod rooms;
mod search;
mod session;
mod sliding_sync;
mod spaces;
mod sync;
mod thirdparty;
mod threepid;
mod voip;

/// A stored millisecond timestamp as ruma's type (negative values cannot occur; dropped).
fn timestamp(ms: Option<i64>) -> Option<ruma::MilliSecondsSinceUnixEpoch> {
    ms.and_then(|ts| ruma::UInt::try_from(ts).ok())
        .map(ruma::MilliSecondsSinceUnixEpoch)
}

/// Every Client-Server endpoint axon serves.
pub fn routes(router: Router<Arc<Homeserver>>) -> Router<Arc<Homeserver>> {
    let router = discovery::routes(router);
    let router = account::routes(router);
    let router = session::routes(router);
    let router = devices::routes(router);
    let router = profile::routes(router);
    let router = account_data::routes(router);
    let router = threepid::routes(router);
    let router = thirdparty::routes(router);
    let router = rooms::routes(router);
    let router = events::routes(router);
    let router = directory::routes(router);
    let router = receipts::routes(router);
    let router = reporting::routes(router);
    let router = relations::routes(router);
    let router = spaces::routes(router);
    let router = sync::routes(router);
    let router = sliding_sync::routes(router);
    let router = legacy::routes(router);
    let router = voip::routes(router);
    let router = search::routes(router);
    let router = presence::routes(router);
    let router = keys::routes(router);
    let router = backup::routes(router);
    let router = dehydrated::routes(router);
    let router = push::routes(router);
    let router = media::routes(router);
    let router = appservice::routes(router);
    admin::routes(router)
}
