from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgemigrate.core.errors import DataFormatError, ValidationError
from edgemigrate.datasets import bundled_catalog, read_dockerhub, sample_services, zipf_weights


def test_bundled_catalog_matches_the_documented_totals() -> None:
    cat = bundled_catalog()
    # shared/data/README.md: 37 images, 269 distinct layers, 9.09 GB summed per image, 5.67 GB de-duplicated
    assert cat.n_images == 37 and cat.n_layers == 269
    assert cat.image_size_bytes.sum() / 1e9 == pytest.approx(9.09, abs=0.005)
    assert cat.layer_size_bytes.sum() / 1e9 == pytest.approx(5.67, abs=0.005)
    assert (cat.matrix.sum(axis=0) >= 2).sum() >= 44  # layers shared between images
    assert "registry" in cat.image_names and cat.index("nginx") >= 0


def test_json_and_flat_csv_give_the_same_catalog(shared_data: Path) -> None:
    a = read_dockerhub(shared_data / "layers" / "dockerhub_official_2023.json")
    b = read_dockerhub(shared_data / "layers" / "dockerhub_official_2023_flat.csv")
    assert a.image_names == b.image_names and a.layer_ids == b.layer_ids
    np.testing.assert_array_equal(a.layer_size_bytes, b.layer_size_bytes)
    for la, lb in zip(a.image_layers, b.image_layers, strict=True):
        np.testing.assert_array_equal(la, lb)
    # base layer first: the registry image starts with its alpine base layer
    doc = json.loads((shared_data / "layers" / "dockerhub_official_2023.json").read_text())
    first = doc["container_images"][0]
    m = a.index(first["name"])
    assert [a.layer_ids[i] for i in a.image_layers[m]] == [lay["digest"] for lay in first["layers"]]


def test_repo_info_layout(shared_data: Path) -> None:
    cat = read_dockerhub(shared_data / "layers" / "dockerhub_repoinfo_2026.json")
    assert cat.image_names == ("nginx", "redis", "postgres", "python", "node")
    # the file's caveat: redis and postgres share the debian:trixie-slim base layer
    shared = cat.matrix[cat.index("redis")] & cat.matrix[cat.index("postgres")]
    assert shared.any()
    assert cat.layer_ids[int(np.flatnonzero(shared)[0])].startswith("sha256:6b37362b")


def test_malformed_layer_files(tmp_path: Path) -> None:
    path = tmp_path / "imgs.json"
    layer = {"digest": "sha256:aa", "size": 10}
    path.write_text(json.dumps({"container_images": [
        {"name": "a", "tag": "latest", "layers": [layer]},
        {"name": "b", "tag": "1.0", "layers": [{"digest": "sha256:aa", "size": 11}]},
    ]}))
    with pytest.raises(DataFormatError, match="image 'b:1.0' layer #0: layer sha256:aa has size 11, elsewhere 10"):
        read_dockerhub(path)
    path.write_text(json.dumps({"container_images": [{"name": "a", "layers": [{"digest": "x", "size": -1}]}]}))
    with pytest.raises(DataFormatError, match="negative layer size"):
        read_dockerhub(path)
    path.write_text(json.dumps({"container_images": [{"name": "a", "layers": []}]}))
    with pytest.raises(DataFormatError, match="no layers"):
        read_dockerhub(path)
    path.write_text(json.dumps({"something": []}))
    with pytest.raises(DataFormatError, match="'container_images' or 'images'"):
        read_dockerhub(path)
    path.write_text('{"container_images": [\n oops')
    with pytest.raises(DataFormatError, match=r"imgs.json:2: invalid JSON"):
        read_dockerhub(path)
    flat = tmp_path / "flat.csv"
    flat.write_text("image,tag,layer_index,layer_digest,size_bytes\na,latest,0,sha256:1,5\na,latest,2,sha256:2,5\n")
    with pytest.raises(DataFormatError, match=r"flat.csv:2: image 'a': layer_index must run 0..1"):
        read_dockerhub(flat)
    flat.write_text("image,tag,layer_index,layer_digest,size_bytes\na,latest,0,sha256:1,five\n")
    with pytest.raises(DataFormatError, match=r"flat.csv:2: .*not a whole number"):
        read_dockerhub(flat)
    flat.write_text("image,layer,size\n")
    with pytest.raises(DataFormatError, match="header must have"):
        read_dockerhub(flat)


def test_zipf_weights() -> None:
    w = zipf_weights(4, 1.0)
    np.testing.assert_allclose(w, np.array([1, 1 / 2, 1 / 3, 1 / 4]) / (25 / 12))
    np.testing.assert_allclose(zipf_weights(5, 0.0), np.full(5, 0.2))
    with pytest.raises(ValidationError, match="zipf_s"):
        zipf_weights(3, -1.0)


def test_sample_services_follows_zipf_popularity() -> None:
    cat = bundled_catalog()
    rng = np.random.default_rng(11)
    ranking = np.arange(cat.n_images)[::-1]
    draws = sample_services(cat, 200_000, rng, zipf_s=1.0, ranking=ranking)
    assert draws.dtype == np.int64 and draws.min() >= 0 and draws.max() < cat.n_images
    freq = np.bincount(draws, minlength=cat.n_images)[ranking] / draws.size
    expect = zipf_weights(cat.n_images, 1.0)
    # multinomial standard error is < 0.0011 for every rank at n = 200,000: allow 5 sigma
    np.testing.assert_allclose(freq, expect, atol=0.0055)
    assert freq[0] / freq[1] == pytest.approx(2.0, rel=0.05)


def test_sample_services_seeded_and_validated() -> None:
    cat = bundled_catalog()
    a = sample_services(cat, 100, np.random.default_rng(5))
    np.testing.assert_array_equal(a, sample_services(cat, 100, np.random.default_rng(5)))
    assert not np.array_equal(a, sample_services(cat, 100, np.random.default_rng(6)))
    uniform = sample_services(cat, 37_000, np.random.default_rng(0), zipf_s=0.0)
    counts = np.bincount(uniform, minlength=cat.n_images)
    assert counts.min() > 800 and counts.max() < 1200
    assert sample_services(cat, 0, np.random.default_rng(0)).size == 0
    with pytest.raises(ValidationError, match="ranking"):
        sample_services(cat, 3, np.random.default_rng(0), ranking=[0, 0, 1])
    with pytest.raises(ValidationError, match="non-negative integer"):
        sample_services(cat, -1, np.random.default_rng(0))
