"""Plain supervised training of a host on its targets (the BasicIRSTD protocol), with the warm-up of
hosts that declare one (MSHNet)."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from irfoundry.errors import ConfigError
from irfoundry.losses import build_loss, deep_supervision_loss
from irfoundry.methods.base import Batch, Method, register_method


@dataclass
class SupervisedOptions:
    #: last warm-up epoch (0-based, inclusive); ``null``: the host's own value (MSHNet: 5), ``-1``: no warm-up
    warm_epochs: int | None = None

    def __post_init__(self) -> None:
        if self.warm_epochs is not None and self.warm_epochs < -1:
            raise ConfigError(
                f"method.options.warm_epochs must be an integer >= -1 (last warm-up epoch, 0-based; -1: none), "
                f"got {self.warm_epochs!r}"
            )


@register_method("supervised", options=SupervisedOptions)
class Supervised(Method):
    """``loss = l(main) [+ aux_weight * sum l(aux)] / (1 + aux_weight * n_aux)`` against ``batch["target"]``.

    ``cfg.loss`` names the loss (:data:`irfoundry.losses.LOSSES`), ``cfg.aux_weight`` weights
    deep-supervision outputs of hosts that have them (DNANet, UIU-Net, MSHNet).

    Warm-up: a host that declares ``WARMUP_OUTPUT`` (an index into its training-mode output list) and
    ``warm_epochs`` (MSHNet: 5, its reference ``--warm-epoch``) is trained on that one output alone,
    ``loss = l(outputs[WARMUP_OUTPUT])``, while ``epoch <= warm_epochs`` (0-based, inclusive: the
    reference's first 6 epochs), and on all outputs afterwards. ``method.options.warm_epochs`` overrides
    the host's value with the same meaning; ``-1`` disables the warm-up. Validation and the exported
    network always use the main (fused) output, also during the warm-up: that is what ships. (The
    reference validates its warm-up output during those epochs.)
    """

    def __init__(self, host, cfg) -> None:
        super().__init__(host, cfg)
        self.loss_fn = build_loss(cfg.loss)
        self.warmup_output: int | None = getattr(host, "WARMUP_OUTPUT", None)
        warm = self.opts.warm_epochs
        if warm is None:
            warm = getattr(host, "warm_epochs", -1)
        elif warm >= 0 and self.warmup_output is None:
            raise ConfigError(
                f"method.options.warm_epochs = {warm} but host {type(host).__name__} declares no WARMUP_OUTPUT "
                "(only hosts with a warm-up, e.g. mshnet, take it); remove the option"
            )
        self.warm_epochs = warm
        self.epoch = 0

    def on_train_epoch_start(self, ctx) -> None:
        self.epoch = int(ctx.epoch)

    @property
    def in_warmup(self) -> bool:
        """Whether the current epoch trains ``outputs[WARMUP_OUTPUT]`` alone."""
        return self.warmup_output is not None and self.epoch <= self.warm_epochs

    def training_loss(self, batch: Batch) -> tuple[Tensor, dict[str, Tensor]]:
        out = self.host(batch["image"])
        if self.in_warmup:
            loss = self.loss_fn(out[self.warmup_output], batch["target"])
        else:
            loss = deep_supervision_loss(out, batch["target"], self.loss_fn, self.cfg.aux_weight)
        return loss, {"loss": loss.detach()}
