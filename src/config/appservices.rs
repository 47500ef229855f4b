//! `[appservices]`: application service registration files (Synapse's
//! `app_service_config_files` format, YAML), read and checked at start. A change needs a
//! restart. Every error names the file and the field.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::ConfigError;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppservicesConfig {
    /// Registration files, e.g. the `registration.yaml` a mautrix bridge generates.
    #[serde(default)]
    pub config_files: Vec<PathBuf>,
    /// Ask the appservice for one-time keys of its (exclusive) users' devices that have
    /// none left here (MSC3983), before the fallback key is handed out.
    #[serde(default)]
    pub forward_key_claims: bool,
    /// Ask the appservice for its (exclusive) users' device and cross-signing keys on
    /// every key query; its answer wins over what is stored, device by device (MSC3984).
    #[serde(default)]
    pub forward_key_queries: bool,
}

/// One namespace entry: a regular expression (matched from the start of the ID, as
/// Synapse matches) and whether the appservice claims it alone.
#[derive(Debug, Clone)]
pub struct Namespace {
    pub regex: regex::Regex,
    pub exclusive: bool,
}

#[derive(Debug, Clone, Default)]
pub struct Namespaces {
    pub users: Vec<Namespace>,
    pub aliases: Vec<Namespace>,
    pub rooms: Vec<Namespace>,
}

/// A loaded registration.
#[derive(Debug, Clone)]
pub struct Registration {
    pub id: String,
    /// Where transactions and queries go; None: the appservice only talks to us.
    pub url: Option<String>,
    pub as_token: String,
    pub hs_token: String,
    pub sender_localpart: String,
    pub namespaces: Namespaces,
    /// Whether its requests are rate limited (default true, as Synapse).
    pub rate_limited: bool,
    pub protocols: Vec<String>,
    /// Typing, receipts, presence and to-device messages in transactions (MSC2409).
    pub receive_ephemeral: bool,
    /// Device lists and one-time key counts of its users in transactions (MSC3202).
    pub device_info: bool,
    /// May manage its users' devices and act as one (MSC4190).
    pub device_management: bool,
    pub file: PathBuf,
}

#[derive(Deserialize)]
struct RawNamespace {
    regex: String,
    #[serde(default)]
    exclusive: bool,
}

#[derive(Deserialize, Default)]
struct RawNamespaces {
    #[serde(default)]
    users: Vec<RawNamespace>,
    #[serde(default)]
    aliases: Vec<RawNamespace>,
    #[serde(default)]
    rooms: Vec<RawNamespace>,
}

#[derive(Deserialize)]
struct RawRegistration {
    id: Option<String>,
    url: Option<String>,
    as_token: Option<String>,
    hs_token: Option<String>,
    sender_localpart: Option<String>,
    #[serde(default)]
    namespaces: RawNamespaces,
    rate_limited: Option<bool>,
    #[serde(default)]
    protocols: Option<Vec<String>>,
    receive_ephemeral: Option<bool>,
    #[serde(rename = "de.sorunome.msc2409.push_ephemeral")]
    push_ephemeral: Option<bool>,
    #[serde(rename = "org.matrix.msc3202")]
    msc3202: Option<bool>,
    #[serde(rename = "io.element.msc4190")]
    msc4190: Option<bool>,
}

impl AppservicesConfig {
    /// Reads and checks every registration file; duplicate IDs or tokens are refused.
    pub fn load(&self) -> Result<Vec<Registration>, ConfigError> {
        let mut loaded: Vec<Registration> = Vec::new();
        for file in &self.config_files {
            let registration = load_file(file)?;
            let clash = |what: &str| {
                ConfigError::new(
                    format!("appservices.config_files: {}", file.display()),
                    format!("{what} is already used by another registration"),
                )
            };
            for other in &loaded {
                if other.id == registration.id {
                    return Err(clash(&format!("id {:?}", registration.id)));
                }
                let tokens = [&other.as_token, &other.hs_token];
                if tokens.contains(&&registration.as_token)
                    || tokens.contains(&&registration.hs_token)
                {
                    return Err(clash("a token"));
                }
                if other.sender_localpart == registration.sender_localpart {
                    return Err(clash("sender_localpart"));
                }
            }
            loaded.push(registration);
        }
        Ok(loaded)
    }
}

