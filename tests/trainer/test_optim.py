"""trainer.optim against torch.optim: the same parameters after the same steps."""

from __future__ import annotations

import pytest
import torch

from trainer import optim

CASES = [
    (optim.RMSprop, torch.optim.RMSprop, {"lr": 0.01, "weight_decay": 0.5}),
    (optim.RMSprop, torch.optim.RMSprop, {"lr": 0.005}),
    (optim.Adam, torch.optim.Adam, {"lr": 0.02, "weight_decay": 1e-4}),
    (optim.SGD, torch.optim.SGD, {"lr": 0.1, "weight_decay": 0.01}),
]


def params(seed: int) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [
        torch.randn(4, 3, generator=generator, requires_grad=True),
        torch.randn(3, generator=generator, requires_grad=True),
    ]


@pytest.mark.parametrize("ours, theirs, settings", CASES, ids=lambda c: getattr(c, "__name__", ""))
@pytest.mark.parametrize("zero_grad", [True, False], ids=["zeroed", "accumulated"])
def test_same_updates_as_torch(ours, theirs, settings, zero_grad) -> None:
    a, b = params(0), params(0)
    opt_a, opt_b = ours(a, **settings), theirs(b, **settings)
    generator = torch.Generator().manual_seed(1)
    for _ in range(6):
        target = torch.randn(4, 3, generator=generator)
        for ps, opt in ((a, opt_a), (b, opt_b)):
            if zero_grad:
                opt.zero_grad()
            ((ps[0] + ps[1] - target) ** 2).sum().backward()
            opt.step()
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y, rtol=1e-6, atol=1e-7)


def test_state_dict_round_trip_continues_identically() -> None:
    a, b = params(0), params(0)
    opt_a = optim.Adam(a, lr=0.01)
    for _ in range(3):
        opt_a.zero_grad()
        (a[0].sum() ** 2 + a[1].sum()).backward()
        opt_a.step()
    with torch.no_grad():
        for x, y in zip(a, b):
            y.copy_(x)
    opt_b = optim.Adam(b, lr=0.5)
    opt_b.load_state_dict(opt_a.state_dict())
    for ps, opt in ((a, opt_a), (b, opt_b)):
        opt.zero_grad()
        (ps[0].sum() ** 2 + ps[1].sum()).backward()
        opt.step()
    for x, y in zip(a, b):
        assert torch.equal(x, y)


@pytest.mark.parametrize("ours, theirs, settings", CASES[:1] + CASES[2:3], ids=lambda c: getattr(c, "__name__", ""))
def test_a_transposed_parameter_keeps_its_layout_and_gets_the_same_updates(ours, theirs, settings) -> None:
    # The autoencoder stores its first weight column-major (trainer/models.py); the flat buffer must not
    # scramble it.
    def make() -> list[torch.Tensor]:
        generator = torch.Generator().manual_seed(0)
        return [
            torch.randn(3, 4, generator=generator).t().requires_grad_(),
            torch.randn(4, generator=generator, requires_grad=True),
        ]

    a, b = make(), make()
    opt_a, opt_b = ours(a, **settings), theirs(b, **settings)
    assert a[0].stride() == (1, 4) and a[0].data_ptr() == opt_a.flat.data_ptr()
    generator = torch.Generator().manual_seed(1)
    for _ in range(5):
        target = torch.randn(4, 3, generator=generator)
        for ps, opt in ((a, opt_a), (b, opt_b)):
            opt.zero_grad()
            ((ps[0] * torch.arange(3.0) + ps[1][:, None] - target) ** 2).sum().backward()
            opt.step()
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y, rtol=1e-6, atol=1e-7)


def test_a_parameter_without_a_gradient_is_left_alone() -> None:
    a, b = params(0), params(0)
    opt_a, opt_b = optim.RMSprop(a, lr=0.01, weight_decay=0.1), torch.optim.RMSprop(b, lr=0.01, weight_decay=0.1)
    for _ in range(3):
        for ps, opt in ((a, opt_a), (b, opt_b)):
            opt.zero_grad()
            (ps[0] ** 2).sum().backward()  # ps[1] takes no part
            opt.step()
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y, rtol=1e-6, atol=1e-7)
    assert torch.equal(a[1], params(0)[1])
