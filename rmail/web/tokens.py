"""API tokens: JWT, HS256 only, keyed with ``http.jwt_secret``.

Claims: ``sub`` (the user's address), ``gen`` (the user's password generation when the
token was issued), ``iat`` and ``exp`` (``iat`` + ``http.token_ttl``).  A token is
refused when its header names any algorithm but HS256 (``none`` included: PyJWT is
told the one algorithm it may accept), when the signature does not verify with the key
in force (a SIGHUP that changes the secret ends every token), when ``exp`` has passed,
when the user no longer exists, or when the user's password changed since it was
issued.  The last check uses ``gen`` and not ``iat``: ``iat`` has whole seconds, and a
password changed in the same second as a login must still end that login's token.

Everything here is in memory (the directory is a snapshot), so it runs on the reactor
thread.  A token whose signature verified is remembered with its claims (``KEPT``
tokens at most, per signing key), so a client's next requests skip the HMAC and the
parsing; ``exp``, the user and the password generation are checked on every request.
"""

import time

import jwt

ALGORITHM = "HS256"
KEPT = 4096  # verified tokens remembered


class InvalidToken(Exception):
    """The token cannot be used; the message says why, for the client."""


class NoKey(Exception):
    """``http.jwt_secret`` is empty: no token can be issued or checked."""


class TokenIssuer:
    def __init__(self, settings, directory, clock=time.time):
        self.settings = settings  # .config is the config in force (replaced on SIGHUP)
        self.directory = directory
        self.clock = clock
        self._verified = {}  # token -> (key, sub, gen, exp) of a signature that verified

    @property
    def ttl(self) -> int:
        return self.settings.config.http.token_ttl

    def key(self) -> bytes:
        """The signing key in force; NoKey when there is none."""
        secret = self.settings.config.http.jwt_secret
        if not secret:
            # An empty key signs nothing safely; a made-up one would end every token at
            # the next restart without saying why.  So: no tokens, and a message saying
            # what to fix (`diagnose` warns about it too).
            raise NoKey("the API has no signing key: http.jwt_secret is empty in "
                        "config.json; set it to a long random string and send SIGHUP")
        return secret.encode("utf-8")

    def issue(self, user) -> str:
        now = int(self.clock())
        claims = {"sub": user.address, "gen": user.password_generation,
                  "iat": now, "exp": now + self.ttl}
        return jwt.encode(claims, self.key(), algorithm=ALGORITHM)

    def verify(self, token: str):
        """The User the token was issued to; InvalidToken otherwise."""
        try:
            key = self.key()
        except NoKey as e:
            raise InvalidToken(str(e))
        kept = self._verified.get(token)
        if kept is not None and kept[0] == key:
            _, address, generation, expires = kept
            if expires <= self.clock():  # as PyJWT: valid while now < exp
                del self._verified[token]
                raise InvalidToken("the token has expired; log in again")
            return self._user(address, generation)
        address, generation, expires = self._decode(token, key)
        if len(self._verified) >= KEPT:
            self._verified.clear()
        self._verified[token] = (key, address, generation, expires)
        return self._user(address, generation)

    def _decode(self, token, key):
        """(sub, gen, exp) of a token whose signature verifies; InvalidToken otherwise."""
        try:
            claims = jwt.decode(token, key, algorithms=[ALGORITHM],
                                options={"require": ["sub", "gen", "iat", "exp"]},
                                leeway=0)
        except jwt.ExpiredSignatureError:
            raise InvalidToken("the token has expired; log in again")
        except jwt.InvalidAlgorithmError:
            raise InvalidToken(f"the token is not signed with {ALGORITHM}")
        except jwt.InvalidSignatureError:
            raise InvalidToken("the token's signature does not verify")
        except jwt.MissingRequiredClaimError as e:
            raise InvalidToken(f"the token has no {e.claim!r} claim")
        except jwt.InvalidTokenError:
            raise InvalidToken("the token is malformed")
        address, generation, expires = claims["sub"], claims["gen"], claims["exp"]
        if not isinstance(address, str) or type(generation) is not int:
            raise InvalidToken("the token is malformed")
        return address, generation, expires

    def _user(self, address, generation):
        user = self.directory.user(address)
        if user is None:
            raise InvalidToken("the token's user no longer exists")
        if user.password_generation != generation:
            raise InvalidToken("the password changed after this token was issued; log in again")
        return user
