"""Config tables declared once (symbld/config.py TABLES), published by ``describe`` and written out in the docs.

- a real daemon's ``describe`` lists every table of ``TABLES`` (and the top-level keys) under ``config``, each with
  a JSON Schema whose keys, types and defaults are the declaring Struct's, and which the effective default
  configuration satisfies;
- docs/configuration.md's reference of types, defaults and ranges is what scripts/gen_config_doc.py makes now.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import jsonschema
import msgspec
import pytest

from symblctl.client import Client
from symbld import config, config_check

ROOT = Path(__file__).resolve().parents[1]
GENERATOR = ROOT / "scripts" / "gen_config_doc.py"
JSON_TYPES = {bool: "boolean", int: "integer", float: "number", str: "string"}


def _declared_structs(table: str) -> list[type[msgspec.Struct]]:
    refs = config.TABLES[table]
    return [config_check._resolve_ref(ref) for ref in (refs if isinstance(refs, list) else [refs])]


def _resolved(d: dict[str, Any], table: str) -> dict[str, Any]:
    name = d["config"][table]["$ref"].removeprefix("#/schemas/")
    return d["schemas"][name]  # type: ignore[no-any-return]


def _section(tree: dict[str, Any], table: str) -> dict[str, Any]:
    return config.section(tree, *table.split(".")) if table else {k: v for k, v in tree.items()
                                                                  if k in config.DEFAULTS}


def test_describe_publishes_every_config_table_as_declared(client: Client) -> None:
    d = client.describe()
    assert set(d["config"]) == {"", *config.TABLES}
    known = config_check.schema(config.DECLARATIONS)  # the keys the check knows, read from the declarations
    effective = json.loads(json.dumps(config.effective(config.load(None, {}))))  # tuples as lists, as in TOML
    for table in d["config"]:
        schema = _resolved(d, table)
        assert set(schema["properties"]) == set(_section(known, table)), table
        # the references point into describe's result ("#/schemas/<Name>"): validated against it as the root
        jsonschema.validate(_section(effective, table), {**d["config"][table], "schemas": d["schemas"]})
    for table in config.TABLES:  # each key's type and default is its Struct field's
        for struct in _declared_structs(table):
            for field in msgspec.structs.fields(struct):
                prop = _resolved(d, table)["properties"][field.encode_name]
                if type(field.default) in JSON_TYPES:
                    assert prop["default"] == field.default, f"{table}.{field.name}"
                    if "enum" in prop:  # a Literal: its default is one of the allowed values
                        assert field.default in prop["enum"], f"{table}.{field.name}"
                    else:
                        assert prop["type"] == JSON_TYPES[type(field.default)], f"{table}.{field.name}"
    top = _resolved(d, "")["properties"]
    assert top["log_level"]["enum"] == sorted(config.ENUMS["log_level"])
    assert top["max_connections"]["default"] == config.DEFAULTS["max_connections"]


@pytest.mark.parametrize("table, key, value", [("smtp", "port", 0), ("engine.local", "num_workers", "two"),
                                               ("", "log_level", "verbose")])
def test_a_value_the_check_refuses_is_outside_the_published_schema(client: Client, table: str, key: str,
                                                                   value: Any) -> None:
    d = client.describe()
    tree: dict[str, Any] = {key: value}
    for part in reversed(table.split(".") if table else []):
        tree = {part: tree}
    errors, _ = config_check.check(tree, config.DECLARATIONS)
    assert errors, "the check must refuse it, or this case proves nothing"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({key: value}, {**d["config"][table], "schemas": d["schemas"]})


def test_the_config_reference_is_generated_from_the_declarations() -> None:
    spec = importlib.util.spec_from_file_location("gen_config_doc", GENERATOR)
    assert spec is not None and spec.loader is not None
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    doc = (ROOT / "docs" / "configuration.md").read_text()
    assert gen.current_section(doc) == gen.render(), "stale: run python scripts/gen_config_doc.py"
    for table in config.TABLES:  # every table has its section
        assert f"### `[{table}]`" in gen.current_section(doc)
