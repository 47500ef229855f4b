//! Push rules (`/pushrules`). A user's rules are kept as the `m.push_rules` account data
//! (so clients get changes through /sync), and are always read merged over the current
//! server-default ruleset (ruma's and the legacy mention rules), so that new default rules reach existing users while
//! their own rules and their changes to default rules (enabled, actions) stay.

use ruma::{
    UserId,
    push::{
        Action, AnyPushRule, InsertPushRuleError, NewPushRule, RemovePushRuleError, RuleKind,
        Ruleset,
    },
};
use serde_json::{Value as JsonValue, json};

use crate::{
    error::{Error, Result},
    server::Homeserver,
    users::{Requester, account_data},
};

pub const ACCOUNT_DATA_TYPE: &str = "m.push_rules";

/// The server-default rules: the spec's (ruma's), plus the mention rules by display name,
/// user name and `@room` that Synapse still serves. Messages from bridges, bots and older
/// clients carry no `m.mentions`; without these rules they would never highlight (the
/// evaluator skips them for events that do carry `m.mentions`).
fn server_default(user_id: &UserId) -> Ruleset {
    let (display_name, room_notif, user_name) = &*LEGACY_MENTION_RULES;
    let mut rules = Ruleset::server_default(user_id);
    let mut overrides: Vec<_> = std::mem::take(&mut rules.override_).into_iter().collect();
    for (after, legacy) in [
        (".m.rule.is_user_mention", display_name),
        (".m.rule.is_room_mention", room_notif),
    ] {
        let at = overrides
            .iter()
            .position(|r| r.rule_id == after)
            .map_or(overrides.len(), |i| i + 1);
        overrides.insert(at, legacy.clone());
    }
    rules.override_ = overrides.into_iter().collect();
    let mut user_name = user_name.clone();
    user_name.pattern = user_id.localpart().to_owned();
    rules.content.insert(user_name);
    rules
}

/// `.m.rule.contains_display_name`, `.m.rule.roomnotif` and `.m.rule.contains_user_name`
/// (its pattern set per user), as Synapse defines them.
static LEGACY_MENTION_RULES: std::sync::LazyLock<(
    ruma::push::ConditionalPushRule,
    ruma::push::ConditionalPushRule,
    ruma::push::PatternedPushRule,
)> = std::sync::LazyLock::new(|| {
    let highlight_with_sound = json!(["notify", { "set_tweak": "sound", "value": "default" },
                                      { "set_tweak": "highlight" }]);
    let parse = |json: JsonValue| serde_json::from_value(json).expect("a well-formed rule");
    (
        parse(json!({
            "rule_id": ".m.rule.contains_display_name", "default": true, "enabled": true,
            "conditions": [{ "kind": "contains_display_name" }],
            "actions": highlight_with_sound,
        })),
        parse(json!({
            "rule_id": ".m.rule.roomnotif", "default": true, "enabled": true,
            "conditions": [
                { "kind": "event_match", "key": "content.body", "pattern": "@room" },
                { "kind": "sender_notification_permission", "key": "room" },
            ],
            "actions": ["notify", { "set_tweak": "highlight" }],
        })),
        serde_json::from_value(json!({
            "rule_id": ".m.rule.contains_user_name", "default": true, "enabled": true,
            "pattern": "", "actions": highlight_with_sound,
        }))
        .expect("a well-formed rule"),
    )
});

/// The effective ruleset from stored `m.push_rules` content (None: never changed).
pub(crate) fn effective(user_id: &UserId, stored: Option<&JsonValue>) -> Ruleset {
    let default = server_default(user_id);
    match stored.and_then(|c| serde_json::from_value::<Ruleset>(c["global"].clone()).ok()) {
        Some(mut rules) => {
            rules.update_with_server_default(default);
            rules
        }
        None => default,
    }
}

/// A user's push rules as they apply now.
pub async fn ruleset(hs: &Homeserver, user_id: &UserId) -> Result<Ruleset> {
    let stored = hs
        .storage
        .account_data(user_id.as_str(), "", ACCOUNT_DATA_TYPE)
        .await?;
    Ok(effective(user_id, stored.as_ref()))
}

/// Global account data as clients read it: `m.push_rules` is the user's rules merged over
/// the server defaults, other types are as stored.
pub async fn global_account_data(
    hs: &Homeserver,
    requester: &Requester,
    user_id: &UserId,
    data_type: &str,
) -> Result<JsonValue> {
    if data_type != ACCOUNT_DATA_TYPE {
        return account_data::get(hs, requester, user_id, None, data_type).await;
    }
    account_data::check_self(requester, user_id, "account data")?;
    account_data_content(hs, user_id).await
}

