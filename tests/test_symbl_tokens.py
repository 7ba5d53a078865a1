"""The Symbl server's access tokens (PyJWT, HS256): what it signs it accepts until exp, and nothing else."""

from __future__ import annotations

import time
import warnings

import jwt

from symbld.gateways.symbl.auth import AUDIENCE, Credentials, TokenIssuer, decode_claims

APP = Credentials("app-id", "app-secret")


def test_a_token_is_valid_until_it_expires_and_across_restarts_with_the_same_secret() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a short configured secret is no insecure-key warning: it is hashed
        issuer = TokenIssuer(APP, ttl=60, secret=b"short")
        token, expires_in = issuer.issue()
    assert expires_in == 60
    claims = decode_claims(token)
    assert claims["aud"] == AUDIENCE and claims["sub"] == "app-id" and claims["exp"] - claims["iat"] == 60
    assert issuer.validate(token)
    assert TokenIssuer(APP, ttl=60, secret=b"short").validate(token)  # a restart with token_secret set
    assert not TokenIssuer(APP, ttl=60).validate(token)  # a random per-start key
    assert not TokenIssuer(APP, ttl=-1, secret=b"short").validate(TokenIssuer(APP, ttl=-1, secret=b"short").issue()[0])


def test_forged_tampered_and_unsigned_tokens_are_refused() -> None:
    issuer = TokenIssuer(APP, ttl=60)
    token, _ = issuer.issue()
    head, body, sig = token.split(".")
    assert not issuer.validate(f"{head}.{body}.{sig[:-2]}AA")
    unsigned = jwt.encode({"aud": AUDIENCE, "iat": int(time.time()), "exp": int(time.time()) + 60}, None,
                          algorithm="none")
    assert not issuer.validate(unsigned)
    assert not issuer.validate("not.a.token") and not issuer.validate("") and not issuer.validate(None)
