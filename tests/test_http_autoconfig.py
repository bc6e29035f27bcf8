"""Autoconfig (Thunderbird) and autodiscover (Outlook) describe the real server, and CORS."""

import json
import xml.etree.ElementTree as ET

import pytest

from tests.conftest import in_reactor
from tests.harness import APIClient, Server

REQUEST_NS = "http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006"
RESPONSE_NS = "http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006"
OUTLOOK_NS = "http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One server for the module: these requests change nothing."""
    srv = Server(tmp_path_factory.mktemp("http-autoconfig"), in_reactor)
    srv.start()
    yield srv
    srv.stop()


def _servers(provider, tag):
    return [{child.tag: child.text for child in server} | {"type": server.get("type")}
            for server in provider.findall(tag)]


def test_autoconfig_field_by_field(server):
    client = APIClient(server.port("http"))
    r = client.request("GET", "/.well-known/autoconfig/mail/config-v1.1.xml")
    assert r.status == 200
    assert r.headers["Content-Type"].startswith("application/xml")
    root = ET.fromstring(r.body)
    assert root.tag == "clientConfig" and root.get("version") == "1.1"
    (provider,) = root.findall("emailProvider")
    assert provider.get("id") == "example.com"
    assert [d.text for d in provider.findall("domain")] == ["example.com", "example.org"]
    assert provider.findtext("displayShortName") == "example.com"
    assert _servers(provider, "incomingServer") == [
        {"type": "imap", "hostname": "mail.example.com", "port": str(server.port("imaps")),
         "socketType": "SSL", "authentication": "password-cleartext",
         "username": "%EMAILADDRESS%"},
        {"type": "imap", "hostname": "mail.example.com", "port": str(server.port("imap")),
         "socketType": "STARTTLS", "authentication": "password-cleartext",
         "username": "%EMAILADDRESS%"},
    ]
    assert _servers(provider, "outgoingServer") == [
        {"type": "smtp", "hostname": "mail.example.com", "port": str(server.port("submissions")),
         "socketType": "SSL", "authentication": "password-cleartext",
         "username": "%EMAILADDRESS%"},
        {"type": "smtp", "hostname": "mail.example.com", "port": str(server.port("submission")),
         "socketType": "STARTTLS", "authentication": "password-cleartext",
         "username": "%EMAILADDRESS%"},
    ]
    # The MX port is for other servers, never for a mail client.
    assert str(server.port("smtp")) not in r.body.decode()


def test_autoconfig_with_emailaddress_on_the_legacy_path(server):
    client = APIClient(server.port("http"))
    r = client.request("GET", "/mail/config-v1.1.xml?emailaddress=carol%40example.org")
    assert r.status == 200
    provider = ET.fromstring(r.body).find("emailProvider")
    assert provider.get("id") == "example.org"
    assert {s.findtext("username") for s in provider.iter()
            if s.tag in ("incomingServer", "outgoingServer")} == {"carol@example.org"}
    same = client.request("GET", "/.well-known/autoconfig/mail/config-v1.1.xml"
                                 "?emailaddress=carol%40example.org")
    assert same.body == r.body


def test_autoconfig_for_a_foreign_domain_or_garbage(server):
    client = APIClient(server.port("http"))
    r = client.request("GET", "/mail/config-v1.1.xml?emailaddress=someone%40gmail.com")
    assert r.status == 404 and "gmail.com" in r.json()["error"]
    r = client.request("GET", "/mail/config-v1.1.xml?emailaddress=%3Cscript%3E")
    assert r.status == 400 and list(r.json()) == ["error"]


def test_only_configured_listeners_are_described(tmp_path):
    srv = Server(tmp_path, in_reactor, listen__imap=None, listen__submissions=None)
    srv.start()
    try:
        client = APIClient(srv.port("http"))
        provider = ET.fromstring(client.request(
            "GET", "/.well-known/autoconfig/mail/config-v1.1.xml").body).find("emailProvider")
        assert [(s.findtext("port"), s.findtext("socketType"))
                for s in provider.findall("incomingServer")] == [(str(srv.port("imaps")), "SSL")]
        assert [(s.findtext("port"), s.findtext("socketType"))
                for s in provider.findall("outgoingServer")] == [
            (str(srv.port("submission")), "STARTTLS")]
        r = client.request("POST", "/autodiscover/autodiscover.xml", data=_pox("alice@example.com"))
        protocols = ET.fromstring(r.body).findall(f".//{{{OUTLOOK_NS}}}Protocol")
        assert [(p.findtext(f"{{{OUTLOOK_NS}}}Type"), p.findtext(f"{{{OUTLOOK_NS}}}Port"))
                for p in protocols] == [("IMAP", str(srv.port("imaps"))),
                                        ("SMTP", str(srv.port("submission")))]
    finally:
        srv.stop()


def _pox(address: str) -> bytes:
    return (f'<?xml version="1.0" encoding="utf-8"?>\r\n'
            f'<Autodiscover xmlns="{REQUEST_NS}">\r\n'
            f'  <Request>\r\n'
            f'    <EMailAddress>{address}</EMailAddress>\r\n'
            f'    <AcceptableResponseSchema>{OUTLOOK_NS}</AcceptableResponseSchema>\r\n'
            f'  </Request>\r\n'
            f'</Autodiscover>\r\n').encode()


