"""The extension point for training methods.

A *method* is how batches train the networks, plus what is exported. It is built from the config by
:func:`build_method`, which calls the method's :meth:`Method.from_config` builder: that is the one place
where modules named in the options (a frozen foundation model, a teacher) are built and injected into the
constructor, so the constructor itself only receives modules (``host``, ``foundation``, ...), never names.
A method never reaches into a host beyond the :class:`~irfoundry.models.EncoderDecoder` interface.

To add one (``lesps``, ``semprior``, ``simir_distill`` in later issues)::

    @dataclass
    class MineOptions:                      # typed, checked when the config is loaded
        weight: float = 0.1

    @register_method("mine", options=MineOptions)
    class Mine(Method):
        def training_loss(self, batch):     # automatic optimisation: one loss per batch
            return loss, {"loss": loss.detach()}

Everything is optional but the loss; the hooks, all receiving the engine's
:class:`~irfoundry.methods.context.StepContext`:

* :meth:`training_step` (default: :meth:`training_loss`, logged) -- with ``automatic_optimization = False``
  the method steps its optimisers itself (``ctx.optimizers()``, ``ctx.manual_backward``,
  ``ctx.clip_gradients``) and may read named loaders (``ctx.next_batch("val_crops")``);
* :meth:`configure_optimizers` (default: one optimiser over every trainable parameter from the ``optim``
  section, :mod:`irfoundry.optim`), :meth:`no_weight_decay`;
* :meth:`on_train_epoch_start` / :meth:`on_train_epoch_end`;
* :meth:`method_state` / :meth:`load_method_state`: non-parameter state (schedule phase, evolved labels,
  ...) saved with every resume checkpoint and restored by ``--resume`` (tensors that belong to the method
  are better registered as parameters or buffers: they travel in the state dict);
* :meth:`data_requests`: per-crop features for the batches, named loaders;
* :meth:`eval_branches`, :meth:`predict_logits`, :meth:`export_model`, :meth:`describe`.

Schedules (warm-up, curriculum, label evolution) key off ``ctx.epoch`` / ``ctx.global_step``, never off a
counter of their own, so ``--resume`` restores them.
"""

from __future__ import annotations

import difflib
from typing import Any, Callable, ClassVar, Mapping

from torch import Tensor, nn

from irfoundry.errors import ConfigError
from irfoundry.methods.context import BuildEnv, DataRequests, NoOptions, StepContext, check_finite
from irfoundry.models.base import main_output
from irfoundry.optim import OptimConfig, OptimizerSpec, ScheduleLength, build_optimizer, build_scheduler, param_groups

__all__ = ["Batch", "Method", "build_method", "check_finite", "list_methods", "method_class", "register_method"]

Batch = Mapping[str, object]
"""A training batch: ``image`` ``B x C x h x w`` (normalised), ``target`` ``B x 1 x h x w`` float in [0, 1]
(what the run trains on), ``id`` (list of str), ``geometry`` ``B x 8`` (the crops), plus any requested
features (lists of ``B x C_i x h_i x w_i``) and per-image attributes (``B`` tensors or lists)."""


