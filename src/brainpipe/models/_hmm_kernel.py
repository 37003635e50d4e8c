"""Compiled CPU kernel for HMM inference: a plain scaled forward-backward recursion over time (and Viterbi); the
same extension carries the switching GLM's fused Poisson data term (:mod:`brainpipe.models._poisson_kernel_src`).

The chunked scans of :mod:`brainpipe.models.hmm` run a few hundred small tensor operations per call; on the CPU
that overhead dominates at the sizes we fit (S = 2-5 states). This module compiles, on first use, a small C++
extension (``torch.utils.cpp_extension.load_inline``) that runs the textbook recursions: one loop over time per
sequence, in float64, with no torch operation over the (B, T, S) inputs in between (on shared cores every parallel
torch operation can wait milliseconds for a descheduled thread). Sequences run inline, or with ``parallel`` in
parallel over the caller's torch threads (``at::parallel_for``; :mod:`brainpipe.models.hmm` asks for that only for
large inputs).

- Forward: ``alpha_t = normalise((alpha_{t-1} A) * P_t)``, with ``P_t = exp(log_lik_t - max_s log_lik_t)`` and
  the log normaliser accumulating ``log(sum) + max``.
- Backward: ``beta_{t-1} = A (P_t * beta_t)``, rescaled to a maximum of 1; ``gamma_t`` is ``alpha_t beta_t``
  renormalised per step and ``xi_t(i, j) = alpha_{t-1}(i) A_ij P_t(j) beta_t(j)`` renormalised per step.
  With every transition probability at least ``sqrt(tiny)`` (the condition under which
  :func:`brainpipe.models.hmm.forward_backward` uses the linear domain at all) no sum can underflow: a
  normalised ``alpha`` fed through ``A`` gives every state at least ``min A``, and the rescaled ``beta`` is at
  least ``min A`` everywhere.
- Padded steps (``mask == False``) leave the messages unchanged and get zero posterior, as in the scans.

The extension is built once per source text (its name carries a hash of the source) into torch's extension
cache (``TORCH_EXTENSIONS_DIR``, by default ``~/.cache/torch_extensions``), under torch's file lock, so
concurrent processes build it once. Compilation takes 35-65 s on 2 cores (it includes the torch headers; measured
33 s idle, 53-62 s under load); later processes import the cached library directly (about 0.05 s). When compilation fails the callers fall back to the torch scans, with
one warning. ``BRAINPIPE_HMM_KERNEL=torch`` in the environment disables the kernel.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
import warnings

import torch

from brainpipe.models._poisson_kernel_src import SOURCE as POISSON_SOURCE

ENV = "BRAINPIPE_HMM_KERNEL"

_SOURCE = r"""
#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

