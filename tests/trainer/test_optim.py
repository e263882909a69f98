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
    # The autoencoder stores its first weight column-major (trainer/models/autoencoders.py); the flat buffer must not
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


@pytest.mark.parametrize("ours, theirs, settings", CASES, ids=lambda c: getattr(c, "__name__", ""))
def test_an_update_a_block_at_a_time_is_the_whole_update_to_the_bit(ours, theirs, settings, monkeypatch) -> None:
    # Blocks of 1,000 elements over 20,000 parameters, against one block of them all: the last block is shorter, and
    # the transposed weight's columns straddle blocks.
    def run(block: int) -> list[torch.Tensor]:
        monkeypatch.setattr(optim, "BLOCK", block)
        generator = torch.Generator().manual_seed(0)
        ps = [
            torch.randn(5, 3990, generator=generator).t().requires_grad_(),
            torch.randn(50, generator=generator, requires_grad=True),
        ]
        opt = ours(ps, **settings)
        for _ in range(4):
            opt.zero_grad()
            target = torch.randn(3990, 5, generator=generator)
            ((ps[0] * ps[1][:5] - target) ** 2).sum().backward()
            opt.step()
        return ps

    for x, y in zip(run(1000), run(2**20)):
        assert torch.equal(x, y)


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


def test_lbfgs_solves_a_least_squares_problem_with_a_transposed_parameter() -> None:
    # A column-major parameter (the autoencoder's first weight) and weight decay joining the objective:
    # the minimiser of ||X w + b - y||^2 + decay/2 ||(w, b)||^2, in closed form. In float64: in float32 the
    # last digits the comparison reads depend on the machine's arithmetic.
    generator = torch.Generator().manual_seed(0)
    x, y = (torch.randn(*shape, generator=generator, dtype=torch.float64) for shape in ((20, 3), (20,)))
    w = torch.zeros(1, 3, dtype=torch.float64).t().requires_grad_()  # 3 x 1, column-major
    b = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    decay = 0.5
    opt = optim.LBFGS([w, b], lr=1.0, weight_decay=decay, iterations=30)

    def objective() -> torch.Tensor:
        opt.zero_grad()
        loss = ((x @ w).squeeze(1) + b - y).square().sum()
        loss.backward()
        return loss

    opt.step(objective)
    design = torch.cat([x, torch.ones(20, 1, dtype=torch.float64)], 1)
    exact = torch.linalg.solve(2 * design.T @ design + decay * torch.eye(4, dtype=torch.float64), 2 * design.T @ y)
    torch.testing.assert_close(torch.cat([w.detach().squeeze(1), b.detach()]), exact, rtol=1e-7, atol=1e-9)
    assert opt.state["step"] == 1


def test_lbfgs_state_dict_round_trip_continues_identically() -> None:
    def quadratic(ps: list[torch.Tensor], opt: optim.Optimizer) -> torch.Tensor:
        opt.zero_grad()
        loss = (ps[0] - 1).pow(4).sum() + (ps[1] + 2).square().sum() + (ps[0].sum() * ps[1].sum()).square()
        loss.backward()
        return loss

    a, b = params(0), params(0)
    opt_a = optim.LBFGS(a, iterations=3)
    opt_a.step(lambda: quadratic(a, opt_a))
    with torch.no_grad():
        for x, y in zip(a, b):
            y.copy_(x)
    opt_b = optim.LBFGS(b, lr=0.5, iterations=3)
    opt_b.load_state_dict(opt_a.state_dict())
    opt_a.step(lambda: quadratic(a, opt_a))
    opt_b.step(lambda: quadratic(b, opt_b))
    for x, y in zip(a, b):
        assert torch.equal(x, y)


def test_lbfgs_needs_the_objective() -> None:
    opt = optim.LBFGS(params(0))
    with pytest.raises(ValueError, match="objective"):
        opt.step()
