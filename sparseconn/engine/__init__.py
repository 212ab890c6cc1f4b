"""The jobs behind the CLI (search, prune, train, evaluate, pipeline, infer, export, draw), the trainer, run
folders and checkpoints, the fast inference path and the reports. Imports torch; the core
(:mod:`sparseconn`) never imports this package.

Where things are: :mod:`~sparseconn.engine.jobs` (search, prune, train, train_model),
:mod:`~sparseconn.engine.pipeline`, :mod:`~sparseconn.engine.evaluate` and
:mod:`~sparseconn.engine.baselines`, :mod:`~sparseconn.engine.deploy` (infer, export),
:mod:`~sparseconn.engine.rundir` (the run folder's layout, its checkpoints),
:mod:`~sparseconn.engine.loading` (trained models from checkpoints), :mod:`~sparseconn.engine.drawing`
(``draw``) and :mod:`~sparseconn.engine.run_report` (``report.md``, ``report.html``).
:mod:`~sparseconn.engine.runs` and :mod:`~sparseconn.engine.report` only re-export names that moved.
"""
