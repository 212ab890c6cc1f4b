"""NAS-PRNet phase retrieval (plugs into sparseconn through the ``sparseconn.plugins`` entry point).

Importing the package registers the ``regression`` head, the ``hologram`` and ``sideband`` input ops,
the ``phase_retrieval`` task, the ``classical`` model and the ``sparseconn data`` commands.
"""

from sparseconn_tasks.phase_retrieval.cli import add_data_commands  # importing it registers `sparseconn data`
from sparseconn_tasks.phase_retrieval.heads import RegressionHead
from sparseconn_tasks.phase_retrieval.inputs import HologramInput, SidebandInput
from sparseconn_tasks.phase_retrieval.models import ClassicalModel
from sparseconn_tasks.phase_retrieval.task import PhaseRetrievalConfig, PhaseRetrievalTask

__all__ = ["ClassicalModel", "HologramInput", "PhaseRetrievalConfig", "PhaseRetrievalTask", "RegressionHead",
           "SidebandInput", "add_data_commands"]
