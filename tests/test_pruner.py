"""The README's CausalPruner example, run as written, plus its invariants."""

import torch
import torch.nn.functional as F
from torch.nn.utils import prune

from causalprune import CausalPruner
from causalprune.masks import sparsity


def test_readme_example(tiny_net):
    model = tiny_net
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    g = torch.Generator().manual_seed(0)
    loader = [(torch.randn(16, 1, 6, 6, generator=g), torch.randint(0, 3, (16,), generator=g)) for _ in range(30)]

    pruner = CausalPruner(model, opt, l1_coeff=1e-7)
    for x, y in loader:
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(); loss.backward(); opt.step()
        pruner.step(loss)
    masks = pruner.compute_masks()
    pruner.apply(masks)

    assert pruner.steps == 0  # a fresh recording for the next phase
    assert prune.is_pruned(model)
    assert torch.equal(model.fc.weight_mask.to(torch.uint8), masks["fc.weight"])
    assert 0 < sparsity(masks) < 100
    # A second phase only shrinks the masks further.
    for x, y in loader[:10]:
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(); loss.backward(); opt.step()
        pruner.step(loss)
    again = pruner.compute_masks()
    assert all(bool((again[k] <= masks[k]).all()) for k in masks)


def test_pruner_refuses_adam(tiny_net):
    import pytest

    with pytest.raises(TypeError, match="SGD"):
        CausalPruner(tiny_net, torch.optim.Adam(tiny_net.parameters()))
