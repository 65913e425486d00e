"""A PAL that saves the host's weights just before each label update (``pal_record_test``, registered when
imported): the DDP test recomputes the update from them in one process. ``IRFOUNDRY_TEST_RECORD`` names the
folder; rank 0 writes ``host_update<N>.pt``."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from irfoundry.methods.base import register_method
from irfoundry.methods.pal import PAL, PALOptions


@register_method("pal_record_test", options=PALOptions)
class PALRecord(PAL):
    def update(self, ctx, lose_ratio):
        folder = os.environ.get("IRFOUNDRY_TEST_RECORD")
        if folder and ctx.rank == 0:
            torch.save({"state": self.host.state_dict(), "lose_ratio": lose_ratio},
                       Path(folder) / f"host_update{self.updates}.pt")
        super().update(ctx, lose_ratio)
