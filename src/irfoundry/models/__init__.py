"""Models: a registry of segmentation models (the IRSTD host networks with their encoder-decoder capability),
the model contracts, and :class:`Frozen` for trained teachers.

``create_model(name, in_chans=1, **kw)`` builds one; ``list_models()`` lists them. Importing this
package registers every model family below.
"""

from irfoundry.models._registry import ModelEntry, create_model, list_models, model_entry, register_model
from irfoundry.models.base import (
    HostNet,
    SegmentationModel,
    init_output_probability,
    input_multiple,
    is_encoder_decoder,
    main_output,
)
from irfoundry.models.frozen import Frozen

# model families: importing a module registers its variants
from irfoundry.models import (  # noqa: F401  (isort: skip)
    acm, alclnet, alcnet, dnanet, gglnet, isnet, istdunet, mlclnet, msdanet, mshnet, rdian, sam_teacher, sctransnet,
    simir, uiunet, unet,
)

__all__ = [
    "Frozen",
    "HostNet",
    "ModelEntry",
    "SegmentationModel",
    "create_model",
    "init_output_probability",
    "input_multiple",
    "is_encoder_decoder",
    "list_models",
    "main_output",
    "model_entry",
    "register_model",
]
