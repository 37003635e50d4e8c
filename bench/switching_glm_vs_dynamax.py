"""Benchmark: brainpipe's switching Poisson GLM (HMM-GLM) against dynamax on the same data, same model, same start.

    .venv/bin/python bench/switching_glm_vs_dynamax.py                 # N=50, S=3, T=100,000 train bins
    .venv/bin/python bench/switching_glm_vs_dynamax.py --size small    # N=10, S=3, T=20,000 (a quick check)

What it does, in one run and back to back (brainpipe first, then dynamax in a subprocess):

1. simulates ``switching_glm_network`` (our simulator; sigmoid link by default), bins it with ``bin_spikes`` and cuts
   it with ``SwitchingGLM.batch`` into equal-length train and test sequences; the history features ``h`` (an
   exponential basis over 5 bins) are computed once in numpy and handed to dynamax as its emission ``inputs``;
2. initialises as ``SwitchingGLM.fit`` does (a single-state GLM copied to every state with noise); both sides
   start from these parameters (the single-state fit is cached under ``bench/.cache`` and is not timed);
3. times (median of ``--repeats``, compile time excluded and reported apart):
   (a) forward-backward alone on one precomputed (B, T, S) log-likelihood: ``brainpipe.models.hmm.forward_backward``
       against ``dynamax.hidden_markov_model.hmm_smoother`` (jitted, vmapped over sequences);
   (b) one EM iteration from the same start: ours = E-step (``_objective``) + transitions + M-step (``_m_step``:
       Newton per state and neuron by default, at most ``newton_iter`` steps; ``--m-step lbfgs`` for L-BFGS), dynamax = the
       ``em_step`` of ``fit_em`` (E-step + 50 Adam steps
       by default), jitted;
   (c) EM under a wall-clock budget (``--budget-s``, EM time only: held-out scoring is not counted), recording
       the held-out marginal log-likelihood after every iteration, then the time each side needed to first come
       within ``--tolerance`` (0.1%) of the better final held-out log-likelihood;
4. prints a table (times, ratio dynamax / brainpipe, held-out LLs) and one summary line per measurement.

dynamax lives in its own venv (jax, optax, tfp-nightly; no torch): ``bench/.venv-dynamax``, created on first use
from ``bench/requirements-dynamax.txt`` unless ``--dynamax-python`` names an interpreter that has dynamax.
Both sides get the same CPU cores (``--cores``, default 2): this process pins itself with ``sched_setaffinity``
before anything starts threads, and the dynamax subprocess inherits the mask (XLA sizes its thread pool from
the schedulable CPUs); torch gets ``set_num_threads(cores)``. Precision: brainpipe keeps parameters, sums over
bins and the forward-backward in float64 and its per-bin data term in ``--data-dtype`` (SwitchingGLM's default
float32); dynamax computes in ``--dynamax-dtype`` (float64 by default; float32 is its own default precision).
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import io
import json
import os
import platform
import pstats
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SIZES = {
    # n_sequences x sequence_length train bins; test sequences of the same length
    "small": {
        "n_neurons": 10,
        "n_states": 3,
        "n_sequences": 4,
        "n_test_sequences": 1,
        "sequence_length": 5000,
    },
    "large": {
        "n_neurons": 50,
        "n_states": 3,
        "n_sequences": 20,
        "n_test_sequences": 5,
        "sequence_length": 5000,
    },
}
DEFAULT_BUDGET = {"small": 60.0, "large": 240.0}


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--size", choices=sorted(SIZES), default="large")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--link", choices=("sigmoid", "softplus"), default="sigmoid")
    ap.add_argument("--repeats", type=int, default=3, help="timings per measurement; the median is reported")
    ap.add_argument(
        "--budget-s", type=float, default=None, help="EM time budget per side for (c) (small 60, large 240)"
    )
    ap.add_argument("--max-iter", type=int, default=500, help="EM iteration cap per side for (c)")
    ap.add_argument(
        "--tolerance", type=float, default=1e-3, help="relative distance to the best held-out LL (c)"
    )
    ap.add_argument(
        "--m-step-iter",
        type=int,
        default=None,
        help="brainpipe L-BFGS iterations per M-step with --m-step lbfgs (default: SwitchingGLM's)",
    )
    ap.add_argument(
        "--m-step",
        choices=("newton", "lbfgs"),
        default=None,
        help="brainpipe M-step (default: SwitchingGLM's)",
    )
    ap.add_argument(
        "--newton-iter",
        type=int,
        default=None,
        help="brainpipe Newton steps per M-step (default: SwitchingGLM's)",
    )
    ap.add_argument(
        "--data-dtype",
        choices=("float32", "float64"),
        default=None,
        help="brainpipe per-bin data dtype (default: SwitchingGLM's)",
    )
    ap.add_argument(
        "--dynamax-m-step-iters", type=int, default=50, help="Adam steps per dynamax M-step (its default 50)"
    )
    ap.add_argument(
        "--dynamax-lr",
        type=float,
        default=1e-2,
        help="Adam learning rate of the dynamax M-step (its default)",
    )
    ap.add_argument("--dynamax-dtype", choices=("float64", "float32"), default="float64")
    ap.add_argument(
        "--dynamax-generic-loglik",
        action="store_true",
        help="use dynamax's generic per-state vmap of distribution().log_prob instead of the one-einsum override",
    )
    ap.add_argument(
        "--dynamax-python", default=None, help="python with dynamax installed (default: bench/.venv-dynamax)"
    )
    ap.add_argument("--cores", type=int, default=2, help="CPU cores for both sides")
    ap.add_argument("--skip-converge", action="store_true", help="skip (c)")
    ap.add_argument(
        "--profile", action="store_true", help="profile one brainpipe EM iteration (cProfile + breakdown)"
    )
    ap.add_argument(
        "--profile-only", action="store_true", help="only build the data and profile (no dynamax)"
    )
    ap.add_argument("--no-cache", action="store_true", help="refit the single-state initialisation")
    ap.add_argument("--json", default=None, help="also write all results to this JSON file")
    return ap.parse_args(argv)


# ------------------------------------------------------------------------------------------------ environment
def pin_cores(n: int) -> list[int]:
    cpus = sorted(os.sched_getaffinity(0))
    use = cpus[: max(1, min(n, len(cpus)))]
    os.sched_setaffinity(0, use)
    return use


def dynamax_python(path: str | None) -> str:
    """The interpreter of the dynamax venv, created (and filled from requirements-dynamax.txt) if missing."""
    if path:
        return path
    venv = HERE / ".venv-dynamax"
    py = venv / "bin" / "python"
    check = [str(py), "-c", "import dynamax, jax, optax"]
    if py.exists() and subprocess.run(check, capture_output=True).returncode == 0:
        return str(py)
    print(f"creating {venv} (dynamax, jax, optax, tfp-nightly; about 25 s) ...", flush=True)
    base = getattr(sys, "_base_executable", None) or "python3"
    subprocess.run([base, "-m", "venv", str(venv)], check=True)
    subprocess.run(
        [str(py), "-m", "pip", "install", "-q", "-r", str(HERE / "requirements-dynamax.txt")], check=True
    )
    subprocess.run(check, check=True)
    return str(py)


def code_version() -> str:
    """The commit plus a hash of the timed modules as they are on disk (they may carry uncommitted edits)."""
    root = HERE.parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True
        )
        head = head.stdout.strip() or "?"
    except OSError:
        head = "?"
    h = hashlib.sha1()
    models = root / "src" / "brainpipe" / "models"
    for path in (
        *sorted((models / "switching_glm").glob("*.py")),
        models / "hmm.py",
        models / "_hmm_kernel.py",
    ):  # the package, then hmm and its compiled kernel's source
        h.update(path.read_bytes() if path.exists() else b"")
    return f"{head}+{h.hexdigest()[:8]}"


# ------------------------------------------------------------------------------------------------ data
def build_data(args):
    import torch

    from brainpipe.models.switching_glm import SwitchingGLM
    from brainpipe.preprocess import bin_spikes
    from brainpipe.simulate import simulate
    from brainpipe.simulate.switching_glm import exp_basis, history_features

    sim_params = dict(SIZES[args.size], link=args.link)
    t0 = time.perf_counter()
    sim = simulate("switching_glm_network", sim_params, args.seed)
    t_sim = time.perf_counter() - t0
    ds = bin_spikes(sim.data, float(sim.truth.attrs["bin_width_s"]))
    kw = {
        k: v
        for k, v in (
            ("m_step_iter", args.m_step_iter),
            ("m_step", args.m_step),
            ("newton_iter", args.newton_iter),
            ("data_dtype", args.data_dtype),
        )
        if v is not None
    }
    model = SwitchingGLM(n_states=sim_params["n_states"], link=args.link, device="cpu", seed=args.seed, **kw)
    t0 = time.perf_counter()
    train = model.batch(ds, "train")
    test = model.batch(ds, "test")
    t_batch = time.perf_counter() - t0
    for name, b in (("train", train), ("test", test)):
        if not bool(b.mask.all()):
            raise SystemExit(
                f"{name} sequences differ in length; the comparison needs equal lengths (no padding)"
            )
    # the history features, computed in numpy from the counts, are what both sides use
    phi = exp_basis(model.history_bins, model.history_decay)
    exact = {}
    for name, b in (("train", train), ("test", test)):
        Yb = b.counts.numpy().astype(np.float64)
        Hb = np.stack([history_features(Yb[i], phi) for i in range(Yb.shape[0])])
        assert np.allclose(Hb, b.history.numpy(), rtol=1e-6), (
            "history features differ from SwitchingGLM.batch's"
        )
        exact[name] = (Yb, Hb)  # what dynamax gets: the same features, in float64
    info = {
        "simulate_s": t_sim,
        "batch_s": t_batch,
        "n_capped_counts": int(sim.truth.attrs["n_capped_counts"]),
        "mean_count": float(train.counts.mean()),
        "shape_train": list(train.counts.shape),
        "shape_test": list(test.counts.shape),
        "exact": exact,
    }
    truth = {
        k: torch.as_tensor(np.asarray(sim.truth[v].values, dtype=np.float64))
        for k, v in (("W", "weights"), ("b", "bias"))
    }
    truth["U"] = torch.zeros(*truth["b"].shape, 0, dtype=torch.float64)
    truth["log_A"] = torch.log(torch.as_tensor(sim.truth["transition"].values, dtype=torch.float64))
    truth["log_pi"] = torch.log(torch.as_tensor(sim.truth["initial"].values, dtype=torch.float64))
    return model, train, test, truth, info


def initial_params(args, model, train):
    """SwitchingGLM.fit's start: single-state GLM (cached: it is not part of the comparison) + per-state noise."""
    key = hashlib.sha1(train.counts.numpy().tobytes()).hexdigest()[:12]
    cache = HERE / ".cache" / f"single_glm_{args.size}_{args.link}_s{args.seed}_{key}.npz"
    t_fit = None
    if cache.exists() and not args.no_cache:
        glm = dict(np.load(cache))
    else:
        t0 = time.perf_counter()
        glm = model._single_glm(train)
        t_fit = time.perf_counter() - t0
        cache.parent.mkdir(exist_ok=True)
        np.savez(cache, **glm)
    p0 = model._init_params(train, np.random.default_rng([args.seed, 0]), glm)
    return p0, t_fit