fn load_file(file: &Path) -> Result<Registration, ConfigError> {
    let key = |field: &str| format!("appservices.config_files: {} `{field}`", file.display());
    let text = std::fs::read_to_string(file).map_err(|e| {
        ConfigError::new(
            format!("appservices.config_files: {}", file.display()),
            format!("cannot read it: {e}"),
        )
    })?;
    let raw: RawRegistration = serde_yaml_ng::from_str(&text).map_err(|e| {
        ConfigError::new(
            format!("appservices.config_files: {}", file.display()),
            format!("not a registration: {e}"),
        )
    })?;
    let required = |value: Option<String>, field: &str| {
        value
            .filter(|v| !v.trim().is_empty())
            .ok_or_else(|| ConfigError::new(key(field), "is required"))
    };
    let id = required(raw.id, "id")?;
    let as_token = required(raw.as_token, "as_token")?;
    let hs_token = required(raw.hs_token, "hs_token")?;
    let sender_localpart = required(raw.sender_localpart, "sender_localpart")?;
    if as_token == hs_token {
        return Err(ConfigError::new(
            key("hs_token"),
            "must differ from as_token",
        ));
    }
    // The spec's (historical) localpart grammar: printable ASCII, no colon.
    let grammar = sender_localpart
        .bytes()
        .all(|b| (0x21..=0x7e).contains(&b) && b != b':');
    if !grammar || ruma::UserId::parse(format!("@{sender_localpart}:a.example")).is_err() {
        return Err(ConfigError::new(
            key("sender_localpart"),
            format!("{sender_localpart:?} is not a valid localpart"),
        ));
    }
    let url = match raw.url {
        Some(url) if !url.trim().is_empty() => {
            let parsed = url::Url::parse(&url)
                .ok()
                .filter(|u| matches!(u.scheme(), "http" | "https"));
            if parsed.is_none() {
                return Err(ConfigError::new(
                    key("url"),
                    format!("{url:?} is not an http(s) URL"),
                ));
            }
            Some(url.trim_end_matches('/').to_owned())
        }
        _ => None,
    };
    let compile = |entries: Vec<RawNamespace>, field: &str| {
        entries
            .into_iter()
            .map(|n| {
                regex::Regex::new(&format!("^(?:{})", n.regex))
                    .map(|regex| Namespace {
                        regex,
                        exclusive: n.exclusive,
                    })
                    .map_err(|e| {
                        ConfigError::new(
                            key(&format!("namespaces.{field}")),
                            format!("bad regex {:?}: {e}", n.regex),
                        )
                    })
            })
            .collect::<Result<Vec<_>, _>>()
    };
    let namespaces = Namespaces {
        users: compile(raw.namespaces.users, "users")?,
        aliases: compile(raw.namespaces.aliases, "aliases")?,
        rooms: compile(raw.namespaces.rooms, "rooms")?,
    };
    Ok(Registration {
        id,
        url,
        as_token,
        hs_token,
        sender_localpart,
        namespaces,
        rate_limited: raw.rate_limited.unwrap_or(true),
        protocols: raw.protocols.unwrap_or_default(),
        receive_ephemeral: raw
            .receive_ephemeral
            .or(raw.push_ephemeral)
            .unwrap_or(false),
        device_info: raw.msc3202.unwrap_or(false),
        device_management: raw.msc4190.unwrap_or(false),
        file: file.to_owned(),
    })
}

impl Registration {
    fn matches(namespaces: &[Namespace], id: &str, exclusive_only: bool) -> bool {
        namespaces
            .iter()
            .any(|n| (!exclusive_only || n.exclusive) && n.regex.is_match(id))
    }

    /// Whether the user is the appservice's sender or in its user namespaces.
    pub fn is_interested_in_user(&self, user_id: &str, server_name: &str) -> bool {
        user_id == format!("@{}:{server_name}", self.sender_localpart)
            || Self::matches(&self.namespaces.users, user_id, false)
    }

    pub fn claims_user(&self, user_id: &str) -> bool {
        Self::matches(&self.namespaces.users, user_id, true)
    }

    pub fn is_interested_in_alias(&self, alias: &str) -> bool {
        Self::matches(&self.namespaces.aliases, alias, false)
    }

    pub fn claims_alias(&self, alias: &str) -> bool {
        Self::matches(&self.namespaces.aliases, alias, true)
    }

    pub fn is_interested_in_room(&self, room_id: &str) -> bool {
        Self::matches(&self.namespaces.rooms, room_id, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let file = dir.join(name);
        std::fs::write(&file, text).unwrap();
        file
    }

    const GOOD: &str = "id: irc\nurl: http://127.0.0.1:9999\nas_token: a1\nhs_token: h1\n\
        sender_localpart: _irc_bot\nnamespaces:\n  users:\n    - exclusive: true\n      regex: '@_irc_.*'\n";

    fn dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "axon-appservice-config-{}-{}",
            std::process::id(),
            crate::secrets::random_id(8)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_registration_loads_with_its_namespaces() {
        let dir = dir();
        let file = write(&dir, "irc.yaml", GOOD);
        let loaded = AppservicesConfig {
            config_files: vec![file],
            ..Default::default()
        }
        .load()
        .unwrap();
        let irc = &loaded[0];
        assert_eq!(irc.id, "irc");
        assert!(irc.rate_limited);
        assert!(irc.claims_user("@_irc_bob:example.org"));
        assert!(!irc.claims_user("@bob:example.org"));
        // Matched from the start, as Synapse matches.
        assert!(!irc.claims_user("@x@_irc_bob:example.org"));
        assert!(irc.is_interested_in_user("@_irc_bot:example.org", "example.org"));
    }

    #[test]
    fn bad_registrations_are_refused_naming_the_file_and_field() {
        let dir = dir();
        let cases = [
            (
                "regex.yaml",
                GOOD.replace("'@_irc_.*'", "'@_irc_(.*'"),
                "namespaces.users",
            ),
            ("token.yaml", GOOD.replace("as_token: a1\n", ""), "as_token"),
            (
                "url.yaml",
                GOOD.replace("http://127.0.0.1:9999", "ftp://x"),
                "url",
            ),
            (
                "sender.yaml",
                GOOD.replace("_irc_bot", "bad sender"),
                "sender_localpart",
            ),
        ];
        for (name, text, field) in cases {
            let file = write(&dir, name, &text);
            let e = AppservicesConfig {
                config_files: vec![file],
                ..Default::default()
            }
            .load()
            .unwrap_err();
            assert!(e.key.contains(name) && e.key.contains(field), "{e}");
        }
        let first = write(&dir, "one.yaml", GOOD);
        let second = write(&dir, "two.yaml", &GOOD.replace("id: irc", "id: other"));
        let e = AppservicesConfig {
            config_files: vec![first, second],
            ..Default::default()
        }
        .load()
        .unwrap_err();
        assert!(e.reason.contains("already used"), "{e}");
        let missing = AppservicesConfig {
            config_files: vec![dir.join("nope.yaml")],
            ..Default::default()
        }
        .load()
        .unwrap_err();
        assert!(missing.reason.contains("cannot read"), "{missing}");
    }
}
