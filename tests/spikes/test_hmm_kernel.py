"""The compiled HMM kernel (brainpipe.models._hmm_kernel): equal to the sequential reference and to the torch
scans, exact with extreme likelihoods, and the fallbacks (build failure, BRAINPIPE_HMM_KERNEL=torch, autograd,
CUDA)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from brainpipe.models import _hmm_kernel, hmm
from hmm_checks import assert_matches_reference, prefix_mask, random_hmm


def test_kernel_builds_here():
    """g++ is installed on the development and CI machines: the kernel must build (else every test below would
    compare the torch scans with themselves)."""
    assert _hmm_kernel.enabled()
    assert _hmm_kernel.load() is not None
    ll, log_pi, log_A = random_hmm(np.random.default_rng(0), 2, 5, 3)
    assert _hmm_kernel.usable(ll, log_pi, log_A)


@pytest.mark.parametrize(
    ("S", "T", "spread"), [(2, 1, 2.0), (3, 2, 2.0), (3, 257, 2.0), (4, 120, 300.0), (7, 90, 5.0)]
)
def test_kernel_matches_reference_and_scan(rng, S, T, spread):
    """Random inputs with padding (the valid steps first), several state counts (the unrolled S = 2-5 and the
    run-time S), and likelihood gaps of hundreds of nats: the kernel equals the log-space reference and the
    scans to 1e-10."""
    lengths = [T, max(1, T // 2), max(1, T - 3)]
    ll, log_pi, log_A = random_hmm(rng, 3, T, S, spread)
    mask = prefix_mask(T, lengths)
    log_norm, gamma, xi = _hmm_kernel.forward_backward(ll, log_pi, log_A, mask)
    paths = _hmm_kernel.viterbi(ll, log_pi, log_A, mask).numpy()
    xi_ref = assert_matches_reference(ll, log_pi, log_A, lengths, log_norm, gamma, paths)
    np.testing.assert_allclose(xi.sum(0).numpy(), xi_ref, atol=1e-10 * max(T, 1))
    scan = hmm._forward_backward_scan(ll, log_pi, log_A, mask)
    np.testing.assert_allclose(log_norm.numpy(), scan[0].numpy(), rtol=1e-10)
    np.testing.assert_allclose(gamma.numpy(), scan[1].numpy(), atol=1e-10)
    np.testing.assert_allclose(xi.sum(0).numpy(), scan[2].numpy(), atol=1e-10 * max(T, 1))
    np.testing.assert_allclose(
        _hmm_kernel.log_marginal(ll, log_pi, log_A, mask).numpy(), log_norm.numpy(), rtol=1e-12
    )
    np.testing.assert_array_equal(paths, hmm._viterbi_scan(ll, log_pi, log_A, mask))


def test_kernel_padding_anywhere_matches_scan(rng):
    """Padded steps anywhere (the first one included) leave the messages unchanged, as in the scans."""
    ll, log_pi, log_A = random_hmm(rng, 4, 50, 3)
    mask = torch.tensor(rng.random((4, 50)) > 0.3)
    mask[:, 1] = True
    mask[0, 0] = False
    got = _hmm_kernel.forward_backward(ll, log_pi, log_A, mask)
    scan = hmm._forward_backward_scan(ll, log_pi, log_A, mask)
    np.testing.assert_allclose(got[0].numpy(), scan[0].numpy(), rtol=1e-10)
    np.testing.assert_allclose(got[1].numpy(), scan[1].numpy(), atol=1e-10)
    np.testing.assert_allclose(got[2].sum(0).numpy(), scan[2].numpy(), atol=1e-9)
    assert np.all(got[1].numpy()[~mask.numpy()] == 0)


def test_kernel_extreme_likelihoods_do_not_underflow(rng):
    """Gaps of thousands of nats (the factors of the other states are exactly 0), log-likelihoods around -1e6
    (a sum of many neurons) and transitions of 1e-100: no underflow, exact against the reference (whose own
    precision is about 1e-16 times its log messages, ~1e5 here) and unchanged by the offset."""
    B, T, S = 2, 100, 3
    ll = torch.tensor(rng.normal(size=(B, T, S)) * 3000.0)
    A = np.full((S, S), 1e-100)
    np.fill_diagonal(A, 1.0)
    A[0, 1] = A[1, 2] = A[2, 0] = 1e-3
    log_A = torch.tensor(np.log(A / A.sum(1, keepdims=True)))
    log_pi = torch.log(torch.tensor([1e-100, 0.5, 0.5], dtype=torch.float64))
    mask = torch.ones(B, T, dtype=torch.bool)
    log_norm, gamma, xi = _hmm_kernel.forward_backward(ll, log_pi, log_A, mask)
    assert torch.isfinite(log_norm).all() and torch.isfinite(gamma).all() and torch.isfinite(xi).all()
    for b in range(B):
        z, g, x = hmm.forward_backward_reference(ll[b].numpy(), log_pi.numpy(), log_A.numpy())
        np.testing.assert_allclose(log_norm[b].item(), z, rtol=1e-12)
        np.testing.assert_allclose(gamma[b].numpy(), g, atol=1e-10)
        np.testing.assert_allclose(xi[b].numpy(), x, atol=1e-9)
    shifted = _hmm_kernel.forward_backward(ll - 1e6, log_pi, log_A, mask)
    np.testing.assert_allclose(shifted[0].numpy(), log_norm.numpy() - T * 1e6, rtol=1e-14)
    np.testing.assert_allclose(shifted[1].numpy(), gamma.numpy(), atol=1e-12)
    np.testing.assert_allclose(shifted[2].numpy(), xi.numpy(), atol=1e-10)


def test_public_functions_use_the_kernel_on_cpu(rng, monkeypatch):
    """hmm.forward_backward / log_marginal / viterbi go to the kernel for CPU tensors (float32 in, float32 out),
    not when autograd would run through the inputs."""
    calls = []
    for name in ("forward_backward", "log_marginal", "viterbi"):
        f = getattr(_hmm_kernel, name)
        monkeypatch.setattr(_hmm_kernel, name, lambda *a, f=f, name=name: calls.append(name) or f(*a))
    ll, log_pi, log_A = random_hmm(rng, 2, 40, 3)
    log_norm, gamma, _ = hmm.forward_backward(ll.float(), log_pi.float(), log_A.float())
    assert log_norm.dtype == gamma.dtype == torch.float32
    hmm.log_marginal(ll, log_pi, log_A)
    hmm.viterbi(ll, log_pi, log_A)
    assert calls == ["forward_backward", "log_marginal", "viterbi"]
    ll.requires_grad_(True)
    assert not _hmm_kernel.usable(ll, log_pi, log_A)  # the kernel has no backward
    with torch.no_grad():
        assert _hmm_kernel.usable(ll, log_pi, log_A)


def test_env_switch_uses_the_scans(rng, monkeypatch):
    """BRAINPIPE_HMM_KERNEL=torch: no kernel; the scans give the same answers."""
    ll, log_pi, log_A = random_hmm(rng, 2, 60, 3)
    mask = prefix_mask(60, [60, 33])
    with_kernel = hmm.forward_backward(ll, log_pi, log_A, mask)
    monkeypatch.setenv(_hmm_kernel.ENV, "torch")
    assert not _hmm_kernel.enabled() and _hmm_kernel.load() is None
    scans = []
    monkeypatch.setattr(
        hmm, "_forward_backward_scan", lambda *a, f=hmm._forward_backward_scan: scans.append(1) or f(*a)
    )
    without = hmm.forward_backward(ll, log_pi, log_A, mask)
    assert scans == [1]
    for a, b in zip(with_kernel, without, strict=True):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-10, atol=1e-10)
    np.testing.assert_array_equal(
        hmm.viterbi(ll, log_pi, log_A, mask), hmm._viterbi_scan(ll, log_pi, log_A, mask)
    )


def test_failed_build_warns_once_and_falls_back(rng, monkeypatch):
    """A compiler error: one RuntimeWarning, then the torch scans for every call, with the right answers."""

    def broken():
        raise RuntimeError("Error building extension 'brainpipe_hmm': g++ not found")

    monkeypatch.setattr(_hmm_kernel, "_module", None)
    monkeypatch.setattr(_hmm_kernel, "_failed", False)
    monkeypatch.setattr(_hmm_kernel, "_build", broken)
    ll, log_pi, log_A = random_hmm(rng, 1, 30, 2)
    with pytest.warns(RuntimeWarning, match="could not be built.*g\\+\\+ not found"):
        log_norm, _, _ = hmm.forward_backward(ll, log_pi, log_A)
    z, _, _ = hmm.forward_backward_reference(ll[0].numpy(), log_pi.numpy(), log_A.numpy())
    np.testing.assert_allclose(log_norm.item(), z, rtol=1e-12)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        hmm.log_marginal(ll, log_pi, log_A)  # no second warning
        assert not _hmm_kernel.usable(ll, log_pi, log_A)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_tensors_use_the_scans(rng):
    ll, log_pi, log_A = (t.cuda() for t in random_hmm(rng, 2, 50, 3))
    assert not _hmm_kernel.usable(ll, log_pi, log_A)
    log_norm, gamma, xi = hmm.forward_backward(ll, log_pi, log_A)
    assert log_norm.device.type == gamma.device.type == xi.device.type == "cuda"
    z, _, _ = hmm.forward_backward_reference(ll[0].cpu().numpy(), log_pi.cpu().numpy(), log_A.cpu().numpy())
    np.testing.assert_allclose(log_norm[0].item(), z, rtol=1e-10)


def test_parallel_sequences_give_the_same_answers(rng, monkeypatch):
    """Sequences on several threads (large inputs) or inline (small ones): bit-identical results."""
    ll, log_pi, log_A = random_hmm(rng, 5, 80, 3)
    mask = prefix_mask(80, [80, 3, 79, 40, 1])
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    monkeypatch.setattr(hmm, "KERNEL_PARALLEL_MIN", 0)
    assert hmm._parallel(ll)
    par = hmm.forward_backward(ll, log_pi, log_A, mask)
    par_paths = hmm.viterbi(ll, log_pi, log_A, mask)
    monkeypatch.setattr(hmm, "KERNEL_PARALLEL_MIN", 10**9)
    assert not hmm._parallel(ll)
    for a, b in zip(par, hmm.forward_backward(ll, log_pi, log_A, mask), strict=True):
        assert torch.equal(a, b)
    np.testing.assert_array_equal(par_paths, hmm.viterbi(ll, log_pi, log_A, mask))


def test_stale_build_lock_falls_back_instead_of_waiting(tmp_path, monkeypatch):
    """A build killed mid-way leaves torch's lock file behind and torch would wait for it forever: an old lock is
    a build failure (one warning, the torch scans)."""
    import os

    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    monkeypatch.setattr(_hmm_kernel, "module_name", lambda: "brainpipe_hmm_stale_test")
    monkeypatch.setattr(_hmm_kernel, "_module", None)
    monkeypatch.setattr(_hmm_kernel, "_failed", False)
    folder = tmp_path / "brainpipe_hmm_stale_test"
    folder.mkdir()
    lock = folder / "lock"
    lock.write_text("")
    old = lock.stat().st_mtime - 2 * _hmm_kernel.STALE_LOCK_S
    os.utime(lock, (old, old))
    with pytest.warns(RuntimeWarning, match="stale build lock"):
        assert _hmm_kernel.load() is None


def test_ninja_of_the_dependency_is_found_without_an_activated_venv(tmp_path, monkeypatch):
    import shutil

    pytest.importorskip("ninja")
    monkeypatch.setenv("PATH", str(tmp_path))  # no ninja anywhere on PATH, as with .venv/bin/snakemake
    assert shutil.which("ninja") is None
    _hmm_kernel._ninja_on_path()
    assert shutil.which("ninja") is not None
