"""``python -m sparseconn`` (also what ``torchrun -m sparseconn`` runs)."""

from sparseconn.cli import main

main()
