use std::collections::BTreeMap;

use super::*;

fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn load_str(toml: &str, pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("axon.toml");
    std::fs::write(&path, toml).unwrap();
    Config::load_from(Some(&path), &env(pairs))
}

#[test]
fn defaults_and_env_overlay() {
    let c = Config::load_from(
        None,
        &env(&[
            ("AXON_SERVER_NAME", "example.org"),
            ("AXON_LISTEN__CLIENT", "0.0.0.0:9000"),
            ("AXON_REGISTRATION__MODE", "open"),
            ("AXON_RATE_LIMITS__ENABLED", "false"),
            ("AXON_DATABASE__URL", "postgres://u@h/db"),
            ("AXON_REGISTRATION__SHARED_SECRET", "1234"),
        ]),
    )
    .unwrap();
    assert_eq!(c.server_name.as_str(), "example.org");
    assert_eq!(c.listen.client.port(), 9000);
    assert_eq!(c.registration.mode, RegistrationMode::Open);
    assert!(!c.rate_limits.enabled);
    assert_eq!(c.database.url.as_deref(), Some("postgres://u@h/db"));
    assert_eq!(c.registration.shared_secret.as_deref(), Some("1234"));
}

#[test]
fn default_registration_is_closed() {
    let c = load_str("server_name = \"localhost\"\n", &[]).unwrap();
    assert_eq!(c.registration.mode, RegistrationMode::Closed);
    assert_eq!(c.listen.client, "127.0.0.1:8008".parse().unwrap());
}

#[test]
fn errors_name_the_key() {
    let e = load_str(
        "server_name = \"localhost\"\n[registration]\nmode = \"sometimes\"\n",
        &[],
    )
    .unwrap_err();
    assert_eq!(e.key, "registration.mode");

    let e = load_str(
        "server_name = \"localhost\"\n[listen]\nclient = \"nowhere\"\n",
        &[],
    )
    .unwrap_err();
    assert_eq!(e.key, "listen.client");

    let e = load_str("server_name = \"bad name!\"\n", &[]).unwrap_err();
    assert_eq!(e.key, "server_name");

    let e = load_str("server_name = \"localhost\"\nunknown_key = 1\n", &[]).unwrap_err();
    assert!(e.reason.contains("unknown_key"), "{e}");

    let e = load_str(
        "server_name = \"localhost\"\n[limits]\nmax_request_size = 5\n",
        &[],
    )
    .unwrap_err();
    assert_eq!(e.key, "limits.max_request_size");

    for key in ["max_pending_writes", "max_pending_writes_per_room"] {
        let e = load_str(
            &format!("server_name = \"localhost\"\n[limits]\n{key} = 0\n"),
            &[],
        )
        .unwrap_err();
        assert_eq!(e.key, format!("limits.{key}"));
    }

    let e = load_str(
        "server_name = \"localhost\"\n[registration]\nmode = = 1\n",
        &[],
    )
    .unwrap_err();
    assert_eq!(e.key, "registration.mode");

    let e = load_str("", &[]).unwrap_err();
    assert!(e.reason.contains("server_name"), "{e}");

    let e = Config::load_from(
        None,
        &env(&[
            ("AXON_SERVER_NAME", "x"),
            ("AXON_RATE_LIMITS__ENABLED", "maybe"),
        ]),
    )
    .unwrap_err();
    assert_eq!(e.key, "rate_limits.enabled");
}

#[test]
fn token_mode_needs_tokens() {
    let e = load_str(
        "server_name = \"localhost\"\n[registration]\nmode = \"token\"\n",
        &[],
    )
    .unwrap_err();
    assert_eq!(e.key, "registration.tokens");
}

#[test]
fn shipped_config_files_parse() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let example = Config::load_from(
        Some(&root.join("config/axon.example.toml")),
        &BTreeMap::new(),
    )
    .expect("config/axon.example.toml");
    assert_eq!(example.registration.mode, RegistrationMode::Closed);
    assert_eq!(example.rate_limits.requests.burst, 50);
    assert!(example.presence.enabled);
    assert!(example.outbound.allow_ranges.is_empty());
    let local = Config::load_from(Some(&root.join("config/local.toml")), &BTreeMap::new())
        .expect("config/local.toml");
    assert_eq!(local.registration.mode, RegistrationMode::Open);
    assert_eq!(local.server_name.as_str(), "localhost");
}

