"""User errors reach the terminal as their own one line, also when raised in a DataLoader worker."""

from __future__ import annotations

from torch.utils.data import DataLoader, Dataset

from sparseconn.cli.common import one_line
from sparseconn.errors import DataError

MESSAGE = "/data/VOC2012/SegmentationClass/2007_000032.png: label value 40 is not a class (0..20) or 255"


class _BadLabels(Dataset):
    def __len__(self) -> int:
        return 2

    def __getitem__(self, index: int) -> None:
        raise DataError(MESSAGE)


def test_an_error_from_a_dataloader_worker_keeps_its_message():
    try:
        list(DataLoader(_BadLabels(), num_workers=1))
    except DataError as exc:
        assert str(exc).startswith("Caught DataError in DataLoader worker process 0.")  # torch's wrapper
        assert one_line(exc) == MESSAGE
    else:
        raise AssertionError("the worker's DataError was not raised")


def test_one_line_keeps_the_first_line_of_an_ordinary_message():
    assert one_line(DataError("first line\nsecond line")) == "first line"
    assert one_line(DataError("")) == "DataError"
