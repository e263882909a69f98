"""RMSprop, Adam and SGD, with torch.optim's exact update rules and state_dict layout; full-batch L-BFGS.

Why not torch.optim: its first use imports TorchDynamo, a large share of a whole ml-100k run's time
(docs/benchmarks.md). These follow torch.optim's single-tensor algorithms step for step (tests compare them),
updating all parameters at once: as one flat tensor (see Optimizer), or with torch's multi-tensor
(_foreach) kernels when some parameter has no gradient. L-BFGS is torch.optim.LBFGS itself, behind the same
interface: its line search is the bulk of the algorithm, and a run that chooses it takes many evaluations of
the whole training set per step, next to which the import is small.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable
from typing import Any

import torch

from trainer.config import TrainConfig

# A step's objective: it evaluates the batch's loss and computes its gradients (backward), as torch.optim's
# closures do. Adam and the others call it once a step; L-BFGS's line search as often as it needs.
Objective = Callable[[], torch.Tensor]
# Elements of the flat tensors an update takes at a time on the CPU (Optimizer._flat_update): a block of each stays
# in cache.
BLOCK = 2**18


class Optimizer:
    """The part of torch.optim.Optimizer's interface the training loop uses.

    The parameters (and each per-parameter state buffer) are made views of one flat tensor, each keeping
    its memory layout, so that a step where every parameter has a gradient updates that one tensor: on the
    CPU torch's _foreach_ kernels loop over their tensors, and the seed model's 8 parameters made 48 small
    ops a step, a measurable part of a step at u1's size.
    """

    defaults: dict[str, float]

    def __init__(self, params, **defaults: float) -> None:
        self.params: list[torch.Tensor] = list(params)
        self.defaults = defaults
        self.state: dict[str, Any] = {"step": 0}
        self.flat = _flatten(self.params)
        # each parameter's dimensions as laid out in memory, None for the usual row-major layout
        self._orders = [None if p.is_contiguous() else _memory_order(p) for p in self.params]
        # where each parameter starts in the flat tensors
        self._starts = [0, *itertools.accumulate(p.numel() for p in self.params)][:-1]
        self._flat_state: dict[str, torch.Tensor] = {}
        # a step's working tensors, kept for the next steps rather than allocated anew (see _scratch)
        self._kept: dict[tuple[Any, ...], list[torch.Tensor]] = {}

    def step(self, objective: Objective | None = None) -> None:
        """One update from the gradients ``objective`` computes (or, without one, those already there)."""
        if objective is not None:
            objective()
        with torch.no_grad():
            if self.flat is not None and self._all_flat():
                self.state["step"] += 1
                self._flat_update(self.flat)
                return
            params = [p for p in self.params if p.grad is not None]
            if not params:
                return
            self.state["step"] += 1
            grads = [_grad(p) for p in params]
            if decay := self.defaults.get("weight_decay", 0.0):
                # not to the parameters' gradients themselves: the notebook preset accumulates them
                grads = list(torch._foreach_add(grads, params, alpha=decay))
            self._update(params, grads, self._buffers)

    def _flat_update(self, flat: torch.Tensor) -> None:
        """The update of every parameter, through the flat tensors, a block at a time: the block's gradients are
        gathered into the optimiser's own flat copy, weight decay added, and every operation of the update done on
        the block before the next. Over the whole of a wide model (3.6 M parameters at ml-32m) each operation would
        read its tensors back from memory; a block's stay in cache. Each element takes the same operations either
        way, and the blocks start where the whole tensors' vector lanes do, so the update is the same to the bit."""
        decay = self.defaults.get("weight_decay", 0.0)
        (flat_grad,) = self._scratch("gradient", [flat])
        grads = [_in_order(_grad(p), order) for p, order in zip(self.params, self._orders)]
        # On a GPU every operation is a kernel launch, and blocks would multiply them: one block there.
        size = BLOCK if flat.device.type == "cpu" else max(flat.numel(), 1)
        for start in range(0, flat.numel(), size):
            end = min(start + size, flat.numel())
            parts = [  # of the parameters this block holds a part of
                grad[max(start, first) - first : min(end, first + grad.numel()) - first]
                for grad, first in zip(grads, self._starts)
                if first < end and start < first + grad.numel()
            ]
            torch.cat(parts, out=flat_grad[start:end])
            if decay:
                flat_grad[start:end].add_(flat[start:end], alpha=decay)
            self._update([flat[start:end]], [flat_grad[start:end]], self._block_buffers(slice(start, end)))

    def _update(
        self, params: list[torch.Tensor], grads: list[torch.Tensor], buffers: Callable[[str], list[torch.Tensor]]
    ) -> None:
        """Update ``params`` from ``grads`` (weight decay added); ``buffers(name)``: their state, aligned with them."""
        raise NotImplementedError

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            if set_to_none:
                p.grad = None
            elif p.grad is not None:
                p.grad.zero_()

    def _all_flat(self) -> bool:
        return self.flat is not None and all(p.grad is not None for p in self.params)

    def _scratch(self, name: str, like: list[torch.Tensor]) -> list[torch.Tensor]:
        """Tensors shaped as ``like``'s, kept from one step to the next under ``name`` and their shapes (a flat
        update's blocks, the last one shorter): the step's working copies of the gradients and square roots are the
        size of the model, written whole each step, and need no new memory each time."""
        key = (name, *(t.shape for t in like))
        if key not in self._kept:
            self._kept[key] = [torch.empty_like(t) for t in like]
        return self._kept[key]

    def _sqrt(self, tensors: list[torch.Tensor]) -> list[torch.Tensor]:
        """The square roots of ``tensors``, in tensors kept for the next step (_scratch)."""
        roots = self._scratch("sqrt", tensors)
        for t, root in zip(tensors, roots):
            torch.sqrt(t, out=root)
        return roots

    def _state(self, name: str) -> list[torch.Tensor]:
        """Every parameter's buffer ``name`` (zeros at first): views of one flat buffer when the parameters are."""
        if name not in self.state:
            if self.flat is None:
                self.state[name] = [torch.zeros_like(p) for p in self.params]
            else:
                self._flat_state[name] = torch.zeros_like(self.flat)
                self.state[name] = _views(self._flat_state[name], self.params)
        return self.state[name]

    def _block_buffers(self, block: slice) -> Callable[[str], list[torch.Tensor]]:
        """The state buffers of a block of the flat parameters, by name."""

        def buffers(name: str) -> list[torch.Tensor]:
            self._state(name)  # the flat buffer, made at the first step
            return [self._flat_state[name][block]]

        return buffers

    def _buffers(self, name: str) -> list[torch.Tensor]:
        """The state ``name`` of the parameters that have a gradient (an update of some parameters only)."""
        return [buffer for buffer, p in zip(self._state(name), self.params) if p.grad is not None]

    def state_dict(self) -> dict[str, Any]:
        return {"defaults": dict(self.defaults), "state": dict(self.state)}

    def load_state_dict(self, saved: dict[str, Any]) -> None:
        self.defaults = dict(saved["defaults"])
        self.state = {name: value for name, value in saved["state"].items() if not isinstance(value, list)}
        self._flat_state = {}
        for name, value in saved["state"].items():
            if isinstance(value, list):
                for buffer, loaded in zip(self._state(name), value):
                    buffer.copy_(loaded)


