"""Fuzz the two kinds of files people hand the project: bundle manifests and data rows.

Every case starts from a VALID manifest or row and mutates it: keys dropped, values of
another type, huge numbers, text with lone surrogates and template braces, nesting,
repeated keys in the raw text, truncation and byte flips. The contract checked: each
reader either succeeds or raises one of the project's :class:`RationalizerError`
subclasses (which the CLI prints as one line), never any other exception. A manifest
that loads must also render a prompt and survive a save round trip, so that nothing
it lets through fails later. Cases are derandomized (the same every run, as CI needs);
``RATIONALIZER_FUZZ_SCALE=20`` explores 20 times as many fresh cases.
"""

from __future__ import annotations

import copy
import csv
import io
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from rationalizer import Bundle, Manifest
from rationalizer.dataset import example_from_dict, iter_jsonl, read_examples
from rationalizer.errors import RationalizerError
from rationalizer.manifest import MANIFEST_NAME
from rationalizer.prompting import build_prompt, render_codes, resolve_quality
from rationalizer.training.data import FieldMap, read_dataset

SCALE = int(os.environ.get("RATIONALIZER_FUZZ_SCALE", "1"))
ROOT = Path(__file__).resolve().parents[1] / "sdk"


def fuzz(examples: int):
    """Settings of one fuzz target: ``examples`` cases (times SCALE), no deadline, reproducible at scale 1."""
    return settings(max_examples=examples * SCALE, deadline=None, database=None, derandomize=SCALE == 1,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much])


# ---------------------------------------------------------------- valid starting points


def _trimmed(manifest: dict) -> dict:
    """A shipped manifest with only a sample of its (large, free-form) provenance and eval results."""
    return {**manifest, "provenance": dict(list(manifest["provenance"].items())[:2]),
            "eval_results": dict(list(manifest["eval_results"].items())[:1])}


MANIFESTS = [
    _trimmed(json.loads((ROOT / "default_bundle" / MANIFEST_NAME).read_text(encoding="utf-8"))),
    json.loads((ROOT / "base_bundle" / MANIFEST_NAME).read_text(encoding="utf-8")),
    {"name": "m", "base_model": "b", "files": {"gguf": [{"path": "w.gguf", "sha256": "a" * 64, "size": 1}]},
     "control": {"rewards": [{"name": "d", "levels": 3, "bin_edges": [0.1, 0.5]}], "default": {"d": 2},
                 "presets": {"plain": {"d": 1}}},
     "generation": {"max_new_tokens": 8, "context_length": 64, "max_question_chars": 100}},
]
ROWS = [
    {"id": "q1", "question": "Can a penguin fly?", "choices": ["yes", "no"], "answer": "no",
     "rationale": "Penguins are birds that swim.", "kind": "factual", "source": "t"},
    {"question": "What is 2+3?", "answer": 5, "rationale": None},
    {"id": 7, "question": "Where is milk kept cold?", "choices": ["fridge", "oven", "shelf"], "answer": "fridge",
     "rationale": "Fridges are cold.", "kind": "counterfactual", "teacher_answer": "oven", "teacher_correct": False},
]
for manifest in MANIFESTS:  # the starting points must be valid, or the fuzz tests nothing
    Manifest.from_json(json.dumps(manifest))
for number, row in enumerate(ROWS):
    example_from_dict(row, f"rows:{number}", f"line-{number}")

# ---------------------------------------------------------------- values and mutations

ANY_TEXT = st.text(st.characters(categories=["L", "N", "P", "S", "Z", "C"]), max_size=12)  # C: controls, surrogates
TRICKY_TEXT = st.sampled_from([
    "", " ", "\u200b", "\ufeff", "\ud800", "a\udfffb", "\ud83d", "\x00", "\n", "{", "}", "{{", "}}", "{question",
    "{nope}", "{0}", "{question!r}", "{question:>9}", "{codes}{question}{choices}", "{system}{user}", "{text}",
    "<|im_end|>", "..", "../x", "/etc/passwd", "a" * 300, "NaN", "1e999", "-1", "9" * 50,
])
HUGE_INT = st.one_of(st.integers(min_value=-(10**40), max_value=10**40),
                     st.sampled_from([2**32 + 64, 2**63, -(2**63), 10**400]))
