"""Training, evaluation and prediction on Lightning.

The only package that imports Lightning. Entry points::

    from irfoundry.engine import train, evaluate, predict, load_config
    result = train(load_config("configs/acm_sirst427.yaml", ["trainer.max_epochs=50"]))
"""

from irfoundry.engine.config import RunConfig, from_dict, load_config
from irfoundry.engine.evaluate import evaluate
from irfoundry.engine.predict import predict
from irfoundry.engine.train import train

__all__ = ["RunConfig", "evaluate", "from_dict", "load_config", "predict", "train"]
