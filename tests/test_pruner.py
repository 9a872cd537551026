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
    # The second phase recorded only the weights still alive, and pruned weights stayed exactly 0.
    assert pruner.recorder.width == sum(int(m.sum()) for m in masks.values())
    assert not bool(model.fc.weight[masks["fc.weight"] == 0].any())
    again = pruner.compute_masks()
    assert all(bool((again[k] <= masks[k]).all()) for k in masks)
    assert sparsity(again) > sparsity(masks), "the second phase prunes more, it does not just keep the old masks"


def test_pruner_refuses_adam(tiny_net):
    import pytest

    with pytest.raises(TypeError, match="SGD"):
        CausalPruner(tiny_net, torch.optim.Adam(tiny_net.parameters()))


def _loop(model, opt, pruner, batches):
    for x, y in batches:
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(); loss.backward(); opt.step()
        pruner.step(loss)


def test_rewind_before_the_first_step_is_not_recorded(tiny_net):
    """Algorithm 1 line 7 in a user's loop: build the pruner, rewind, then train. The first recorded
    row is that first step's own dtheta/lr, not the jump back to the rewind point."""
    model, lr = tiny_net, 0.05
    rewind = {k: v.clone() for k, v in model.state_dict().items()}
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    g = torch.Generator().manual_seed(1)
    batches = [(torch.randn(16, 1, 6, 6, generator=g), torch.randint(0, 3, (16,), generator=g)) for _ in range(6)]
    _loop(model, opt, _NoPruner(), batches[:3])  # train away from the rewind point
    pruner = CausalPruner(model, opt, l1_coeff=1e-7, record_dtype="fp32")
    model.load_state_dict(rewind)  # the rewind, after the pruner was built
    before = model.fc.weight.detach().clone()
    _loop(model, opt, pruner, batches[3:4])
    step = (model.fc.weight.detach() - before) / lr
    rec = pruner.recorder
    slot = next(s for s in rec.slots if s.key == "fc.weight")
    first_row = rec.deltas()[0, slot.start:slot.stop]
    assert torch.allclose(first_row, step.reshape(-1), rtol=1e-5, atol=1e-7), "the rewind leaked into dtheta"
    # later steps stay consistent too
    _loop(model, opt, pruner, batches[4:])
    assert rec.steps == 3


class _NoPruner:
    def step(self, loss):
        pass


def test_pruner_refuses_bad_settings(tiny_net):
    import pytest

    from causalprune.errors import ConfigError

    opt = torch.optim.SGD(tiny_net.parameters(), lr=0.05)
    with pytest.raises(ConfigError, match="l1"):
        CausalPruner(tiny_net, opt, l1_coeff=-1.0)
    with pytest.raises(ConfigError, match="unknown CausalPruner setting"):
        CausalPruner(tiny_net, opt, l1_coef=1e-7)


def test_a_weight_that_never_moves_is_pruned_and_the_moving_ones_are_kept(tiny_net):
    """γ_k lines up with weight k end to end (recorder, flattening, solver, mask): entries whose
    gradient is held at zero have (Δθ_k)² = 0 at every step, so their γ stays 0 (eq. 9) and they are
    pruned; every third entry in flattened order, so a transposed or shifted layout would show."""
    model = tiny_net
    frozen = {n: torch.arange(p.numel()).reshape(p.shape) % 3 == 0 for n, p in model.named_parameters()
              if n.endswith("weight")}
    for n, p in model.named_parameters():
        if n in frozen:
            p.register_hook(lambda grad, f=frozen[n]: grad.masked_fill(f, 0.0))
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    g = torch.Generator().manual_seed(0)
    pruner = CausalPruner(model, opt, l1_coeff=1e-10)
    _loop(model, opt, pruner, [(torch.randn(16, 1, 6, 6, generator=g), torch.randint(0, 3, (16,), generator=g))
                               for _ in range(30)])
    masks = pruner.compute_masks()
    assert set(masks) == set(frozen)
    for name, keep in masks.items():
        assert not bool(keep[frozen[name]].any()), f"{name}: a weight that never moved was kept"
        assert keep[~frozen[name]].float().mean() > 0.9, f"{name}: moving weights were pruned wholesale"
