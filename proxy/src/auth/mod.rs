//! Authentication: who a request comes from.
//!
//! [`Credentials`] is what the process accepts, built from the configuration (and again when
//! the API keys file changes, when keys are added or revoked on the admin endpoint, when a
//! JWKS is fetched): API keys by their SHA-256, htpasswd users, the JWT verifier, and the
//! consumers they name. It is shared by every worker (`Arc`), read-only; a change is a new one
//! posted to each. Each worker keeps its own caches of what it verified
//! ([`WorkerAuth`]): tokens until their `exp`, Basic credentials (bcrypt is slow on purpose),
//! both bounded.

pub mod fetch;
pub mod jwt;
pub mod quota;

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

use crate::config::Auth;
pub use jwt::{JwtVerifier, TokenError, Verified};

/// A consumer: its name, its plan (index into the configuration's plans).
#[derive(Debug, PartialEq, Eq)]
pub struct ConsumerInfo {
    pub name: Arc<str>,
    pub plan: Option<usize>,
}

/// What the process accepts, and from whom.
#[derive(Default)]
pub struct Credentials {
    /// Every consumer the configuration or a keys file names, by index.
    pub consumers: Vec<Arc<ConsumerInfo>>,
    /// API key SHA-256 → consumer index.
    pub api_keys: HashMap<[u8; 32], usize>,
    /// htpasswd user → (hash, consumer).
    pub users: HashMap<String, (String, Arc<ConsumerInfo>)>,
    pub jwt: Option<Arc<JwtVerifier>>,
    /// Bumped by every change, so that workers drop what they cached from the previous one.
    pub version: u64,
}

/// Checks a JWT key file as `[auth.jwt] keys` would load it.
pub fn check_key_file(contents: &[u8]) -> Result<(), String> {
    jwt::parse_keys(contents).map(drop)
}

/// The SHA-256 of an API key.
pub fn key_hash(key: &[u8]) -> [u8; 32] {
    Sha256::digest(key).into()
}

impl Credentials {
    /// From the configuration; `jwt_keys`: the JWKS fetched from `jwks_url`, if that is where
    /// the keys come from (else the file's are parsed here).
    pub fn new(auth: &Auth, jwt_keys: Option<Vec<jwt::JwtKey>>) -> Result<Self, String> {
        let consumers: Vec<Arc<ConsumerInfo>> = auth
            .consumers
            .iter()
            .map(|c| {
                Arc::new(ConsumerInfo {
                    name: Arc::from(c.name.as_str()),
                    plan: c.plan,
                })
            })
            .collect();
        let api_keys = auth.api_keys.iter().map(|&(c, hash)| (hash, c)).collect();
        let users = auth
            .users
            .iter()
            .map(|(user, hash)| {
                let consumer = auth.consumer(user).map_or_else(
                    || {
                        Arc::new(ConsumerInfo {
                            name: Arc::from(user.as_str()),
                            plan: None,
                        })
                    },
                    |i| consumers[i].clone(),
                );
                (user.clone(), (hash.clone(), consumer))
            })
            .collect();
        let jwt = match &auth.jwt {
            None => None,
            Some(settings) => {
                let keys = match (jwt_keys, &settings.keys) {
                    (Some(keys), _) => keys,
                    (None, crate::config::JwtKeys::File { contents, .. }) => {
                        jwt::parse_keys(contents)?
                    }
                    (None, crate::config::JwtKeys::Url(_)) => Vec::new(),
                };
                Some(Arc::new(JwtVerifier::new(settings, keys)))
            }
        };
        Ok(Self {
            consumers,
            api_keys,
            users,
            jwt,
            version: 0,
        })
    }

    /// The consumer an API key belongs to.
    pub fn api_key(&self, key: &[u8]) -> Option<&Arc<ConsumerInfo>> {
        let index = *self.api_keys.get(&key_hash(key))?;
        self.consumers.get(index)
    }

    /// The consumer named `name`: a configured one, else one without a plan.
    pub fn consumer_named(&self, name: &str) -> Arc<ConsumerInfo> {
        self.consumers
            .iter()
            .find(|c| &*c.name == name)
            .cloned()
            .unwrap_or_else(|| {
                Arc::new(ConsumerInfo {
                    name: Arc::from(name),
                    plan: None,
                })
            })
    }

    /// A copy with `hash` added for `consumer` (made if it is new), or removed.
    #[must_use]
    pub fn with_key(&self, consumer: &str, hash: [u8; 32], add: bool) -> Self {
        let mut consumers = self.consumers.clone();
        let mut api_keys = self.api_keys.clone();
        if add {
            let index = consumers
                .iter()
                .position(|c| &*c.name == consumer)
                .unwrap_or_else(|| {
                    consumers.push(Arc::new(ConsumerInfo {
                        name: Arc::from(consumer),
                        plan: None,
                    }));
                    consumers.len() - 1
                });
            api_keys.insert(hash, index);
        } else {
            api_keys.remove(&hash);
        }
        Self {
            consumers,
            api_keys,
            users: self.users.clone(),
            jwt: self.jwt.clone(),
            version: self.version + 1,
        }
    }
}

