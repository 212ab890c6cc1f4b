"""The detrend's fit as Triton kernels (:mod:`tasks.phase_retrieval.detrend_triton`), which CUDA takes: the
same coefficients as the torch form, through Triton's interpreter on the CPU where Triton is installed
(CPU builds of PyTorch come without it; ``tests/test_gpu.py`` runs the kernels themselves on a GPU), and the
dispatch, which keeps the CPU, exports and unsupported degrees on the torch form."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from sparseconn_tasks.phase_retrieval import detrend, detrend_triton

ROOT = Path(__file__).resolve().parents[2]

_SCRIPT = r"""
import torch
from sparseconn_tasks.phase_retrieval import detrend, detrend_triton
assert detrend_triton.AVAILABLE
torch.manual_seed(0)
worst = 0.0
for degree in (1, 2, 3, 4):
    for h, w in ((64, 96), (200, 136)):  # 136 steps (one program), 850 (two, their parts summed)
        y, x = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
        phase = 3 * x + 2 * y**2 - 1.5 * x * y + 0.8 * x**3 + 6 * torch.exp(-((x - 0.2)**2 + (y + 0.1)**2) / 0.05)
        z = (1 + 0.1 * torch.randn(h, w)) * torch.polar(torch.ones(h, w), phase)
        z = torch.stack([z, 0.5 * z.conj()])  # two frames, each fitted on its own
        br, bi = detrend.block_means(z.real.contiguous(), z.imag.contiguous())
        ref = detrend.fit(br, bi, h, w, degree)
        dispatch, detrend.use_triton = detrend.use_triton, lambda device, d: True  # CPU tensors, interpreted
        got = detrend.fit(br, bi, h, w, degree, graph_safe=True)
        detrend.use_triton = dispatch
        diff = (detrend.plane(got, degree, h, w) - detrend.plane(ref, degree, h, w)).abs().max().item()
        worst = max(worst, diff)
        assert diff < 3e-5, (degree, h, w, diff)
print("worst", worst)
"""


@pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="Triton is not installed (CPU PyTorch)")
@pytest.mark.skipif(tuple(int(p) for p in np.__version__.split(".")[:2]) >= (2, 3),
                    reason="Triton's interpreter (3.6) takes no loops with run-time bounds under NumPy 2.3 and later")
def test_triton_fit_in_the_interpreter_gives_the_torch_forms_polynomial() -> None:
    env = dict(os.environ, TRITON_INTERPRET="1")
    done = subprocess.run([sys.executable, "-c", _SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "worst" in done.stdout


def test_fit_takes_the_torch_form_on_the_cpu_in_exports_and_beyond_degree_4(monkeypatch) -> None:
    def refuse(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise AssertionError("the Triton fit was called")

    fit_steps = detrend_triton.fit_steps
    monkeypatch.setattr(detrend_triton, "fit_steps", refuse)
    g = torch.Generator().manual_seed(0)
    br, bi = torch.randn(1, 12, 16, generator=g), torch.randn(1, 12, 16, generator=g)
    detrend.fit(br, bi, 96, 128, 3, graph_safe=True)  # CPU, graph-safe: the torch form's sliced solve
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert not detrend.use_triton(cpu, 3)
    assert detrend.use_triton(cuda, 3) == detrend_triton.AVAILABLE
    assert not detrend.use_triton(cuda, detrend_triton.MAX_DEGREE + 1)
    monkeypatch.setattr(detrend, "TRITON", False)
    assert not detrend.use_triton(cuda, 3)
    monkeypatch.setattr(detrend, "TRITON", True)
    monkeypatch.setattr(detrend, "exporting", lambda: True)
    assert not detrend.use_triton(cuda, 3)
    with pytest.raises(ValueError, match="degree 5"):
        fit_steps(torch.zeros(1, 2, 4, 4), torch.zeros(1, 2, 4, 4), 32, 32, 5, 8, 10, 2.5, 1e-6)


def test_a_failing_triton_fit_falls_back_to_the_torch_form_once_said(monkeypatch) -> None:
    """Kernels that fail to build on a GPU (or Triton release) they were not written for must not take the
    model down: the fit warns once, answers by the torch form, and skips the kernels on that device after."""
    calls = []

    def broken(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        calls.append(1)
        raise RuntimeError("PTX .version 9.9 does not support .target sm_12\nsecond line")

    monkeypatch.setattr(detrend_triton, "fit_steps", broken)
    monkeypatch.setattr(detrend, "_TRITON_FAILED", {})
    real = detrend.use_triton
    g = torch.Generator().manual_seed(1)
    br, bi = torch.randn(2, 12, 16, generator=g), torch.randn(2, 12, 16, generator=g)
    monkeypatch.setattr(detrend, "use_triton", lambda device, degree: False)
    ref = detrend.fit(br, bi, 96, 128, 3, graph_safe=True)  # the torch form
    monkeypatch.setattr(detrend, "use_triton", lambda device, degree: str(device) not in detrend._TRITON_FAILED)
    with pytest.warns(RuntimeWarning, match=r"Triton fit failed on cpu \(RuntimeError: PTX .version 9.9"):
        got = detrend.fit(br, bi, 96, 128, 3, graph_safe=True)
    assert torch.equal(got, ref) and calls == [1]
    assert detrend._TRITON_FAILED == {"cpu": "PTX .version 9.9 does not support .target sm_12"}
    detrend.fit(br, bi, 96, 128, 3, graph_safe=True)
    assert calls == [1]  # remembered: no second try on that device
    assert not real(torch.device("cpu"), 3)
