"""C++ source of the switching GLM's fused Poisson data term, compiled with the HMM kernel
(:mod:`brainpipe.models._hmm_kernel` appends it to its extension; one build, one cache entry).

``poisson_value_grad(eta, y, g, link, d)``: for a block of linear predictors ``eta`` (rows, N) and counts ``y``
(float32), returns the posterior-weighted Poisson log-likelihood per neuron ``sum_t g_t (y log r - r)`` (float64
sums, without log y!) and, where ``d`` is not empty, writes the weighted derivative ``g_t d term / d eta`` per
element into ``d`` (float32; a workspace the caller reuses, as a fresh block per call costs its page faults; the
gradient is then one product with the unweighted design), where ``r =
max(f(eta), MIN_RATE)`` and ``f`` is the link (0 softplus, 1 sigmoid, 2 exp). It replaces the 7-9 torch
operations of :meth:`brainpipe.models.switching_glm.mstep.EmissionMSteps._poisson_terms` and the weighted sum over
the block by one pass that reads each element once. ``poisson_row_sums(eta, y, S, link)`` does the same for the
E-step's emission term: per bin and state the sum over neurons, (rows, S) float64, from ``eta`` (rows, S N) and
``y`` (rows, N). ``exp`` and ``log`` are branch-free float approximations
(Cody-Waite reduction and the Cephes polynomials, about 1 ulp) written so that the compiler vectorises the loop
(``-fno-trapping-math`` lets it if-convert the clamps); the function is compiled for AVX-512, AVX2 and the
baseline and picked at run time (GCC ``target_clones`` on x86-64). Rows run in fixed chunks of ``CHUNK_ROWS``
over the caller's torch threads, each chunk's partial sums added in chunk order, so the result does not depend on
the number of threads.
"""