/// Seconds since the epoch.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A token's key in the cache: its last 16 bytes (the end of its signature, as random as a
/// signature is), folded. Anyone can make a token that ends the same, but the cache compares
/// the whole token, so such a token only misses; and only verified tokens are ever stored.
fn token_id(token: &[u8]) -> u64 {
    let tail = &token[token.len().saturating_sub(16)..];
    let mut id = tail.len() as u64;
    for chunk in tail.chunks(8) {
        let mut word = [0u8; 8];
        word[..chunk.len()].copy_from_slice(chunk);
        id = (id ^ u64::from_le_bytes(word)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
    id
}

/// A token this worker verified, kept until it expires.
struct CachedToken {
    token: Box<[u8]>,
    expires: u64,
    verified: Arc<VerifiedToken>,
}

/// A verified token and its consumer.
pub struct VerifiedToken {
    pub consumer: Arc<ConsumerInfo>,
    pub claims: serde_json::Map<String, serde_json::Value>,
}

/// One worker's view of the credentials, and its caches of what it verified.
pub struct WorkerAuth {
    pub credentials: RefCell<Arc<Credentials>>,
    tokens: RefCell<HashMap<u64, CachedToken, ahash::RandomState>>,
    basic: RefCell<HashMap<[u8; 32], Arc<ConsumerInfo>>>,
}

/// Most Basic credentials a worker keeps verified.
const BASIC_CACHE: usize = 1024;

impl WorkerAuth {
    pub fn new(credentials: Arc<Credentials>) -> Self {
        Self {
            credentials: RefCell::new(credentials),
            tokens: RefCell::default(),
            basic: RefCell::default(),
        }
    }

    /// Takes keys fetched from the JWKS URL.
    pub fn set_jwt(&self, verifier: Arc<JwtVerifier>) {
        let old = self.credentials.borrow().clone();
        let next = Credentials {
            consumers: old.consumers.clone(),
            api_keys: old.api_keys.clone(),
            users: old.users.clone(),
            jwt: Some(verifier),
            version: old.version + 1,
        };
        self.replace(Arc::new(next));
    }

    /// Takes a new set of credentials; what was cached from the old one goes.
    pub fn replace(&self, credentials: Arc<Credentials>) {
        *self.credentials.borrow_mut() = credentials;
        self.tokens.borrow_mut().clear();
        self.basic.borrow_mut().clear();
    }

    /// Verifies a bearer token, from the cache when this worker verified it before.
    pub fn token(&self, token: &[u8]) -> Result<Arc<VerifiedToken>, TokenError> {
        let credentials = self.credentials.borrow();
        let Some(verifier) = &credentials.jwt else {
            return Err(TokenError::UnknownKey);
        };
        let now = unix_now();
        let id = token_id(token);
        if let Some(cached) = self.tokens.borrow().get(&id) {
            if *cached.token == *token {
                if now <= cached.expires {
                    return Ok(cached.verified.clone());
                }
                return Err(TokenError::Expired);
            }
        }
        let token = std::str::from_utf8(token).map_err(|_| TokenError::Malformed)?;
        let Verified { claims, exp } = verifier.verify(token)?;
        let consumer = claims
            .get(&verifier.consumer_claim)
            .and_then(|v| v.as_str())
            .map(|name| credentials.consumer_named(name))
            .ok_or(TokenError::Claims)?;
        let checked = Arc::new(VerifiedToken { consumer, claims });
        if verifier.cache > 0 {
            let mut tokens = self.tokens.borrow_mut();
            if tokens.len() >= verifier.cache {
                tokens.retain(|_, t| t.expires >= now);
                if tokens.len() >= verifier.cache {
                    tokens.clear();
                }
            }
            tokens.insert(
                id,
                CachedToken {
                    token: token.as_bytes().into(),
                    expires: exp.saturating_add(verifier.leeway().as_secs()),
                    verified: checked.clone(),
                },
            );
        }
        Ok(checked)
    }

    /// Checks Basic credentials against the htpasswd users.
    pub fn basic(&self, user: &str, password: &str) -> Option<Arc<ConsumerInfo>> {
        let mut digest = Sha256::new();
        digest.update(user.as_bytes());
        digest.update([0]);
        digest.update(password.as_bytes());
        let id: [u8; 32] = digest.finalize().into();
        if let Some(consumer) = self.basic.borrow().get(&id) {
            return Some(consumer.clone());
        }
        let credentials = self.credentials.borrow().clone();
        let (hash, consumer) = credentials.users.get(user)?;
        let ok = if hash.starts_with("$2") {
            bcrypt::verify(password, hash).unwrap_or(false)
        } else if hash.starts_with("$6$") {
            sha_crypt::sha512_check(password, hash).is_ok()
        } else if hash.starts_with("$5$") {
            sha_crypt::sha256_check(password, hash).is_ok()
        } else {
            false
        };
        if !ok {
            return None;
        }
        let mut basic = self.basic.borrow_mut();
        if basic.len() >= BASIC_CACHE {
            basic.clear();
        }
        basic.insert(id, consumer.clone());
        Some(consumer.clone())
    }
}
