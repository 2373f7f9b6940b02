from __future__ import annotations

import numpy as np
import pytest

from edgemigrate.core.errors import ValidationError
from edgemigrate.mobileuser import BsSite, RadioModel, default_sites
from edgemigrate.radio import WIFI_PATHLOSS


@pytest.fixture(scope="module")
def model() -> RadioModel:
    return RadioModel(default_sites(3, 60.0), hysteresis_db=3.0)


def test_rssi_is_the_projects_path_loss_model(model: RadioModel) -> None:
    rssi = model.rssi_dbm((10.0, 0.0))
    assert list(rssi) == ["bs1", "bs2", "bs3"]
    expected = WIFI_PATHLOSS.rssi_dbm(np.array([10.0, 50.0, 110.0]))
    assert [rssi[n] for n in rssi] == pytest.approx(list(expected))
    assert rssi["bs1"] > rssi["bs2"] > rssi["bs3"]


def test_hysteresis_keeps_the_serving_bs_until_another_is_better_by_the_margin(model: RadioModel) -> None:
    # midway the two are equal; a little past it bs2 is better, but by less than 3 dB
    for x in (30.0, 32.0):
        r = model.rssi_dbm((x, 0.0))
        assert r["bs2"] - r["bs1"] < 3.0
        assert model.choose((x, 0.0), "bs1") == "bs1"
        assert model.choose((x, 0.0), None) == ("bs1" if x == 30.0 else "bs2")  # no hysteresis for a new MU
    r = model.rssi_dbm((36.0, 0.0))
    assert r["bs2"] - r["bs1"] >= 3.0
    assert model.choose((36.0, 0.0), "bs1") == "bs2"
    # and symmetric on the way back
    assert model.choose((28.0, 0.0), "bs2") == "bs2"
    assert model.choose((24.0, 0.0), "bs2") == "bs1"


def test_out_of_every_cell_means_no_bs() -> None:
    m = RadioModel((BsSite("bs1", 0.0, 0.0),), min_rssi_dbm=-60.0)
    assert m.choose((5.0, 0.0), None) == "bs1"
    assert m.choose((5000.0, 0.0), "bs1") is None


def test_invalid_radio_input() -> None:
    with pytest.raises(ValidationError, match="duplicate"):
        RadioModel((BsSite("bs1", 0, 0), BsSite("bs1", 1, 0)))
    with pytest.raises(ValidationError, match="non-empty"):
        RadioModel(())
    with pytest.raises(ValidationError, match="unknown base station 'bs9'"):
        RadioModel(default_sites()).choose((0.0, 0.0), "bs9")
    with pytest.raises(ValidationError, match="bs.name"):
        BsSite("BS 1", 0.0, 0.0)
    with pytest.raises(ValidationError, match="sites.count"):
        default_sites(0)