/// The `m.push_rules` account data content of a user, as clients read it.
pub async fn account_data_content(hs: &Homeserver, user_id: &UserId) -> Result<JsonValue> {
    let rules = ruleset(hs, user_id).await?;
    Ok(json!({ "global": rules }))
}

/// Applies `change` to the user's rules and stores the result, atomically per user.
async fn modify(
    hs: &Homeserver,
    user_id: &UserId,
    change: impl FnOnce(&mut Ruleset) -> Result<()>,
) -> Result<()> {
    hs.storage
        .update_global_account_data(user_id.as_str(), ACCOUNT_DATA_TYPE, |stored| {
            let mut rules = effective(user_id, stored.as_ref());
            change(&mut rules)?;
            Ok::<_, Error>(json!({ "global": rules }))
        })
        .await??;
    Ok(())
}

fn not_found() -> Error {
    Error::NotFound("no such push rule".into())
}

/// `GET /pushrules/global/{kind}/{ruleId}`.
pub async fn get_rule(
    hs: &Homeserver,
    user_id: &UserId,
    kind: RuleKind,
    rule_id: &str,
) -> Result<AnyPushRule> {
    let rules = ruleset(hs, user_id).await?;
    rules
        .get(kind, rule_id)
        .map(|r| r.to_owned())
        .ok_or_else(not_found)
}

/// `PUT /pushrules/global/{kind}/{ruleId}`: adds or replaces a user rule, placed
/// relative to `before` / `after` (user rules of the same kind only).
pub async fn set_rule(
    hs: &Homeserver,
    user_id: &UserId,
    rule: NewPushRule,
    before: Option<&str>,
    after: Option<&str>,
) -> Result<()> {
    check_actions(match &rule {
        NewPushRule::Override(r) | NewPushRule::Underride(r) => &r.actions,
        NewPushRule::Content(r) => &r.actions,
        NewPushRule::Room(r) => &r.actions,
        NewPushRule::Sender(r) => &r.actions,
        _ => &[],
    })?;
    modify(hs, user_id, |rules| {
        rules.insert(rule, after, before).map_err(|e| match e {
            InsertPushRuleError::UnknownRuleId => {
                Error::NotFound("the before or after rule does not exist".into())
            }
            other => Error::InvalidParam(other.to_string()),
        })
    })
    .await
}

/// `DELETE /pushrules/global/{kind}/{ruleId}`: user rules only.
pub async fn delete_rule(
    hs: &Homeserver,
    user_id: &UserId,
    kind: RuleKind,
    rule_id: &str,
) -> Result<()> {
    modify(hs, user_id, |rules| {
        rules.remove(kind, rule_id).map_err(|e| match e {
            RemovePushRuleError::NotFound => not_found(),
            other => Error::InvalidParam(other.to_string()),
        })
    })
    .await
}

/// `PUT /pushrules/global/{kind}/{ruleId}/enabled`.
pub async fn set_enabled(
    hs: &Homeserver,
    user_id: &UserId,
    kind: RuleKind,
    rule_id: &str,
    enabled: bool,
) -> Result<()> {
    modify(hs, user_id, |rules| {
        rules
            .set_enabled(kind, rule_id, enabled)
            .map_err(|_| not_found())
    })
    .await
}

/// `PUT /pushrules/global/{kind}/{ruleId}/actions`.
pub async fn set_actions(
    hs: &Homeserver,
    user_id: &UserId,
    kind: RuleKind,
    rule_id: &str,
    actions: Vec<Action>,
) -> Result<()> {
    check_actions(&actions)?;
    modify(hs, user_id, |rules| {
        rules
            .set_actions(kind, rule_id, actions)
            .map_err(|_| not_found())
    })
    .await
}

/// Actions this server knows how to carry out; others are refused rather than ignored.
/// The legacy `dont_notify` and `coalesce` are accepted (and mean nothing), as Synapse does.
fn check_actions(actions: &[Action]) -> Result<()> {
    for action in actions {
        if matches!(action, Action::Notify | Action::SetTweak(_)) {
            continue;
        }
        let json = serde_json::to_value(action).unwrap_or_default();
        if json != "dont_notify" && json != "coalesce" {
            return Err(Error::InvalidParam(format!(
                "unknown push rule action {json}"
            )));
        }
    }
    Ok(())
}
