import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread():
    # Bit-identical results on CPU need the same thread count (docs/method.md#sb3-and-the-norms); one is also
    # fastest here.
    torch.set_num_threads(1)