namespace {

void check(const at::Tensor& P, const at::Tensor& log_pi, const at::Tensor& log_A, const at::Tensor& mask) {
  TORCH_CHECK(P.dim() == 3 && P.scalar_type() == at::kDouble && P.is_contiguous(), "(B, T, S) float64 expected");
  const int64_t S = P.size(2);
  TORCH_CHECK(log_pi.numel() == S && log_pi.scalar_type() == at::kDouble && log_pi.is_contiguous(), "log_pi: (S,)");
  TORCH_CHECK(log_A.numel() == S * S && log_A.scalar_type() == at::kDouble && log_A.is_contiguous(), "log_A: (S, S)");
  TORCH_CHECK(mask.dim() == 2 && mask.size(0) == P.size(0) && mask.size(1) == P.size(1)
              && mask.scalar_type() == at::kBool && mask.is_contiguous(), "mask: (B, T) bool");
}

std::vector<double> exp_of(const at::Tensor& x) {
  std::vector<double> v(x.numel());
  const double* p = x.data_ptr<double>();
  for (size_t k = 0; k < v.size(); ++k) v[k] = std::exp(p[k]);
  return v;
}

// Forward pass of one sequence on the emission factors P (T*S, in [0, 1], 1 at padding): writes the
// normalised alpha_t into alpha (T*S) if not null; returns log of the product of the per-step sums.
// K > 0: the number of states fixed at compile time (loops unrolled); K == 0: S at run time.
template <int K>
double forward(const double* P, const bool* m, int64_t T, int64_t S_, const double* pi, const double* A,
               double* alpha) {
  const int64_t S = K > 0 ? K : S_;
  double cur[16], nxt[16];
  double log_norm = 0.0, prod = 1.0;
  for (int64_t t = 0; t < T; ++t) {
    const double* p = P + t * S;
    if (t > 0 && !m[t]) {  // padding: the message is unchanged
      if (alpha) for (int64_t j = 0; j < S; ++j) alpha[t * S + j] = cur[j];
      continue;
    }
    if (t == 0) {
      for (int64_t j = 0; j < S; ++j) nxt[j] = pi[j] * p[j];
    } else {
      for (int64_t j = 0; j < S; ++j) nxt[j] = 0.0;
      for (int64_t i = 0; i < S; ++i)
        for (int64_t j = 0; j < S; ++j) nxt[j] += cur[i] * A[i * S + j];
      for (int64_t j = 0; j < S; ++j) nxt[j] *= p[j];
    }
    double c = 0.0;
    for (int64_t j = 0; j < S; ++j) c += nxt[j];
    const double inv = 1.0 / c;
    for (int64_t j = 0; j < S; ++j) cur[j] = nxt[j] * inv;
    if (alpha) for (int64_t j = 0; j < S; ++j) alpha[t * S + j] = cur[j];
    prod *= c;  // each c is at least min(A) >= sqrt(tiny): take the log only when the product gets small
    if (prod < 1e-150) { log_norm += std::log(prod); prod = 1.0; }
  }
  return log_norm + std::log(prod);
}

// Forward-backward of one sequence; G (T*S) receives gamma, X (S*S) the summed xi.
template <int K>
double smooth(const double* P, const bool* m, int64_t T, int64_t S_, const double* pi, const double* A,
              double* G, double* X) {
  const int64_t S = K > 0 ? K : S_;
  const double log_norm = forward<K>(P, m, T, S, pi, A, G);  // G holds alpha, overwritten by gamma from the end
  double beta[16], w[16], x[256];
  for (int64_t j = 0; j < S; ++j) beta[j] = 1.0;
  for (int64_t t = T - 1; t >= 0; --t) {
    double* g = G + t * S;
    if (!m[t]) {  // padding: posterior 0, messages unchanged
      for (int64_t j = 0; j < S; ++j) g[j] = 0.0;
      continue;
    }
    const double* p = P + t * S;
    for (int64_t j = 0; j < S; ++j) w[j] = p[j] * beta[j];
    if (t > 0) {  // xi_t(i, j) ~ alpha_{t-1}(i) A_ij P_t(j) beta_t(j); alpha_{t-1} is still in G
      const double* a = G + (t - 1) * S;
      double z = 0.0;
      for (int64_t i = 0; i < S; ++i)
        for (int64_t j = 0; j < S; ++j) {
          x[i * S + j] = a[i] * A[i * S + j] * w[j];
          z += x[i * S + j];
        }
      const double inv = 1.0 / z;
      for (int64_t k = 0; k < S * S; ++k) X[k] += x[k] * inv;
    }
    double z = 0.0;
    for (int64_t j = 0; j < S; ++j) {
      g[j] *= beta[j];
      z += g[j];
    }
    const double inv = 1.0 / z;
    for (int64_t j = 0; j < S; ++j) g[j] *= inv;
    if (t > 0) {  // beta_{t-1} = A (P_t * beta_t), rescaled to a maximum of 1
      double top = 0.0;
      for (int64_t i = 0; i < S; ++i) {
        double s = 0.0;
        for (int64_t j = 0; j < S; ++j) s += A[i * S + j] * w[j];
        beta[i] = s;
        top = std::max(top, s);
      }
      const double it = 1.0 / top;
      for (int64_t i = 0; i < S; ++i) beta[i] *= it;
    }
  }
  return log_norm;
}

template <typename F>
void dispatch(int64_t S, F f) {
  switch (S) {
    case 2: f(std::integral_constant<int, 2>()); break;
    case 3: f(std::integral_constant<int, 3>()); break;
    case 4: f(std::integral_constant<int, 4>()); break;
    case 5: f(std::integral_constant<int, 5>()); break;
    default: f(std::integral_constant<int, 0>());
  }
}

// Emission factors of one sequence: P[t, s] = exp(L[t, s] - max_s L[t, s]) (1 at padding); returns the sum of
// the shifts max_s L[t, s] over the valid steps.
double factors(const double* L, const bool* m, int64_t T, int64_t S, double* P) {
  double shift = 0.0;
  for (int64_t t = 0; t < T; ++t) {
    const double* l = L + t * S;
    double* p = P + t * S;
    if (!m[t]) {
      for (int64_t j = 0; j < S; ++j) p[j] = 1.0;
      continue;
    }
    double top = l[0];
    for (int64_t j = 1; j < S; ++j) top = std::max(top, l[j]);
    for (int64_t j = 0; j < S; ++j) p[j] = std::exp(l[j] - top);
    shift += top;
  }
  return shift;
}

// Runs f(b0, b1) over the sequences [0, B): in parallel (at::parallel_for, the caller's torch threads) or inline.
template <typename F>
void over_sequences(int64_t B, bool parallel, const F& f) {
  if (parallel) at::parallel_for(0, B, 1, f);
  else f(0, B);
}

}  // namespace

