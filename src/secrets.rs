//! Token and password secrets: generation, hashing, verification.

use std::sync::{Mutex, OnceLock};

use argon2::{
    Algorithm, Argon2, Block, Params, PasswordHash, Version,
    password_hash::{Output, ParamsString, SaltString, rand_core::OsRng},
};
use base64::Engine as _;
use rand::RngCore as _;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// Longest password accepted: argon2 cost is per byte only mildly, but an unbounded input
/// is still a way to make the server work for nothing.
pub const MAX_PASSWORD_BYTES: usize = 512;

/// A fresh secret: `prefix` + 256 random bits, base64url. The prefix tells token kinds
/// apart in logs and leaked-secret scanners.
pub fn new_token(prefix: &str) -> String {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    format!(
        "{prefix}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

/// What is stored for a token: its SHA-256. Tokens carry 256 random bits, so a fast hash
/// is enough; no salt or stretching needed.
pub fn token_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// Compares secrets in time independent of where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Random alphanumeric ID (device IDs, UIA sessions).
pub fn random_id(len: usize) -> String {
    use rand::Rng as _;
    const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let mut rng = rand::thread_rng();
    (0..len)
        .map(|_| CHARS[rng.gen_range(0..CHARS.len())] as char)
        .collect()
}

pub fn check_password_length(password: &str) -> Result<()> {
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(Error::InvalidParam(format!(
            "password is longer than {MAX_PASSWORD_BYTES} bytes"
        )));
    }
    Ok(())
}

/// Password hashing runs on at most this many threads at once, each with a reused
/// argon2 work area (19 MiB at the default parameters). Freshly allocated areas were not
/// given back to the system: registering 64 users in a burst left axon at 1.2 GiB.
fn hashing_slots() -> &'static HashingSlots {
    static SLOTS: OnceLock<HashingSlots> = OnceLock::new();
    SLOTS.get_or_init(|| {
        let n = std::thread::available_parallelism().map_or(2, |n| n.get().min(4));
        HashingSlots {
            permits: tokio::sync::Semaphore::new(n),
            areas: Mutex::new(Vec::new()),
        }
    })
}

struct HashingSlots {
    permits: tokio::sync::Semaphore,
    /// Work areas not in use (at most one per permit ever exists).
    areas: Mutex<Vec<Vec<Block>>>,
}

/// Runs `work` on the blocking pool with a work area of at least `blocks` blocks.
async fn with_work_area<T: Send + 'static>(
    blocks: usize,
    work: impl FnOnce(&mut [Block]) -> T + Send + 'static,
) -> Result<T> {
    let slots = hashing_slots();
    let _permit = slots
        .permits
        .acquire()
        .await
        .map_err(|e| Error::Internal(e.to_string()))?;
    let mut area = slots
        .areas
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .pop()
        .unwrap_or_default();
    let (result, area) = tokio::task::spawn_blocking(move || {
        if area.len() < blocks {
            area.resize(blocks, Block::default());
        }
        let result = work(&mut area[..blocks]);
        (result, area)
    })
    .await
    .map_err(|e| Error::Internal(e.to_string()))?;
    slots
        .areas
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(area);
    Ok(result)
}

/// Stored hashes with a bigger memory cost than this are refused, not computed.
const MAX_M_COST_KIB: u32 = 256 * 1024;

/// argon2id with the crate's default (OWASP) parameters, as a PHC string.
pub async fn hash_password(password: &str) -> Result<String> {
    check_password_length(password)?;
    let password = password.to_owned();
    let params = Params::default();
    with_work_area(params.block_count(), move |area| {
        let salt = SaltString::generate(&mut OsRng);
        let mut salt_bytes = [0u8; 64];
        let salt_bytes = salt
            .decode_b64(&mut salt_bytes)
            .map_err(|e| Error::Internal(format!("salt: {e}")))?;
        let mut out = [0u8; 32];
        Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
            .hash_password_into_with_memory(password.as_bytes(), salt_bytes, &mut out, area)
            .map_err(|e| Error::Internal(format!("hashing password: {e}")))?;
        let phc = PasswordHash {
            algorithm: Algorithm::Argon2id.ident(),
            version: Some(Version::V0x13.into()),
            params: ParamsString::try_from(&params)
                .map_err(|e| Error::Internal(format!("hash parameters: {e}")))?,
            salt: Some(salt.as_salt()),
            hash: Some(
                Output::new(&out).map_err(|e| Error::Internal(format!("hash output: {e}")))?,
            ),
        };
        Ok(phc.to_string())
    })
    .await?
}

