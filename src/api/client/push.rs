//! Push rules: `/pushrules`.

use std::sync::Arc;

use axum::Router;
use ruma::api::client::push::{
    delete_pushrule, get_notifications, get_pushers, get_pushrule, get_pushrule_actions,
    get_pushrule_enabled, get_pushrules_all, get_pushrules_global_scope, set_pusher, set_pushrule,
    set_pushrule_actions, set_pushrule_enabled,
};

use crate::{
    error::{Error, Result},
    http::{
        Ruma,
        error::ApiError,
        extract::{Authed, Patches, route_patched},
        route,
    },
    push::rules as domain,
    server::Homeserver,
};

pub fn routes(router: Router<Arc<Homeserver>>) -> Router<Arc<Homeserver>> {
    let router = route(router, all);
    let router = route(router, global);
    let router = route(router, get_rule);
    let router = route(router, set_rule);
    let router = route(router, delete_rule);
    let router = route(router, get_enabled);
    let router = route(router, set_enabled);
    let router = route(router, get_actions);
    let router = route(router, set_actions);
    let router = route(router, list_pushers);
    let router = route(router, set_pusher);
    let router = route_patched(
        router,
        notifications,
        Patches {
            request: None,
            response: Some(notifications_profile_tag),
        },
    );
    // Paths the typed routes above do not match: a kind's rule list (`.../{kind}/`, as
    // Synapse serves it) and malformed paths, which answer 400 rather than 404.
    router
        .route(
            "/_matrix/client/v3/pushrules/",
            axum::routing::put(no_scope).delete(no_scope),
        )
        .route(
            "/_matrix/client/r0/pushrules/",
            axum::routing::put(no_scope).delete(no_scope),
        )
        .route(
            "/_matrix/client/v3/pushrules/{*rest}",
            axum::routing::any(other_rule_paths),
        )
        .route(
            "/_matrix/client/r0/pushrules/{*rest}",
            axum::routing::any(other_rule_paths),
        )
}

/// Each notification names its `profile_tag`, null when it has none (as Synapse; ruma
/// leaves the field out).
fn notifications_profile_tag(response: &mut serde_json::Value) {
    let list = response
        .get_mut("notifications")
        .and_then(|n| n.as_array_mut());
    for n in list.into_iter().flatten() {
        if let Some(n) = n.as_object_mut() {
            n.entry("profile_tag").or_insert(serde_json::Value::Null);
        }
    }
}

async fn no_scope() -> ApiError {
    Error::Unrecognized("a push rule path needs a scope, a kind and a rule ID".into()).into()
}

const RULE_KINDS: &[&str] = &["override", "content", "room", "sender", "underride"];

async fn other_rule_paths(
    axum::extract::State(hs): axum::extract::State<Arc<Homeserver>>,
    method: axum::http::Method,
    Authed(requester): Authed,
    axum::extract::Path(rest): axum::extract::Path<String>,
) -> std::result::Result<axum::Json<serde_json::Value>, ApiError> {
    let unrecognized = |what: &str| -> ApiError {
        Error::Unrecognized(format!("{what} in push rule path /pushrules/{rest}")).into()
    };
    let segments: Vec<&str> = rest.split('/').collect();
    match segments.as_slice() {
        [scope, ..] if *scope != "global" => Err(unrecognized("unknown or missing scope")),
        ["global"] => Err(unrecognized("missing trailing slash")),
        ["global", kind, ..] if !RULE_KINDS.contains(kind) => {
            Err(unrecognized("unknown or missing rule kind"))
        }
        ["global", _] => Err(unrecognized("missing trailing slash")),
        ["global", kind, ""] if method == axum::http::Method::GET => {
            let rules = domain::ruleset(&hs, &requester.user_id).await?;
            let json = serde_json::to_value(rules).map_err(|e| Error::Internal(e.to_string()))?;
            Ok(axum::Json(json[*kind].clone()))
        }
        ["global", _, ""] => Err(unrecognized("missing rule ID")),
        ["global", _, _, attr, ..] => Err(unrecognized(&format!("unknown attribute {attr:?}"))),
        _ => Err(unrecognized("unsupported method")),
    }
}

async fn list_pushers(
    hs: Arc<Homeserver>,
    req: Ruma<get_pushers::v3::Request>,
) -> Result<get_pushers::v3::Response> {
    let stored = crate::push::pushers::pushers(&hs, req.requester()?).await?;
    let pushers = stored
        .into_iter()
        .map(|p| {
            serde_json::from_value(p)
                .map_err(|e| crate::error::Error::Internal(format!("stored pusher: {e}")))
        })
        .collect::<Result<_>>()?;
    Ok(get_pushers::v3::Response::new(pushers))
}

async fn set_pusher(
    hs: Arc<Homeserver>,
    req: Ruma<set_pusher::v3::Request>,
) -> Result<set_pusher::v3::Response> {
    use set_pusher::v3::PusherAction;
    let requester = req.requester()?;
    match &req.body.action {
        PusherAction::Post(post) => {
            let json = serde_json::to_value(&post.pusher)
                .map_err(|e| crate::error::Error::Internal(e.to_string()))?;
            crate::push::pushers::set_pusher(&hs, requester, &json, post.append).await?
        }
        PusherAction::Delete(ids) => {
            crate::push::pushers::delete_pusher(&hs, requester, &ids.app_id, &ids.pushkey).await?
        }
        _ => {
            return Err(crate::error::Error::InvalidParam(
                "unknown pusher action".into(),
            ));
        }
    }
    Ok(set_pusher::v3::Response::new())
}

