"""SparseMask's semantic-segmentation task (plugs into sparseconn through the plugin entry point).

Importing the package registers the ``segmentation`` head and the ``segmentation`` task.
"""

from sparseconn_tasks.segmentation.heads import SegmentationHead
from sparseconn_tasks.segmentation.task import SegmentationConfig, SegmentationTask

__all__ = ["SegmentationConfig", "SegmentationHead", "SegmentationTask"]
