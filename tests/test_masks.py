import pytest
import torch
from torch.nn.utils import prune

from causalprune.errors import EmptyLayerError, MaskError
from causalprune.masks import (
    apply_masks,
    check_not_empty,
    check_shrinks,
    combine,
    current_masks,
    load_masks,
    make_permanent,
    ones_masks,
    read_masks,
    save_masks,
    sparsity,
)


def _random_masks(model, p=0.5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {k: (torch.rand(v.shape, generator=g) > p).to(torch.uint8) for k, v in ones_masks(model).items()}


def test_masks_are_torch_prune_buffers(tiny_net):
    masks = _random_masks(tiny_net)
    apply_masks(tiny_net, masks)
    for name in ("conv", "fc"):
        mod = getattr(tiny_net, name)
        assert prune.is_pruned(tiny_net) and hasattr(mod, "weight_orig") and hasattr(mod, "weight_mask")
        assert torch.equal(mod.weight, mod.weight_orig * mod.weight_mask)
    got = current_masks(tiny_net)
    assert all(torch.equal(got[k], masks[k]) for k in masks)
    # replacing a mask replaces it (no silent multiplication), and weight follows immediately
    masks2 = _random_masks(tiny_net, seed=1)
    apply_masks(tiny_net, masks2)
    assert torch.equal(current_masks(tiny_net)["fc.weight"], masks2["fc.weight"])
    assert torch.equal(tiny_net.fc.weight, tiny_net.fc.weight_orig * masks2["fc.weight"])
    make_permanent(tiny_net)
    assert not prune.is_pruned(tiny_net)
    assert int((tiny_net.fc.weight == 0).sum()) >= int((masks2["fc.weight"] == 0).sum())


def test_combine_only_shrinks(tiny_net):
    a, b = _random_masks(tiny_net, seed=2), _random_masks(tiny_net, seed=3)
    c = combine(a, b)
    check_shrinks(a, c)
    check_shrinks(b, c)
    assert sparsity(c) >= max(sparsity(a), sparsity(b))
    with pytest.raises(AssertionError, match="grew"):
        check_shrinks(c, a)


def test_round_trip_and_mismatch_errors(tiny_net, tmp_path):
    masks = _random_masks(tiny_net)
    save_masks(tmp_path / "m.safetensors", masks)
    from tests.conftest import TinyNet

    fresh = TinyNet()
    load_masks(fresh, tmp_path / "m.safetensors")
    assert all(torch.equal(current_masks(fresh)[k], masks[k]) for k in masks)
    with pytest.raises(MaskError, match="not in the model"):
        apply_masks(fresh, {"nope.weight": masks["fc.weight"]})
    with pytest.raises(MaskError, match="shape"):
        apply_masks(fresh, {"fc.weight": torch.ones(2, 2, dtype=torch.uint8)})
    (tmp_path / "t.safetensors").write_bytes((tmp_path / "m.safetensors").read_bytes()[:40])
    from causalprune.errors import CheckpointError

    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        read_masks(tmp_path / "t.safetensors")


def test_empty_layer_is_named(tiny_net):
    masks = ones_masks(tiny_net)
    masks["conv.weight"].zero_()
    with pytest.raises(EmptyLayerError, match="conv.weight"):
        check_not_empty(masks, False, "use a smaller --l1-coeff")
    check_not_empty(masks, True, "")