NUMBER = st.one_of(HUGE_INT, st.floats(allow_nan=True, allow_infinity=True))
LEAF = st.one_of(st.none(), st.booleans(), NUMBER, ANY_TEXT, TRICKY_TEXT)
KEY = st.one_of(ANY_TEXT, TRICKY_TEXT)
JSON_VALUE = st.recursive(LEAF, lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(KEY, inner, max_size=4)),
                          max_leaves=6)


def _paths(tree: Any, prefix: tuple = ()) -> list[tuple]:
    """Every path into a JSON tree (dict keys and list indices), the root included."""
    out = [prefix]
    if isinstance(tree, dict):
        for key, value in tree.items():
            out += _paths(value, prefix + (key,))
    elif isinstance(tree, list):
        for i, value in enumerate(tree):
            out += _paths(value, prefix + (i,))
    return out


def _at(tree: Any, path: tuple) -> Any:
    for key in path:
        tree = tree[key]
    return tree


@st.composite
def mutated_tree(draw, starts: list) -> Any:
    """A valid tree with 1 to 4 mutations: drop, replace, retype, add a key, wrap, repeat."""
    tree = copy.deepcopy(draw(st.sampled_from(starts)))
    for _ in range(draw(st.integers(1, 4))):
        paths = _paths(tree)
        path = draw(st.sampled_from(paths))
        op = draw(st.sampled_from(["drop", "replace", "retype", "add", "wrap", "repeat"]))
        value = _at(tree, path)
        if not path:  # the root: replace it or add a key
            if op == "replace":
                tree = draw(JSON_VALUE)
            elif isinstance(tree, dict):
                tree[draw(st.one_of(ANY_TEXT, TRICKY_TEXT))] = draw(JSON_VALUE)
            continue
        parent, key = _at(tree, path[:-1]), path[-1]
        if op == "drop":
            del parent[key]
        elif op == "replace":
            parent[key] = draw(JSON_VALUE)
        elif op == "retype":  # the same content as another type: 5 -> "5", "x" -> ["x"], [..] -> {..}
            others = [[value], {value: value}, len(value)] if isinstance(value, str) else [str(value)]
            parent[key] = draw(st.sampled_from(others))
        elif op == "add" and isinstance(value, dict):
            value[draw(st.one_of(ANY_TEXT, TRICKY_TEXT))] = draw(JSON_VALUE)
        elif op == "wrap":
            parent[key] = draw(st.sampled_from([[value], {"x": value}, [[[[value]]]]]))
        elif op == "repeat" and isinstance(value, list):
            value.extend(value[:2])
        else:
            parent[key] = draw(JSON_VALUE)
    return tree


def _dumps(tree: Any, ascii_only: bool) -> str:
    """JSON text of a tree (Python's json writes NaN and Infinity, as a careless writer would)."""
    return json.dumps(tree, ensure_ascii=ascii_only)


