"""NAS-PRNet phase retrieval (plugs into sparseconn through the plugin entry point)."""

from tasks.phase_retrieval.heads import RegressionHead

__all__ = ["RegressionHead"]