// From the log-likelihoods P (B, T, S): log marginal likelihood (B), gamma (B, T, S), summed xi (B, S, S).
std::vector<at::Tensor> forward_backward(at::Tensor P, at::Tensor log_pi, at::Tensor log_A, at::Tensor mask,
                                         bool parallel) {
  check(P, log_pi, log_A, mask);
  const int64_t B = P.size(0), T = P.size(1), S = P.size(2);
  TORCH_CHECK(S <= 16, "at most 16 states");
  at::Tensor log_norm = at::empty({B}, P.options());
  at::Tensor gamma = at::empty({B, T, S}, P.options());
  at::Tensor xi = at::zeros({B, S, S}, P.options());
  const std::vector<double> pi = exp_of(log_pi), A = exp_of(log_A);
  const double* Lp = P.data_ptr<double>();
  const bool* Mp = mask.data_ptr<bool>();
  double* Gp = gamma.data_ptr<double>();
  double* Xp = xi.data_ptr<double>();
  double* Np = log_norm.data_ptr<double>();
  dispatch(S, [&](auto k) {
    constexpr int K = decltype(k)::value;
    over_sequences(B, parallel, [&](int64_t b0, int64_t b1) {
      std::vector<double> F(T * S);
      for (int64_t b = b0; b < b1; ++b) {
        const double shift = factors(Lp + b * T * S, Mp + b * T, T, S, F.data());
        Np[b] = shift + smooth<K>(F.data(), Mp + b * T, T, S, pi.data(), A.data(), Gp + b * T * S, Xp + b * S * S);
      }
    });
  });
  return {log_norm, gamma, xi};
}

at::Tensor log_marginal(at::Tensor P, at::Tensor log_pi, at::Tensor log_A, at::Tensor mask, bool parallel) {
  check(P, log_pi, log_A, mask);
  const int64_t B = P.size(0), T = P.size(1), S = P.size(2);
  TORCH_CHECK(S <= 16, "at most 16 states");
  at::Tensor log_norm = at::empty({B}, P.options());
  const std::vector<double> pi = exp_of(log_pi), A = exp_of(log_A);
  const double* Lp = P.data_ptr<double>();
  const bool* Mp = mask.data_ptr<bool>();
  double* Np = log_norm.data_ptr<double>();
  dispatch(S, [&](auto k) {
    constexpr int K = decltype(k)::value;
    over_sequences(B, parallel, [&](int64_t b0, int64_t b1) {
      std::vector<double> F(T * S);
      for (int64_t b = b0; b < b1; ++b) {
        const double shift = factors(Lp + b * T * S, Mp + b * T, T, S, F.data());
        Np[b] = shift + forward<K>(F.data(), Mp + b * T, T, S, pi.data(), A.data(), nullptr);
      }
    });
  });
  return log_norm;
}

