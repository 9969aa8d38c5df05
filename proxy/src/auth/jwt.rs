//! JWT verification (RFC 7519, RFC 7515) with jsonwebtoken.
//!
//! The keys come from a PEM public key, a JWKS (each key with its `kid`), or a file holding an
//! HMAC secret. A token's `alg` must be one of the accepted algorithms *and* of the kind of the
//! key that verifies it: a token signed HS256 with the RSA public key as its secret finds no
//! HMAC key and is refused (algorithm confusion); `alg: none` is not an algorithm jsonwebtoken
//! knows, so its header does not even parse. `exp` is required; `nbf`, `iss` and `aud` are
//! checked, with the configured clock skew.

use std::str::FromStr;
use std::time::Duration;

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{decode, decode_header, Algorithm, AlgorithmFamily, DecodingKey, Validation};
use serde_json::{Map, Value};

use crate::config::Jwt;

/// Shortest HMAC secret accepted (RFC 7518 §3.2: at least the hash's size).
const MIN_SECRET: usize = 32;

/// One verifying key.
pub struct JwtKey {
    kid: Option<String>,
    family: AlgorithmFamily,
    /// The algorithms it verifies: its JWK's `alg`, else its family's.
    algorithms: Vec<Algorithm>,
    key: DecodingKey,
}

/// Parses a key file: a JWKS (JSON), a PEM public key, or an HMAC secret.
pub fn parse_keys(contents: &[u8]) -> Result<Vec<JwtKey>, String> {
    let text = std::str::from_utf8(contents).ok();
    let trimmed = text.map(str::trim);
    if let Some(json) = trimmed.filter(|t| t.starts_with('{')) {
        return parse_jwks(json);
    }
    if let Some(pem) = trimmed.filter(|t| t.starts_with("-----BEGIN")) {
        let pem = pem.as_bytes();
        let key = DecodingKey::from_rsa_pem(pem)
            .or_else(|_| DecodingKey::from_ec_pem(pem))
            .or_else(|_| DecodingKey::from_ed_pem(pem))
            .map_err(|e| format!("not a PEM public key (RSA, EC or Ed25519): {e}"))?;
        return Ok(vec![with_family(None, key, None)]);
    }
    // A secret: the file's bytes, without a trailing newline.
    let secret = match contents {
        [rest @ .., b'\r', b'\n'] | [rest @ .., b'\n'] => rest,
        all => all,
    };
    if secret.len() < MIN_SECRET {
        return Err(format!(
            "an HMAC secret must be at least {MIN_SECRET} bytes (this one is {})",
            secret.len()
        ));
    }
    let key = DecodingKey::from_secret(secret).map_err(|e| e.to_string())?;
    Ok(vec![with_family(None, key, None)])
}

/// Parses a JWKS document.
pub fn parse_jwks(json: &str) -> Result<Vec<JwtKey>, String> {
    let set: JwkSet = serde_json::from_str(json).map_err(|e| format!("not a JWKS: {e}"))?;
    let mut keys = Vec::with_capacity(set.keys.len());
    for jwk in &set.keys {
        let key = DecodingKey::from_jwk(jwk).map_err(|e| {
            format!(
                "key {}: {e}",
                jwk.common.key_id.as_deref().unwrap_or("without kid")
            )
        })?;
        let alg = jwk
            .common
            .key_algorithm
            .and_then(|a| Algorithm::from_str(&format!("{a:?}")).ok());
        keys.push(with_family(jwk.common.key_id.clone(), key, alg));
    }
    if keys.is_empty() {
        return Err("the JWKS has no keys".to_owned());
    }
    Ok(keys)
}

fn with_family(kid: Option<String>, key: DecodingKey, alg: Option<Algorithm>) -> JwtKey {
    let family = key.family();
    JwtKey {
        kid,
        family,
        algorithms: match alg {
            Some(alg) if alg.family() == family => vec![alg],
            _ => family.algorithms().to_vec(),
        },
        key,
    }
}

/// Why a token was refused (for the 401's `error_description`; never the token itself).
#[derive(Debug, PartialEq, Eq)]
pub enum TokenError {
    Malformed,
    Algorithm,
    UnknownKey,
    Signature,
    Expired,
    NotYetValid,
    Issuer,
    Audience,
    Claims,
}

impl TokenError {
    pub fn description(&self) -> &'static str {
        match self {
            TokenError::Malformed => "the token is malformed",
            TokenError::Algorithm => "the token's algorithm is not accepted",
            TokenError::UnknownKey => "no key verifies the token (unknown kid)",
            TokenError::Signature => "the token's signature is invalid",
            TokenError::Expired => "the token has expired",
            TokenError::NotYetValid => "the token is not valid yet",
            TokenError::Issuer => "the token's issuer is not accepted",
            TokenError::Audience => "the token's audience is not accepted",
            TokenError::Claims => "the token lacks a required claim",
        }
    }
}

