"""The dynamax half of ``switching_glm_vs_dynamax.py``; runs in its own venv (jax, dynamax; no torch, no brainpipe).

    python bench/_dynamax_side.py DATA.npz OUT.json

``DATA.npz`` (written by the driver) holds the train/test counts ``Y_*`` and history features ``H_*``
(sequences x bins x neurons, float64), the initial parameters ``W0`` (S, N, N), ``b0`` (S, N), ``log_A0``,
``log_pi0``, the precomputed log-likelihood ``ll_fb`` (B, T, S) for the forward-backward timing, and a JSON
``config`` string. ``OUT.json`` gets the timings (seconds), held-out log-likelihoods (nats) and versions.

The model is brainpipe's switching GLM exactly: ``y[t, n] | z_t = s ~ Poisson(f(b[s, n] + W[s, n, :] @ h[t]))``
with the same link ``f``, the same rate floor (1e-10), the same L2 penalty ``-l2/2 (|W|^2 + |b|^2)`` as the
emission log prior, and transitions/initial probabilities by their MLE (Dirichlet concentration 1, as brainpipe's
pseudo-count 1). The history features ``h`` are precomputed and passed as dynamax's emission ``inputs``.
"""

from __future__ import annotations

import json
import os
import sys
import time
from functools import partial
from typing import NamedTuple

import numpy as np