class Method(nn.Module):
    """Base class. ``self.host`` is the deployable network; everything trainable is a submodule."""

    name: ClassVar[str] = ""
    #: the typed options dataclass of ``method.options`` (set by :func:`register_method`)
    Options: ClassVar[type] = NoOptions
    #: ``False``: :meth:`training_step` steps the optimisers itself
    automatic_optimization: ClassVar[bool] = True

    def __init__(self, host: nn.Module, cfg) -> None:
        super().__init__()
        self.host = host
        self.cfg = cfg
        #: the typed options (``cfg.options``, parsed when the config was loaded)
        self.opts = cfg.options if isinstance(cfg.options, self.Options) else _parse_options(type(self), cfg.options)

    @classmethod
    def from_config(cls, host: nn.Module, cfg, env: BuildEnv) -> "Method":
        """Build the method from its config: construct the modules its options name and inject them.
        Default: ``cls(host, cfg)``."""
        return cls(host, cfg)

    # ------------------------------------------------------------------------------------ training
    def training_step(self, batch: Batch, ctx: StepContext) -> Tensor | None:
        """One training batch. Automatic optimisation: return the loss (the engine runs backward and the
        optimiser); the default returns :meth:`training_loss`'s and logs its scalars. Manual optimisation:
        step through ``ctx`` and return ``None`` (or a detached loss, which is only logged)."""
        loss, logs = self.training_loss(batch)
        ctx.log_dict(logs)
        return loss

    def training_loss(self, batch: Batch) -> tuple[Tensor, dict[str, Tensor]]:
        """Scalar loss for one training batch, plus named scalars to log."""
        raise NotImplementedError(f"method {self.name!r} implements neither training_step nor training_loss")

    def configure_optimizers(self, optim: OptimConfig, length: ScheduleLength) -> list[OptimizerSpec]:
        """The method's optimisers and schedules. Default: one optimiser (``optim.optimizer``) over every
        trainable parameter, grouped by :func:`irfoundry.optim.param_groups`, with ``optim.scheduler``.
        Several optimisers need ``automatic_optimization = False``."""
        opt = build_optimizer(optim, param_groups(self.named_parameters(), optim, no_decay=self.no_weight_decay()))
        return [OptimizerSpec("main", opt, build_scheduler(opt, optim, length), optim.interval)]

    def no_weight_decay(self) -> tuple[str, ...]:
        """Parameter names (or prefixes ending in ``.``) kept out of weight decay when
        ``optim.no_decay_norm_bias`` is set, besides every 1-d parameter. Default: none."""
        return ()

    def on_train_epoch_start(self, ctx: StepContext) -> None:
        """Before every training epoch, in every process. The default does nothing."""

    def on_train_epoch_end(self, ctx: StepContext) -> None:
        """After every training epoch, in every process. The epoch's validation (when it has one) and its
        weights checkpoint have run already; the resume state is saved after this hook, so what it changes
        (evolved labels, a schedule phase) is in the state of this epoch."""

    def method_state(self) -> dict[str, Any]:
        """Non-parameter state for ``--resume`` (JSON-able or tensors). Default: none."""
        return {}

    def load_method_state(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`method_state` on ``--resume``. The default accepts only an empty state."""
        if state:
            raise ConfigError(f"method {self.name!r} got resume state {sorted(state)} it does not know")

    def data_requests(self) -> DataRequests:
        """Features the batches should carry and named loaders the method reads. Default: none."""
        return DataRequests()

    def describe(self) -> dict:
        """JSON-able facts written into the run's checkpoints (e.g. the foundation weights' sha256)."""
        return {}

    # ---------------------------------------------------------------------------------- evaluation
    def eval_branches(self) -> dict[str, Callable[[Tensor], Tensor]]:
        """Networks scored on the validation split: name -> ``B x C x H x W -> B x 1 x H x W`` logits.

        The first entry is the deployable one, used to select the ``best`` checkpoint. Methods with a
        teacher or a fused branch add theirs (e.g. ``{"host": ..., "main": ...}``).
        """
        return {"host": self.predict_logits}

    def predict_logits(self, images: Tensor) -> Tensor:
        """Deployable prediction: ``B x C x H x W`` (H, W multiples of ``input_multiple``) -> ``B x 1 x H x W``."""
        return main_output(self.host(images))

    def export_model(self) -> nn.Module:
        """The network that ships (by default the host alone, no teacher or foundation weights)."""
        return self.host


_METHODS: dict[str, type[Method]] = {}


def register_method(name: str, *, options: type | None = None) -> Callable[[type[Method]], type[Method]]:
    """Class decorator: register a method under ``name`` with its options dataclass (default: none)."""

    def decorator(cls: type[Method]) -> type[Method]:
        if name in _METHODS:
            raise ConfigError(f"method {name!r} is already registered")
        cls.name = name
        if options is not None:
            cls.Options = options
        _METHODS[name] = cls
        return cls

    return decorator


def list_methods() -> list[str]:
    import irfoundry.methods  # noqa: F401  (registers the built-in methods)

    return sorted(_METHODS)


def method_class(name: str) -> type[Method]:
    """The registered class of method ``name``; :class:`ConfigError` naming the closest one otherwise."""
    import irfoundry.methods  # noqa: F401  (registers the built-in methods)

    try:
        return _METHODS[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(_METHODS), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ConfigError(
            f"method.name = {name!r} is not a known method.{hint} Available: {', '.join(list_methods())}"
        ) from None


def _parse_options(cls: type[Method], options) -> Any:
    from irfoundry.options import parse_dataclass

    return parse_dataclass(cls.Options, options, "method.options")


def build_method(cfg, host: nn.Module, env: BuildEnv | None = None) -> Method:
    """The method named ``cfg.name`` around ``host``, built by its :meth:`Method.from_config`."""
    return method_class(cfg.name).from_config(host, cfg, env or BuildEnv())
