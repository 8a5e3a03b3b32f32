"""productgan's own evaluator: a small CNN trained on the dataset, whose features the metrics use.

The FID of the literature uses Inception weights trained by TensorFlow on ImageNet, which
productgan cannot download. It trains its own small classifier instead, once per labelled
dataset, on the train split only, and caches it. Every number computed from these features
(``fid_productgan``, ``kid_productgan``, precision, ...) is therefore comparable only between
runs evaluated with the same evaluator (same ``weights_sha256``), never with published
Inception figures.

Typical use::

    evaluator = Evaluator(data, dataset)            # loads or trains the network
    report = evaluator.score(sampler, "test", n=10_000)

or, a level down::

    net, info = load_or_train_evaluator(dataset, cache_dir, EvaluatorConfig())
    fake, probs = features_and_probabilities(net, sampler(10_000, seed=0))

Modules: ``config`` (the recipe), ``network``, ``training``, ``inference``, ``cache``, ``scorer``
(``Evaluator``) and ``cas`` (the classification accuracy score, which trains the same network).
"""

from productgan.evaluator.cache import (
    CACHE_ENV,
    INFO_FILE,
    cache_root,
    data_fingerprint,
    evaluator_cache_dir,
    find_evaluator,
    load_evaluator,
    load_or_train_evaluator,
)
from productgan.evaluator.cas import check_cas, classification_accuracy_score, evaluate_cas
from productgan.evaluator.config import EvaluatorConfig
from productgan.evaluator.inference import (
    class_probabilities,
    extract_features,
    features_and_probabilities,
    labelled_images,
    native_images,
)
from productgan.evaluator.network import EvaluatorNet, working_size
from productgan.evaluator.scorer import CLASS_METRICS, MEMORISATION_REFERENCE, Evaluator
from productgan.evaluator.training import ROTATION_CLASSES, rotated, train_evaluator

__all__ = [
    "CACHE_ENV",
    "CLASS_METRICS",
    "INFO_FILE",
    "MEMORISATION_REFERENCE",
    "ROTATION_CLASSES",
    "Evaluator",
    "EvaluatorConfig",
    "EvaluatorNet",
    "cache_root",
    "check_cas",
    "class_probabilities",
    "classification_accuracy_score",
    "data_fingerprint",
    "evaluate_cas",
    "evaluator_cache_dir",
    "extract_features",
    "features_and_probabilities",
    "find_evaluator",
    "labelled_images",
    "load_evaluator",
    "load_or_train_evaluator",
    "native_images",
    "rotated",
    "train_evaluator",
    "working_size",
]