@st.composite
def mutated_text(draw, text: str) -> str:
    """Raw text edits of valid JSON: repeated key, truncation, deep nesting, huge number, BOM, junk."""
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["repeat_key", "truncate", "nest", "digits", "bom", "insert", "delete", "literal"]))
        at = draw(st.integers(0, max(len(text) - 1, 0)))
        if op == "repeat_key":
            keys = list(re.finditer(r'"([^"\\]{1,40})": ', text))
            if keys:
                hit = draw(st.sampled_from(keys))
                again = f'"{hit.group(1)}": {draw(st.sampled_from(["0", "null", "[]", "{}"]))}, '
                text = text[: hit.start()] + again + text[hit.start():]
        elif op == "truncate":
            text = text[:at]
        elif op == "nest":
            depth = draw(st.sampled_from([63, 65, 100, 1000, 5000, 100_000]))
            text = text[:at] + "[" * depth + "]" * depth + text[at:]
        elif op == "digits":
            numbers = list(re.finditer(r"\d+", text))
            if numbers:
                hit = draw(st.sampled_from(numbers))
                text = text[: hit.start()] + "9" * draw(st.sampled_from([20, 400, 4300, 4301, 6000])) + text[hit.end():]
        elif op == "bom":
            text = "\ufeff" + text
        elif op == "insert":
            junk = st.one_of(TRICKY_TEXT, ANY_TEXT, st.sampled_from(['\\ud800', '\\u0000', '"', ',', ':', '{', '[']))
            text = text[:at] + draw(junk) + text[at:]
        elif op == "delete":
            text = text[:at] + text[at + draw(st.integers(1, 20)):]
        else:
            text = text[:at] + draw(st.sampled_from(["NaN", "-Infinity", "1e999", "-0", "true", "null"])) + text[at:]
    return text


@st.composite
def flipped_bytes(draw, data: bytes) -> bytes:
    """``data`` with 1 to 4 bytes set to random values (invalid UTF-8 included)."""
    raw = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        if raw:
            raw[draw(st.integers(0, len(raw) - 1))] = draw(st.integers(0, 255))
    return bytes(raw)


def _encode(text: str) -> bytes:
    """Bytes of text that may hold lone surrogates (written as the invalid UTF-8 they would be)."""
    return text.encode("utf-8", "surrogatepass")


@st.composite
def manifest_bytes(draw) -> bytes:
    """Manifest file bytes: a mutated tree, raw text edits, byte flips, or several of them."""
    tree = draw(st.one_of(st.sampled_from(MANIFESTS), mutated_tree(MANIFESTS)))
    text = _dumps(tree, draw(st.booleans()))
    if draw(st.booleans()):
        text = draw(mutated_text(text))
    data = _encode(text)
    return draw(flipped_bytes(data)) if draw(st.booleans()) else data


# ---------------------------------------------------------------- the contract


def _use_manifest(manifest: Manifest) -> None:
    """What a loaded manifest is used for: a prompt with control codes, and saving it again."""
    control = manifest.control
    selection = resolve_quality(control, None)
    for preset in control.presets:
        resolve_quality(control, preset)
    str(build_prompt(manifest.prompt, "Is {it} a question?", ["yes", "no, {not}"], render_codes(control, selection)))
    assert Manifest.from_json(manifest.to_json()) == manifest


def _only_project_errors(call, *args) -> Any:
    """Run ``call``: its value, or None when it raised one of the project's errors (anything else fails)."""
    try:
        return call(*args)
    except RationalizerError as exc:
        assert str(exc).strip(), "an error without a message"
        return None


@fuzz(500)
@given(mutated_tree(MANIFESTS), st.booleans())
def test_manifest_from_json_on_mutated_manifests(tree, ascii_only):
    manifest = _only_project_errors(Manifest.from_json, _dumps(tree, ascii_only))
    if manifest is not None:
        _use_manifest(manifest)


@fuzz(400)
@given(st.sampled_from(MANIFESTS), st.data())
def test_manifest_from_json_on_edited_text(start, data):
    text = data.draw(mutated_text(_dumps(start, data.draw(st.booleans()))))
    manifest = _only_project_errors(Manifest.from_json, text)
    if manifest is not None:
        _use_manifest(manifest)


@pytest.fixture(scope="module")
def scratch():
    """One folder for the whole module (hypothesis runs many cases per test function)."""
    with tempfile.TemporaryDirectory() as folder:
        yield Path(folder)


