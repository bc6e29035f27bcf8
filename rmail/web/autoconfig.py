"""Account set-up for mail clients: Thunderbird autoconfig and Outlook autodiscover.

Both documents describe the same facts, taken from the server in force: the
configured ``hostname`` and only the listeners that are actually bound, with their
real ports (a config may move or disable any of them).  Socket types:

- Thunderbird clientConfig 1.1 (https://wiki.mozilla.org/Thunderbird:Autoconfiguration:ConfigFileFormat):
  ``SSL`` for TLS from the first byte (993, 465), ``STARTTLS`` for 143 and 587;
- Outlook "POX" autodiscover (MS-OXDSCLI): ``<Encryption>SSL</Encryption>`` and
  ``<Encryption>TLS</Encryption>`` (STARTTLS) respectively, with ``<SSL>`` for clients
  that read only that.

The login name is always the full address, as on every rmail protocol.  Documents are
built with ``xml.etree`` so any address a client sends is escaped, and the one XML
document read here (the autodiscover request) is refused if it declares a DOCTYPE, so
no entity is ever expanded.
"""

import xml.etree.ElementTree as ET

from rmail.web.errors import bad_request

# Listener key -> (protocol, Thunderbird socketType, autodiscover Encryption).
_SERVERS = (
    ("imaps", "imap", "SSL", "SSL"),
    ("imap", "imap", "STARTTLS", "TLS"),
    ("submissions", "smtp", "SSL", "SSL"),
    ("submission", "smtp", "STARTTLS", "TLS"),
)

AUTODISCOVER_RESPONSE = "http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006"
OUTLOOK_RESPONSE = "http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a"

XML = b"application/xml; charset=utf-8"
MAX_REQUEST = 64 * 1024  # bytes of an autodiscover request (parsed on the reactor thread)


def _servers(ports: dict):
    """(protocol, port, socket type, encryption) for each bound client listener."""
    return [(proto, ports[key], socket_type, encryption)
            for key, proto, socket_type, encryption in _SERVERS if key in ports]


def _sub(parent, tag, text=None, **attrs):
    node = ET.SubElement(parent, tag, attrs)
    if text is not None:
        node.text = str(text)
    return node


def _document(root) -> bytes:
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"


def client_config(hostname: str, domains, ports: dict, address: str | None) -> bytes:
    """Thunderbird's config-v1.1.xml; *address* fills the username when the client sent it."""
    root = ET.Element("clientConfig", version="1.1")
    provider_domain = address.rpartition("@")[2].lower() if address else domains[0]
    provider = _sub(root, "emailProvider", id=provider_domain)
    for domain in domains:
        _sub(provider, "domain", domain)
    _sub(provider, "displayName", f"{provider_domain} mail ({hostname})")
    _sub(provider, "displayShortName", provider_domain)
    for proto, port, socket_type, _ in _servers(ports):
        tag = "incomingServer" if proto == "imap" else "outgoingServer"
        server = _sub(provider, tag, type=proto)
        _sub(server, "hostname", hostname)
        _sub(server, "port", port)
        _sub(server, "socketType", socket_type)
        _sub(server, "authentication", "password-cleartext")
        _sub(server, "username", address or "%EMAILADDRESS%")
    return _document(root)


def requested_address(body: bytes) -> str:
    """The EMailAddress of an Outlook autodiscover request (any namespace)."""
    if b"<!DOCTYPE" in body.upper() or b"<!ENTITY" in body.upper():
        raise bad_request("the autodiscover request must not declare a DOCTYPE or entities")
    try:
        root = ET.fromstring(body)
    except ET.ParseError as e:
        raise bad_request(f"the autodiscover request is not well-formed XML ({e})")
    except (LookupError, ValueError) as e:  # an XML declaration naming an unusable encoding
        raise bad_request(f"the autodiscover request's encoding cannot be read ({e})")
    for node in root.iter():
        if node.tag.rpartition("}")[2] == "EMailAddress" and (node.text or "").strip():
            return node.text.strip()
    raise bad_request("the autodiscover request has no EMailAddress")


def autodiscover(hostname: str, ports: dict, address: str) -> bytes:
    """The Outlook POX autodiscover response for *address*."""
    root = ET.Element("Autodiscover", xmlns=AUTODISCOVER_RESPONSE)
    response = _sub(root, "Response", xmlns=OUTLOOK_RESPONSE)
    user = _sub(response, "User")
    _sub(user, "DisplayName", address)
    _sub(user, "AutoDiscoverSMTPAddress", address)
    account = _sub(response, "Account")
    _sub(account, "AccountType", "email")
    _sub(account, "Action", "settings")
    for proto, port, _, encryption in _servers(ports):
        protocol = _sub(account, "Protocol")
        _sub(protocol, "Type", proto.upper())
        _sub(protocol, "Server", hostname)
        _sub(protocol, "Port", port)
        _sub(protocol, "LoginName", address)
        _sub(protocol, "DomainRequired", "off")
        _sub(protocol, "SPA", "off")
        _sub(protocol, "SSL", "on" if encryption == "SSL" else "off")
        _sub(protocol, "Encryption", encryption)
        _sub(protocol, "AuthRequired", "on")
        if proto == "smtp":
            _sub(protocol, "UsePOPAuth", "off")
            _sub(protocol, "SMTPLast", "off")
    return _document(root)
