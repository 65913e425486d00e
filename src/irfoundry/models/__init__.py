"""Host networks: a registry of encoder-decoder IRSTD networks with a shared two-part interface.

``create_model(name, in_chans=1, **kw)`` builds one; ``list_models()`` lists them. Importing this
package registers every model family below.
"""

from irfoundry.models._registry import ModelEntry, create_model, list_models, model_entry, register_model
from irfoundry.models.base import HostNet, init_output_prior, main_output

# model families: importing a module registers its variants
from irfoundry.models import acm, alclnet, alcnet, dnanet, mlclnet, mshnet, uiunet, unet  # noqa: F401  (isort: skip)

__all__ = ["HostNet", "ModelEntry", "create_model", "init_output_prior", "list_models", "main_output", "model_entry", "register_model"]