// Most probable paths from the log-likelihoods (B, T, S); -1 after each sequence's valid steps.
at::Tensor viterbi(at::Tensor ll, at::Tensor log_pi, at::Tensor log_A, at::Tensor mask, bool parallel) {
  check(ll, log_pi, log_A, mask);
  const int64_t B = ll.size(0), T = ll.size(1), S = ll.size(2);
  at::Tensor paths = at::full({B, T}, -1, ll.options().dtype(at::kLong));
  const double* Lp = ll.data_ptr<double>();
  const bool* Mp = mask.data_ptr<bool>();
  const double* lpi = log_pi.data_ptr<double>();
  const double* lA = log_A.data_ptr<double>();
  int64_t* Pp = paths.data_ptr<int64_t>();
  over_sequences(B, parallel, [&](int64_t b0, int64_t b1) {
    std::vector<double> d(S), nd(S);
    std::vector<int64_t> ptr(T * S);
    for (int64_t b = b0; b < b1; ++b) {
      const double* L = Lp + b * T * S;
      const bool* m = Mp + b * T;
      int64_t n = 0;  // the valid steps come first
      for (int64_t t = 0; t < T; ++t) n += m[t] ? 1 : 0;
      if (n == 0) continue;
      for (int64_t j = 0; j < S; ++j) d[j] = lpi[j] + (m[0] ? L[j] : 0.0);
      for (int64_t t = 1; t < n; ++t) {
        int64_t* p = ptr.data() + t * S;
        if (!m[t]) {
          for (int64_t j = 0; j < S; ++j) p[j] = j;
          continue;
        }
        for (int64_t j = 0; j < S; ++j) {
          int64_t best = 0;
          double v = d[0] + lA[j];
          for (int64_t i = 1; i < S; ++i) {
            const double c = d[i] + lA[i * S + j];
            if (c > v) {
              v = c;
              best = i;
            }
          }
          nd[j] = v + L[t * S + j];
          p[j] = best;
        }
        std::swap(d, nd);
      }
      int64_t z = 0;
      for (int64_t j = 1; j < S; ++j)
        if (d[j] > d[z]) z = j;
      int64_t* out = Pp + b * T;
      out[n - 1] = z;
      for (int64_t t = n - 1; t > 0; --t) {
        z = ptr[t * S + z];
        out[t - 1] = z;
      }
    }
  });
  return paths;
}
"""

_SOURCE += POISSON_SOURCE  # the switching GLM's fused Poisson data term: one extension, one build

_FUNCTIONS = ["forward_backward", "log_marginal", "viterbi", "poisson_value_grad", "poisson_row_sums"]
STALE_LOCK_S = 900  # a build lock older than this was left by a killed build (a build takes about a minute)
_lock = threading.Lock()
_module = None
_failed = False


def enabled() -> bool:
    """Whether the environment allows the compiled kernel (``BRAINPIPE_HMM_KERNEL`` is not ``torch``)."""
    return os.environ.get(ENV, "").strip().lower() != "torch"


def module_name() -> str:
    """Name of the extension: it carries a hash of the source and the torch version, so an edited source or
    another torch is built afresh."""
    key = f"{torch.__version__}\n{_SOURCE}".encode()
    return "brainpipe_hmm_" + hashlib.sha256(key).hexdigest()[:12]


def _cached(name: str):
    """The already-built library of this name, imported directly (``load_inline`` would spend about 1.5 s
    re-checking the build with ninja in every process); ``None`` when it is not there or does not import."""
    import importlib.util

    from torch.utils import cpp_extension

    try:
        folder = cpp_extension._get_build_directory(name, verbose=False)
        path = os.path.join(folder, name + ".so")
        if not os.path.isfile(path) or os.path.exists(os.path.join(folder, "lock")):  # absent, or being built
            return None
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    except Exception:  # noqa: BLE001 - anything odd about the cached copy: build it the ordinary way
        return None
    return module if all(hasattr(module, f) for f in _FUNCTIONS) else None


def _ninja_on_path() -> None:
    """torch runs ``ninja`` from PATH; a venv that was not activated (``.venv/bin/snakemake``) has the ninja of the
    ``ninja`` dependency outside it, so its folder is added to PATH when no other ninja is found."""
    import shutil

    if shutil.which("ninja") is not None:
        return
    try:
        import ninja
    except ImportError:
        return
    os.environ["PATH"] = os.pathsep.join(p for p in (ninja.BIN_DIR, os.environ.get("PATH", "")) if p)


def _build():
    from torch.utils.cpp_extension import load_inline

    name = module_name()
    cached = _cached(name)
    if cached is not None:
        return cached
    from torch.utils import cpp_extension

    lock = os.path.join(cpp_extension._get_build_directory(name, verbose=False), "lock")
    if os.path.exists(lock) and time.time() - os.path.getmtime(lock) > STALE_LOCK_S:
        # torch would wait for it forever: a build that was killed leaves its lock file behind
        raise RuntimeError(f"stale build lock {lock} (over {STALE_LOCK_S} s old): delete it to rebuild")
    _ninja_on_path()
    return load_inline(
        name=name,
        cpp_sources=[_SOURCE],
        functions=_FUNCTIONS,
        # -fno-trapping-math: the Poisson loops' clamps are if-converted, so those loops vectorise
        extra_cflags=["-O3", "-fopenmp", "-fno-trapping-math"],
        extra_ldflags=["-fopenmp"],
        verbose=False,
    )


def load():
    """The compiled module, built on first use; ``None`` when disabled or when the build failed (warned once)."""
    global _module, _failed
    if not enabled() or _failed:
        return None
    if _module is not None:
        return _module
    with _lock:
        if _module is None and not _failed:
            try:
                _module = _build()
            except Exception as err:  # noqa: BLE001 - any build failure means: use the torch scans
                _failed = True
                warnings.warn(
                    f"brainpipe.models.hmm: the compiled HMM kernel could not be built ({type(err).__name__}: "
                    f"{str(err).strip().splitlines()[-1] if str(err).strip() else ''}); using the slower torch "
                    f"scans. Set {ENV}=torch to skip the build.",
                    RuntimeWarning,
                    stacklevel=3,
                )
    return _module


def usable(*tensors: torch.Tensor) -> bool:
    """Whether a call on these tensors can go to the kernel: CPU tensors, no autograd through them, the kernel
    enabled and built."""
    if any(t.device.type != "cpu" for t in tensors):
        return False
    if torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
        return False
    return load() is not None


def _as64(*tensors: torch.Tensor) -> list[torch.Tensor]:
    return [t.detach().to(torch.float64).contiguous() for t in tensors]


def forward_backward(log_lik, log_pi, log_A, mask, parallel: bool = False):
    """Kernel forward-backward: ``(log_norm (B,), gamma (B, T, S), xi (B, S, S))`` in float64; ``parallel``:
    sequences on the caller's torch threads (else one thread)."""
    return load().forward_backward(*_as64(log_lik, log_pi, log_A), mask.to(torch.bool).contiguous(), parallel)


