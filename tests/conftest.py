import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread():
    # Bit-identical results on CPU need the same thread count (DESIGN §4.6); one is also fastest here.
    torch.set_num_threads(1)