def test_autodiscover_pox(server):
    client = APIClient(server.port("http"))
    for path in ("/autodiscover/autodiscover.xml", "/Autodiscover/Autodiscover.xml"):
        r = client.request("POST", path, data=_pox("bob@example.com"),
                           headers={"Content-Type": "text/xml"})
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("application/xml")
        root = ET.fromstring(r.body)
        assert root.tag == f"{{{RESPONSE_NS}}}Autodiscover"
        response = root.find(f"{{{OUTLOOK_NS}}}Response")
        account = response.find(f"{{{OUTLOOK_NS}}}Account")
        assert account.findtext(f"{{{OUTLOOK_NS}}}AccountType") == "email"
        assert account.findtext(f"{{{OUTLOOK_NS}}}Action") == "settings"
        protocols = [{child.tag.split("}")[1]: child.text for child in p}
                     for p in account.findall(f"{{{OUTLOOK_NS}}}Protocol")]
        common = {"Server": "mail.example.com", "LoginName": "bob@example.com",
                  "DomainRequired": "off", "SPA": "off", "AuthRequired": "on"}
        assert protocols == [
            {"Type": "IMAP", "Port": str(server.port("imaps")), "SSL": "on",
             "Encryption": "SSL", **common},
            {"Type": "IMAP", "Port": str(server.port("imap")), "SSL": "off",
             "Encryption": "TLS", **common},
            {"Type": "SMTP", "Port": str(server.port("submissions")), "SSL": "on",
             "Encryption": "SSL", "UsePOPAuth": "off", "SMTPLast": "off", **common},
            {"Type": "SMTP", "Port": str(server.port("submission")), "SSL": "off",
             "Encryption": "TLS", "UsePOPAuth": "off", "SMTPLast": "off", **common},
        ]


@pytest.mark.parametrize("body, status", [
    (b"<Autodiscover><Request></Request></Autodiscover>", 400),
    (b"not xml at all", 400),
    (b"", 400),
    (b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">]>'
     b"<Autodiscover><Request><EMailAddress>&lol;@example.com</EMailAddress></Request>"
     b"</Autodiscover>", 400),
    (_pox("someone@gmail.com"), 404),
    (_pox("not-an-address"), 400),
    (_pox("alice@example.com").replace(b"<Request>", b"<Request>" + b" " * 70000), 413),
])
def test_autodiscover_bad_requests(server, body, status):
    client = APIClient(server.port("http"))
    r = client.request("POST", "/autodiscover/autodiscover.xml", data=body)
    assert r.status == status and list(r.json()) == ["error"]


def test_autodiscover_address_is_escaped(server):
    client = APIClient(server.port("http"))
    r = client.request("POST", "/autodiscover/autodiscover.xml",
                       data=_pox("a&amp;b&lt;c@example.com"))
    assert r.status == 200
    login = ET.fromstring(r.body).find(f".//{{{OUTLOOK_NS}}}LoginName").text
    assert login == "a&b<c@example.com"


# -- CORS -----------------------------------------------------------------------------------------

def test_options_preflight_on_any_path(server):
    client = APIClient(server.port("http"))
    for path in ("/folders", "/auth/login", "/folders/INBOX/messages/1/flags", "/anything/at/all"):
        r = client.request("OPTIONS", path, headers={
            "Origin": "https://webmail.example.com",
            "Access-Control-Request-Method": "PATCH",
            "Access-Control-Request-Headers": "authorization, content-type"})
        assert r.status == 204 and r.body == b""
        assert r.headers["Access-Control-Allow-Origin"] == "*"
        assert "PATCH" in r.headers["Access-Control-Allow-Methods"]
        allowed = r.headers["Access-Control-Allow-Headers"].lower()
        assert "authorization" in allowed and "content-type" in allowed


def test_allow_origin_on_every_response(server):
    client = APIClient(server.port("http"))
    origin = {"Origin": "https://webmail.example.com"}
    responses = [
        client.request("GET", "/folders", headers=origin),  # 401
        client.request("GET", "/nope", headers=origin),  # 404
        client.request("POST", "/auth/login", {"username": "alice@example.com",
                                               "password": "alice-pw"}, headers=origin),
        client.request("GET", "/mail/config-v1.1.xml", headers=origin),
    ]
    assert [r.status for r in responses] == [401, 404, 200, 200]
    assert all(r.headers["Access-Control-Allow-Origin"] == "*" for r in responses)
    assert "WWW-Authenticate" in responses[0].headers["Access-Control-Expose-Headers"]


def test_listed_cors_origins_only(tmp_path):
    srv = Server(tmp_path, in_reactor, http__cors_origins=["https://webmail.example.com"])
    srv.start()
    try:
        client = APIClient(srv.port("http"))
        good = client.request("GET", "/folders", headers={"Origin": "https://webmail.example.com"})
        assert good.headers["Access-Control-Allow-Origin"] == "https://webmail.example.com"
        assert "Origin" in good.headers["Vary"]
        bad = client.request("GET", "/folders", headers={"Origin": "https://evil.example.net"})
        assert "Access-Control-Allow-Origin" not in bad.headers
        preflight = client.request("OPTIONS", "/folders",
                                   headers={"Origin": "https://evil.example.net"})
        assert preflight.status == 204
        assert "Access-Control-Allow-Origin" not in preflight.headers
        assert json.loads(bad.body)["error"]
    finally:
        srv.stop()
