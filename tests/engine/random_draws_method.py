"""A test method whose every batch draws from torch's global generator and from a named loader.

Registered as ``random_draws_test`` when imported. Per training batch: the loss of the batch scaled by
``0.5 + torch.rand(())`` (a stand-in for dropout: it reads torch's global generator) plus a tenth of the
loss of the next ``val_crops`` batch (a named loader whose position is part of the epoch). A run resumed
inside an epoch reproduces it only if the generator and the loader position come back exactly.

``IRFOUNDRY_TEST_SIGNAL=SIG:EPOCH:BATCH`` (for example ``KILL:2:2``) makes the process send itself that
signal when it starts training batch ``BATCH`` of epoch ``EPOCH``: a real interruption at a known point.
The variable is read from the environment, not the config, so the resumed run does not repeat it.
"""

from __future__ import annotations

import os
import signal

import torch
import torch.nn.functional as F

from irfoundry.methods.base import Method, register_method
from irfoundry.methods.context import DataRequests
from irfoundry.models.base import main_output


@register_method("random_draws_test")
class RandomDraws(Method):
    def data_requests(self) -> DataRequests:
        return DataRequests(loaders=["val_crops"])

    def _bce(self, batch):
        return F.binary_cross_entropy_with_logits(main_output(self.host(batch["image"])), batch["target"])

    def training_step(self, batch, ctx):
        cut = os.environ.get("IRFOUNDRY_TEST_SIGNAL")
        if cut:
            name, epoch, index = cut.split(":")
            if (ctx.epoch, ctx.batch_idx) == (int(epoch), int(index)):
                os.kill(os.getpid(), getattr(signal, f"SIG{name}"))
        noise = torch.rand(())
        loss = (0.5 + noise) * self._bce(batch) + 0.1 * self._bce(ctx.next_batch("val_crops"))
        ctx.log_dict({"loss": loss.detach(), "noise": noise})
        return loss
