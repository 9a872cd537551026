"""Recorder alignment (method-facts §1): deltas sum to theta_T - theta_0; loss t is minibatch t at theta_t."""

import pytest
import torch
import torch.nn.functional as F

from causalprune.errors import RecordMemoryError
from causalprune.masks import apply_masks, ones_masks, weight_of
from causalprune.models import prunable_layers
from causalprune.record.recorder import Recorder
from causalprune.units import parse_bytes


def _batches(n=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(5, 1, 6, 6, generator=g), torch.randint(0, 3, (5,), generator=g)) for _ in range(n)]


def _flat(model):
    return torch.cat([weight_of(m).detach().reshape(-1).clone() for m in prunable_layers(model).values()])


def test_deltas_sum_and_losses_align(tiny_net):
    lr = 0.05
    masks = ones_masks(tiny_net)
    masks["fc.weight"][0] = 0          # a pruned row must not be recorded
    apply_masks(tiny_net, masks)
    opt = torch.optim.SGD(tiny_net.parameters(), lr=lr)
    rec = Recorder(tiny_net, masks, lr=lr, max_steps=10, dtype="fp32")
    assert rec.width == sum(int(m.sum()) for m in masks.values())
    theta0 = _flat(tiny_net)
    batches, thetas, losses = _batches(), [], []
    for x, y in batches:
        thetas.append(_flat(tiny_net))
        loss = F.cross_entropy(tiny_net(x), y)
        opt.zero_grad(); loss.backward(); opt.step()
        rec.after_step(loss)
        losses.append(float(loss.detach()))
    live = torch.cat([m.reshape(-1).bool() for m in masks.values()])
    total = rec.deltas().double().sum(0) * lr
    assert torch.allclose(total, (_flat(tiny_net) - theta0)[live].double(), atol=1e-6)
    # row t is theta_{t+1} - theta_t (divided by lr)
    thetas.append(_flat(tiny_net))
    for t in range(len(batches)):
        assert torch.allclose(rec.deltas()[t] * lr, (thetas[t + 1] - thetas[t])[live], atol=1e-7)
    # L_t is minibatch t evaluated at theta_t; y_s = L_{s+1} - L_s
    assert torch.allclose(rec.losses[:6].float(), torch.tensor(losses), atol=1e-6)
    y = rec.targets()
    assert y.shape == (5,) and torch.allclose(y, torch.tensor(losses[1:]) - torch.tensor(losses[:-1]), atol=1e-6)
    assert rec.targets(lag=2).shape == (4,)


def test_bf16_storage_is_two_bytes_and_close(tiny_net):
    rec = Recorder(tiny_net, ones_masks(tiny_net), lr=0.1, max_steps=4, dtype="bf16")
    assert rec.buffer.element_size() == 2
    opt = torch.optim.SGD(tiny_net.parameters(), lr=0.1)
    for x, y in _batches(3):
        loss = F.cross_entropy(tiny_net(x), y)
        opt.zero_grad(); loss.backward(); opt.step()
        rec.after_step(loss)
    g = tiny_net.fc.weight.grad.reshape(-1)
    row = rec.deltas()[2, rec.slots[1].start:rec.slots[1].stop].float()
    assert torch.allclose(row, -g, rtol=1e-2, atol=1e-6)  # dtheta/lr = -grad for plain SGD


def test_memory_check_says_what_to_change(tiny_net):
    with pytest.raises(RecordMemoryError, match="--record-dtype bf16"):
        Recorder(tiny_net, ones_masks(tiny_net), lr=0.1, max_steps=10**6, budget_bytes=1000)
    assert parse_bytes("8GB") == 8 * 1024**3 and parse_bytes("1.5 GiB") == int(1.5 * 1024**3)


def test_recorder_grows_for_unknown_lengths(tiny_net):
    rec = Recorder(tiny_net, ones_masks(tiny_net), lr=0.1, max_steps=2, dtype="fp32")
    opt = torch.optim.SGD(tiny_net.parameters(), lr=0.1)
    for x, y in _batches(5):
        loss = F.cross_entropy(tiny_net(x), y)
        opt.zero_grad(); loss.backward(); opt.step()
        rec.after_step(loss)
    assert rec.steps == 5 and rec.deltas().shape[0] == 5


class _Epochs:
    """Minimal batch source for train_epoch: the same list of batches every epoch."""

    def __init__(self, batches):
        self.batches = batches

    def epoch(self, seed):
        return iter(self.batches)

    def __len__(self):
        return len(self.batches)


def test_loss_samples_records_the_first_k_samples_and_trains_on_all(tiny_net):
    """--loss-samples k: L_t is the mean loss of minibatch t's first k samples at theta_t, while
    the step (so every Delta theta) is the one of the whole batch."""
    import copy

    from causalprune.train import first_samples_loss, train_epoch

    lr, k = 0.05, 2
    twin = copy.deepcopy(tiny_net)
    batches = _batches()
    masks = ones_masks(tiny_net)
    rec = Recorder(tiny_net, masks, lr=lr, max_steps=10, dtype="fp32")
    train_epoch(tiny_net, _Epochs(batches), torch.optim.SGD(tiny_net.parameters(), lr=lr), seed=0,
                callbacks=[rec], loss_fn=first_samples_loss(k))
    opt = torch.optim.SGD(twin.parameters(), lr=lr)
    expected, whole = [], []
    for x, y in batches:
        out = twin(x)
        expected.append(float(F.cross_entropy(out[:k].detach(), y[:k])))
        loss = F.cross_entropy(out, y)
        whole.append(float(loss.detach()))
        opt.zero_grad(); loss.backward(); opt.step()
    assert torch.allclose(rec.losses[:6].float(), torch.tensor(expected), atol=1e-6)
    assert torch.equal(_flat(tiny_net), _flat(twin)), "the step must still use the whole batch"
    assert max(abs(a - b) for a, b in zip(whole, expected)) > 1e-2, "subset and whole batch must differ here"


def test_the_last_partial_minibatch_is_recorded_with_its_own_mean_loss(tiny_net):
    """docs/method.md §1: an epoch's last, smaller minibatch is recorded like the others. Its step is
    a row of the recording (so the rows still add up to the training path) and its L_t is the
    mean loss over its own samples."""
    import copy

    from causalprune.train import train_epoch

    lr = 0.05
    g = torch.Generator().manual_seed(3)
    batches = [(torch.randn(n, 1, 6, 6, generator=g), torch.randint(0, 3, (n,), generator=g)) for n in (8, 8, 3)]
    twin = copy.deepcopy(tiny_net)
    start = _flat(tiny_net).clone()
    rec = Recorder(tiny_net, ones_masks(tiny_net), lr=lr, max_steps=3, dtype="fp32")
    train_epoch(tiny_net, _Epochs(batches), torch.optim.SGD(tiny_net.parameters(), lr=lr), seed=0, callbacks=[rec])
    assert rec.steps == 3
    opt = torch.optim.SGD(twin.parameters(), lr=lr)
    for x, y in batches:
        loss = F.cross_entropy(twin(x), y)
        opt.zero_grad(); loss.backward(); opt.step()
    assert float(rec.losses[2]) == pytest.approx(float(loss.detach()), abs=1e-6), "the partial batch's own mean"
    total = rec.deltas().sum(0) * lr  # the rows add up to theta_T - theta_0 (live weights, all here)
    assert torch.allclose(total, (_flat(tiny_net) - start)[: total.numel()], atol=1e-6)
