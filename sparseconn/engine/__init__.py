"""The jobs behind the CLI (search, prune, train, evaluate, pipeline, infer, export), the trainer, run
folders and checkpoints, the fast inference path and the reports. Imports torch; the core
(:mod:`sparseconn`) never imports this package."""
