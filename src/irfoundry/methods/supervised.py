"""Plain supervised training of a host on full masks (the BasicIRSTD protocol)."""

from __future__ import annotations

from torch import Tensor

from irfoundry.losses import build_loss, deep_supervision_loss
from irfoundry.methods.base import Batch, Method, register_method


@register_method("supervised")
class Supervised(Method):
    """``loss = l(main) [+ aux_weight * sum l(aux)] / (1 + aux_weight * n_aux)`` against the mask.

    ``cfg.loss`` names the loss (:data:`irfoundry.losses.LOSSES`), ``cfg.aux_weight`` weights
    deep-supervision outputs of hosts that have them (DNANet, UIU-Net, MSHNet).
    """

    def __init__(self, host, cfg) -> None:
        super().__init__(host, cfg)
        self.loss_fn = build_loss(cfg.loss)

    def training_loss(self, batch: Batch) -> tuple[Tensor, dict[str, Tensor]]:
        out = self.host(batch["image"])
        loss = deep_supervision_loss(out, batch["mask"], self.loss_fn, self.cfg.aux_weight)
        return loss, {"loss": loss.detach()}
