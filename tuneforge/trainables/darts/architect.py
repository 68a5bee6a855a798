"""The architecture's optimisation step (Liu, Simonyan & Yang, ICLR 2019, section 2.3, eq. 5-8).

DARTS is a bilevel problem: the weights ``w`` minimise the training loss L_train(w, a), the
architecture ``a`` minimises the validation loss L_val(w*(a), a) at the optimal weights. Here
"validation" is the held-out half of the training data (the supernet trial keeps the dataset's
own validation split for its reports). Each step of ``a`` uses one of two gradients:

- first order: ``grad_a L_val(w, a)``, as if w* did not depend on a;
- second order (eq. 7-8): one unrolled SGD step ``w' = w - xi grad_w L_train(w, a)``, then
  ``grad_a L_val(w', a) - xi H v`` with ``v = grad_w' L_val(w', a)`` and the Hessian-vector
  product ``H v = grad^2_{a,w} L_train(w, a) v``, by the paper's central finite difference
  (``hvp="finite_difference"``): ``[grad_a L_train(w+, a) - grad_a L_train(w-, a)] / (2 eps)``,
  ``w+- = w +- eps v``, ``eps = 0.01 / ||v||``; or exactly (``hvp="exact"``), by double backward:
  ``grad_a (grad_w L_train(w, a) . v)``. The supernet's loss is only piecewise smooth (ReLU,
  pooling, BatchNorm over few values), and a finite step of that size crosses its kinks: on a
  small supernet in float64 the difference was 6% to 10x off the exact product
  (tests/trainables/darts/test_models.py); the exact one costs a second backward pass through
  the graph of the first instead of two forward-backward passes.

Symbols: ``w`` the supernet's weights (:meth:`~.search_model.Supernet.weights`), ``a`` its
architecture parameters (two (E, K) tensors), ``xi`` the weights' current learning rate (the
paper's choice). A batch is ``(images (N, C, S, S) float, labels (N,) int64)``. The unrolled and
perturbed weights are evaluated with ``torch.func.functional_call`` on copies of the BatchNorm
buffers, so those passes leave the model alone. The passes at the model's own weights (the
first-order validation loss; second order, the training loss whose gradient unrolls the step) are
plain forward passes: in train mode they update the BatchNorm running statistics, as any
training-mode forward does. No pass changes a weight or an alpha: only the optimiser's step moves
the alphas. The unrolled step is plain SGD, as in eq. 7 (the DARTS repository adds the optimiser's
momentum and weight decay).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch.func import functional_call
from torch.nn import functional as F

from tuneforge.trainables.darts.search_model import Supernet

__all__ = ["HVP_METHODS", "Batch", "arch_gradients", "arch_step", "hessian_vector_product", "loss_at"]

Batch = tuple[torch.Tensor, torch.Tensor]

_FINITE_DIFFERENCE_R = 0.01
"""eps = r / ||v||: the paper's step for the finite difference of eq. 8."""
HVP_METHODS = ("finite_difference", "exact")


def loss_at(model: Supernet, batch: Batch, weights: Mapping[str, torch.Tensor] | None = None) -> torch.Tensor:
    """Cross-entropy of ``model`` on ``batch``, with its own weights or with ``weights`` (name ->
    tensor) in their place (and copies of its BatchNorm buffers, which the pass then updates)."""
    images, labels = batch
    if weights is None:
        return F.cross_entropy(model(images), labels)
    buffers = {name: buffer.clone() for name, buffer in model.named_buffers()}
    return F.cross_entropy(functional_call(model, {**weights, **buffers}, (images,)), labels)