# ------------------------------------------------------------------------------------------------ brainpipe side
class Ours:
    def __init__(self, model, train, test):
        self.model, self.train, self.test = model, train, test
        self.names = None

    def em_iteration(self, p: dict) -> tuple[dict, float, dict]:
        """One generalised-EM iteration exactly as SwitchingGLM._em does it; returns (params, train LL before, times)."""
        import torch  # noqa: F401

        m, data = self.model, self.train
        q = dict(p)
        names = self.names or m._trainable(q, False)
        t0 = time.perf_counter()
        _, total, post = m._objective(q, data, True)  # E-step: emission log-lik + forward-backward
        t1 = time.perf_counter()
        if m.n_states > 1:
            q["log_A"], q["log_pi"] = m._transitions_map(post[1], post[2])
        m._m_step(q, names, data, post[1], True)
        m._update_shared_prior(q)
        t2 = time.perf_counter()
        return q, total, {"e_step": t1 - t0, "m_step": t2 - t1, "total": t2 - t0}

    def heldout(self, p: dict) -> float:
        import torch

        from brainpipe.models import hmm

        with torch.no_grad():
            ll = self.model._log_lik(p, p["W"], self.test)
            return float(hmm.log_marginal(ll, p["log_pi"], p["log_A"], self.test.mask).sum())

    def objective(self, p: dict) -> float:
        return self.model._objective(p, self.train, True)[0]


