"""The jobs behind the CLI (search, prune, train, evaluate, pipeline, infer, export, draw), the trainer, run
folders and checkpoints, the fast inference path and the reports. Imports torch; the core
(:mod:`sparseconn`) never imports this package.

Where things are: :mod:`~sparseconn.engine.jobs` (search, prune, train, train_model),
:mod:`~sparseconn.engine.pipeline`, :mod:`~sparseconn.engine.evaluate` and
:mod:`~sparseconn.engine.baselines`, :mod:`~sparseconn.engine.infer`, :mod:`~sparseconn.engine.export`,
:mod:`~sparseconn.engine.rundir` (the run folder's layout, its checkpoints),
:mod:`~sparseconn.engine.loading` (trained models from checkpoints), :mod:`~sparseconn.engine.drawing`
(``draw``) and :mod:`~sparseconn.engine.run_report` (``report.md``, ``report.html``).
:mod:`~sparseconn.engine.runs`, :mod:`~sparseconn.engine.report` and :mod:`~sparseconn.engine.deploy` only
re-export names that moved.
"""