class RMSprop(Optimizer):
    def __init__(self, params, lr: float, weight_decay: float = 0.0, alpha: float = 0.99, eps: float = 1e-8):
        super().__init__(params, lr=lr, weight_decay=weight_decay, alpha=alpha, eps=eps)

    def _update(
        self, params: list[torch.Tensor], grads: list[torch.Tensor], buffers: Callable[[str], list[torch.Tensor]]
    ) -> None:
        d = self.defaults
        squares = buffers("square_avg")
        torch._foreach_mul_(squares, d["alpha"])
        torch._foreach_addcmul_(squares, grads, grads, value=1 - d["alpha"])
        denominators = self._sqrt(squares)
        torch._foreach_add_(denominators, d["eps"])
        torch._foreach_addcdiv_(params, grads, denominators, value=-d["lr"])


class Adam(Optimizer):
    def __init__(
        self, params, lr: float, weight_decay: float = 0.0, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8
    ):
        super().__init__(params, lr=lr, weight_decay=weight_decay, beta1=beta1, beta2=beta2, eps=eps)

    def _update(
        self, params: list[torch.Tensor], grads: list[torch.Tensor], buffers: Callable[[str], list[torch.Tensor]]
    ) -> None:
        d = self.defaults
        step = self.state["step"]
        means, squares = buffers("exp_avg"), buffers("exp_avg_sq")
        torch._foreach_lerp_(means, grads, 1 - d["beta1"])
        torch._foreach_mul_(squares, d["beta2"])
        torch._foreach_addcmul_(squares, grads, grads, value=1 - d["beta2"])
        bias_correction2_sqrt = (1 - d["beta2"] ** step) ** 0.5
        denominators = self._sqrt(squares)
        torch._foreach_div_(denominators, bias_correction2_sqrt)
        torch._foreach_add_(denominators, d["eps"])
        torch._foreach_addcdiv_(params, means, denominators, value=-d["lr"] / (1 - d["beta1"] ** step))


