//! Authentication end to end: API keys (header and query, hashed in the configuration or a
//! keys file), JWTs (tokens made here with keys openssl makes: valid, expired, not yet valid,
//! wrong signature, audience or issuer, `alg: none`, HS256 signed with the RSA public key, a
//! `kid` not in the JWKS, garbage), Basic credentials against an htpasswd file, per-route
//! requirements (401 with `WWW-Authenticate`, 403), the consumer passed to the origin with any
//! copy from the client removed, per-consumer counters, and secrets kept out of logs.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::json;

use common::{need, scrape, sum, Origin, Proxy, TempFile};

fn sha256_hex(text: &str) -> String {
    use sha2::Digest;
    use std::fmt::Write as _;
    let mut hex = String::with_capacity(64);
    for b in sha2::Sha256::digest(text.as_bytes()) {
        let _ = write!(hex, "{b:02x}");
    }
    hex
}

/// A scratch directory with the keys openssl makes.
struct Keys {
    dir: PathBuf,
}

impl Keys {
    fn new(name: &str) -> Keys {
        need("openssl");
        let dir = std::env::temp_dir().join(format!("ringwall-auth-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let keys = Keys { dir };
        keys.openssl(&[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
            "rsa.pem",
        ]);
        keys.openssl(&["pkey", "-in", "rsa.pem", "-pubout", "-out", "rsa.pub"]);
        keys.openssl(&[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
            "other.pem",
        ]);
        keys.openssl(&[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            "ec.pem",
        ]);
        keys.openssl(&["pkey", "-in", "ec.pem", "-pubout", "-out", "ec.pub"]);
        keys.openssl(&["genpkey", "-algorithm", "ed25519", "-out", "ed.pem"]);
        keys.openssl(&["pkey", "-in", "ed.pem", "-pubout", "-out", "ed.pub"]);
        std::fs::write(
            keys.path("hmac.key"),
            "a-shared-secret-of-at-least-32-bytes!\n",
        )
        .unwrap();
        keys
    }

    fn openssl(&self, args: &[&str]) -> Vec<u8> {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(&self.dir)
            .output()
            .expect("openssl runs");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn read(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.path(name)).unwrap()
    }

    /// A JWKS with the RSA key (kid `rsa-1`) and the EC key (kid `ec-1`).
    fn jwks(&self) -> PathBuf {
        let modulus =
            String::from_utf8(self.openssl(&["rsa", "-in", "rsa.pem", "-noout", "-modulus"]))
                .unwrap();
        let hex = modulus.trim().trim_start_matches("Modulus=");
        let n: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        let der = self.openssl(&["pkey", "-in", "ec.pem", "-pubout", "-outform", "DER"]);
        let point = &der[der.len() - 64..];
        let jwks = json!({"keys": [
            {"kty": "RSA", "kid": "rsa-1", "alg": "RS256", "use": "sig", "n": URL_SAFE_NO_PAD.encode(&n), "e": "AQAB"},
            {"kty": "EC", "kid": "ec-1", "crv": "P-256", "x": URL_SAFE_NO_PAD.encode(&point[..32]), "y": URL_SAFE_NO_PAD.encode(&point[32..])},
        ]});
        let path = self.path("jwks.json");
        std::fs::write(&path, jwks.to_string()).unwrap();
        path
    }
}

impl Drop for Keys {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn token(
    alg: Algorithm,
    key: &EncodingKey,
    kid: Option<&str>,
    claims: &serde_json::Value,
) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    encode(&header, claims, key).unwrap()
}

fn claims(sub: &str) -> serde_json::Value {
    json!({"sub": sub, "exp": now() + 600, "iss": "https://issuer.test", "aud": "api"})
}

fn get(proxy: &Proxy, fields: &str) -> common::Response {
    proxy.client().request(format!(
        "GET /r HTTP/1.1\r\nHost: a\r\n{fields}Connection: close\r\n\r\n"
    ))
}

fn bearer(proxy: &Proxy, token: &str) -> common::Response {
    get(proxy, &format!("Authorization: Bearer {token}\r\n"))
}

fn body(response: &common::Response) -> String {
    String::from_utf8_lossy(&response.body).to_ascii_lowercase()
}

fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn api_keys_name_the_consumer_and_the_client_cannot_claim_one() {
    let origin = Origin::echo("o");
    let keys = TempFile::new(
        "keys.txt",
        &format!(
            "# consumers and their keys\nalice sha256:{}\nbob sha256:{}\n",
            sha256_hex("alice-key"),
            sha256_hex("bob-key")
        ),
    );
    let proxy = Proxy::start(
        &[origin.addr],
        &["--api-keys", &keys.display(), "--workers", "1"],
    );
    let none = get(&proxy, "");
    assert_eq!(none.status, 401);
    assert!(none
        .header("www-authenticate")
        .unwrap()
        .starts_with("ApiKey"));
    assert_eq!(get(&proxy, "X-API-Key: nope\r\n").status, 401);
    let ok = get(&proxy, "X-API-Key: alice-key\r\nX-Consumer: admin\r\n");
    assert_eq!(ok.status, 200);
    let seen = body(&ok);
    assert!(seen.contains("x-consumer: alice\r\n"), "{seen}");
    assert!(
        !seen.contains("admin"),
        "the client's copy is removed: {seen}"
    );
    assert!(body(&get(&proxy, "X-API-Key: bob-key\r\n")).contains("x-consumer: bob\r\n"));
}

#[test]
fn routes_choose_what_they_require_and_who_may_use_them() {
    let origin = Origin::echo("o");
    let toml = format!(
        "[auth]\napi_key_query = \"api_key\"\n\n\
         [[plan]]\nname = \"gold\"\n\n\
         [[consumer]]\nname = \"alice\"\nplan = \"gold\"\napi_keys = [\"sha256:{}\"]\n\n\
         [[consumer]]\nname = \"bob\"\napi_keys = [\"sha256:{}\"]\n\n\
         [[upstream]]\nname = \"app\"\nservers = [\"{}\"]\n\n\
         [[route]]\npath_prefix = \"/gold\"\nupstream = \"app\"\nauth = {{ mode = \"required\", plans = [\"gold\"] }}\n\n\
         [[route]]\npath_prefix = \"/open\"\nupstream = \"app\"\nauth = {{ mode = \"optional\" }}\n\n\
         [[route]]\nupstream = \"app\"\nauth = {{ mode = \"required\", anonymous_methods = [\"OPTIONS\"] }}\n",
        sha256_hex("alice-key"),
        sha256_hex("bob-key"),
        origin.addr
    );
    let proxy = Proxy::with_config(&toml, &["--workers", "1", "--admin", "127.0.0.1:0"]);
    let send = |line: &str, fields: &str| {
        proxy.client().request(format!(
            "{line} HTTP/1.1\r\nHost: a\r\n{fields}Connection: close\r\n\r\n"
        ))
    };
    assert_eq!(send("GET /gold", "X-API-Key: alice-key\r\n").status, 200);
    assert_eq!(
        send("GET /gold", "X-API-Key: bob-key\r\n").status,
        403,
        "bob has no plan"
    );
    assert_eq!(send("GET /gold", "").status, 401);
    // Optional: anonymous goes on without the field; a wrong key is still refused.
    let anonymous = send("GET /open", "X-Consumer: alice\r\n");
    assert_eq!(anonymous.status, 200);
    assert!(
        !body(&anonymous).contains("x-consumer"),
        "{}",
        body(&anonymous)
    );
    assert_eq!(send("GET /open", "X-API-Key: nope\r\n").status, 401);
    // The key in the query.
    assert_eq!(send("GET /x?api_key=bob-key", "").status, 200);
    assert_eq!(send("OPTIONS /x", "").status, 200);
    assert_eq!(send("GET /x", "").status, 401);
    let samples = scrape(proxy.admin_addr());
    let alice = sum(
        &samples,
        "ringwall_consumer_requests_total",
        &[("consumer", "alice"), ("code", "2xx")],
    );
    assert!(alice >= 1.0, "{alice}");
    let rejected = sum(
        &samples,
        "ringwall_requests_rejected_total",
        &[("reason", "auth")],
    );
    assert!(rejected >= 4.0, "{rejected}");
    let by_bob = sum(
        &samples,
        "ringwall_consumer_requests_rejected_total",
        &[("consumer", "bob"), ("reason", "auth")],
    );
    assert!(by_bob >= 1.0, "the 403 is counted for bob: {by_bob}");
    // No key appears in the metrics.
    let text = ureq_text(proxy.admin_addr());
    assert!(!text.contains("alice-key") && !text.contains("bob-key"));
}

fn ureq_text(admin: std::net::SocketAddr) -> String {
    common::ureq_agent()
        .get(&format!("http://{admin}/metrics"))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap()
}

#[test]
fn jwts_are_checked_as_the_rfcs_say() {
    let origin = Origin::echo("o");
    let keys = Keys::new("jwt");
    let proxy = Proxy::start(
        &[origin.addr],
        &[
            "--jwt-key",
            path_str(&keys.path("rsa.pub")),
            "--jwt-aud",
            "api",
            "--jwt-iss",
            "https://issuer.test",
            "--workers",
            "1",
        ],
    );
    let rsa = EncodingKey::from_rsa_pem(&keys.read("rsa.pem")).unwrap();
    let other = EncodingKey::from_rsa_pem(&keys.read("other.pem")).unwrap();
    let valid = token(Algorithm::RS256, &rsa, None, &claims("carol"));
    let ok = bearer(&proxy, &valid);
    assert_eq!(ok.status, 200);
    assert!(body(&ok).contains("x-consumer: carol\r\n"));
    // Twice: the second from the worker's cache.
    assert_eq!(bearer(&proxy, &valid).status, 200);
    assert_eq!(
        bearer(
            &proxy,
            &token(Algorithm::PS256, &rsa, None, &claims("carol"))
        )
        .status,
        200
    );
    let mut expired = claims("carol");
    expired["exp"] = json!(now() - 3600);
    let mut early = claims("carol");
    early["nbf"] = json!(now() + 3600);
    let mut audience = claims("carol");
    audience["aud"] = json!("another-api");
    let mut issuer = claims("carol");
    issuer["iss"] = json!("https://evil.test");
    let none_header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(claims("carol").to_string());
    let confused = token(
        Algorithm::HS256,
        &EncodingKey::from_secret(&keys.read("rsa.pub")).unwrap(),
        None,
        &claims("mallory"),
    );
    let cases = [
        (
            "expired",
            token(Algorithm::RS256, &rsa, None, &expired),
            "expired",
        ),
        (
            "not yet valid",
            token(Algorithm::RS256, &rsa, None, &early),
            "not valid yet",
        ),
        (
            "wrong signature",
            token(Algorithm::RS256, &other, None, &claims("carol")),
            "signature",
        ),
        (
            "wrong audience",
            token(Algorithm::RS256, &rsa, None, &audience),
            "audience",
        ),
        (
            "wrong issuer",
            token(Algorithm::RS256, &rsa, None, &issuer),
            "issuer",
        ),
        ("alg none", format!("{none_header}.{payload}."), "malformed"),
        ("HS256 with the RSA public key", confused, "algorithm"),
        ("garbage", "not-a-jwt".to_owned(), "malformed"),
        (
            "garbage header",
            format!("e30K$$.{payload}.abc"),
            "malformed",
        ),
    ];
    for (case, token, why) in cases {
        let response = bearer(&proxy, &token);
        assert_eq!(response.status, 401, "{case}");
        let challenge = response.header("www-authenticate").unwrap_or_default();
        assert!(
            challenge.contains("invalid_token") && challenge.contains(why),
            "{case}: {challenge}"
        );
    }
    assert_eq!(get(&proxy, "").status, 401, "no token at all");
}

#[test]
fn jwks_keys_are_chosen_by_kid_and_every_algorithm_family_verifies() {
    let origin = Origin::echo("o");
    let keys = Keys::new("jwks");
    let jwks = keys.jwks();
    let rsa = EncodingKey::from_rsa_pem(&keys.read("rsa.pem")).unwrap();
    let ec = EncodingKey::from_ec_pem(&keys.read("ec.pem")).unwrap();
    let proxy = Proxy::start(
        &[origin.addr],
        &["--jwt-key", path_str(&jwks), "--workers", "1"],
    );
    assert_eq!(
        bearer(
            &proxy,
            &token(Algorithm::RS256, &rsa, Some("rsa-1"), &claims("a"))
        )
        .status,
        200
    );
    assert_eq!(
        bearer(
            &proxy,
            &token(Algorithm::ES256, &ec, Some("ec-1"), &claims("a"))
        )
        .status,
        200
    );
    let unknown = bearer(
        &proxy,
        &token(Algorithm::RS256, &rsa, Some("rsa-9"), &claims("a")),
    );
    assert_eq!(unknown.status, 401);
    assert!(unknown.header("www-authenticate").unwrap().contains("kid"));
    // The JWK says RS256: a PS256 token under that kid is refused.
    assert_eq!(
        bearer(
            &proxy,
            &token(Algorithm::PS256, &rsa, Some("rsa-1"), &claims("a"))
        )
        .status,
        401
    );
    drop(proxy);
    // EdDSA from a PEM key, and HS256/384/512 from a secret file.
    let ed = EncodingKey::from_ed_pem(&keys.read("ed.pem")).unwrap();
    let proxy = Proxy::start(
        &[origin.addr],
        &[
            "--jwt-key",
            path_str(&keys.path("ed.pub")),
            "--workers",
            "1",
        ],
    );
    assert_eq!(
        bearer(&proxy, &token(Algorithm::EdDSA, &ed, None, &claims("a"))).status,
        200
    );
    drop(proxy);
    let proxy = Proxy::start(
        &[origin.addr],
        &[
            "--jwt-key",
            path_str(&keys.path("hmac.key")),
            "--workers",
            "1",
        ],
    );
    let secret = EncodingKey::from_secret(b"a-shared-secret-of-at-least-32-bytes!").unwrap();
    for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
        assert_eq!(
            bearer(&proxy, &token(alg, &secret, None, &claims("a"))).status,
            200,
            "{alg:?}"
        );
    }
    let wrong = EncodingKey::from_secret(b"another-shared-secret-of-32-bytes!!!").unwrap();
    assert_eq!(
        bearer(&proxy, &token(Algorithm::HS256, &wrong, None, &claims("a"))).status,
        401
    );
}

#[test]
fn scopes_and_claims_are_required_per_route() {
    let origin = Origin::echo("o");
    let keys = Keys::new("scopes");
    let toml = format!(
        "[auth]\nmode = \"required\"\n[auth.jwt]\nkeys = \"{}\"\n\n\
         [[upstream]]\nname = \"app\"\nservers = [\"{}\"]\n\n\
         [[route]]\npath_prefix = \"/admin\"\nupstream = \"app\"\nauth = {{ scopes = [\"write\"], claims = {{ role = \"admin\" }} }}\n\n\
         [[route]]\nupstream = \"app\"\nauth = {{ consumers = [\"dave\", \"erin\"] }}\n",
        keys.path("ec.pub").display(),
        origin.addr
    );
    let proxy = Proxy::with_config(&toml, &["--workers", "1"]);
    let ec = EncodingKey::from_ec_pem(&keys.read("ec.pem")).unwrap();
    let with = |sub: &str, extra: serde_json::Value| {
        let mut c = claims(sub);
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        token(Algorithm::ES256, &ec, None, &c)
    };
    let admin = |token: &str| {
        proxy.client().request(format!(
            "GET /admin HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
        ))
    };
    assert_eq!(
        admin(&with(
            "dave",
            json!({"scope": "read write", "role": "admin"})
        ))
        .status,
        200
    );
    let no_scope = admin(&with("dave", json!({"scope": "read", "role": "admin"})));
    assert_eq!(no_scope.status, 403);
    assert!(no_scope
        .header("www-authenticate")
        .unwrap()
        .contains("insufficient_scope"));
    assert_eq!(
        admin(&with("dave", json!({"scp": ["write"], "role": "user"}))).status,
        403
    );
    assert_eq!(
        admin(&with(
            "dave",
            json!({"scp": ["write"], "role": ["user", "admin"]})
        ))
        .status,
        200
    );
    assert_eq!(bearer(&proxy, &with("erin", json!({}))).status, 200);
    assert_eq!(bearer(&proxy, &with("frank", json!({}))).status, 403);
}

#[test]
fn basic_credentials_are_checked_against_an_htpasswd_file() {
    need("openssl");
    let origin = Origin::echo("o");
    let sha = Command::new("openssl")
        .args(["passwd", "-6", "-salt", "saltsalt", "sesame"])
        .output()
        .unwrap();
    let sha = String::from_utf8(sha.stdout).unwrap();
    let bcrypt = bcrypt::hash("open-sesame", 4).unwrap();
    let htpasswd = TempFile::new(
        "users.htpasswd",
        &format!("gina:{}\nhank:{bcrypt}\n", sha.trim()),
    );
    let toml = format!(
        "[auth]\nmode = \"required\"\nhtpasswd = \"{}\"\n\n\
         [[upstream]]\nname = \"app\"\nservers = [\"{}\"]\n\n[[route]]\nupstream = \"app\"\n",
        htpasswd.display(),
        origin.addr
    );
    let proxy = Proxy::with_config(&toml, &["--workers", "1"]);
    let basic = |user: &str, password: &str| {
        let encoded =
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        get(&proxy, &format!("Authorization: Basic {encoded}\r\n"))
    };
    let ok = basic("gina", "sesame");
    assert_eq!(ok.status, 200);
    assert!(body(&ok).contains("x-consumer: gina\r\n"));
    assert_eq!(basic("hank", "open-sesame").status, 200);
    assert_eq!(basic("hank", "open-sesame").status, 200, "from the cache");
    let wrong = basic("gina", "guess");
    assert_eq!(wrong.status, 401);
    assert!(wrong
        .header("www-authenticate")
        .unwrap()
        .starts_with("Basic realm="));
    assert_eq!(basic("nobody", "x").status, 401);
    assert_eq!(get(&proxy, "Authorization: Basic !!!\r\n").status, 401);
}

#[test]
fn plans_limit_their_consumers_and_secrets_stay_out_of_the_log() {
    let origin = Origin::echo("o");
    let log = std::env::temp_dir().join(format!("ringwall-auth-log-{}.log", std::process::id()));
    let toml = format!(
        "[auth]\nmode = \"required\"\napi_key_query = \"api_key\"\n\n\
         [access_log]\ntarget = \"{}\"\nformat = \"template\"\ntemplate = \"${{consumer}} ${{uri}} ${{status}}\"\n\n\
         [[rate_limit]]\nname = \"per-consumer\"\nrate = \"2/m\"\nkey = \"consumer\"\n\n\
         [[plan]]\nname = \"free\"\nrate_limits = [\"per-consumer\"]\n\n\
         [[consumer]]\nname = \"ivan\"\nplan = \"free\"\napi_keys = [\"sha256:{}\"]\n\n\
         [[consumer]]\nname = \"judy\"\napi_keys = [\"sha256:{}\"]\n\n\
         [[upstream]]\nname = \"app\"\nservers = [\"{}\"]\n\n[[route]]\nupstream = \"app\"\n",
        log.display(),
        sha256_hex("ivan-key"),
        sha256_hex("judy-key"),
        origin.addr
    );
    let proxy = Proxy::with_config(&toml, &["--workers", "1"]);
    let statuses: Vec<u16> = (0..4)
        .map(|_| get(&proxy, "X-API-Key: ivan-key\r\n").status)
        .collect();
    assert_eq!(statuses, [200, 200, 429, 429], "the free plan: 2 a minute");
    // judy has no plan: no limit.
    for _ in 0..4 {
        assert_eq!(get(&proxy, "X-API-Key: judy-key\r\n").status, 200);
    }
    let response = proxy
        .client()
        .request("GET /q?api_key=judy-key HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
    assert_eq!(response.status, 200);
    let _ = Command::new("kill")
        .args(["-USR1", &proxy.pid().to_string()])
        .status();
    assert!(common::wait_until(
        std::time::Duration::from_secs(5),
        || { std::fs::read_to_string(&log).is_ok_and(|t| t.lines().count() >= 9) }
    ));
    let text = std::fs::read_to_string(&log).unwrap();
    let _ = std::fs::remove_file(&log);
    assert!(text.contains("ivan /r 429"), "{text}");
    assert!(text.contains("judy /q?api_key=[redacted] 200"), "{text}");
    assert!(
        !text.contains("judy-key") && !text.contains("ivan-key"),
        "{text}"
    );
}

#[test]
fn quotas_count_across_workers_and_restarts() {
    let origin = Origin::echo("o");
    let dir = std::env::temp_dir().join(format!("ringwall-quota-e2e-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let quota_file = dir.join("quotas.state");
    let toml = format!(
        "[auth]\nmode = \"required\"\nquota_file = \"{}\"\n\n\
         [[plan]]\nname = \"trial\"\nquota = \"5/day\"\n\n\
         [[consumer]]\nname = \"kim\"\nplan = \"trial\"\napi_keys = [\"sha256:{}\"]\n\n\
         [[upstream]]\nname = \"app\"\nservers = [\"{}\"]\n\n[[route]]\nupstream = \"app\"\n",
        quota_file.display(),
        sha256_hex("kim-key"),
        origin.addr
    );
    let config = TempFile::new("quota.toml", &toml);
    let start = || Proxy::with_config_path(&config.display(), &["--admin", "127.0.0.1:0"], true);
    let mut proxy = start();
    // Eight requests on their own connections (both workers), one at a time so that each
    // worker has heard of the others' by the next (a tick is 20 ms).
    let mut statuses = Vec::new();
    for _ in 0..8 {
        statuses.push(get(&proxy, "X-API-Key: kim-key\r\n").status);
        std::thread::sleep(std::time::Duration::from_millis(60));
    }
    assert_eq!(
        statuses.iter().filter(|&&s| s == 200).count(),
        5,
        "{statuses:?}"
    );
    let over = get(&proxy, "X-API-Key: kim-key\r\n");
    assert_eq!(over.status, 429);
    let retry: u64 = over.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=86_400).contains(&retry));
    assert!(over
        .header("ratelimit-policy")
        .unwrap()
        .starts_with("\"quota\";q=5;w=86400"));
    let samples = scrape(proxy.admin_addr());
    assert!(
        sum(
            &samples,
            "ringwall_requests_rejected_total",
            &[("reason", "quota")]
        ) >= 4.0
    );
    proxy.sigterm();
    assert!(proxy
        .wait_exit(std::time::Duration::from_secs(15))
        .is_some());
    // A restart reads the counts back.
    let proxy = start();
    assert_eq!(get(&proxy, "X-API-Key: kim-key\r\n").status, 429);
    drop(proxy);
    let _ = std::fs::remove_dir_all(&dir);
}

fn admin_request(proxy: &Proxy, method: &str, path: &str, body: &str) -> common::Response {
    common::Client::connect(proxy.admin_addr()).request(format!(
        "{method} {path} HTTP/1.1\r\nHost: admin\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    ))
}

/// `n` requests with `key`, each on its own connection (both workers): their statuses.
fn with_key(proxy: &Proxy, key: &str, n: usize) -> Vec<u16> {
    (0..n)
        .map(|_| get(proxy, &format!("X-API-Key: {key}\r\n")).status)
        .collect()
}

#[test]
fn keys_added_and_revoked_on_the_admin_endpoint_or_in_the_file_take_effect_everywhere() {
    let origin = Origin::echo("o");
    let dir = std::env::temp_dir().join(format!("ringwall-keys-admin-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let keys = dir.join("keys.txt");
    std::fs::write(&keys, format!("lee sha256:{}\n", sha256_hex("lee-key"))).unwrap();
    let proxy = Proxy::start(
        &[origin.addr],
        &["--api-keys", path_str(&keys), "--admin", "127.0.0.1:0"],
    );
    assert_eq!(with_key(&proxy, "zed-key", 4), [401; 4]);
    let added = admin_request(
        &proxy,
        "POST",
        "/api-keys",
        r#"{"consumer":"zed","key":"zed-key"}"#,
    );
    assert_eq!(
        added.status,
        201,
        "{}",
        String::from_utf8_lossy(&added.body)
    );
    let hash = format!("sha256:{}", sha256_hex("zed-key"));
    assert!(String::from_utf8_lossy(&added.body).contains(&hash));
    // Posted to the other worker at once: within a tick.
    std::thread::sleep(std::time::Duration::from_millis(100));
    assert_eq!(with_key(&proxy, "zed-key", 6), [200; 6]);
    assert!(std::fs::read_to_string(&keys)
        .unwrap()
        .contains(&format!("zed {hash}")));
    let listed = admin_request(&proxy, "GET", "/api-keys", "");
    let listed = String::from_utf8_lossy(&listed.body).into_owned();
    assert!(
        listed.contains("\"consumer\":\"zed\"") && !listed.contains("zed-key"),
        "{listed}"
    );
    assert_eq!(
        admin_request(&proxy, "DELETE", &format!("/api-keys/{hash}"), "").status,
        200
    );
    std::thread::sleep(std::time::Duration::from_millis(100));
    assert_eq!(with_key(&proxy, "zed-key", 6), [401; 6]);
    assert_eq!(
        admin_request(&proxy, "POST", "/api-keys", "not json").status,
        400
    );
    // The file edited by hand: read again within a couple of seconds.
    std::fs::write(
        &keys,
        format!(
            "lee sha256:{}\nmay sha256:{}\n",
            sha256_hex("lee-key"),
            sha256_hex("may-key")
        ),
    )
    .unwrap();
    assert!(common::wait_until(
        std::time::Duration::from_secs(10),
        || { with_key(&proxy, "may-key", 4) == [200; 4] }
    ));
    assert_eq!(with_key(&proxy, "lee-key", 2), [200; 2]);
    drop(proxy);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_jwks_url_is_fetched_and_refreshed() {
    let keys = Keys::new("jwks-url");
    let jwks = std::fs::read(keys.jwks()).unwrap();
    // After the rotation, only the EC key is left.
    let mut set: serde_json::Value = serde_json::from_slice(&jwks).unwrap();
    set["keys"].as_array_mut().unwrap().remove(0);
    let rotated_jwks = set.to_string().into_bytes();
    let rotated = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let serving = rotated.clone();
    let issuer = Origin::start(move |_req, conn| {
        let body = if serving.load(std::sync::atomic::Ordering::SeqCst) {
            &rotated_jwks
        } else {
            &jwks
        };
        conn.respond(200, &[("Content-Type", "application/json")], body)?;
        Ok(common::Next::KeepAlive)
    });
    let origin = Origin::echo("o");
    let toml = format!(
        "[auth]\nmode = \"required\"\n[auth.jwt]\njwks_url = \"http://{}/.well-known/jwks.json\"\nrefresh = \"1s\"\n\n\
         [[upstream]]\nname = \"app\"\nservers = [\"{}\"]\n\n[[route]]\nupstream = \"app\"\n",
        issuer.addr, origin.addr
    );
    let proxy = Proxy::with_config(&toml, &[]);
    let rsa = EncodingKey::from_rsa_pem(&keys.read("rsa.pem")).unwrap();
    let ec = EncodingKey::from_ec_pem(&keys.read("ec.pem")).unwrap();
    let rs = token(Algorithm::RS256, &rsa, Some("rsa-1"), &claims("a"));
    let es = token(Algorithm::ES256, &ec, Some("ec-1"), &claims("a"));
    assert!(
        common::wait_until(std::time::Duration::from_secs(10), || {
            bearer(&proxy, &rs).status == 200
        }),
        "{}",
        proxy.logs()
    );
    // The issuer rotates its keys.
    rotated.store(true, std::sync::atomic::Ordering::SeqCst);
    assert!(common::wait_until(
        std::time::Duration::from_secs(10),
        || { bearer(&proxy, &rs).status == 401 && bearer(&proxy, &es).status == 200 }
    ));
}

#[test]
fn bad_auth_settings_are_refused_with_their_file_and_line() {
    let origin = Origin::echo("o");
    let short = TempFile::new("short.key", "too-short\n");
    let bad_keys = TempFile::new("bad-keys.txt", "alice sha256:abc\n");
    let cases = [
        (
            "[[consumer]]\nname = \"a\"\napi_keys = [\"plain-key\"]\n".to_owned(),
            "consumer[0].api_keys[0]",
        ),
        (
            format!("[auth.jwt]\nkeys = \"{}\"\n", short.display()),
            "auth.jwt.keys",
        ),
        (
            "[auth.jwt]\njwks_url = \"https://x.test/jwks\"\nalgorithms = [\"none\"]\n".to_owned(),
            "auth.jwt.algorithms[0]",
        ),
        (
            format!("[auth]\napi_keys_file = \"{}\"\n", bad_keys.display()),
            "bad-keys.txt:1",
        ),
        (
            "[[plan]]\nname = \"p\"\nquota = \"10/day\"\n".to_owned(),
            "plan[0].quota",
        ),
        (
            "[[consumer]]\nname = \"a\"\nplan = \"nope\"\n".to_owned(),
            "consumer[0].plan",
        ),
        ("[auth]\nmode = \"required\"\n".to_owned(), "auth.mode"),
    ];
    for (text, field) in cases {
        let file = TempFile::new(
            "auth.toml",
            &format!(
                "{text}\n[[upstream]]\nname = \"app\"\nservers = [\"{}\"]\n\n[[route]]\nupstream = \"app\"\n",
                origin.addr
            ),
        );
        let run = common::run_ringwall(&["check", "--config", &file.display()]);
        assert!(!run.status.success(), "{text}");
        assert!(
            run.stderr.contains(field) && run.stderr.contains("auth.toml:"),
            "{text}: {}",
            run.stderr
        );
    }
    let run = common::run_ringwall(&["check", "--upstream", "127.0.0.1:1", "--jwt-aud", "x"]);
    assert!(
        !run.status.success() && run.stderr.contains("--jwt-aud"),
        "{}",
        run.stderr
    );
}
