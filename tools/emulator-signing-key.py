"""Prints (DER, PKCS#1) the RSA key moto signs every Cognito user pool's tokens with (kid `dummy`).

Local only: `make token SCOPE=...` in Cognito mode and the identity tests use it for tokens the
emulator cannot issue itself (resource-server scopes come from Cognito's hosted UI, which moto
lacks; an expired token). moto's JWK holds only n, e and d, so the primes are recovered.
"""

import base64
import gzip
import json
import sys
from importlib import resources

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

path = resources.files("moto") / "cognitoidp/resources/jwks-private.json.gz"
jwk = json.loads(gzip.decompress(path.read_bytes()))
jwk = jwk["keys"][0] if "keys" in jwk else jwk


def number(name: str) -> int:
    raw = jwk[name] + "=" * (-len(jwk[name]) % 4)
    return int.from_bytes(base64.urlsafe_b64decode(raw), "big")


n, e, d = number("n"), number("e"), number("d")
p, q = rsa.rsa_recover_prime_factors(n, e, d)
private = rsa.RSAPrivateNumbers(
    p, q, d, rsa.rsa_crt_dmp1(d, p), rsa.rsa_crt_dmq1(d, q), rsa.rsa_crt_iqmp(p, q),
    rsa.RSAPublicNumbers(e, n),
).private_key()
sys.stdout.buffer.write(
    private.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
)
