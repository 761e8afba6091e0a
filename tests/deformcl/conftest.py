from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    # the CI machine has 2 cores shared with other test workers
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="session")
def small_case():
    from vesseltree.deformcl.data import synthetic_case

    return synthetic_case(3, modality="ct")
