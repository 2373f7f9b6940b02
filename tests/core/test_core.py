from __future__ import annotations

import pickle

import numpy as np
import pytest

from edgemigrate.core.errors import ConfigError, DataFormatError, ValidationError
from edgemigrate.core.geo import Area, LocalProjection, haversine_m
from edgemigrate.core.registry import Registry, suggest
from edgemigrate.core.seeding import SeedTree


def test_data_format_error_message_and_pickle() -> None:
    e = DataFormatError("/x/trace.txt", 12, "bad latitude")
    assert str(e) == "/x/trace.txt:12: bad latitude"
    e2 = pickle.loads(pickle.dumps(e))  # crosses process pools intact
    assert str(e2) == str(e) and e2.line == 12


def test_seed_tree_is_order_independent_and_distinct() -> None:
    a, b = SeedTree(5), SeedTree(5)
    x = a.rng("mobility").random(3)
    b.rng("tasks").random(10)
    np.testing.assert_array_equal(x, b.rng("mobility").random(3))
    assert not np.array_equal(x, a.rng("tasks").random(3))
    assert not np.array_equal(x, SeedTree(6).rng("mobility").random(3))
    with pytest.raises(ValueError):
        SeedTree(-1)


def test_registry_suggests() -> None:
    r: Registry[int] = Registry("thing")
    r.add("alpha", 1)
    with pytest.raises(ConfigError, match="unknown thing 'alpah' \\(did you mean 'alpha'\\?\\)"):
        r.get("alpah")
    assert suggest("zzz", ["a", "b"]) == " (choose from: a, b)"


def test_projection_round_trip_and_distance() -> None:
    p = LocalProjection(37.77, -122.42)
    ll = np.array([[37.78, -122.40], [37.70, -122.50]])
    xy = p.to_xy(ll[:, 0], ll[:, 1])
    np.testing.assert_allclose(p.to_latlon(xy), ll, atol=1e-9)
    d_local = np.hypot(*(xy[0] - xy[1]))
    d_true = haversine_m(ll[0, 0], ll[0, 1], ll[1, 0], ll[1, 1])
    assert abs(d_local - d_true) / d_true < 1e-3


def test_area() -> None:
    a = Area(0, 0, 10, 5)
    assert a.contains([[1, 1], [11, 1]]).tolist() == [True, False]
    np.testing.assert_allclose(a.clip([[11, -1]]), [[10, 0]])
    with pytest.raises(ValidationError, match="empty area"):
        Area(0, 0, 0, 5)