def time_forward_backward(ll, log_pi, log_A, mask, repeats):
    import torch

    from brainpipe.models import hmm

    with torch.no_grad():
        log_norm, gamma, _ = hmm.forward_backward(ll, log_pi, log_A, mask)  # warm-up
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            hmm.forward_backward(ll, log_pi, log_A, mask)
            times.append(time.perf_counter() - t0)
    return times, float(log_norm.sum()), float(gamma.sum())


def run_em_budget(ours: Ours, p0: dict, budget: float, max_iter: int) -> dict:
    """EM from p0 until SwitchingGLM's own tolerance stop, the time budget or the iteration cap."""
    p, cum, it = dict(p0), 0.0, 0
    hist_t, hist_ho, hist_obj = [0.0], [ours.heldout(p0)], []
    prev_obj = None
    stop = "budget"
    while it < max_iter and cum < budget:
        p, _, tt = ours.em_iteration(p)
        cum += tt["total"]
        it += 1
        hist_t.append(cum)
        hist_ho.append(ours.heldout(p))  # not timed
        obj = ours.objective(p)  # not timed (the next iteration's E-step recomputes it)
        hist_obj.append(obj)
        if prev_obj is not None and abs(obj - prev_obj) < ours.model.tol * abs(prev_obj):
            stop = "converged (SwitchingGLM tol)"
            break
        prev_obj = obj
    else:
        stop = "iteration cap" if it >= max_iter else "budget"
    return {"cum_time": hist_t, "heldout": hist_ho, "train_objective": hist_obj, "n_iter": it, "stop": stop}


