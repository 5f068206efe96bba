//! Basic authentication against the bcrypt hashes of `basic_auth_users`.
//!
//! bcrypt is slow on purpose (tens of milliseconds), so checks run on the
//! blocking pool, a few at a time, and successful checks are remembered by a
//! SHA-256 of the user, password and hash (a scrape every 15 s then costs
//! one hash, not one bcrypt). An unknown user is checked against a hash of
//! the same cost as the real ones, so that the time of a 401 does not tell
//! which user names exist (an exporter-toolkit bug did).

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use tokio::sync::Semaphore;

/// Successful checks remembered; the cache starts over when full.
const CACHE_ENTRIES: usize = 256;
/// bcrypt checks at once, so that a flood of wrong passwords costs at most
/// this many cores.
const CONCURRENT_CHECKS: usize = 2;

pub(crate) struct Users {
    hashes: BTreeMap<String, String>,
    /// Checked instead for an unknown user.
    decoy: String,
    cache: Mutex<HashSet<[u8; 32]>>,
    checks: Semaphore,
}

impl Users {
    /// Prepares `hashes` (user to bcrypt hash). Makes the decoy hash, which
    /// takes as long as one check: call off the async runtime.
    pub(crate) fn new(hashes: BTreeMap<String, String>) -> Self {
        let cost = hashes
            .values()
            .filter_map(|h| super::file::bcrypt_cost(h).ok())
            .max()
            .unwrap_or(bcrypt::DEFAULT_COST);
        let decoy = bcrypt::hash_with_salt(b"decoy", cost, [7; 16])
            .expect("a valid cost and salt")
            .format_for_version(bcrypt::Version::TwoY);
        Self {
            hashes,
            decoy,
            cache: Mutex::new(HashSet::new()),
            checks: Semaphore::new(CONCURRENT_CHECKS),
        }
    }

    /// Whether an `Authorization` header value holds valid credentials.
    pub(crate) async fn check(self: &Arc<Self>, authorization: Option<&[u8]>) -> bool {
        let Some((user, password)) = authorization.and_then(credentials) else {
            return false;
        };
        let (known, hash) = match self.hashes.get(&user) {
            Some(hash) => (true, hash.clone()),
            None => (false, self.decoy.clone()),
        };
        let key = cache_key(&user, &password, &hash);
        if known && self.cached(&key) {
            return true;
        }
        let Ok(_permit) = self.checks.acquire().await else {
            return false;
        };
        let verified = tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash))
            .await
            .is_ok_and(|r| r.unwrap_or(false));
        let valid = known && verified;
        if valid {
            let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            if cache.len() >= CACHE_ENTRIES {
                cache.clear();
            }
            cache.insert(key);
        }
        valid
    }

    fn cached(&self, key: &[u8; 32]) -> bool {
        let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache.contains(key)
    }
}

fn cache_key(user: &str, password: &str, hash: &str) -> [u8; 32] {
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    for part in [user, password, hash] {
        context.update(&(part.len() as u64).to_le_bytes());
        context.update(part.as_bytes());
    }
    context
        .finish()
        .as_ref()
        .try_into()
        .expect("SHA-256 is 32 bytes")
}

/// User and password from `Basic base64(user:password)`.
fn credentials(header: &[u8]) -> Option<(String, String)> {
    let header = std::str::from_utf8(header).ok()?;
    let (scheme, encoded) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(user: &str, password: &str) -> Vec<u8> {
        let encoded =
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        format!("Basic {encoded}").into_bytes()
    }

    #[tokio::test]
    async fn checks_passwords_and_remembers_successes() {
        let hash = bcrypt::hash("right", 4).unwrap();
        let users = Arc::new(Users::new(BTreeMap::from([("alice".to_owned(), hash)])));
        assert!(users.check(Some(&header("alice", "right"))).await);
        assert_eq!(users.cache.lock().unwrap().len(), 1);
        assert!(users.check(Some(&header("alice", "right"))).await);
        assert!(!users.check(Some(&header("alice", "wrong"))).await);
        assert!(!users.check(Some(&header("bob", "right"))).await);
        assert!(!users.check(Some(b"Bearer abc")).await);
        assert!(!users.check(Some(b"Basic !!!")).await);
        assert!(!users.check(None).await);
        assert_eq!(users.cache.lock().unwrap().len(), 1);
    }

    #[test]
    fn the_decoy_costs_as_much_as_the_real_hashes() {
        let hash = bcrypt::hash("x", 5).unwrap();
        let users = Users::new(BTreeMap::from([("alice".to_owned(), hash)]));
        assert_eq!(super::super::file::bcrypt_cost(&users.decoy), Ok(5));
    }
}
