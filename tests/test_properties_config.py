"""Property-based tests of the files an operator writes: config.json (``rmail.config``)
and a domain's users.json and aliases.json with their alias regexes (``rmail.directory``).

Documented errors: ``ConfigError`` ("a config file that cannot be used; the message is one
sentence for people") for config.json, whether it comes as a file (``load``) or as
decoded JSON (``parse``); ``DirectoryError`` for users, aliases and their patterns.  On
arbitrary input, and on valid files built from the schema and then broken, nothing else
escapes.  Round trips: a config that loads writes back (``to_dict``) to the same config;
once aliases load, resolving any address returns a user or None, never an exception.
"""

import dataclasses
import json
import os
import re
import tempfile
import typing

import pytest
from hypothesis import example, given, strategies as st

from rmail import config as rconfig
from rmail.directory import (Directory, DirectoryError, _parse_aliases, _parse_users,
                             compile_pattern)
from tests.properties_common import PROPERTY, mutated

json_scalar = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70),
                        st.floats(allow_nan=False), st.text(max_size=8))
json_value = st.recursive(json_scalar, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)),
    max_leaves=8)

# -- config dicts from the schema ---------------------------------------------------------------

_STRINGS = {
    "hostname": ["mail.example.com", "", "a b", "x"],
    "domains": ["example.com", "", "a@b", "a/b", "Example.ORG"],
    "address": ["0.0.0.0", "::", "127.0.0.1", "nonsense"],
    "smarthost": ["relay.example.net:587", "[::1]:25", "h:0", "h:99999", ":", "a b:25",
                  "h:" + "9" * 5000, "h:²", "h:١٢"],
    "dns_servers": ["127.0.0.1", "127.0.0.1:5353", "::1", "[::1]:53", "host", "1.2.3.4:x"],
    "exempt_networks": ["127.0.0.0/8", "::1/128", "10.0.0.1/33", "x", "1.2.3.4/" + "9" * 5000],
    "min_version": ["1.2", "1.3", "1.1", ""],
    "backend": ["shard", "maildir"],
    "cors_origins": ["*", "https://mail.example.com"],
}


def _value(name: str, tp):
    """A strategy for the field *name* of annotation *tp*: mostly valid, often at the edges."""
    origin = typing.get_origin(tp)
    if origin is typing.Union:
        (inner,) = [a for a in typing.get_args(tp) if a is not type(None)]
        return st.one_of(st.none(), _value(name, inner))
    if origin is list:
        return st.lists(_value(name, typing.get_args(tp)[0]), max_size=3)
    if dataclasses.is_dataclass(tp):
        return _section(tp)
    if tp is bool:
        return st.booleans()
    if tp is int:
        return st.one_of(st.integers(-2, 70000), st.sampled_from([0, 1, 25, 2**31, 2**64]))
    if name in _STRINGS:
        return st.one_of(st.sampled_from(_STRINGS[name]), st.text(max_size=10))
    return st.one_of(st.sampled_from(["data", "/tmp/x", "~/mail", "", "tls/cert.pem"]),
                     st.text(max_size=10))


def _section(cls):
    hints = typing.get_type_hints(cls)
    fields = {f.name: _value(f.name, hints[f.name]) for f in dataclasses.fields(cls)
              if not f.metadata.get("internal")}
    return st.fixed_dictionaries({}, optional=fields)


config_dict = _section(rconfig.Config)


@st.composite
def broken(draw, data):
    """*data* with a few keys replaced by any JSON value, added or nested wrongly."""
    data = json.loads(json.dumps(data))
    for _ in range(draw(st.integers(1, 3))):
        node = data
        while isinstance(node, dict) and node and draw(st.booleans()):
            child = node[draw(st.sampled_from(sorted(node)))]
            if not isinstance(child, dict):
                break
            node = child
        if not isinstance(node, dict):
            break
        key = draw(st.one_of(st.sampled_from(sorted(node) or ["smpt"]),
                             st.sampled_from(["smpt", "listen", "path", "", "relay"])))
        node[key] = draw(json_value)
    return data


def _parse(data):
    try:
        config = rconfig.parse(data, "/srv/rmail/config.json")
    except rconfig.ConfigError as e:
        assert str(e) and "\n" not in str(e)
        return None
    assert isinstance(config, rconfig.Config)
    return config


@PROPERTY(60)
@given(data=st.one_of(config_dict, config_dict.flatmap(broken), json_value))
def test_parse_config_or_config_error(data):
    _parse(data)


@PROPERTY(60)
@given(data=config_dict)
def test_config_round_trip(data):
    """A config that is accepted writes back (as ``init`` writes it) to the same config."""
    config = _parse(data)
    if config is not None:
        again = rconfig.parse(json.loads(json.dumps(config.to_dict())), config.path)
        assert again == config


@pytest.fixture(scope="module")
def config_file(tmp_path_factory):
    return str(tmp_path_factory.mktemp("properties-config") / "config.json")


