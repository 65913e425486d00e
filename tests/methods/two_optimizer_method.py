"""A test method with two optimisers, manual optimisation and an outer step on validation crops.

Registered as ``two_optimizer_test`` when imported. Per training batch: an inner step of the host
(``optim`` section: Adam with a per-step warm-up cosine in the tests) on ``(1 + tanh(alpha)) * BCE``, with
``alpha`` detached and the gradient clipped through the context; on the first batch of every odd epoch
an outer step of ``alpha`` alone (its own SGD) on a validation-crop batch. ``outer_steps`` is
non-parameter state that must survive ``--resume``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from irfoundry.methods.base import Method, register_method
from irfoundry.methods.context import DataRequests
from irfoundry.models.base import main_output
from irfoundry.optim import OptimizerSpec, build_optimizer, build_scheduler, param_groups


@dataclass
class TwoOptimizerOptions:
    outer_lr: float = 0.1
    clip: float = 1.0
    #: a simulated Ctrl-C when this epoch starts (after the previous epoch's resume state was saved)
    stop_at_epoch: int | None = None


@register_method("two_optimizer_test", options=TwoOptimizerOptions)
class TwoOptimizer(Method):
    automatic_optimization = False

    def __init__(self, host, cfg) -> None:
        super().__init__(host, cfg)
        self.alpha = nn.Parameter(torch.zeros(1))
        self.outer_steps = 0

    def data_requests(self) -> DataRequests:
        return DataRequests(loaders=["val_crops"])

    def configure_optimizers(self, optim, length):
        inner = build_optimizer(optim, param_groups(self.host.named_parameters(), optim))
        outer = torch.optim.SGD([self.alpha], lr=self.opts.outer_lr)
        return [OptimizerSpec("inner", inner, build_scheduler(inner, optim, length), optim.interval),
                OptimizerSpec("outer", outer)]

    def _loss(self, batch, alpha):
        return (1 + torch.tanh(alpha)) * F.binary_cross_entropy_with_logits(main_output(self.host(batch["image"])),
                                                                            batch["target"])

    def training_step(self, batch, ctx):
        opts = ctx.optimizers()
        inner = opts["inner"]
        inner.zero_grad()
        loss = self._loss(batch, self.alpha.detach()).mean()
        ctx.manual_backward(loss)
        ctx.clip_gradients(inner, self.opts.clip)
        inner.step()
        ctx.log_dict({"loss": loss.detach()})
        if ctx.batch_idx == 0 and ctx.epoch % 2 == 1:
            outer = opts["outer"]
            outer.zero_grad()
            val = ctx.next_batch("val_crops")
            outer_loss = self._loss(val, self.alpha).mean() + 0.1 * self.alpha.square().sum()
            ctx.manual_backward(outer_loss, "outer loss")
            outer.step()
            self.outer_steps += 1
            ctx.log_dict({"loss/outer": outer_loss.detach()})
        return loss.detach()

    def on_train_epoch_start(self, ctx) -> None:
        if self.opts.stop_at_epoch is not None and ctx.epoch == self.opts.stop_at_epoch:
            raise KeyboardInterrupt

    def method_state(self) -> dict:
        return {"outer_steps": self.outer_steps}

    def load_method_state(self, state) -> None:
        self.outer_steps = int(state["outer_steps"])
