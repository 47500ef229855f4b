//! Push rules: `/pushrules`.

use std::sync::Arc;

use axum::Router;
use ruma::api::client::push::{
    delete_pushrule, get_notifications, get_pushers, get_pushrule, get_pushrule_actions,
    get_pushrule_enabled, get_pushrules_all, get_pushrules_global_scope, set_pusher, set_pushrule,
    set_pushrule_actions, set_pushrule_enabled,
};

use crate::{
    error::Result,
    http::{Ruma, route},
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
    route(router, notifications)
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
    let (page, next) = crate::push::notifications::notifications(
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