#[test]
fn presence_and_outbound_sections() {
    let c = load_str(
        "server_name = \"localhost\"\n",
        &[
            ("AXON_OUTBOUND__ALLOW_RANGES", "127.0.0.0/8,10.0.0.0/8"),
            ("AXON_PRESENCE__ENABLED", "false"),
            ("AXON_PRESENCE__IDLE_AFTER_SECS", "60"),
        ],
    )
    .unwrap();
    assert_eq!(c.outbound.allow_ranges.len(), 2);
    assert!(!c.presence.enabled);
    assert_eq!(c.presence.idle_after_secs, 60);
    assert_eq!(c.presence.offline_after_secs, 30);
    let e = load_str(
        "server_name = \"localhost\"\n",
        &[("AXON_OUTBOUND__ALLOW_RANGES", "10.0.0.0/99")],
    )
    .unwrap_err();
    assert!(e.key.contains("allow_ranges"), "{e}");
    let e = load_str(
        "server_name = \"localhost\"\n[presence]\noffline_after_secs = 0\n",
        &[],
    )
    .unwrap_err();
    assert_eq!(e.key, "presence.offline_after_secs");
}

#[test]
fn media_s3_section_is_checked_and_its_secret_not_logged() {
    let c = load_str(
        "server_name = \"example.org\"\n[media.s3]\nbucket = \"b\"\nendpoint = \"http://minio:9000\"\naccess_key_id = \"id\"\nsecret_access_key = \"hunter2\"\npath_style = true\n",
        &[],
    )
    .unwrap();
    let s3 = c.media.s3.as_ref().unwrap();
    assert_eq!((s3.region.as_str(), s3.path_style), ("us-east-1", true));
    assert!(!format!("{c:?}").contains("hunter2"));

    let err = load_str(
        "server_name = \"example.org\"\n[media.s3]\nbucket = \"b\"\nendpoint = \"minio:9000\"\n",
        &[],
    )
    .unwrap_err();
    assert_eq!(err.key, "media.s3.endpoint");
    let err = load_str(
        "server_name = \"example.org\"\n[media.s3]\nbucket = \"\"\n",
        &[],
    )
    .unwrap_err();
    assert_eq!(err.key, "media.s3.bucket");
}

#[test]
fn environment_values_take_the_type_of_their_key() {
    // A room version looks like a number but is a string.
    let c = load_str(
        "server_name = \"localhost\"\n",
        &[
            ("AXON_ROOMS__DEFAULT_VERSION", "10"),
            ("AXON_LIMITS__MAX_FILTERS", "7"),
        ],
    )
    .unwrap();
    assert_eq!(c.rooms.default_version.as_str(), "10");
    assert_eq!(c.limits.max_filters, 7);
    // A string where a number belongs is still an error naming the key.
    let e = load_str(
        "server_name = \"localhost\"\n",
        &[("AXON_LIMITS__MAX_FILTERS", "many")],
    )
    .unwrap_err();
    assert!(e.to_string().contains("limits.max_filters"), "{e}");
}

#[test]
fn the_unauthenticated_budget_holds_at_least_one_body() {
    let e = load_str(
        "server_name = \"localhost\"\n",
        &[
            ("AXON_LIMITS__MAX_UNAUTHENTICATED_REQUEST_SIZE", "65536"),
            ("AXON_LIMITS__MAX_UNAUTHENTICATED_BYTES_IN_FLIGHT", "4096"),
        ],
    )
    .unwrap_err();
    assert!(
        e.to_string()
            .contains("limits.max_unauthenticated_bytes_in_flight"),
        "{e}"
    );
}

#[test]
fn support_contacts_and_voip_are_checked() {
    let ok = load_str(
        r#"
server_name = "example.org"
[well_known]
support_page = "https://example.org/help"
support_contacts = [{ role = "m.role.admin", matrix_id = "@admin:example.org" }]
[voip]
turn_uris = ["turn:turn.example.org"]
turn_shared_secret = "s"
"#,
        &[],
    )
    .unwrap();
    assert_eq!(ok.well_known.support_contacts[0].role, "m.role.admin");
    assert_eq!(ok.voip.turn_user_lifetime_secs, 86_400);
    let nobody = load_str(
        "server_name = \"example.org\"\n[well_known]\nsupport_contacts = [{ role = \"m.role.admin\" }]\n",
        &[],
    )
    .unwrap_err();
    assert_eq!(nobody.key, "well_known.support_contacts");
    let bad_id = load_str(
        "server_name = \"example.org\"\n[well_known]\nsupport_contacts = [{ role = \"m.role.admin\", matrix_id = \"admin\" }]\n",
        &[],
    )
    .unwrap_err();
    assert_eq!(bad_id.key, "well_known.support_contacts");
    let both = load_str(
        "server_name = \"example.org\"\n[voip]\nturn_shared_secret = \"s\"\nturn_username = \"u\"\n",
        &[],
    )
    .unwrap_err();
    assert_eq!(both.key, "voip.turn_username");
}
