"""Multi-task training helpers: uncertainty weighting and PCGrad.

* :class:`UncertaintyWeighting` with ``form='ccta'`` reproduces the CCTA
  4-vessel study exactly (facts/ecgfounder_ccta.md section 2.3): learnable
  s_i (``log_vars``, initialised to 0); the model receives the per-task
  losses exp(-s_i) L_i with s_i treated as constants; s is trained by its own
  loss L_s = sum_i exp(-s_i) stopgrad(L_i) + sum_i s_i (no 1/2).  With
  ``form='kendall'`` it is Kendall, Gal & Cipolla (CVPR 2018), with s = log sigma^2:
  regression tasks 1/2 exp(-s) L + 1/2 s, classification tasks exp(-s) L + 1/2 s.
* :func:`pcgrad` projects conflicting task gradients (Yu et al., NeurIPS 2020):
  ``order='random'`` is the paper's algorithm (each task projected against the
  *original* gradients of the others in random order, then summed);
  ``order='fixed'`` is the CCTA variant (pairs i < j in fixed order, g_i
  projected in place against g_j only when g_i.g_j < 0 and ||g_j||^2 > 0, with
  eps 1e-12, then the mean).  :func:`pcgrad_backward` writes the combined
  gradient into ``.grad`` of the given parameters.
"""

from __future__ import annotations

import torch
from torch import nn

from ecgcore.errors import ConfigError

__all__ = ["UncertaintyWeighting", "pcgrad", "pcgrad_backward"]


class UncertaintyWeighting(nn.Module):
    """Learned task weights from homoscedastic uncertainty.

    Parameters
    ----------
    n_tasks : int
    form : {'ccta', 'kendall'}
    kinds : sequence of {'regression', 'classification'}, optional
        Kendall form only; default all 'regression' (the 1/2 on the loss).

    Attributes
    ----------
    log_vars : Parameter (n_tasks,)
        s_i, initialised to 0 (the CCTA module's state is ``{'log_vars': ...}``).
    """

    def __init__(self, n_tasks: int, form: str = "ccta", kinds=None):
        super().__init__()
        if form not in ("ccta", "kendall"):
            raise ConfigError(f"uncertainty weighting form must be 'ccta' or 'kendall', not {form!r}")
        self.form = form
        self.log_vars = nn.Parameter(torch.zeros(n_tasks))
        kinds = list(kinds or ["regression"] * n_tasks)
        if len(kinds) != n_tasks or any(k not in ("regression", "classification") for k in kinds):
            raise ConfigError("kinds must list 'regression' or 'classification' once per task")
        self.register_buffer("_loss_scale", torch.tensor([0.5 if k == "regression" else 1.0 for k in kinds]),
                             persistent=False)

    def _stack(self, losses):
        if isinstance(losses, dict):
            losses = list(losses.values())
        L = torch.stack(list(losses)) if not torch.is_tensor(losses) else losses
        if L.shape != self.log_vars.shape:
            raise ConfigError(f"expected {self.log_vars.numel()} task losses, got shape {tuple(L.shape)}")
        return L

    def task_losses(self, losses):
        """Per-task weighted losses for the *model* gradient (s_i detached in the CCTA form)."""
        L = self._stack(losses)
        s = self.log_vars
        if self.form == "ccta":
            return torch.exp(-s.detach()) * L
        return self._loss_scale * torch.exp(-s) * L + 0.5 * s

    def weight_loss(self, losses):
        """CCTA: L_s = sum exp(-s_i) stopgrad(L_i) + sum s_i, the loss that trains s."""
        L = self._stack(losses).detach()
        s = self.log_vars
        if self.form == "ccta":
            return (torch.exp(-s) * L).sum() + s.sum()
        return (self._loss_scale * torch.exp(-s) * L + 0.5 * s).sum()

    def forward(self, losses):
        """Scalar total whose gradient trains both the model and s (no PCGrad).

        CCTA: sum exp(-s)L (model path) + L_s (s path); Kendall: the joint objective.
        """
        if self.form == "ccta":
            return self.task_losses(losses).sum() + self.weight_loss(losses)
        return self.task_losses(losses).sum()


def _flat(g):
    if torch.is_tensor(g):
        return g.reshape(-1)
    return torch.cat([t.reshape(-1) for t in g])


def pcgrad(grads, order: str = "random", reduction: str | None = None, generator=None, eps: float = 1e-12):
    """Combine per-task gradients with projecting conflicting gradients.

    Parameters
    ----------
    grads : sequence of tensors (or of tensor lists, flattened together)
        One gradient per task.
    order : {'random', 'fixed'}
        'random': Yu et al. 2020 (projection against the original g_j, tasks
        visited in a random order per task).  'fixed': the CCTA variant.
    reduction : {'sum', 'mean'}, optional
        Default 'sum' for 'random' (as in the paper), 'mean' for 'fixed' (as CCTA).
    generator : torch.Generator, optional
        For the random order.

    Returns
    -------
    Tensor
        The combined flat gradient.
    """
    G = torch.stack([_flat(g).to(torch.float64 if _flat(g).dtype == torch.float64 else torch.float32)
                     for g in grads])
    n = G.shape[0]
    reduction = reduction or ("sum" if order == "random" else "mean")
    if order == "fixed":
        P = G.clone()
        for i in range(n):
            for j in range(i + 1, n):
                d = P[i] @ G[j]
                nj = G[j] @ G[j]
                if d < 0 and nj > 0:
                    P[i] = P[i] - d / (nj + eps) * G[j]
    elif order == "random":
        P = G.clone()
        for i in range(n):
            others = [j for j in range(n) if j != i]
            perm = torch.randperm(len(others), generator=generator).tolist()
            for idx in perm:
                j = others[idx]
                d = P[i] @ G[j]
                if d < 0:
                    P[i] = P[i] - d / (G[j] @ G[j]).clamp_min(eps) * G[j]
    else:
        raise ConfigError(f"pcgrad order must be 'random' or 'fixed', not {order!r}")
    if reduction not in ("sum", "mean"):
        raise ConfigError(f"pcgrad reduction must be 'sum' or 'mean', not {reduction!r}")
    return P.sum(0) if reduction == "sum" else P.mean(0)


def pcgrad_backward(task_losses, params, order: str = "fixed", reduction: str | None = None, generator=None):
    """Compute per-task gradients of ``params``, combine them with :func:`pcgrad`, write ``.grad``.

    Missing gradients count as zeros (as in the CCTA code).  Returns the combined flat gradient.
    """
    params = [p for p in params if p.requires_grad]
    grads = []
    for i, loss in enumerate(task_losses):
        g = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
        grads.append([torch.zeros_like(p) if gi is None else gi for p, gi in zip(params, g)])
    flat = pcgrad(grads, order=order, reduction=reduction, generator=generator)
    offset = 0
    for p in params:
        n = p.numel()
        p.grad = flat[offset:offset + n].view_as(p).to(p.dtype).clone()
        offset += n
    return flat
