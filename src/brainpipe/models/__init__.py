"""Models. Each follows the scikit-learn shape: hyperparameters in the constructor, ``fit`` returns self,
fitted attributes end in ``_``, ``score`` on held-out data, ``to_dataset``/``from_dataset`` instead of pickle."""

from brainpipe.models.baselines import PoissonGLM, poisson_log_likelihood
from brainpipe.models.brainmae import BrainMAE
from brainpipe.models.switching_glm import SwitchingGLM

__all__ = ["BrainMAE", "PoissonGLM", "SwitchingGLM", "poisson_log_likelihood"]