config_text = st.one_of(
    st.binary(max_size=100),
    config_dict.map(lambda d: json.dumps(d).encode()),
    mutated(config_dict.map(lambda d: json.dumps(d, ensure_ascii=False).encode())),
    st.integers(1000, 50_000).map(lambda n: b'{"domains": ' + b"[" * n + b"]" * n + b"}"),
    st.sampled_from([b"\xff\xfe{}", b"\xef\xbb\xbf{}", b'{"hostname": "\xe9"}', b"",
                     b'{"hostname": NaN}', b'{"smtp": {"max_recipients": 1e999}}']))


@PROPERTY(80)
@given(text=config_text)
@example(text=b'{"hostname": "\xe9"}')
@example(text=b"[" * 100_000)
@example(text=b'{"domains": ' + b"[" * 995 + b"]" * 995 + b"}")
def test_load_config_file(config_file, text):
    with open(config_file, "wb") as f:
        f.write(text)
    try:
        config = rconfig.load(config_file)
    except rconfig.ConfigError as e:
        assert str(e) and "\n" not in str(e)
        return
    assert config.path == os.path.abspath(config_file)


# -- alias patterns, aliases.json and users.json --------------------------------------------------

regex_text = st.one_of(
    st.text(max_size=20),
    st.from_regex(r"[a-z.*+?()\[\]{}|^$\\0-9,-]{0,20}", fullmatch=True),
    st.integers(100, 5000).map(lambda n: "(" * n + ")" * n),
    st.sampled_from(["a{99999999999999999999}", "a{4294967296}", "(?P<n>a)(?P=n)", "(?i)x",
                     "[\\d-z]", "x{2,1}", "(?<=a+)b", "\\N{BAD NAME}", "(?#", "a**"]))


@pytest.mark.filterwarnings("ignore::FutureWarning")  # re: "possible nested set"
@PROPERTY(60)
@given(pattern=regex_text)
@example(pattern="(" * 2000 + ")" * 2000)
@example(pattern="a{99999999999999999999}")
def test_alias_patterns_compile_or_directory_error(pattern):
    try:
        regex = compile_pattern(pattern)
    except DirectoryError as e:
        assert str(e)
        return
    assert isinstance(regex, re.Pattern)


_ALIAS = st.fixed_dictionaries({"pattern": st.one_of(st.sampled_from(["sales-.*", "info", "x|y"]),
                                                     json_value),
                                "target": st.one_of(st.sampled_from(["alice", "bob@example.org"]),
                                                    json_value)})
_USER = st.fixed_dictionaries({"password_hash": st.one_of(st.just("$argon2id$x"), json_value)},
                              optional={"admin": json_value, "password_generation": st.one_of(
                                  st.integers(), json_value, st.just(float("inf")))})

addresses = st.one_of(st.text(max_size=20),
                      st.builds(lambda l, d: f"{l}@{d}", st.sampled_from(
                          ["alice", "sales-1", "info", "x", "", "ALICE"]),
                          st.sampled_from(["example.com", "example.org", "EXAMPLE.COM", ""])))


@pytest.fixture(scope="module")
def directory(tmp_path_factory):
    return Directory(str(tmp_path_factory.mktemp("properties-directory")),
                     ["example.com", "example.org"])


@PROPERTY(60)
@given(aliases=st.one_of(json_value, st.lists(st.one_of(_ALIAS, json_value), max_size=3)),
       users=st.one_of(json_value, st.fixed_dictionaries({"users": st.one_of(
           json_value, st.dictionaries(st.sampled_from(["alice", "bob", "Carol"]), _USER,
                                       max_size=2))})),
       probes=st.lists(addresses, max_size=4))
@example(aliases=[{"pattern": "x", "target": 5}], users={"users": {}}, probes=["x@example.com"])
@example(aliases=[], users={"users": {"alice": {"password_hash": "h",
                                                "password_generation": float("inf")}}},
         probes=[])
def test_directory_files_load_or_directory_error(directory, aliases, users, probes):
    """What users.json and aliases.json hold either loads or is refused with
    DirectoryError, and once loaded every address resolves to a user or to None."""
    try:
        directory._set_users("example.com", users, "users.json")
        directory._set_aliases("example.com", aliases, "aliases.json")
    except DirectoryError as e:
        assert str(e)
        return
    for address in probes:
        user = directory.resolve(address)
        assert user is None or user.domain in ("example.com", "example.org")
        assert directory.user(address) is None or "@" in address


@PROPERTY(40)
@given(raw=st.one_of(st.binary(max_size=60), st.just(b"[" * 50_000), mutated(st.just(
    b'[{"pattern": "sales-.*", "target": "alice"}]'))))
def test_aliases_file_bytes(raw):
    """aliases.json as bytes on disk: read, checked, refused as DirectoryError."""
    with tempfile.TemporaryDirectory() as root:
        path = os.path.join(root, "domains", "example.com")
        os.makedirs(path)
        with open(os.path.join(path, "aliases.json"), "wb") as f:
            f.write(raw)
        directory = Directory(root, ["example.com"])
        try:
            directory.refresh()
        except DirectoryError as e:
            assert str(e)
            return
        assert directory.resolve("sales-1@example.com") is None  # no such user: no target


def test_parsers_are_the_ones_the_directory_uses():
    """The properties above call the readers the Directory's refresh calls."""
    assert _parse_aliases([], "aliases.json") == []
    assert _parse_users("example.com", {}, "users.json") == {}
