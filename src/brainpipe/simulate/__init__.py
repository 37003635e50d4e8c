"""Ground-truth simulators for every modality; each returns the data and the planted parameters.

>>> from brainpipe.simulate import simulate
>>> sim = simulate("poisson_glm_network", {"n_neurons": 5, "duration_s": 10}, seed=0)
>>> sorted(sim.truth.data_vars)
['behaviour_weight', 'connected', 'coupling', 'log_baseline_rate']
"""

from brainpipe.simulate import calcium, fmri, glm_network, hub_network, switching_glm  # noqa: F401  (registers them)
from brainpipe.simulate.base import GENERATORS, Generator, Simulation, get_generator, register, simulate
from brainpipe.simulate.glm_network import PoissonGLMNetworkParams, poisson_glm_network
from brainpipe.simulate.hub_network import HubNetworkParams

__all__ = [
    "GENERATORS",
    "Generator",
    "HubNetworkParams",
    "PoissonGLMNetworkParams",
    "Simulation",
    "get_generator",
    "poisson_glm_network",
    "register",
    "simulate",
]
