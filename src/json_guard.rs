//! Structural limits on JSON before anything parses or stores it: nesting depth, and no
//! NUL characters (`\u0000`), which PostgreSQL cannot hold in `jsonb` or `text`.
//!
//! Every request body and every PDU from another server passes here first, so nothing
//! stored can later fail to load (serde_json refuses more than 128 levels on read, and an
//! event is read back one level deeper than the content a client sent).

/// Deepest nesting accepted in a client request body or an event's content. Events are
/// stored wrapped in the PDU (one level more) and served wrapped again in /sync responses.
pub const MAX_DEPTH: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum JsonGuardError {
    #[error("JSON nested more than {0} levels deep")]
    TooDeep(usize),
    #[error("JSON strings may not contain NUL characters (\\u0000)")]
    Nul,
}

/// Checks `json` (which may be invalid JSON: the parser says so later) for nesting beyond
/// `max_depth` and for `\u0000` escapes. One pass, no allocation.
pub fn check(json: &[u8], max_depth: usize) -> Result<(), JsonGuardError> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut i = 0;
    while i < json.len() {
        let b = json[i];
        if in_string {
            match b {
                b'"' => in_string = false,
                b'\\' => {
                    if json.get(i + 1) == Some(&b'u') && json.get(i + 2..i + 6) == Some(b"0000") {
                        return Err(JsonGuardError::Nul);
                    }
                    // Skip the escaped character, so `\"` and `\\` do not end or confuse
                    // the string.
                    i += 1;
                }
                0 => return Err(JsonGuardError::Nul),
                _ => {}
            }
        } else {
            match b {
                b'"' => in_string = true,
                b'{' | b'[' => {
                    depth += 1;
                    if depth > max_depth {
                        return Err(JsonGuardError::TooDeep(max_depth));
                    }
                }
                b'}' | b']' => depth = depth.saturating_sub(1),
                0 => return Err(JsonGuardError::Nul),
                _ => {}
            }
        }
        i += 1;
    }
    Ok(())
}

/// Depth of a parsed value (1 for a scalar inside nothing, objects and arrays add one).
pub fn depth(value: &serde_json::Value) -> usize {
    // Iterative, so a value that is deep already cannot overflow the stack here.
    let mut deepest = 0;
    let mut stack = vec![(value, 0usize)];
    while let Some((v, d)) = stack.pop() {
        match v {
            serde_json::Value::Object(map) => {
                deepest = deepest.max(d + 1);
                stack.extend(map.values().map(|c| (c, d + 1)));
            }
            serde_json::Value::Array(items) => {
                deepest = deepest.max(d + 1);
                stack.extend(items.iter().map(|c| (c, d + 1)));
            }
            _ => deepest = deepest.max(d),
        }
    }
    deepest
}

/// Whether any string or key in `value` contains a NUL character.
pub fn contains_nul(value: &serde_json::Value) -> bool {
    let mut stack = vec![value];
    while let Some(v) = stack.pop() {
        match v {
            serde_json::Value::String(s) if s.contains('\0') => return true,
            serde_json::Value::Object(map) => {
                if map.keys().any(|k| k.contains('\0')) {
                    return true;
                }
                stack.extend(map.values());
            }
            serde_json::Value::Array(items) => stack.extend(items),
            _ => {}
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(levels: usize) -> String {
        format!("{}{}", "[".repeat(levels), "]".repeat(levels))
    }

    #[test]
    fn depth_limit() {
        assert_eq!(check(nested(64).as_bytes(), 64), Ok(()));
        assert_eq!(
            check(nested(65).as_bytes(), 64),
            Err(JsonGuardError::TooDeep(64))
        );
        // Brackets inside strings do not count, escaped quotes do not end strings.
        let s = format!(r#"{{"a": "{}\"{}"}}"#, "[".repeat(100), "{".repeat(100));
        assert_eq!(check(s.as_bytes(), 2), Ok(()));
        let s = r#"{"a": "\\", "b": [[[]]]}"#;
        assert_eq!(check(s.as_bytes(), 3), Err(JsonGuardError::TooDeep(3)));
        assert_eq!(check(s.as_bytes(), 4), Ok(()));
    }

    #[test]
    fn nul_escapes() {
        assert_eq!(check(br#"{"a": "x\u0000"}"#, 8), Err(JsonGuardError::Nul));
        assert_eq!(check(br#"{"a\u0000": 1}"#, 8), Err(JsonGuardError::Nul));
        // An escaped backslash followed by the text u0000 is not a NUL.
        assert_eq!(check(br#"{"a": "\\u0000"}"#, 8), Ok(()));
        assert_eq!(check(br#"{"a": "\u0001"}"#, 8), Ok(()));
        assert_eq!(check(b"{\"a\": \"\0\"}", 8), Err(JsonGuardError::Nul));
    }

    #[test]
    fn agrees_with_the_parsed_value() {
        let v: serde_json::Value =
            serde_json::from_str(r#"{"a": [1, {"b": [[]]}], "c": "\u0000"}"#).unwrap();
        assert_eq!(depth(&v), 5);
        assert!(contains_nul(&v));
        assert!(!contains_nul(&serde_json::json!({"a": ["b"]})));
        assert_eq!(depth(&serde_json::json!(1)), 0);
    }
}