async fn notifications(
    hs: Arc<Homeserver>,
    req: Ruma<get_notifications::v3::Request>,
) -> Result<get_notifications::v3::Response> {
    use crate::api::client::keys::raw_of;
    let b = &req.body;
    let (page, next) = crate::rooms::notifications::notifications(
        &hs,
        req.requester()?,
        b.from.as_deref(),
        b.limit.map(u64::from),
        b.only.as_deref(),
    )
    .await?;
    let mut out = Vec::new();
    for n in page {
        let actions = serde_json::from_value(n.actions)
            .map_err(|e| crate::error::Error::Internal(format!("stored actions: {e}")))?;
        let room_id = ruma::OwnedRoomId::try_from(n.room_id)
            .map_err(|e| crate::error::Error::Internal(e.to_string()))?;
        out.push(get_notifications::v3::Notification::new(
            actions,
            raw_of(&n.event)?,
            n.read,
            room_id,
            ruma::MilliSecondsSinceUnixEpoch(ruma::UInt::try_from(n.ts.max(0)).unwrap_or_default()),
        ));
    }
    let mut response = get_notifications::v3::Response::new(out);
    response.next_token = next;
    Ok(response)
}

async fn all(
    hs: Arc<Homeserver>,
    req: Ruma<get_pushrules_all::v3::Request>,
) -> Result<get_pushrules_all::v3::Response> {
    let rules = domain::ruleset(&hs, &req.requester()?.user_id).await?;
    Ok(get_pushrules_all::v3::Response::new(rules))
}

async fn global(
    hs: Arc<Homeserver>,
    req: Ruma<get_pushrules_global_scope::v3::Request>,
) -> Result<get_pushrules_global_scope::v3::Response> {
    let rules = domain::ruleset(&hs, &req.requester()?.user_id).await?;
    Ok(get_pushrules_global_scope::v3::Response::new(rules))
}

async fn get_rule(
    hs: Arc<Homeserver>,
    req: Ruma<get_pushrule::v3::Request>,
) -> Result<get_pushrule::v3::Response> {
    let b = &req.body;
    let rule = domain::get_rule(&hs, &req.requester()?.user_id, b.kind.clone(), &b.rule_id).await?;
    Ok(get_pushrule::v3::Response::new(rule.into()))
}

async fn set_rule(
    hs: Arc<Homeserver>,
    req: Ruma<set_pushrule::v3::Request>,
) -> Result<set_pushrule::v3::Response> {
    let b = &req.body;
    domain::set_rule(
        &hs,
        &req.requester()?.user_id,
        b.rule.clone(),
        b.before.as_deref(),
        b.after.as_deref(),
    )
    .await?;
    Ok(set_pushrule::v3::Response::new())
}

async fn delete_rule(
    hs: Arc<Homeserver>,
    req: Ruma<delete_pushrule::v3::Request>,
) -> Result<delete_pushrule::v3::Response> {
    let b = &req.body;
    domain::delete_rule(&hs, &req.requester()?.user_id, b.kind.clone(), &b.rule_id).await?;
    Ok(delete_pushrule::v3::Response::new())
}

async fn get_enabled(
    hs: Arc<Homeserver>,
    req: Ruma<get_pushrule_enabled::v3::Request>,
) -> Result<get_pushrule_enabled::v3::Response> {
    let b = &req.body;
    let rule = domain::get_rule(&hs, &req.requester()?.user_id, b.kind.clone(), &b.rule_id).await?;
    Ok(get_pushrule_enabled::v3::Response::new(rule.enabled()))
}

async fn set_enabled(
    hs: Arc<Homeserver>,
    req: Ruma<set_pushrule_enabled::v3::Request>,
) -> Result<set_pushrule_enabled::v3::Response> {
    let b = &req.body;
    domain::set_enabled(
        &hs,
        &req.requester()?.user_id,
        b.kind.clone(),
        &b.rule_id,
        b.enabled,
    )
    .await?;
    Ok(set_pushrule_enabled::v3::Response::new())
}

async fn get_actions(
    hs: Arc<Homeserver>,
    req: Ruma<get_pushrule_actions::v3::Request>,
) -> Result<get_pushrule_actions::v3::Response> {
    let b = &req.body;
    let rule = domain::get_rule(&hs, &req.requester()?.user_id, b.kind.clone(), &b.rule_id).await?;
    Ok(get_pushrule_actions::v3::Response::new(
        rule.actions().to_vec(),
    ))
}

async fn set_actions(
    hs: Arc<Homeserver>,
    req: Ruma<set_pushrule_actions::v3::Request>,
) -> Result<set_pushrule_actions::v3::Response> {
    let b = &req.body;
    domain::set_actions(
        &hs,
        &req.requester()?.user_id,
        b.kind.clone(),
        &b.rule_id,
        b.actions.clone(),
    )
    .await?;
    Ok(set_pushrule_actions::v3::Response::new())
}
