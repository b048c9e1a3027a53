//! An OpenID issuer of our own on a local port: a discovery document and a JWKS that a test can
//! rotate, counting how often the JWKS is fetched. Its keys are P-256 (ES256), generated fresh.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use axum::Json;
use axum::extract::State;
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

/// One signing key: its `kid`, the private key, and the public JWK.
pub struct SigningKey {
    /// Key id.
    pub kid: String,
    /// Signs tokens.
    pub private: EncodingKey,
    /// The public JWK the issuer publishes.
    pub jwk: Value,
}

impl SigningKey {
    /// A fresh P-256 key.
    pub fn generate(kid: &str) -> Self {
        let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).expect("generate");
        let pkcs8 = pair.to_pkcs8v1().expect("pkcs8");
        let point = pair.public_key().as_ref().to_vec();
        Self {
            kid: kid.to_owned(),
            private: EncodingKey::from_ec_der(pkcs8.as_ref()),
            jwk: json!({
                "kty": "EC", "crv": "P-256", "kid": kid, "use": "sig", "alg": "ES256",
                "x": URL_SAFE_NO_PAD.encode(&point[1..33]), "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
            }),
        }
    }

    /// Signs `claims` (ES256, with this key's `kid`).
    pub fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.private).expect("sign")
    }
}

#[derive(Clone)]
struct Served {
    jwks: Arc<Mutex<Value>>,
    fetches: Arc<AtomicUsize>,
    base: String,
}

/// A running issuer.
pub struct JwksServer {
    /// `http://127.0.0.1:PORT` (also the issuer's `iss`).
    pub url: String,
    served: Served,
}

impl JwksServer {
    /// Starts an issuer publishing `keys`.
    pub async fn start(keys: &[&SigningKey]) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let served = Served {
            jwks: Arc::new(Mutex::new(Value::Null)),
            fetches: Arc::new(AtomicUsize::new(0)),
            base: url.clone(),
        };
        let server = Self {
            url,
            served: served.clone(),
        };
        server.publish(keys);
        let router = axum::Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/jwks.json", get(jwks))
            .with_state(served);
        tokio::spawn(async move { axum::serve(listener, router).await });
        server
    }

    /// From now on the JWKS holds exactly `keys` (a rotation).
    pub fn publish(&self, keys: &[&SigningKey]) {
        let set = json!({"keys": keys.iter().map(|key| key.jwk.clone()).collect::<Vec<_>>()});
        *self.served.jwks.lock().expect("lock") = set;
    }

    /// How many times the JWKS was fetched.
    pub fn fetches(&self) -> usize {
        self.served.fetches.load(Ordering::SeqCst)
    }
}

async fn discovery(State(served): State<Served>) -> Json<Value> {
    Json(json!({"issuer": served.base, "jwks_uri": format!("{}/jwks.json", served.base)}))
}

async fn jwks(State(served): State<Served>) -> Json<Value> {
    served.fetches.fetch_add(1, Ordering::SeqCst);
    Json(served.jwks.lock().expect("lock").clone())
}
