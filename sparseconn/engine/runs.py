"""Kept so that old imports keep working: this module's contents were split by responsibility.

- :mod:`sparseconn.engine.jobs`: ``RunOptions``, ``seed_everything``, ``regularizer_context``,
  ``refuse_model``, ``search``, ``prune``, ``train``, ``train_model``;
- :mod:`sparseconn.engine.rundir` (the run folder and its layout): ``prepare_run_dir``,
  ``find_checkpoint``, ``read_checkpoint``, ``run_folder_of``, ``config_of``, ``check_run_membership``;
- :mod:`sparseconn.engine.loading`: ``make_task``, ``LoadedModel``, ``load_model``, ``load_supernet``.

New code imports from those modules.
"""

from sparseconn.engine.jobs import (
    RunOptions,
    prune,
    refuse_model,
    regularizer_context,
    search,
    seed_everything,
    train,
    train_model,
)
from sparseconn.engine.loading import LoadedModel, load_model, load_supernet, make_task
from sparseconn.engine.rundir import (
    check_run_membership,
    config_of,
    find_checkpoint,
    prepare_run_dir,
    read_checkpoint,
    run_folder_of,
)

__all__ = [
    "LoadedModel",
    "RunOptions",
    "check_run_membership",
    "config_of",
    "find_checkpoint",
    "load_model",
    "load_supernet",
    "make_task",
    "prepare_run_dir",
    "prune",
    "read_checkpoint",
    "refuse_model",
    "regularizer_context",
    "run_folder_of",
    "search",
    "seed_everything",
    "train",
    "train_model",
]
