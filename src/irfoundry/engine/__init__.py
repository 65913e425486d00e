"""Training, evaluation and prediction on Lightning.

The only package that imports Lightning. Entry points::

    from irfoundry.engine import train, evaluate, evaluate_maps, predict, load_config
    result = train(load_config("configs/acm_sirst427.yaml", ["trainer.max_epochs=50"]))
"""

from irfoundry.engine.config import RunConfig, from_dict, load_config
from irfoundry.engine.eval_maps import evaluate_maps
from irfoundry.engine.evaluate import evaluate
from irfoundry.engine.export import export
from irfoundry.engine.predict import predict
from irfoundry.engine.scoring import Scores, parse_thresholds, score_maps
from irfoundry.engine.train import train

__all__ = [
    "RunConfig",
    "Scores",
    "evaluate",
    "evaluate_maps",
    "export",
    "from_dict",
    "load_config",
    "parse_thresholds",
    "predict",
    "score_maps",
    "train",
]