@fuzz(300)
@given(manifest_bytes())
def test_manifest_and_bundle_load_from_a_file(scratch, raw):
    folder = scratch / "bundle"
    folder.mkdir(exist_ok=True)
    (folder / MANIFEST_NAME).write_bytes(raw)
    manifest = _only_project_errors(Manifest.load, folder)
    bundle = _only_project_errors(Bundle.load, folder)
    assert (manifest is None) == (bundle is None)
    if bundle is not None:
        _use_manifest(bundle.manifest)
        for fmt in bundle.formats():
            for wf in bundle.files(fmt):
                _only_project_errors(bundle.path_of, wf)


# ---------------------------------------------------------------- data rows


@fuzz(300)
@given(mutated_tree(ROWS))
@example({"id": 10**400, "question": "q", "answer": "a"})  # found by this test: int too large for a float
@example({"question": "q", "answer": 10**400})
@example({"question": "\ud800", "answer": "a", "choices": ["a", "\udfff"]})
def test_example_from_dict_on_mutated_rows(row):
    _only_project_errors(example_from_dict, row, "rows.jsonl:1", "line-1")


@st.composite
def jsonl_bytes(draw) -> bytes:
    """A JSONL file of 1 to 4 rows, some mutated as trees, some as text, then maybe byte flips."""
    lines = []
    for _ in range(draw(st.integers(1, 4))):
        tree = draw(st.one_of(st.sampled_from(ROWS), mutated_tree(ROWS)))
        text = _dumps(tree, draw(st.booleans()))
        if draw(st.booleans()):
            text = draw(mutated_text(text)).replace("\n", " ")
        lines.append(text)
    sep = draw(st.sampled_from(["\n", "\r\n", "\n\n"]))
    data = _encode(sep.join(lines) + draw(st.sampled_from(["", "\n"])))
    return draw(flipped_bytes(data)) if draw(st.booleans()) else data


@fuzz(250)
@given(jsonl_bytes())
def test_sdk_jsonl_readers(scratch, raw):
    path = scratch / "rows.jsonl"
    path.write_bytes(raw)
    _only_project_errors(lambda: list(iter_jsonl(path)))
    _only_project_errors(read_examples, path)


@fuzz(200)
@given(jsonl_bytes(), st.booleans())
def test_training_reads_jsonl(scratch, raw, skip_invalid):
    path = scratch / "rows.jsonl"
    path.write_bytes(raw)
    _only_project_errors(read_dataset, path, FieldMap(), skip_invalid)


def _csv_text(rows: list[dict]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["id", "question", "choices", "answer", "rationale"])
    for row in rows:
        choices = row.get("choices")
        choices = "|".join(choices) if isinstance(choices, list) else choices
        writer.writerow([row.get("id", ""), row.get("question", ""), choices,
                         row.get("answer", ""), row.get("rationale") or ""])
    return out.getvalue()


CELLS = ['["a", "b"]', '["a", ', "[1, 2]", "[" * 5000, "a|a|A", "9" * 5000, '["\\ud800", "b"]']


@st.composite
def csv_bytes(draw) -> bytes:
    """A CSV file made from valid rows: cells replaced, text edited, BOM, NUL bytes, byte flips."""
    rows = [copy.deepcopy(draw(st.sampled_from(ROWS))) for _ in range(draw(st.integers(1, 3)))]
    for row in rows:
        if draw(st.booleans()):
            row[draw(st.sampled_from(["id", "question", "choices", "answer", "rationale"]))] = draw(
                st.one_of(ANY_TEXT, TRICKY_TEXT, st.sampled_from(CELLS)))
    text = _csv_text(rows)
    if draw(st.booleans()):
        text = draw(st.one_of(mutated_text(text), st.sampled_from(["\ufeff" + text, text.replace(",", ",\x00", 1),
                                                                   text.replace('"', "", 1), text[: len(text) // 2]])))
    data = _encode(text)
    return draw(flipped_bytes(data)) if draw(st.booleans()) else data


@fuzz(200)
@given(csv_bytes(), st.booleans())
def test_training_reads_csv(scratch, raw, skip_invalid):
    path = scratch / "rows.csv"
    path.write_bytes(raw)
    _only_project_errors(read_dataset, path, FieldMap(), skip_invalid)
