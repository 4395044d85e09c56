"""Shared test set-up."""

import pytest
import torch


@pytest.fixture(scope="session", autouse=True)
def single_thread():
    """The tests' tensors and networks are tiny: intra-op threads only add hand-off cost (badly so on a busy
    2-core CI machine), so the whole suite runs torch on one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
