"""Heads: the task-specific output layer on the output decoder stage.

Tasks register their heads (``regression`` for phase retrieval, ``segmentation`` for SparseMask);
the core only defines the contract::

    @register_head("my_head")
    class MyHead(nn.Module):
        def __init__(self, in_channels: int, **params): ...
        def forward(self, x: Tensor, input_size: tuple[int, int]) -> Tensor: ...
"""

from __future__ import annotations

from torch import nn

from sparseconn.registry import Registry, make_register

HEADS: Registry[type[nn.Module]] = Registry("head")
register_head = make_register(HEADS)
