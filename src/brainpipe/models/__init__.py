"""Models, all in one estimator shape (:class:`~brainpipe.models.base.Estimator`, scikit-learn's convention): the
constructor only stores hyperparameters, ``fit`` checks them and returns self, fitted attributes end in ``_``,
``score`` rates held-out data (higher is better), ``to_dataset``/``from_dataset`` and ``save``/``load`` instead of
pickle."""

from brainpipe.models.base import Estimator, NotFittedError
from brainpipe.models.baselines import PoissonGLM, poisson_log_likelihood
from brainpipe.models.brainmae import BrainMAE
from brainpipe.models.connectome import DynamicConnectome
from brainpipe.models.neuroformer import Neuroformer, SpikeTokenizer
from brainpipe.models.switching_glm import SwitchingGLM

#: every estimator of the package (the contract tests run over these)
ESTIMATORS = (PoissonGLM, SwitchingGLM, BrainMAE, Neuroformer, DynamicConnectome)

__all__ = [
    "ESTIMATORS",
    "BrainMAE",
    "DynamicConnectome",
    "Estimator",
    "Neuroformer",
    "NotFittedError",
    "PoissonGLM",
    "SpikeTokenizer",
    "SwitchingGLM",
    "poisson_log_likelihood",
]