/// Spends the time of one password check against a hash that matches nothing: for an
/// unknown user or one without a password, so the answer's timing does not tell which
/// user names exist.
pub async fn verify_against_nothing(password: &str) {
    static DUMMY: tokio::sync::OnceCell<String> = tokio::sync::OnceCell::const_new();
    let dummy = DUMMY
        .get_or_try_init(|| async { hash_password(&random_id(32)).await })
        .await;
    if let Ok(hash) = dummy {
        let _ = verify_password(password, hash).await;
    }
}

pub async fn verify_password(password: &str, hash: &str) -> bool {
    if password.len() > MAX_PASSWORD_BYTES {
        return false;
    }
    let Ok(parsed) = PasswordHash::new(hash) else {
        return false;
    };
    let Ok(params) = Params::try_from(&parsed) else {
        return false;
    };
    if params.m_cost() > MAX_M_COST_KIB {
        return false;
    }
    let (password, hash) = (password.to_owned(), hash.to_owned());
    with_work_area(params.block_count(), move |area| {
        let Ok(parsed) = PasswordHash::new(&hash) else {
            return false;
        };
        let (Ok(algorithm), Some(expected), Some(salt)) = (
            Algorithm::try_from(parsed.algorithm),
            parsed.hash,
            parsed.salt,
        ) else {
            return false;
        };
        let version = parsed
            .version
            .map_or(Ok(Version::V0x13), Version::try_from)
            .unwrap_or(Version::V0x13);
        let mut salt_bytes = [0u8; 64];
        let Ok(salt_bytes) = salt.decode_b64(&mut salt_bytes) else {
            return false;
        };
        let mut out = vec![0u8; expected.len()];
        Argon2::new(algorithm, version, params)
            .hash_password_into_with_memory(password.as_bytes(), salt_bytes, &mut out, area)
            .is_ok()
            // Output's equality is constant-time.
            && Output::new(&out).is_ok_and(|o| o == expected)
    })
    .await
    .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn password_round_trip() {
        let hash = hash_password("correct horse").await.unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &hash).await);
        assert!(!verify_password("wrong horse", &hash).await);
        assert!(
            hash_password(&"x".repeat(MAX_PASSWORD_BYTES + 1))
                .await
                .is_err()
        );
    }

    /// Hashes stored before the work areas were reused (the crate's own hasher) still
    /// verify, and the crate's verifier accepts ours: the PHC strings are the same kind.
    #[tokio::test]
    async fn compatible_with_the_crates_own_hasher() {
        use argon2::{PasswordHasher, PasswordVerifier};
        let salt = SaltString::generate(&mut OsRng);
        let old = Argon2::default()
            .hash_password(b"old password", &salt)
            .unwrap()
            .to_string();
        assert!(verify_password("old password", &old).await);
        assert!(!verify_password("other password", &old).await);
        let ours = hash_password("new password").await.unwrap();
        let parsed = PasswordHash::new(&ours).unwrap();
        assert!(
            Argon2::default()
                .verify_password(b"new password", &parsed)
                .is_ok()
        );
        // A stored hash asking for absurd memory is refused without computing it.
        let greedy = "$argon2id$v=19$m=4194304,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$\
                      AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
        assert!(!verify_password("x", greedy).await);
        assert!(!verify_password("x", "not a hash").await);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_hashes_share_the_bounded_work_areas() {
        let hashes: Vec<_> = (0..12)
            .map(|i| tokio::spawn(async move { (i, hash_password(&format!("pw{i}")).await) }))
            .collect();
        for h in hashes {
            let (i, hash) = h.await.unwrap();
            assert!(verify_password(&format!("pw{i}"), &hash.unwrap()).await);
        }
        let areas = hashing_slots().areas.lock().unwrap().len();
        assert!((1..=4).contains(&areas), "{areas} work areas");
    }

    #[test]
    fn tokens_are_long_and_distinct() {
        let (a, b) = (new_token("axa_"), new_token("axa_"));
        assert_ne!(a, b);
        assert_eq!(a.len(), 4 + 43);
        assert_eq!(token_hash(&a).len(), 32);
        assert_ne!(token_hash(&a), token_hash(&b));
    }
}