def profile_em_iteration(ours: Ours, p0: dict) -> dict:
    """Where one brainpipe EM iteration spends its time: a measured breakdown, torch-profiler ops, cProfile.

    The M-step's passes over the data are counted and timed by wrapping ``_q_and_grads`` (the closed-form value
    and gradient that both M-steps evaluate), so this works whichever M-step runs.
    """
    import torch

    from brainpipe.models import hmm

    m, data = ours.model, ours.train
    out = {}
    with torch.no_grad():
        W = m._weights(p0, True, None, None)
        t0 = time.perf_counter()
        ll = m._log_lik(p0, W, data)
        out["e_loglik_s"] = time.perf_counter() - t0
        hmm.forward_backward(ll, p0["log_pi"], p0["log_A"], data.mask)  # warm-up: loads the compiled kernel
        t0 = time.perf_counter()
        log_norm, gamma, xi = hmm.forward_backward(ll, p0["log_pi"], p0["log_A"], data.mask)
        out["e_forward_backward_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    m._transitions_map(gamma, xi)
    out["transitions_s"] = time.perf_counter() - t0
    calls, in_closure = [0], [0.0]
    orig = m._q_and_grads

    def timed(*a, **k):
        calls[0] += 1
        t = time.perf_counter()
        r = orig(*a, **k)
        in_closure[0] += time.perf_counter() - t
        return r

    m._m_step(dict(p0), m._trainable(p0, False), data, gamma, True)  # warm-up (first-call allocations)
    m._q_and_grads = timed
    try:
        t0 = time.perf_counter()
        m._m_step(dict(p0), m._trainable(p0, False), data, gamma, True)
        out["m_step_s"] = time.perf_counter() - t0
    finally:
        del m._q_and_grads
    out["m_step_evals"] = calls[0]
    out["m_step_in_objective_s"] = in_closure[0]
    out["m_step_outside_objective_s"] = out["m_step_s"] - in_closure[0]
    with torch.profiler.profile() as prof:  # op-level view of one whole M-step
        m._m_step(dict(p0), m._trainable(p0, False), data, gamma, True)
    out["m_step_top_ops"] = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12)
    pr = cProfile.Profile()
    pr.enable()
    ours.em_iteration(p0)
    pr.disable()
    s = io.StringIO()
    pstats.Stats(pr, stream=s).sort_stats("tottime").print_stats(15)
    out["cprofile_tottime"] = s.getvalue()
    return out