def main(data_path: str, out_path: str) -> None:
    data = np.load(data_path)
    cfg = json.loads(str(data["config"]))
    import jax

    if cfg["dtype"] == "float64":
        jax.config.update("jax_enable_x64", True)
    import dynamax
    import jax.numpy as jnp
    import optax
    import tensorflow_probability.substrates.jax.distributions as tfd
    from dynamax.hidden_markov_model import hmm_smoother
    from dynamax.hidden_markov_model.models.abstractions import HMM, HMMEmissions
    from dynamax.hidden_markov_model.models.initial import StandardHMMInitialState
    from dynamax.hidden_markov_model.models.transitions import StandardHMMTransitions
    from dynamax.parameters import ParameterProperties
    from jax import jit, vmap
    from jax.scipy.special import gammaln

    dt = jnp.float64 if cfg["dtype"] == "float64" else jnp.float32
    link = {"softplus": jax.nn.softplus, "sigmoid": jax.nn.sigmoid, "exp": jnp.exp}[cfg["link"]]
    l2 = float(cfg["l2"])

    # ---------------------------------------------------------------- the Poisson-GLM emission for dynamax
    class ParamsPoissonGLM(NamedTuple):
        weights: jax.Array  # (S, N, N): weights[s, n, m] couples h[m] -> neuron n in state s
        biases: jax.Array  # (S, N)

    class ParamsPoissonGLMHMM(NamedTuple):
        initial: object
        transitions: object
        emissions: object

    class PoissonGLMEmissions(HMMEmissions):
        """y_t | z_t = s ~ prod_n Poisson(f(b[s, n] + W[s, n] @ h_t)); ``inputs`` are the history features h."""

        def __init__(self, num_states, num_neurons, vectorised=True, **kw):
            super().__init__(**kw)
            self.num_states, self.num_neurons, self.vectorised = num_states, num_neurons, vectorised

        @property
        def emission_shape(self):
            return (self.num_neurons,)

        @property
        def inputs_shape(self):
            return (self.num_neurons,)

        def initialize(self, key=None, method="prior", weights=None, biases=None):
            params = ParamsPoissonGLM(jnp.asarray(weights, dt), jnp.asarray(biases, dt))
            return params, ParamsPoissonGLM(ParameterProperties(), ParameterProperties())

        def log_prior(self, params):
            return -0.5 * l2 * (jnp.sum(params.weights**2) + jnp.sum(params.biases**2))

        def _rate(self, params, state, inputs):
            return jnp.maximum(link(params.biases[state] + params.weights[state] @ inputs), 1e-10)

        def distribution(self, params, state, inputs=None):
            return tfd.Independent(tfd.Poisson(rate=self._rate(params, state, inputs)), 1)

        def _compute_conditional_logliks(self, params, emissions, inputs=None):
            """(T, S): all states at once with one einsum (the generic path vmaps ``distribution``)."""
            if not self.vectorised:
                return super()._compute_conditional_logliks(params, emissions, inputs)
            eta = params.biases[None] + jnp.einsum("tm,snm->tsn", inputs, params.weights)
            rate = jnp.maximum(link(eta), 1e-10)
            y = emissions[:, None, :]
            return jnp.sum(y * jnp.log(rate) - rate - gammaln(y + 1.0), axis=-1)

    class PoissonGLMHMM(HMM):
        def __init__(self, num_states, num_neurons, m_step_num_iters, lr, vectorised):
            self.num_neurons = num_neurons
            super().__init__(
                num_states,
                StandardHMMInitialState(num_states, initial_probs_concentration=1.0),
                StandardHMMTransitions(num_states, concentration=1.0),
                PoissonGLMEmissions(
                    num_states,
                    num_neurons,
                    vectorised=vectorised,
                    m_step_optimizer=optax.adam(lr),
                    m_step_num_iters=m_step_num_iters,
                ),
            )

        @property
        def inputs_shape(self):
            return (self.num_neurons,)

        def initialize(self, initial_probs, transition_matrix, weights, biases):
            pi, pi_props = self.initial_component.initialize(initial_probs=jnp.asarray(initial_probs, dt))
            A, A_props = self.transition_component.initialize(
                transition_matrix=jnp.asarray(transition_matrix, dt)
            )
            em, em_props = self.emission_component.initialize(weights=weights, biases=biases)
            return ParamsPoissonGLMHMM(pi, A, em), ParamsPoissonGLMHMM(pi_props, A_props, em_props)

    # ---------------------------------------------------------------- data and model
    as_j = lambda k: jnp.asarray(data[k], dt)  # noqa: E731
    Y, H, Yte, Hte = as_j("Y_train"), as_j("H_train"), as_j("Y_test"), as_j("H_test")
    S, N = data["b0"].shape
    model = PoissonGLMHMM(S, N, int(cfg["m_step_num_iters"]), float(cfg["lr"]), bool(cfg["vectorised"]))
    params0, props = model.initialize(np.exp(data["log_pi0"]), np.exp(data["log_A0"]), data["W0"], data["b0"])
    repeats = int(cfg["repeats"])
    out = {
        "versions": {
            "jax": jax.__version__,
            "dynamax": getattr(dynamax, "__version__", "?"),
            "optax": optax.__version__,
        },
        "jax_devices": [str(d) for d in jax.devices()],
        "dtype": cfg["dtype"],
        "cpu_affinity": sorted(os.sched_getaffinity(0)),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
    }

    def block(x):
        return jax.block_until_ready(x)

    def timed(fn, *args):
        t = time.perf_counter()
        r = block(fn(*args))
        return time.perf_counter() - t, r

    # ---------------------------------------------------------------- (a) forward-backward alone
    ll = as_j("ll_fb")
    pi_fb, A_fb = jnp.asarray(np.exp(data["log_pi0"]), dt), jnp.asarray(np.exp(data["log_A0"]), dt)
    smoother = jit(vmap(hmm_smoother, in_axes=(None, None, 0)))
    t_compile, post = timed(smoother, pi_fb, A_fb, ll)
    times = [timed(smoother, pi_fb, A_fb, ll)[0] for _ in range(repeats)]
    out["fb"] = {
        "times": times,
        "compile_s": t_compile,
        "log_norm_sum": float(post.marginal_loglik.sum()),
        "gamma_sum": float(post.smoothed_probs.sum()),
    }
    print(
        f"[dynamax] forward-backward (hmm_smoother, vmapped over {ll.shape[0]} sequences): "
        f"{np.median(times):.4f} s (compile {t_compile:.2f} s)",
        flush=True,
    )

    # ---------------------------------------------------------------- (b) one EM iteration (fit_em's em_step)
    def em_step(params, m_step_state):
        batch_stats, lls = vmap(partial(model.e_step, params))(Y, H)
        lp = model.log_prior(params) + lls.sum()
        params, m_step_state = model.m_step(params, props, batch_stats, m_step_state)
        return params, m_step_state, lp

    em_step = jit(em_step)

    @jit
    def heldout(params):
        return vmap(partial(model.marginal_log_prob, params))(Yte, Hte).sum()

    state0 = model.initialize_m_step_state(params0, props)
    t_compile, _ = timed(em_step, params0, state0)
    t_compile_ho, ho0 = timed(heldout, params0)
    times = []
    for _ in range(repeats):
        dt_, (p1, _, lp0) = timed(em_step, params0, state0)
        times.append(dt_)
    out["em_iter"] = {
        "times": times,
        "compile_s": t_compile,
        "train_objective_before": float(lp0),
        "heldout_after": float(heldout(p1)),
    }
    out["heldout_init"] = float(ho0)
    print(
        f"[dynamax] one EM iteration (E-step + {cfg['m_step_num_iters']} Adam steps): {np.median(times):.3f} s "
        f"(compile {t_compile:.2f} s); held-out LL at init {float(ho0):.2f}",
        flush=True,
    )

    # E-step and M-step separately (informational)
    @jit
    def e_only(params):
        return vmap(partial(model.e_step, params))(Y, H)

    m_only = jit(lambda params, st, stats: model.m_step(params, props, stats, st))
    stats, lls0 = block(e_only(params0))
    out["em_iter"]["train_ll_before"] = float(lls0.sum())
    block(m_only(params0, state0, stats))
    te = float(np.median([timed(e_only, params0)[0] for _ in range(repeats)]))
    tm = float(np.median([timed(m_only, params0, state0, stats)[0] for _ in range(repeats)]))
    out["em_split"] = {"e_step_s": te, "m_step_s": tm}

    # ---------------------------------------------------------------- (c) run EM under a time/iteration budget
    params, st = params0, state0
    cum, hist_t, hist_ho, hist_lp = 0.0, [0.0], [float(ho0)], []
    budget, max_iter = float(cfg["budget_s"]), int(cfg["max_iter"])
    it = 0
    tol = float(cfg["tol"])  # the harness stops where SwitchingGLM would (dynamax's fit_em has no tolerance)
    stop = "budget"
    while it < max_iter and cum < budget:
        dt_, (params, st, lp) = timed(em_step, params, st)
        cum += dt_
        it += 1
        hist_t.append(cum)
        hist_ho.append(float(heldout(params)))  # not timed
        hist_lp.append(float(lp))  # objective of the parameters before this iteration's M-step
        if len(hist_lp) > 1 and abs(hist_lp[-1] - hist_lp[-2]) < tol * abs(hist_lp[-2]):
            stop = "converged (same tol)"
            break
    else:
        stop = "iteration cap" if it >= max_iter else "budget"
    out["converge"] = {
        "cum_time": hist_t,
        "heldout": hist_ho,
        "train_objective": hist_lp,
        "n_iter": it,
        "stop": stop,
    }
    print(
        f"[dynamax] EM run: {it} iterations in {cum:.1f} s ({stop}), held-out LL {hist_ho[-1]:.2f}",
        flush=True,
    )
    with open(out_path, "w") as f:
        json.dump(out, f)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
