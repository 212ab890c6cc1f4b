"""The phase task's report picture (the paper's Fig. 4 style), drawn from tiny arrays."""

from __future__ import annotations

import numpy as np
import pytest
from sparseconn_tasks.phase_retrieval.panels import phase_panels

import sparseconn.viz
from sparseconn.errors import SparseconnError
from sparseconn.viz import save_figure
from tests.test_viz import DPI, check_png


def test_phase_panels(tmp_path):
    yy, xx = np.mgrid[0:32, 0:32] / 32.0
    truth = 10 * np.exp(-((xx - 0.5) ** 2 + (yy - 0.5) ** 2) / 0.05)
    holo = 1 + np.cos(2 * np.pi * 6 * xx + truth)
    rng = np.random.default_rng(0)
    outputs = {"U-Net": truth + rng.normal(0, 0.1, truth.shape), "NAS-PRNet": truth + 0.3}
    fig = phase_panels(holo, truth, outputs, scores={"NAS-PRNet": "36.7 dB"}, title="cells")
    titles = [ax.get_title() for ax in fig.axes]
    assert "NAS-PRNet\n36.7 dB" in titles and "error, RMSE 0.300 rad" in titles
    labels = {ax.get_ylabel() for ax in fig.axes}
    assert {"phase (rad)", "error (rad)"} <= labels
    check_png(save_figure(fig, tmp_path / "panels.png", dpi=DPI), tuple(fig.get_size_inches()))
    with pytest.raises(SparseconnError, match="'U-Net' has shape"):
        phase_panels(holo, truth, {"U-Net": truth[:16]})
    # Phase colour limits: the truth's range by default (a 1-rad sample still fills the colour map), or
    # the fixed [0, phase_range]; a flat truth keeps at least 5 % of the range.
    small = truth / 10
    limits = phase_panels(holo, small, outputs).axes[1].images[0].get_clim()
    assert limits[0] == 0.0 and limits[1] == pytest.approx(np.percentile(small, 99.5))
    assert phase_panels(holo, small, outputs, scale="full").axes[1].images[0].get_clim() == (0.0, 12.0)
    assert phase_panels(holo, 0 * truth, {}).axes[1].images[0].get_clim() == pytest.approx((0.0, 0.6))
    with pytest.raises(SparseconnError, match="'truth' or 'full'"):
        phase_panels(holo, truth, outputs, scale="auto")


@pytest.mark.parametrize("name", ["phase_panels", "panels"])
def test_the_task_free_viz_package_names_the_new_home(name):
    expected = rf"^sparseconn\.viz\.{name} moved to the phase task: sparseconn_tasks\.phase_retrieval\.panels "
    with pytest.raises(AttributeError, match=expected + r"\(its function phase_panels\)$"):
        getattr(sparseconn.viz, name)