# ------------------------------------------------------------------------------------------------ report
def print_profile(prof: dict, info: dict, model) -> None:
    tot = prof["e_loglik_s"] + prof["e_forward_backward_s"] + prof["transitions_s"] + prof["m_step_s"]
    n_ev = max(prof["m_step_evals"], 1)
    print(f"\n== profile of one brainpipe EM iteration ({tot:.2f} s measured piecewise)")
    print(f"  history features + batching (once per fit, not per iteration): {info['batch_s']:.3f} s")
    print(f"  E-step emission log-lik:   {prof['e_loglik_s']:.3f} s")
    print(f"  E-step forward-backward:   {prof['e_forward_backward_s']:.3f} s")
    print(f"  transitions (closed form): {prof['transitions_s']:.4f} s")
    print(
        f"  M-step ({model.m_step}):{' ' * (18 - len(model.m_step))}{prof['m_step_s']:.3f} s = {prof['m_step_evals']} "
        f"objective+gradient passes x {prof['m_step_in_objective_s'] / n_ev:.3f} s + "
        f"{prof['m_step_outside_objective_s']:.3f} s outside them ("
        + (
            "set-up, Fisher information, solves"
            if model.m_step == "newton"
            else "set-up, L-BFGS updates, line search"
        )
        + ")"
    )
    print("  one whole M-step, top ops (torch profiler):")
    print(prof["m_step_top_ops"])
    print("  cProfile of one EM iteration (by own time):")
    print(prof["cprofile_tottime"])


def time_to_target(run: dict, target: float) -> tuple[float | None, int | None]:
    for i, (t, ho) in enumerate(zip(run["cum_time"], run["heldout"], strict=True)):
        if ho >= target:
            return t, i
    return None, None


def fmt_s(x) -> str:
    if x is None:
        return "not reached"
    return f"{x:.4f} s" if x < 0.1 else (f"{x:.3f} s" if x < 10 else f"{x:.1f} s")


def ratio(d, o) -> str:
    return "n/a" if d is None or o is None or o == 0 else f"{d / o:.2f}x"


