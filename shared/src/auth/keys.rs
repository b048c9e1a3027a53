//! An issuer's verification keys: fetched at cold start (discovery document → `jwks_uri` →
//! JWKS), cached, re-fetched when a token names a `kid` the cache does not hold (at most once per
//! [`REFETCH_INTERVAL`]), and kept when a re-fetch fails.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;

use super::issuers::KeySource;

pub use super::issuers::REFETCH_INTERVAL;

/// One public key with the algorithm it verifies.
pub struct PublicKey {
    /// `kid`, when the JWK has one.
    pub kid: Option<String>,
    /// RS256 or ES256.
    pub algorithm: Algorithm,
    /// The key.
    pub key: DecodingKey,
}

/// The keys of one issuer, shared by every request of a function instance.
pub struct IssuerKeys {
    source: KeySource,
    refetch_interval: Duration,
    keys: RwLock<Option<Arc<Vec<PublicKey>>>>,
    last_fetch: tokio::sync::Mutex<Option<Instant>>,
    fetches: std::sync::atomic::AtomicUsize,
}

/// Why no key could be found for a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyLookup {
    /// The keys are known and none matches.
    NoSuchKey,
    /// The keys were never obtained (the issuer could not be reached).
    Unavailable,
}

#[derive(Deserialize)]
struct Discovery {
    jwks_uri: String,
}

impl IssuerKeys {
    /// Keys from `source`; a static JWKS is ready at once, the others on the first fetch.
    pub fn new(source: KeySource, refetch_interval: Duration) -> Self {
        let keys = match &source {
            KeySource::Static(set) => Some(Arc::new(public_keys(set))),
            _ => None,
        };
        Self {
            source,
            refetch_interval,
            keys: RwLock::new(keys),
            last_fetch: tokio::sync::Mutex::new(None),
            fetches: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    /// How many times the keys were fetched (for tests and metrics).
    pub fn fetches(&self) -> usize {
        self.fetches.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn current(&self) -> Option<Arc<Vec<PublicKey>>> {
        self.keys.read().ok().and_then(|keys| keys.clone())
    }

    /// Finds the key for a token's `kid` and algorithm, fetching the keys first when they were
    /// never obtained, and once more (rate-limited) when the `kid` is unknown.
    pub async fn find(
        &self,
        http: Option<&reqwest::Client>,
        kid: Option<&str>,
        algorithm: Algorithm,
    ) -> Result<(Arc<Vec<PublicKey>>, usize), KeyLookup> {
        if let Some(keys) = self.current()
            && let Some(index) = position(&keys, kid, algorithm)
        {
            return Ok((keys, index));
        }
        self.refresh(http).await;
        let keys = self.current().ok_or(KeyLookup::Unavailable)?;
        position(&keys, kid, algorithm)
            .map(|index| (keys.clone(), index))
            .ok_or(KeyLookup::NoSuchKey)
    }

    /// Fetches the keys unless another fetch happened within the refetch interval; on failure
    /// the keys held so far stay. Concurrent callers wait for one fetch instead of racing.
    pub async fn refresh(&self, http: Option<&reqwest::Client>) {
        if matches!(self.source, KeySource::Static(_)) {
            return;
        }
        let mut last = self.last_fetch.lock().await;
        if last.is_some_and(|at| at.elapsed() < self.refetch_interval) {
            return;
        }
        *last = Some(Instant::now());
        self.fetches
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let Some(http) = http else {
            tracing::error!("no HTTPS client to fetch the issuer's keys");
            return;
        };
        match fetch(http, &self.source).await {
            Ok(set) => {
                let keys = public_keys(&set);
                tracing::info!(keys = keys.len(), "fetched the issuer's signing keys");
                if let Ok(mut slot) = self.keys.write() {
                    *slot = Some(Arc::new(keys));
                }
            }
            Err(problem) => {
                tracing::warn!(
                    problem,
                    "could not fetch the issuer's signing keys; keeping the cached ones"
                );
            }
        }
    }
}

async fn fetch(http: &reqwest::Client, source: &KeySource) -> Result<JwkSet, &'static str> {
    let jwks_url = match source {
        KeySource::Static(set) => return Ok(set.clone()),
        KeySource::JwksUrl(url) => url.clone(),
        KeySource::Discovery(url) => {
            let discovery: Discovery = get_json(http, url).await?;
            discovery.jwks_uri
        }
    };
    get_json(http, &jwks_url).await
}

async fn get_json<T: serde::de::DeserializeOwned>(
    http: &reqwest::Client,
    url: &str,
) -> Result<T, &'static str> {
    let response = http
        .get(url)
        .send()
        .await
        .map_err(|_| "the issuer could not be reached")?;
    if !response.status().is_success() {
        return Err("the issuer answered with an error");
    }
    response
        .json::<T>()
        .await
        .map_err(|_| "the issuer's answer was not the expected JSON")
}

fn position(keys: &[PublicKey], kid: Option<&str>, algorithm: Algorithm) -> Option<usize> {
    keys.iter().position(|key| {
        key.algorithm == algorithm
            && match (kid, key.kid.as_deref()) {
                (Some(wanted), Some(kid)) => wanted == kid,
                (Some(_), None) => false,
                (None, _) => true,
            }
    })
}

/// The RS256 / ES256 keys of a JWKS; other keys (and keys whose declared `alg` disagrees) are
/// ignored, and certificate chains (`x5c`) are not needed.
pub fn public_keys(set: &JwkSet) -> Vec<PublicKey> {
    set.keys
        .iter()
        .filter_map(|jwk| {
            let algorithm = match &jwk.algorithm {
                AlgorithmParameters::RSA(_) => Algorithm::RS256,
                AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256 => {
                    Algorithm::ES256
                }
                _ => return None,
            };
            let declared_ok = match jwk.common.key_algorithm {
                None => true,
                Some(KeyAlgorithm::RS256) => algorithm == Algorithm::RS256,
                Some(KeyAlgorithm::ES256) => algorithm == Algorithm::ES256,
                Some(_) => false,
            };
            if !declared_ok {
                return None;
            }
            DecodingKey::from_jwk(jwk).ok().map(|key| PublicKey {
                kid: jwk.common.key_id.clone(),
                algorithm,
                key,
            })
        })
        .collect()
}
