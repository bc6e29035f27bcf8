"""The documentation and the example config agree with the schema."""

import dataclasses
import json
import os

from rmail import config as rconfig
from tests.harness import ROOT


def _dotted_keys(cls, prefix=""):
    for f in dataclasses.fields(cls):
        if f.metadata.get("internal"):
            continue
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if dataclasses.is_dataclass(default):
            yield from _dotted_keys(type(default), prefix + f.name + ".")
        else:
            yield prefix + f.name


def test_config_example_is_a_valid_config():
    with open(os.path.join(ROOT, "config.json.example")) as f:
        data = json.load(f)
    config = rconfig.parse(data, os.path.join(ROOT, "config.json.example"))
    assert sorted(_dotted_keys(rconfig.Config)) == sorted(
        k for k in _flatten(data))
    assert config.listen.smtp == 25


def test_every_config_key_is_documented():
    with open(os.path.join(ROOT, "docs", "configuration.md")) as f:
        text = f.read()
    missing = [k for k in _dotted_keys(rconfig.Config) if f"`{k}`" not in text]
    assert missing == []


def test_readme_starts_with_the_two_commands():
    with open(os.path.join(ROOT, "README.md")) as f:
        lines = [line.strip() for line in f.read().splitlines()[:6] if line.strip()]
    assert lines[1].startswith("make run") and lines[2].startswith("make test")


def _flatten(data, prefix=""):
    for key, value in data.items():
        if isinstance(value, dict):
            yield from _flatten(value, prefix + key + ".")
        else:
            yield prefix + key