def main(argv=None) -> dict:
    args = parse_args(argv)
    budget = args.budget_s if args.budget_s is not None else DEFAULT_BUDGET[args.size]
    cores = pin_cores(args.cores)
    import torch

    torch.set_num_threads(len(cores))
    res = {
        "args": vars(args),
        "cores": cores,
        "host": platform.node(),
        "loadavg_start": os.getloadavg(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "code": code_version(),
    }
    for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OMP_WAIT_POLICY", "XLA_FLAGS"):
        # recorded, left as they are (neither side's timed code runs on OpenBLAS: torch uses MKL, XLA Eigen)
        if k in os.environ:
            res[k] = os.environ[k]
    if res["loadavg_start"][0] > 0.5 * (os.cpu_count() or 1) and "OMP_WAIT_POLICY" not in os.environ:
        print(
            f"warning: load average {res['loadavg_start'][0]:.2f} on {os.cpu_count()} cores: other "
            "processes compete for the CPUs; torch's OpenMP barriers spin and our timings inflate (see bench/README.md; "
            "an idle machine or OMP_WAIT_POLICY=PASSIVE helps)",
            flush=True,
        )
    S, N = SIZES[args.size]["n_states"], SIZES[args.size]["n_neurons"]
    print(
        f"== switching GLM vs dynamax: size {args.size} (N={N}, S={S}), link {args.link}, cores {cores}, "
        f"load average {res['loadavg_start'][0]:.2f}",
        flush=True,
    )

    model, train, test, truth, info = build_data(args)
    exact = info.pop("exact")
    res["data"] = info
    B, T, _ = train.counts.shape
    print(
        f"data: train {B} x {T} = {B * T} bins, test {test.counts.shape[0]} x {test.counts.shape[1]}, "
        f"mean count {info['mean_count']:.3f}/bin; simulate {info['simulate_s']:.1f} s, batch+history "
        f"{info['batch_s']:.2f} s",
        flush=True,
    )
    p0, t_init = initial_params(args, model, train)
    res["single_glm_init_s"] = t_init
    print(
        "init: single-state GLM " + (f"fitted in {t_init:.1f} s" if t_init else "loaded from bench/.cache"),
        flush=True,
    )
    ours = Ours(model, train, test)
    if args.profile_only:
        prof = profile_em_iteration(ours, p0)
        print_profile(prof, info, model)
        return {"profile": {k: v for k, v in prof.items() if not isinstance(v, str)}, **res}
    dpy = dynamax_python(args.dynamax_python)
    res["heldout_truth"] = ours.heldout(truth)

    with torch.no_grad():
        ll_fb = model._log_lik(p0, p0["W"], train)

    # ---------------- brainpipe (a), (b)
    fb_times, fb_norm, fb_gamma = time_forward_backward(
        ll_fb, p0["log_pi"], p0["log_A"], train.mask, args.repeats
    )
    print(f"[brainpipe] forward-backward: {np.median(fb_times):.4f} s", flush=True)
    ours.objective(p0)  # warm-up of the E-step path (the forward-backward was warmed up above)
    em = [ours.em_iteration(p0) for _ in range(args.repeats)]
    em_times = [e[2] for e in em]
    ho_after1 = ours.heldout(em[0][0])
    res["brainpipe"] = {
        "fb": {"times": fb_times, "log_norm_sum": fb_norm, "gamma_sum": fb_gamma},
        "em_iter": {
            "times": [e["total"] for e in em_times],
            "e_step": [e["e_step"] for e in em_times],
            "m_step": [e["m_step"] for e in em_times],
            "train_ll_before": em[0][1],
            "heldout_after": ho_after1,
        },
        "heldout_init": ours.heldout(p0),
    }
    print(
        f"[brainpipe] one EM iteration: {np.median(res['brainpipe']['em_iter']['times']):.3f} s "
        f"(E {np.median(res['brainpipe']['em_iter']['e_step']):.3f} s, "
        f"M {np.median(res['brainpipe']['em_iter']['m_step']):.3f} s)",
        flush=True,
    )

    # ---------------- brainpipe (c)
    if not args.skip_converge:
        res["brainpipe"]["converge"] = run_em_budget(ours, p0, budget, args.max_iter)
        c = res["brainpipe"]["converge"]
        print(
            f"[brainpipe] EM run: {c['n_iter']} iterations in {c['cum_time'][-1]:.1f} s ({c['stop']}), "
            f"held-out LL {c['heldout'][-1]:.2f}",
            flush=True,
        )

    # ---------------- dynamax (a), (b), (c), in its own process
    cfg = {
        "dtype": args.dynamax_dtype,
        "link": args.link,
        "l2": model.l2,
        "repeats": args.repeats,
        "m_step_num_iters": args.dynamax_m_step_iters,
        "lr": args.dynamax_lr,
        "vectorised": not args.dynamax_generic_loglik,
        "budget_s": 0.0 if args.skip_converge else budget,
        "max_iter": 0 if args.skip_converge else args.max_iter,
        "tol": model.tol,
    }
    with tempfile.TemporaryDirectory() as tmp:
        npz, js = Path(tmp) / "data.npz", Path(tmp) / "out.json"
        np.savez(
            npz,
            Y_train=exact["train"][0],
            H_train=exact["train"][1],
            Y_test=exact["test"][0],
            H_test=exact["test"][1],
            W0=p0["W"].numpy(),
            b0=p0["b"].numpy(),
            log_A0=p0["log_A"].numpy(),
            log_pi0=p0["log_pi"].numpy(),
            ll_fb=ll_fb.numpy(),
            config=json.dumps(cfg),
        )
        env = dict(os.environ, JAX_PLATFORMS="cpu")
        subprocess.run([dpy, str(HERE / "_dynamax_side.py"), str(npz), str(js)], check=True, env=env)
        dyn = json.loads(js.read_text())
    res["dynamax"] = dyn
    res["loadavg_end"] = os.getloadavg()

    # ---------------- checks: both sides fit the same model
    bp = res["brainpipe"]
    d_fb = abs(bp["fb"]["log_norm_sum"] - dyn["fb"]["log_norm_sum"])
    d_ho = abs(bp["heldout_init"] - dyn["heldout_init"])
    d_obj = abs(bp["em_iter"]["train_ll_before"] - dyn["em_iter"]["train_ll_before"])
    res["checks"] = {
        "fb_log_norm_abs_diff": d_fb,
        "heldout_init_abs_diff": d_ho,
        "train_ll_init_abs_diff": d_obj,
    }

    # ---------------- table
    rows = []
    o, d = float(np.median(bp["fb"]["times"])), float(np.median(dyn["fb"]["times"]))
    rows.append(("(a) forward-backward alone", fmt_s(o), fmt_s(d), ratio(d, o)))
    o_em, d_em = float(np.median(bp["em_iter"]["times"])), float(np.median(dyn["em_iter"]["times"]))
    rows.append(("(b) one EM iteration", fmt_s(o_em), fmt_s(d_em), ratio(d_em, o_em)))
    oe, om = float(np.median(bp["em_iter"]["e_step"])), float(np.median(bp["em_iter"]["m_step"]))
    de, dm = dyn["em_split"]["e_step_s"], dyn["em_split"]["m_step_s"]
    rows.append(("      E-step", fmt_s(oe), fmt_s(de), ratio(de, oe)))
    rows.append(("      M-step", fmt_s(om), fmt_s(dm), ratio(dm, om)))
    rows.append(
        (
            "    held-out LL after 1 iteration",
            f"{bp['em_iter']['heldout_after']:.1f}",
            f"{dyn['em_iter']['heldout_after']:.1f}",
            "",
        )
    )
    summary_conv = None
    if not args.skip_converge:
        co, cd = bp["converge"], dyn["converge"]
        best = max(co["heldout"][-1], cd["heldout"][-1])
        target = best - args.tolerance * abs(best)
        to, io_ = time_to_target(co, target)
        td, id_ = time_to_target(cd, target)
        res["converge_target"] = {
            "best_final": best,
            "target": target,
            "brainpipe_s": to,
            "brainpipe_iter": io_,
            "dynamax_s": td,
            "dynamax_iter": id_,
        }
        rows.append(
            (
                f"(c) time to within {args.tolerance:.1%} of best held-out LL",
                fmt_s(to) + (f" ({io_} it)" if io_ is not None else ""),
                fmt_s(td) + (f" ({id_} it)" if id_ is not None else ""),
                ratio(td, to),
            )
        )
        rows.append(
            (
                "    EM iterations run / EM time",
                f"{co['n_iter']} / {co['cum_time'][-1]:.1f} s",
                f"{cd['n_iter']} / {cd['cum_time'][-1]:.1f} s",
                "",
            )
        )
        rows.append(
            (
                "    stopped by",
                co["stop"].replace(" (SwitchingGLM tol)", " (tol)"),
                cd.get("stop", "").replace(" (same tol)", " (tol)"),
                "",
            )
        )
        rows.append(("    final held-out LL", f"{co['heldout'][-1]:.1f}", f"{cd['heldout'][-1]:.1f}", ""))
        summary_conv = (to, td)
    w0 = max(len(r[0]) for r in rows) + 2
    line = "-" * (w0 + 62)
    print(f"\n{line}\n{'measurement':<{w0}}{'brainpipe':>22}{'dynamax':>22}{'dynamax/ours':>18}\n{line}")
    for r in rows:
        print(f"{r[0]:<{w0}}{r[1]:>22}{r[2]:>22}{r[3]:>18}")
    print(line)
    dv = dyn["versions"]
    print(
        f"held-out LL (test, {test.counts.shape[0]} x {test.counts.shape[1]} bins): at init brainpipe "
        f"{bp['heldout_init']:.2f} / dynamax {dyn['heldout_init']:.2f}; planted truth {res['heldout_truth']:.2f}"
    )
    print(
        f"same-model checks: |forward-backward log Z diff| {d_fb:.2e}, |held-out LL diff at init| {d_ho:.2e}, "
        f"|train LL diff at init| {d_obj:.2e}"
    )
    print(
        f"compile (excluded): dynamax hmm_smoother {dyn['fb']['compile_s']:.2f} s, em_step {dyn['em_iter']['compile_s']:.2f} s"
    )
    print(
        f"settings: brainpipe float64 (data term {model.data_dtype}), {model.m_step} M-step "
        + (
            f"newton_iter={model.newton_iter} hessian_rows={model.hessian_rows}"
            if model.m_step == "newton"
            else f"max_iter={model.m_step_iter}"
        )
        + f"; dynamax {dyn['dtype']}, "
        f"{args.dynamax_m_step_iters} Adam steps lr={args.dynamax_lr} "
        f"({'generic' if args.dynamax_generic_loglik else 'einsum'} log-lik); torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), jax {dv['jax']}, dynamax {dv['dynamax']}; cores {cores}; "
        f"load average {res['loadavg_start'][0]:.2f} -> {res['loadavg_end'][0]:.2f}; brainpipe code {res['code']}"
    )
    # issue 16's goals: the EM iteration >= 20x dynamax's at N=50 (large), >= 10x at N=10 (small); the
    # forward-backward at least level (>= 1x)
    goal = "goal >= 20x" if args.size == "large" else "goal >= 10x"
    print(f"\nforward-backward: brainpipe {fmt_s(o)}, dynamax {fmt_s(d)}, ratio {ratio(d, o)} (goal >= 1x)")
    print(
        f"switching GLM EM iteration: brainpipe {fmt_s(o_em)}, dynamax {fmt_s(d_em)}, ratio {ratio(d_em, o_em)} ({goal})"
    )
    if summary_conv:
        to, td = summary_conv
        print(
            f"time to equal held-out LL: brainpipe {fmt_s(to)}, dynamax {fmt_s(td)}, ratio {ratio(td, to)} ({goal})"
        )

    if args.profile:
        prof = profile_em_iteration(ours, p0)
        res["profile"] = {k: v for k, v in prof.items() if not isinstance(v, str)}
        print_profile(prof, info, model)
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1, default=float))
    return res


if __name__ == "__main__":
    main()
