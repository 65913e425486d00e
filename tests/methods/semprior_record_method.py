"""A semprior that saves, on every process, its trainable tensors after each epoch (``semprior_record_test``,
registered when imported): the DDP test checks that both processes hold the same host, SCAM and cluster
logits after inner steps, outer phases and label updates. ``IRFOUNDRY_TEST_RECORD`` names the folder."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from irfoundry.methods.base import register_method
from irfoundry.methods.semprior import SemPrior, SemPriorOptions


@register_method("semprior_record_test", options=SemPriorOptions)
class SemPriorRecord(SemPrior):
    def on_train_epoch_end(self, ctx):
        super().on_train_epoch_end(ctx)
        folder = os.environ.get("IRFOUNDRY_TEST_RECORD")
        if folder:
            # parameters (BatchNorm buffers are each process's own between DDP's broadcasts from rank 0)
            state = {k: v.detach().cpu().clone() for k, v in self.named_parameters()}
            labels = {sid: ctx.stores["val_labels"].full(sid)[0].clone() for sid in ctx.stores["val_labels"].ids}
            torch.save({"state": state, "val_labels": labels, "outer_phases": self.outer_phases},
                       Path(folder) / f"rank{ctx.rank}_epoch{ctx.epoch}.pt")
