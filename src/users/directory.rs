//! `POST /user_directory/search`: finding people by display name or user ID. The searcher
//! finds users they share a room with and users in public rooms (join rule `public` or
//! history `world_readable`), and with `user_directory.search_all_users` every local
//! account. Each word of the search must start a word of the name or ID.

use crate::{
    error::{Error, Result},
    server::Homeserver,
    storage::user_directory::DirectoryUser,
    users::Requester,
};

/// Results when the client names no limit, and the most it may ask for.
const DEFAULT_LIMIT: u64 = 10;
const MAX_LIMIT: u64 = 100;
/// The longest search term, and the most words of it that count.
const MAX_TERM_CHARS: usize = 256;
const MAX_WORDS: usize = 10;

pub struct Found {
    pub results: Vec<DirectoryUser>,
    /// More matched than were returned.
    pub limited: bool,
}

/// A word as a POSIX regex matching itself (lower-cased).
fn pattern(word: &str) -> String {
    let mut out = String::with_capacity(word.len() * 2);
    for c in word.to_lowercase().chars() {
        if "\\.^$|?*+()[]{}".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

pub async fn search(
    hs: &Homeserver,
    requester: &Requester,
    term: &str,
    limit: Option<u64>,
) -> Result<Found> {
    if term.chars().count() > MAX_TERM_CHARS {
        return Err(Error::InvalidParam(format!(
            "search_term is longer than {MAX_TERM_CHARS} characters"
        )));
    }
    let patterns: Vec<String> = term
        .split_whitespace()
        .take(MAX_WORDS)
        .map(pattern)
        .collect();
    if patterns.is_empty() {
        return Ok(Found {
            results: Vec::new(),
            limited: false,
        });
    }
    let limit = limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT);
    let mut results = hs
        .storage
        .search_user_directory(
            requester.user_id.as_str(),
            &patterns,
            hs.config.user_directory.search_all_users,
            i64::try_from(limit + 1).unwrap_or(i64::MAX),
        )
        .await?;
    let limited = results.len() as u64 > limit;
    results.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    Ok(Found { results, limited })
}

#[cfg(test)]
mod tests {
    use super::pattern;

    #[test]
    fn words_are_escaped_regexes() {
        assert_eq!(pattern("Alice"), "alice");
        assert_eq!(pattern("a.b*"), "a\\.b\\*");
        assert_eq!(pattern("(x)[y]"), "\\(x\\)\\[y\\]");
    }
}