def log_marginal(log_lik, log_pi, log_A, mask, parallel: bool = False):
    """Kernel forward pass: the log marginal likelihood of each sequence, (B,) float64."""
    return load().log_marginal(*_as64(log_lik, log_pi, log_A), mask.to(torch.bool).contiguous(), parallel)


def poisson_value_grad(eta, y, g, link: int, d):
    """Kernel Poisson data term of one block (float32 CPU tensors, contiguous): the weighted value per neuron,
    (N,) float64, with the derivative written into ``d`` (rows, N) unless it is empty; see
    :mod:`brainpipe.models._poisson_kernel_src`."""
    return load().poisson_value_grad(eta, y, g, link, d)


def poisson_row_sums(eta, y, n_states: int, link: int):
    """Kernel emission term of one block: per bin and state ``sum_n (y log r - r)``, (rows, S) float64, from
    ``eta`` (rows, S N) and ``y`` (rows, N), float32 CPU tensors."""
    return load().poisson_row_sums(eta, y, n_states, link)


def viterbi(log_lik, log_pi, log_A, mask, parallel: bool = False):
    """Kernel Viterbi: (B, T) int64 paths, -1 after each sequence's valid steps (which come first)."""
    return load().viterbi(*_as64(log_lik, log_pi, log_A), mask.to(torch.bool).contiguous(), parallel)