class SGD(Optimizer):
    def __init__(self, params, lr: float, weight_decay: float = 0.0):
        super().__init__(params, lr=lr, weight_decay=weight_decay)

    def _update(
        self, params: list[torch.Tensor], grads: list[torch.Tensor], buffers: Callable[[str], list[torch.Tensor]]
    ) -> None:
        torch._foreach_add_(params, grads, alpha=-self.defaults["lr"])


class LBFGS(Optimizer):
    """L-BFGS (torch.optim.LBFGS, strong-Wolfe line search), ``iterations`` of it per step: with one batch
    of every row (the papers' full batch), a fixed number of iterations per epoch.

    The learning rate is the line search's first trial step; weight decay joins the objective, so the line
    search sees it. Nothing stops a step early (no tolerance): the iterations are fixed.
    """

    def __init__(
        self, params, lr: float = 1.0, weight_decay: float = 0.0, iterations: int = 20, history: int = 10
    ) -> None:
        super().__init__(params, lr=lr, weight_decay=weight_decay)
        self.lbfgs = torch.optim.LBFGS(
            self.params,
            lr=lr,
            max_iter=iterations,
            max_eval=iterations * 25,  # each line search's limit (max_ls 25): the iterations are what is fixed
            tolerance_grad=0.0,
            tolerance_change=0.0,
            history_size=history,
            line_search_fn="strong_wolfe",
        )

    def step(self, objective: Objective | None = None) -> None:
        if objective is None:
            raise ValueError("L-BFGS steps need the objective: its line search evaluates it again")
        decay = self.defaults.get("weight_decay", 0.0)

        def decayed() -> torch.Tensor:
            loss = objective()
            for p in self.params:  # torch.optim.LBFGS reads each gradient as a view in row-major order
                if p.grad is not None and not p.grad.is_contiguous():
                    p.grad = p.grad.contiguous()
            if decay:
                with torch.no_grad():
                    for p in self.params:
                        if p.grad is not None:
                            p.grad.add_(p, alpha=decay)
                    loss = loss + decay / 2 * sum(p.square().sum() for p in self.params)
            return loss

        self.lbfgs.param_groups[0]["lr"] = self.defaults["lr"]  # the loop's rate drops write to defaults
        self.lbfgs.step(decayed)
        self.state["step"] += 1

    def state_dict(self) -> dict[str, Any]:
        return {"defaults": dict(self.defaults), "state": dict(self.state), "lbfgs": self.lbfgs.state_dict()}

    def load_state_dict(self, saved: dict[str, Any]) -> None:
        self.defaults, self.state = dict(saved["defaults"]), dict(saved["state"])
        # a copy: torch.optim keeps the tensors it is given, and updates some of them in place
        self.lbfgs.load_state_dict(copy.deepcopy(saved["lbfgs"]))


OPTIMIZERS = {"rmsprop": RMSprop, "adam": Adam, "sgd": SGD}


def build_optimizer(params, config: TrainConfig) -> Optimizer:
    """The optimiser ``config`` names, over ``params``."""
    if config.optimizer == "lbfgs":
        return LBFGS(params, config.learning_rate, config.weight_decay, config.lbfgs_iterations)
    return OPTIMIZERS[config.optimizer](params, lr=config.learning_rate, weight_decay=config.weight_decay)


def _flatten(params: list[torch.Tensor]) -> torch.Tensor | None:
    """One tensor holding every parameter, in its own memory layout, the parameters made views of it; None
    when there are none or they differ in dtype or device."""
    if not params or len({(p.dtype, p.device) for p in params}) > 1:
        return None
    flat = torch.cat([_in_order(p.detach(), _memory_order(p)) for p in params])
    for p, view in zip(params, _views(flat, params)):
        p.data = view
    return flat


def _grad(p: torch.Tensor) -> torch.Tensor:
    assert p.grad is not None, "a parameter without a gradient"
    return p.grad


def _memory_order(like: torch.Tensor) -> list[int]:
    """``like``'s dimensions from the outermost in memory to the innermost (a transposed weight's reversed)."""
    return sorted(range(like.dim()), key=lambda d: -like.stride()[d])


def _in_order(t: torch.Tensor, order: list[int] | None) -> torch.Tensor:
    """``t`` flattened with its dimensions taken in ``order`` (a parameter's :func:`_memory_order`; None: as
    they are)."""
    return t.reshape(-1) if order is None else t.permute(order).reshape(-1)


def _views(flat: torch.Tensor, like: list[torch.Tensor]) -> list[torch.Tensor]:
    """``flat`` cut into tensors with the shapes and memory layouts of ``like``'s, in order."""
    views = []
    for part, p in zip(torch.split(flat, [p.numel() for p in like]), like):
        order = _memory_order(p)
        views.append(part.view([p.shape[d] for d in order]).permute([order.index(d) for d in range(p.dim())]))
    return views