SOURCE = r"""
namespace bp_poisson {

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define BP_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define BP_CLONES
#endif

constexpr int64_t CHUNK_ROWS = 512;
constexpr float MIN_RATE = 1e-10f;
constexpr float LOG_MIN_RATE = -23.02585093f;

inline float bits_to_float(int32_t b) { float f; std::memcpy(&f, &b, 4); return f; }
inline int32_t float_to_bits(float f) { int32_t b; std::memcpy(&b, &f, 4); return b; }

// exp, clamped to the arguments whose result is a normal float
inline float fexp(float x) {
  x = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
  const float magic = 12582912.0f;  // 1.5 * 2^23: adding and subtracting it rounds to the nearest integer
  const float n = (x * 1.44269504088896341f + magic) - magic;
  float r = x - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  return p * bits_to_float(((int32_t)n + 127) << 23);
}

// natural log of a positive normal float
inline float flog(float x) {
  const int32_t b = float_to_bits(x);
  int32_t e = ((b >> 23) & 0xff) - 126;
  float m = bits_to_float((b & 0x807fffff) | 0x3f000000);  // x = m 2^e, m in [0.5, 1)
  const bool small = m < 0.707106781186547524f;
  e = small ? e - 1 : e;
  m = small ? m + m - 1.0f : m - 1.0f;
  const float z = m * m;
  float y = 7.0376836292e-2f;
  y = y * m - 1.1514610310e-1f;
  y = y * m + 1.1676998740e-1f;
  y = y * m - 1.2420140846e-1f;
  y = y * m + 1.4249322787e-1f;
  y = y * m - 1.6668057665e-1f;
  y = y * m + 2.0000714765e-1f;
  y = y * m - 2.4999993993e-1f;
  y = y * m + 3.3333331174e-1f;
  y = y * m * z;
  const float fe = (float)e;
  y = y + -2.12194440e-4f * fe;
  y = y - 0.5f * z;
  return m + y + 0.693359375f * fe;
}

// K elements: term = y log r - r and, with GRAD, d = d term / d eta; LINK and GRAD fixed at compile time so
// that the loop is branch-free (one long loop over a chunk of rows, not one short loop per row: N = 50 leaves a
// remainder per row that costs as much as the vector part)
template <int LINK, bool GRAD>
BP_CLONES void terms(const float* __restrict eta, const float* __restrict y, float* __restrict term,
                     float* __restrict d, int64_t K) {
  for (int64_t k = 0; k < K; ++k) {
    const float x = eta[k];
    if (LINK == 1) {  // sigmoid: f' = f (1 - f), so d = (y - f)(1 - f)
      float r = 1.0f / (1.0f + fexp(-x));
      r = r < MIN_RATE ? MIN_RATE : r;
      term[k] = y[k] * flog(r) - r;
      if (GRAD) d[k] = (y[k] - r) - (y[k] - r) * r;
    } else if (LINK == 0) {  // softplus: f = max(x, 0) + log1p(exp(-|x|)), f' = sigmoid(x)
      const float u = fexp(-std::fabs(x));
      const float w = 1.0f + u;
      const float wm1 = w - 1.0f;  // log1p(u) = log(w) u / (w - 1), exact where w rounds to 1
      const float l1p = wm1 == 0.0f ? u : flog(w) * (u / (wm1 == 0.0f ? 1.0f : wm1));
      float r = (x > 0.0f ? x : 0.0f) + l1p;
      r = r < MIN_RATE ? MIN_RATE : r;
      term[k] = y[k] * flog(r) - r;
      if (GRAD) d[k] = (y[k] / r - 1.0f) * ((x >= 0.0f ? 1.0f : u) / w);
    } else {  // exp: log r = max(x, log MIN_RATE); d = y - exp(x)
      const float r = fexp(x);
      term[k] = y[k] * (x < LOG_MIN_RATE ? LOG_MIN_RATE : x) - (r < MIN_RATE ? MIN_RATE : r);
      if (GRAD) d[k] = y[k] - r;
    }
  }
}

// rows [r0, r1): the terms of the whole chunk, then row by row value[n] += g_t term_tn (float64) and, with
// GRAD, d_tn *= g_t (the gradient is then one product with the unweighted design)
template <int LINK, bool GRAD>
void rows_terms(const float* eta, const float* y, const float* g, float* d, double* value, float* term,
                int64_t r0, int64_t r1, int64_t N) {
  terms<LINK, GRAD>(eta + r0 * N, y + r0 * N, term, GRAD ? d + r0 * N : term, (r1 - r0) * N);
  for (int64_t t = r0; t < r1; ++t) {
    const double gt = g[t];
    const float* tt = term + (t - r0) * N;
    for (int64_t n = 0; n < N; ++n) value[n] += gt * tt[n];
    if (GRAD) {
      const float gf = g[t];
      float* dt = d + t * N;
      for (int64_t n = 0; n < N; ++n) dt[n] *= gf;
    }
  }
}

template <int LINK, bool GRAD>
void run(const float* eta, const float* y, const float* g, float* d, double* partial, int64_t R, int64_t N) {
  const int64_t chunks = (R + CHUNK_ROWS - 1) / CHUNK_ROWS;
  at::parallel_for(0, chunks, 1, [&](int64_t c0, int64_t c1) {
    std::vector<float> term(CHUNK_ROWS * N);
    for (int64_t c = c0; c < c1; ++c)
      rows_terms<LINK, GRAD>(eta, y, g, d, partial + c * N, term.data(), c * CHUNK_ROWS,
                             std::min(R, (c + 1) * CHUNK_ROWS), N);
  });
}

// rows [r0, r1) of the E-step's block: eta (rows, S N), y (rows, N) shared by the S states; out[t, s] = sum_n
// term (float64). y is repeated per state into ybuf so that the terms are one long loop over the chunk
template <int LINK>
void rows_sums(const float* eta, const float* y, double* out, float* ybuf, float* term, int64_t r0, int64_t r1,
               int64_t S, int64_t N) {
  const int64_t SN = S * N;
  for (int64_t t = r0; t < r1; ++t)
    for (int64_t s = 0; s < S; ++s) std::memcpy(ybuf + (t - r0) * SN + s * N, y + t * N, N * sizeof(float));
  terms<LINK, false>(eta + r0 * SN, ybuf, term, term, (r1 - r0) * SN);
  for (int64_t t = r0; t < r1; ++t)
    for (int64_t s = 0; s < S; ++s) {
      const float* tt = term + (t - r0) * SN + s * N;
      double acc = 0.0;
      for (int64_t n = 0; n < N; ++n) acc += tt[n];
      out[t * S + s] = acc;
    }
}

}  // namespace bp_poisson

// The E-step's emission term: out (rows, S) float64 = sum_n (y log r - r) for eta (rows, S N), y (rows, N)
at::Tensor poisson_row_sums(at::Tensor eta, at::Tensor y, int64_t S, int64_t link) {
  TORCH_CHECK(eta.dim() == 2 && eta.scalar_type() == at::kFloat && eta.is_contiguous(), "eta: (rows, S N) float32");
  TORCH_CHECK(y.dim() == 2 && y.size(0) == eta.size(0) && y.size(1) * S == eta.size(1)
              && y.scalar_type() == at::kFloat && y.is_contiguous(), "y: (rows, N) float32");
  TORCH_CHECK(link >= 0 && link <= 2, "link: 0 softplus, 1 sigmoid, 2 exp");
  const int64_t R = eta.size(0), N = y.size(1);
  at::Tensor out = at::empty({R, S}, eta.options().dtype(at::kDouble));
  const float* pe = eta.data_ptr<float>();
  const float* py = y.data_ptr<float>();
  double* po = out.data_ptr<double>();
  const int64_t rows = std::max<int64_t>(1, bp_poisson::CHUNK_ROWS / std::max<int64_t>(1, S));
  const int64_t chunks = (R + rows - 1) / rows;
  at::parallel_for(0, chunks, 1, [&](int64_t c0, int64_t c1) {
    std::vector<float> ybuf(rows * S * N), term(rows * S * N);
    for (int64_t c = c0; c < c1; ++c) {
      const int64_t r0 = c * rows, r1 = std::min(R, (c + 1) * rows);
      if (link == 1) bp_poisson::rows_sums<1>(pe, py, po, ybuf.data(), term.data(), r0, r1, S, N);
      else if (link == 0) bp_poisson::rows_sums<0>(pe, py, po, ybuf.data(), term.data(), r0, r1, S, N);
      else bp_poisson::rows_sums<2>(pe, py, po, ybuf.data(), term.data(), r0, r1, S, N);
    }
  });
  return out;
}

// d: (rows, N) float32 receiving the derivative (a workspace the caller reuses: a fresh block per call costs
// its page faults), or an empty tensor for the value only
at::Tensor poisson_value_grad(at::Tensor eta, at::Tensor y, at::Tensor g, int64_t link, at::Tensor d) {
  TORCH_CHECK(eta.dim() == 2 && eta.scalar_type() == at::kFloat && eta.is_contiguous(), "eta: (rows, N) float32");
  TORCH_CHECK(y.sizes() == eta.sizes() && y.scalar_type() == at::kFloat && y.is_contiguous(), "y: like eta");
  TORCH_CHECK(g.dim() == 1 && g.size(0) == eta.size(0) && g.scalar_type() == at::kFloat && g.is_contiguous(),
              "g: (rows,) float32");
  TORCH_CHECK(link >= 0 && link <= 2, "link: 0 softplus, 1 sigmoid, 2 exp");
  const int64_t R = eta.size(0), N = eta.size(1);
  const bool grad = d.numel() > 0;
  TORCH_CHECK(!grad || (d.sizes() == eta.sizes() && d.scalar_type() == at::kFloat && d.is_contiguous()),
              "d: like eta, or empty");
  const int64_t chunks = (R + bp_poisson::CHUNK_ROWS - 1) / bp_poisson::CHUNK_ROWS;
  at::Tensor partial = at::zeros({chunks, N}, eta.options().dtype(at::kDouble));
  const float* pe = eta.data_ptr<float>();
  const float* py = y.data_ptr<float>();
  const float* pg = g.data_ptr<float>();
  float* pd = grad ? d.data_ptr<float>() : nullptr;
  double* pp = partial.data_ptr<double>();
  using namespace bp_poisson;
  if (link == 1) {
    if (grad) run<1, true>(pe, py, pg, pd, pp, R, N); else run<1, false>(pe, py, pg, pd, pp, R, N);
  } else if (link == 0) {
    if (grad) run<0, true>(pe, py, pg, pd, pp, R, N); else run<0, false>(pe, py, pg, pd, pp, R, N);
  } else {
    if (grad) run<2, true>(pe, py, pg, pd, pp, R, N); else run<2, false>(pe, py, pg, pd, pp, R, N);
  }
  at::Tensor value = at::zeros({N}, eta.options().dtype(at::kDouble));
  double* pv = value.data_ptr<double>();
  for (int64_t c = 0; c < chunks; ++c)  // in chunk order: the same sum for any number of threads
    for (int64_t n = 0; n < N; ++n) pv[n] += pp[c * N + n];
  return value;
}
"""