/// A verified token's claims.
pub struct Verified {
    pub claims: Map<String, Value>,
    /// `exp`, in seconds since the epoch.
    pub exp: u64,
}

/// Verifies tokens against a set of keys, with `[auth.jwt]`'s settings.
pub struct JwtVerifier {
    keys: Vec<JwtKey>,
    accepted: Vec<Algorithm>,
    issuer: Vec<String>,
    audience: Vec<String>,
    leeway: Duration,
    pub consumer_claim: String,
    pub scopes_claim: String,
    pub cache: usize,
}

impl JwtVerifier {
    pub fn new(settings: &Jwt, keys: Vec<JwtKey>) -> Self {
        let accepted = if settings.algorithms.is_empty() {
            let mut all: Vec<Algorithm> = Vec::new();
            for key in &keys {
                for alg in &key.algorithms {
                    if !all.contains(alg) {
                        all.push(*alg);
                    }
                }
            }
            all
        } else {
            settings
                .algorithms
                .iter()
                .filter_map(|a| Algorithm::from_str(a).ok())
                .collect()
        };
        Self {
            keys,
            accepted,
            issuer: settings.issuer.clone(),
            audience: settings.audience.clone(),
            leeway: settings.leeway,
            consumer_claim: settings.consumer_claim.clone(),
            scopes_claim: settings.scopes_claim.clone(),
            cache: settings.cache,
        }
    }

    /// Checks `token`'s header, signature and registered claims.
    pub fn verify(&self, token: &str) -> Result<Verified, TokenError> {
        let header = decode_header(token).map_err(|_| TokenError::Malformed)?;
        let alg = header.alg;
        if !self.accepted.contains(&alg) {
            return Err(TokenError::Algorithm);
        }
        let candidates = self.keys.iter().filter(|k| {
            k.family == alg.family()
                && k.algorithms.contains(&alg)
                && match (&header.kid, &k.kid) {
                    (Some(wanted), Some(kid)) => wanted == kid,
                    (Some(_), None) => self.keys.len() == 1,
                    (None, _) => true,
                }
        });
        let mut validation = Validation::new(alg);
        validation.leeway = self.leeway.as_secs();
        validation.validate_nbf = true;
        let mut required = vec!["exp"];
        if self.issuer.is_empty() {
            validation.iss = None;
        } else {
            validation.set_issuer(&self.issuer);
            required.push("iss");
        }
        if self.audience.is_empty() {
            validation.validate_aud = false;
        } else {
            validation.set_audience(&self.audience);
            required.push("aud");
        }
        validation.set_required_spec_claims(&required);
        let mut last = TokenError::UnknownKey;
        for key in candidates {
            match decode::<Map<String, Value>>(token, &key.key, &validation) {
                Ok(data) => {
                    let exp = data.claims.get("exp").and_then(Value::as_u64).unwrap_or(0);
                    return Ok(Verified {
                        claims: data.claims,
                        exp,
                    });
                }
                Err(e) => {
                    use jsonwebtoken::errors::ErrorKind;
                    last = match e.kind() {
                        ErrorKind::ExpiredSignature => return Err(TokenError::Expired),
                        ErrorKind::ImmatureSignature => return Err(TokenError::NotYetValid),
                        ErrorKind::InvalidIssuer => return Err(TokenError::Issuer),
                        ErrorKind::InvalidAudience => return Err(TokenError::Audience),
                        ErrorKind::MissingRequiredClaim(_) => return Err(TokenError::Claims),
                        ErrorKind::InvalidSignature => TokenError::Signature,
                        ErrorKind::InvalidAlgorithm => TokenError::Algorithm,
                        _ => TokenError::Malformed,
                    };
                }
            }
        }
        Err(last)
    }

    /// How long past its `exp` a token is still accepted.
    pub fn leeway(&self) -> Duration {
        self.leeway
    }
}

/// The scopes of a token's claims: `claim` (a space-separated string or an array), else `scp`.
pub fn scopes<'a>(claims: &'a Map<String, Value>, claim: &str) -> Vec<&'a str> {
    let value = claims.get(claim).or_else(|| claims.get("scp"));
    match value {
        Some(Value::String(s)) => s.split_whitespace().collect(),
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

/// Whether claim `name` is `value` (a string equal to it, or an array holding it).
pub fn claim_is(claims: &Map<String, Value>, name: &str, value: &str) -> bool {
    match claims.get(name) {
        Some(Value::String(s)) => s == value,
        Some(Value::Array(items)) => items.iter().any(|v| v.as_str() == Some(value)),
        Some(Value::Bool(b)) => value == if *b { "true" } else { "false" },
        Some(Value::Number(n)) => n.to_string() == value,
        _ => false,
    }
}