def _grad(loss: torch.Tensor, inputs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """``torch.autograd.grad``, with zeros for an input the loss does not use (the normal cells'
    alphas of a supernet whose every cell reduces)."""
    gradients = torch.autograd.grad(loss, list(inputs), allow_unused=True)
    return [torch.zeros_like(x) if g is None else g for x, g in zip(inputs, gradients, strict=True)]


def _named_weights(model: Supernet) -> dict[str, torch.Tensor]:
    arch = {id(p) for p in model.arch_parameters()}
    return {name: p for name, p in model.named_parameters() if id(p) not in arch}


def hessian_vector_product(model: Supernet, vector: Sequence[torch.Tensor], batch: Batch,
                           method: str = "finite_difference") -> list[torch.Tensor]:
    """``grad^2_{a,w} L(w, a) v`` on ``batch``, by the central difference of eq. 8 or ``exact``ly
    (see the module's notes); ``vector`` matches the weights (:meth:`Supernet.weights`' order).
    One (E, K) tensor per alpha. Neither changes a weight, an alpha or a BatchNorm statistic."""
    weights = _named_weights(model)
    alphas = model.arch_parameters()
    if method == "exact":
        at = {name: w.detach().requires_grad_() for name, w in weights.items()}
        gradients = torch.autograd.grad(loss_at(model, batch, at), list(at.values()), create_graph=True)
        dot = sum((g * v.detach()).sum() for g, v in zip(gradients, vector, strict=True))
        return _grad(dot, alphas)
    assert method == "finite_difference", f"method must be one of {HVP_METHODS}, got {method!r}"
    eps = _FINITE_DIFFERENCE_R / torch.cat([v.flatten() for v in vector]).norm().clamp_min(1e-12)
    gradients = []
    for sign in (1.0, -1.0):
        moved = {name: w.detach() + sign * eps * v
                 for (name, w), v in zip(weights.items(), vector, strict=True)}
        gradients.append(_grad(loss_at(model, batch, moved), alphas))
    return [(plus - minus) / (2 * eps) for plus, minus in zip(*gradients, strict=True)]


def arch_gradients(model: Supernet, train_batch: Batch, val_batch: Batch, *, order: int,
                   xi: float, hvp: str = "finite_difference") -> tuple[list[torch.Tensor], torch.Tensor]:
    """The gradient of the validation loss with respect to each alpha (first or second order,
    whose Hessian-vector product is computed by ``hvp``) and that loss (at ``w``, or at the
    unrolled ``w'``; detached, 0-dim, on the model's device)."""
    alphas = model.arch_parameters()
    if order == 1:
        loss = loss_at(model, val_batch)
        return _grad(loss, alphas), loss.detach()
    assert order == 2, f"order must be 1 or 2, got {order}"
    weights = _named_weights(model)
    train_gradients = _grad(loss_at(model, train_batch), list(weights.values()))
    unrolled = {name: (w - xi * g).detach().requires_grad_()  # eq. 7
                for (name, w), g in zip(weights.items(), train_gradients, strict=True)}
    loss = loss_at(model, val_batch, unrolled)
    gradients = _grad(loss, [*alphas, *unrolled.values()])
    alpha_gradients, v = gradients[:len(alphas)], gradients[len(alphas):]
    hessian_v = hessian_vector_product(model, v, train_batch, hvp)
    return [g - xi * h for g, h in zip(alpha_gradients, hessian_v, strict=True)], loss.detach()


def arch_step(model: Supernet, optimizer: torch.optim.Optimizer, train_batch: Batch, val_batch: Batch, *,
              order: int, xi: float, hvp: str = "finite_difference") -> torch.Tensor:
    """One step of the architecture optimiser (``optimizer`` holds the alphas alone) on a held-out
    ``val_batch`` (and, second order, the weights' ``train_batch``); returns the validation loss,
    a 0-dim tensor on the model's device (reading it is a host sync: the trainable sums the
    epoch's losses there and reads them once). Only the alphas change: the weights get no
    gradient and no step (the BatchNorm running statistics do move, see the module's notes)."""
    gradients, loss = arch_gradients(model, train_batch, val_batch, order=order, xi=xi, hvp=hvp)
    optimizer.zero_grad(set_to_none=True)
    for alpha, gradient in zip(model.arch_parameters(), gradients, strict=True):
        alpha.grad = gradient.detach()
    optimizer.step()
    return loss
