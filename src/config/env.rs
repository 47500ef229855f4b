//! `AXON_<SECTION>__<KEY>` environment overlay onto the TOML table.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer};

use super::ConfigError;

/// Variables with the prefix that are not configuration keys.
const NOT_CONFIG: &[&str] = &["AXON_CONFIG", "AXON_LOG"];

/// Sets the keys the environment names; returns them (dotted) with their raw values.
pub(super) fn overlay(
    table: &mut toml::Table,
    environment: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, ConfigError> {
    let mut set = BTreeMap::new();
    for (name, raw) in environment {
        let Some(rest) = name.strip_prefix("AXON_") else {
            continue;
        };
        if NOT_CONFIG.contains(&name.as_str()) || rest.is_empty() {
            continue;
        }
        let path: Vec<String> = rest
            .split("__")
            .map(|part| part.to_ascii_lowercase())
            .collect();
        if path.iter().any(String::is_empty) {
            return Err(ConfigError::new(name.clone(), "malformed variable name"));
        }
        let mut node = &mut *table;
        for section in &path[..path.len() - 1] {
            let entry = node
                .entry(section.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            node = match entry {
                toml::Value::Table(t) => t,
                _ => {
                    return Err(ConfigError::new(
                        path.join("."),
                        format!("{name} sets a key inside `{section}`, which is not a section"),
                    ));
                }
            };
        }
        node.insert(path[path.len() - 1].clone(), parse_env_value(raw));
        set.insert(path.join("."), raw.clone());
    }
    Ok(set)
}

/// Replaces the value at dotted `key` with the string `raw`; false if `key` is not there
/// or already a string.
pub(super) fn set_string(table: &mut toml::Table, key: &str, raw: &str) -> bool {
    let mut parts: Vec<&str> = key.split('.').collect();
    let Some(last) = parts.pop() else {
        return false;
    };
    let mut node = table;
    for part in parts {
        match node.get_mut(part) {
            Some(toml::Value::Table(t)) => node = t,
            _ => return false,
        }
    }
    match node.get_mut(last) {
        Some(value) if !value.is_str() => {
            *value = toml::Value::String(raw.to_owned());
            true
        }
        _ => false,
    }
}

/// Environment values are untyped: booleans, numbers and `[..]` arrays are read as TOML,
/// everything else is a string.
fn parse_env_value(raw: &str) -> toml::Value {
    let trimmed = raw.trim();
    if trimmed == "true" || trimmed == "false" {
        return toml::Value::Boolean(trimmed == "true");
    }
    if let Ok(i) = trimmed.parse::<i64>() {
        return toml::Value::Integer(i);
    }
    if let Ok(f) = trimmed.parse::<f64>()
        && trimmed.contains('.')
        && !trimmed.contains(':')
    {
        return toml::Value::Float(f);
    }
    if trimmed.starts_with('[')
        && let Ok(t) = format!("v = {trimmed}").parse::<toml::Table>()
        && let Some(v) = t.get("v")
    {
        return v.clone();
    }
    toml::Value::String(raw.to_owned())
}

/// Finds the dotted key of the line a TOML parse error points at, so the message names it.
pub(super) fn toml_error_key(text: &str, err: &toml::de::Error) -> String {
    let Some(span) = err.span() else {
        return "(file)".to_owned();
    };
    let mut section = String::new();
    let mut key = None;
    let mut offset = 0;
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('[') {
            section = trimmed
                .trim_matches(|c| c == '[' || c == ']')
                .trim()
                .to_owned();
        }
        if offset + line.len() >= span.start {
            key = trimmed.split('=').next().map(|k| k.trim().to_owned());
            break;
        }
        offset += line.len() + 1;
    }
    match key {
        Some(k) if !k.is_empty() && !k.starts_with('[') => {
            if section.is_empty() {
                k
            } else {
                format!("{section}.{k}")
            }
        }
        _ if !section.is_empty() => section,
        _ => "(file)".to_owned(),
    }
}

/// A string that may arrive as a number from the environment (`AXON_..._SECRET=1234`).
pub(super) fn opt_string_or_number<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum StrOrNum {
        S(String),
        I(i64),
        F(f64),
    }
    Ok(
        Option::<StrOrNum>::deserialize(deserializer)?.map(|v| match v {
            StrOrNum::S(s) => s,
            StrOrNum::I(i) => i.to_string(),
            StrOrNum::F(f) => f.to_string(),
        }),
    )
}
