"""SparseMask's semantic-segmentation task (plugs into sparseconn through the plugin entry point)."""

from tasks.segmentation.heads import SegmentationHead

__all__ = ["SegmentationHead"]
