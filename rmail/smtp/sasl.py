"""SASL PLAIN (RFC 4616) and LOGIN for SMTP AUTH (RFC 4954), as small state machines.

Each mechanism takes the client's decoded responses one at a time and either asks for
another (``challenge``) or yields credentials for the cred portal.  Malformed
responses raise ``SASLError``; the protocol answers them without consulting the portal.
"""

from twisted.cred.credentials import UsernamePassword


class SASLError(Exception):
    pass


class Plain:
    """One response: ``authzid NUL authcid NUL password``; authzid empty or the same user."""

    def __init__(self):
        self.credentials = None

    def challenge(self) -> bytes:
        return b""

    def respond(self, response: bytes) -> bool:
        """Take a response; True when credentials are ready."""
        parts = response.split(b"\0")
        if len(parts) != 3 or not parts[1]:
            raise SASLError("PLAIN response must be authzid NUL authcid NUL password")
        authzid, authcid, password = parts
        if authzid and authzid != authcid:
            raise SASLError("authorization identity differs from authentication identity")
        self.credentials = UsernamePassword(authcid, password)
        return True


class Login:
    """Two responses, after the conventional challenges ``Username:`` and ``Password:``."""

    CHALLENGES = (b"Username:", b"Password:")

    def __init__(self):
        self.credentials = None
        self._answers = []

    def challenge(self) -> bytes:
        return self.CHALLENGES[len(self._answers)]

    def respond(self, response: bytes) -> bool:
        self._answers.append(response)
        if len(self._answers) < 2:
            return False
        username, password = self._answers
        if not username:
            raise SASLError("empty user name")
        self.credentials = UsernamePassword(username, password)
        return True


MECHANISMS = {b"PLAIN": Plain, b"LOGIN": Login}
