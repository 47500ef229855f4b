//! Request forms older clients still send, which Synapse accepts and ruma's types do not.

use serde_json::{Value, json};

use super::extract::Patches;

/// For endpoints with user-interactive auth: a password stage naming the user in the
/// legacy `user` field (before `identifier`) gets the `identifier` it stands for.
pub const LEGACY_AUTH: Patches = Patches {
    request: Some(legacy_auth_user),
    response: None,
};

fn legacy_auth_user(body: &mut Value) -> crate::error::Result<()> {
    let Some(auth) = body.get_mut("auth").and_then(Value::as_object_mut) else {
        return Ok(());
    };
    if auth.contains_key("identifier") {
        return Ok(());
    }
    if let Some(user) = auth.get("user").and_then(Value::as_str).map(str::to_owned) {
        auth.insert(
            "identifier".into(),
            json!({ "type": "m.id.user", "user": user }),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_user_becomes_an_identifier() {
        let mut body =
            json!({ "auth": { "type": "m.login.password", "user": "@a:b", "password": "p" } });
        legacy_auth_user(&mut body).unwrap();
        assert_eq!(
            body["auth"]["identifier"],
            json!({ "type": "m.id.user", "user": "@a:b" })
        );
        let mut body = json!({ "auth": { "type": "m.login.password", "identifier": { "type": "m.id.thirdparty" }, "user": "x" } });
        legacy_auth_user(&mut body).unwrap();
        assert_eq!(body["auth"]["identifier"]["type"], "m.id.thirdparty");
        let mut body = json!({ "keys": [] });
        legacy_auth_user(&mut body).unwrap();
        assert_eq!(body, json!({ "keys": [] }));
    }
}
