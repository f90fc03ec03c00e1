// The decoder's affine map and the softmax loss as one XLA FFI handler for the CPU, with or
// without the gradients (jaxseq/kernels/decoder_loss.py calls them, and its docstring says what
// they compute; jaxseq/kernels/build.py builds this file on first use).
//
// Shapes: M rows, D inputs (x's width), V vocabulary entries. The vocabulary is taken in
// panels of PW = 4 L entries (L = one vector register of T); the weight is w (V, D).
//
// A call's phases (threads share out each phase's items, and meet between phases):
//   0. packing: each panel of w^T (D, PW), each panel of w (PW, D) padded to Dp (a multiple of
//      L), x in tiles of kRows rows ([tile][d][row]: a register tile's broadcast values next to
//      each other) and x^T in tiles of kRows inputs ([tile][m][input]);
//   1. each panel's scores s = x w^T + b by register tiles, then, for each row, the panel's
//      maximum, its exponentials exp(s - maximum) (kept: `exps`, panel by panel; 0 where the
//      whole panel is -inf) and their sum, and s[y] where the target is in the panel;
//   2. each row's log-sum-exp from its panels' maxima and sums, its loss, and each panel's
//      factor exp(maximum - lse) that turns its exponentials into softmax values;
//   then, for the gradients:
//   3. each panel's ds = r (softmax - onehot) in place (one multiply a value), its db, and its
//      rows of dw as (dw^T)'s panel, x^T ds, turned into dw's rows;
//   4. each block of rows' dx = sum over the panels of ds w.
// Every product is register-tiled (tile_product: kRows rows by up to 4 vectors), over blocks of
// kDepth values of the summed axis so that the vectors it streams stay in the first-level cache.
// All of a call's memory is taken before its threads start; what it cannot get is the call's
// RESOURCE_EXHAUSTED error (`guarded`).

#include <limits>

#include "cpu_loops.h"

namespace {

constexpr int64_t kDepth = 128;  // of the summed axis per block: 128 rows of 4 vectors is 32 KB in float32

// The broadcast operand of a product: A(m, k) = data[m0 tile + r row + k step] for row m = m0 + r
// of a register tile that starts at m0 (a multiple of kRows).
template <typename T>
struct Operand {
  const T* data;
  int64_t tile, row, step;
};

// A matrix's rows: A(m, k) = data[m lda + k].
template <typename T>
Operand<T> rows_of(const T* data, int64_t lda) {
  return {data, lda, lda, 1};
}

// A matrix packed in tiles of kRows rows (pack_tiles), K values a row.
template <typename T>
Operand<T> tiles_of(const T* data, int64_t K) {
  return {data, K, 1, kRows};
}

// tiles[t][k][r] = A(t kRows + r, k) = source[(t kRows + r) row + k step], 0 past `rows`, for
// the tiles [first, last).
template <typename T>
void pack_tiles(const T* source, int64_t rows, int64_t K, int64_t row, int64_t step, T* tiles, int64_t first,
                int64_t last) {
  for (int64_t t = first; t < last; ++t)
    for (int64_t k = 0; k < K; ++k)
      for (int r = 0; r < kRows; ++r) {
        const int64_t m = t * kRows + r;
        tiles[(t * K + k) * kRows + r] = m < rows ? source[m * row + k * step] : T(0);
      }
}

// C[m][j] (+)= sum_k A(m, k) B[k][j] for m < rows, j < cols: B's rows (stride ldb) hold at least
// cols rounded up to L readable values, C's rows have stride ldc; C is set, or added to with
// `accumulate`. The summed axis goes in blocks of kDepth, each block's columns in chunks of up
// to 4 vectors, as even as they go (13 vectors: 4 3 3 3; a chunk of one vector would load as
// much as it multiplies), so that a block of A serves every chunk while it is in the cache.
template <typename T>
void product(int64_t rows, int64_t cols, int64_t K, Operand<T> A, const T* B, int64_t ldb, T* C, int64_t ldc,
             bool accumulate) {
  using S = Simd<T>;
  using V = typename S::V;
  constexpr int L = S::L;
  const int64_t vectors = ceil_div(cols, L), chunks = ceil_div(vectors, 4);
  for (int64_t k0 = 0; k0 < K; k0 += kDepth) {
    const int64_t depth = std::min(kDepth, K - k0);
    const bool add = accumulate || k0 > 0;
    for (int64_t chunk = 0, c0 = 0; chunk < chunks; ++chunk) {
      const int nv = static_cast<int>(vectors / chunks + (chunk < vectors % chunks ? 1 : 0));
      int lanes[4];
      for (int v = 0; v < 4; ++v) lanes[v] = static_cast<int>(std::clamp<int64_t>(cols - (c0 + v) * L, 0, L));
      for_each_row_tile<kRows>(rows, [&](auto tile_rows, int64_t m0) {
        constexpr int R = decltype(tile_rows)::value;
        V acc[R][4];
        for (int r = 0; r < R; ++r)
          for (int v = 0; v < nv; ++v) acc[r][v] = add ? S::load(C + (m0 + r) * ldc + (c0 + v) * L, lanes[v]) : V{};
        tile_product_of<T, R>(nv, A.data + m0 * A.tile + k0 * A.step, A.row, A.step, B + k0 * ldb + c0 * L, ldb, depth,
                              acc);
        for (int r = 0; r < R; ++r)
          for (int v = 0; v < nv; ++v) S::store(C + (m0 + r) * ldc + (c0 + v) * L, acc[r][v], lanes[v]);
      });
      c0 += nv;
    }
  }
}

// op(... op(op(v[0], v[1]), v[2]) ..., v[L - 1]): a vector's lanes reduced to one value.
template <typename T, typename Op>
inline T across_lanes(typename Simd<T>::V v, Op op) {
  T result = v[0];
  for (int l = 1; l < Simd<T>::L; ++l) result = op(result, v[l]);
  return result;
}

template <typename T>
struct DecoderArgs {
  const T* x;            // (M, D)
  const T* w;            // (V, D)
  const T* b;            // (V,)
  const int32_t* y;      // (M,) targets; outside [0, V): a NaN loss, no one-hot term
  const T* row_weights;  // (M,) r
  T* losses;             // (M,) r (lse - s[y])
  T* dx;                 // (M, D), or null without the gradients
  T* dw;                 // (V, D)
  T* db;                 // (V,)
  int64_t M, D, V;
  bool gradients;
  // the workspace (decoder_loss carves it)
  int64_t Dp, panels, row_block;
  T* w_panels;     // (panels, D, PW): panel p, row d: w[p PW + j, d] for j < PW, 0 past V
  T* w_rows;       // (panels PW, Dp): w's rows, 0 past V and past D
  T* x_tiles;      // (ceil(M / kRows), D, kRows) pack_tiles of x
  T* xt_tiles;     // (ceil(D / kRows), M, kRows) pack_tiles of x^T
  T* exps;         // (panels, M, PW): exp(s - the row's panel maximum), then ds
  T* panel_max;    // (M, panels)
  T* panel_sum;    // (M, panels): the sums of exps, then exp(panel max - lse)
  T* picked;       // (M,) s[y]
  T* scratch;      // (threads, Dp, PW): each thread's (dw^T)'s panel
};

template <typename T>
constexpr int kPanel = 4 * Simd<T>::L;

template <typename T>
void pack_panel(const DecoderArgs<T>& a, int64_t p) {
  constexpr int PW = kPanel<T>;
  T* panel = a.w_panels + p * a.D * PW;
  for (int64_t d = 0; d < a.D; ++d)
    for (int j = 0; j < PW; ++j) panel[d * PW + j] = p * PW + j < a.V ? a.w[(p * PW + j) * a.D + d] : T(0);
  if (!a.gradients) return;
  for (int j = 0; j < PW; ++j) {
    T* row = a.w_rows + (p * PW + j) * a.Dp;
    const bool inside = p * PW + j < a.V;
    for (int64_t d = 0; d < a.Dp; ++d) row[d] = inside && d < a.D ? a.w[(p * PW + j) * a.D + d] : T(0);
  }
}

// Phase 1 for panel p (the header comment).
template <typename T>
void panel_scores(const DecoderArgs<T>& a, int64_t p) {
  using S = Simd<T>;
  using V = typename S::V;
  constexpr int L = S::L, PW = kPanel<T>;
  T* exps = a.exps + p * a.M * PW;
  product<T>(a.M, PW, a.D, tiles_of(a.x_tiles, a.D), a.w_panels + p * a.D * PW, PW, exps, PW, false);
  V bias[4];
  for (int v = 0; v < 4; ++v) {
    const int lanes = static_cast<int>(std::clamp<int64_t>(a.V - p * PW - v * L, 0, L));
    bias[v] = lanes > 0 ? S::load(a.b + p * PW + v * L, lanes) : V{};
    for (int l = lanes; l < L; ++l) bias[v][l] = -std::numeric_limits<T>::infinity();  // no entry: exp 0
  }
  for (int64_t m = 0; m < a.M; ++m) {
    T* row = exps + m * PW;
    V s[4];
    for (int v = 0; v < 4; ++v) s[v] = S::load(row + v * L) + bias[v];
    const int64_t j = a.y[m] - p * PW;
    if (j >= 0 && j < PW) a.picked[m] = s[j / L][j % L];
    V most = s[0];
    for (int v = 1; v < 4; ++v) most = most > s[v] ? most : s[v];
    const T maximum = across_lanes<T>(most, [](T u, T v) { return std::max(u, v); });
    // a panel whose scores are all -inf (a bias that masks its entries): exps and sum 0
    const V shift = S::splat(maximum == -std::numeric_limits<T>::infinity() ? T(0) : maximum);
    V sum{};
    for (int v = 0; v < 4; ++v) {
      const V e = vexp<T>(s[v] - shift);
      S::store(row + v * L, e);
      sum += e;
    }
    a.panel_max[m * a.panels + p] = maximum;
    a.panel_sum[m * a.panels + p] = across_lanes<T>(sum, std::plus<T>());
  }
}

// Phase 2 for rows [begin, end).
template <typename T>
void row_losses(const DecoderArgs<T>& a, int64_t begin, int64_t end) {
  for (int64_t m = begin; m < end; ++m) {
    const T* maxima = a.panel_max + m * a.panels;
    T* sums = a.panel_sum + m * a.panels;
    const T top = *std::max_element(maxima, maxima + a.panels);
    T total = 0;
    for (int64_t p = 0; p < a.panels; ++p) total += sums[p] * std::exp(maxima[p] - top);
    const T lse = top + std::log(total);
    for (int64_t p = 0; p < a.panels; ++p) sums[p] = std::exp(maxima[p] - lse);
    const bool known = a.y[m] >= 0 && a.y[m] < a.V;
    a.losses[m] = a.row_weights[m] * (lse - (known ? a.picked[m] : std::numeric_limits<T>::quiet_NaN()));
  }
}

// Phase 3 for panel p; `scratch` holds (Dp, PW) values.
template <typename T>
void panel_gradients(const DecoderArgs<T>& a, int64_t p, T* scratch) {
  using S = Simd<T>;
  using V = typename S::V;
  constexpr int L = S::L, PW = kPanel<T>;
  T* ds = a.exps + p * a.M * PW;
  V db[4] = {};
  for (int64_t m = 0; m < a.M; ++m) {
    const V scale = S::splat(a.row_weights[m] * a.panel_sum[m * a.panels + p]);
    T* row = ds + m * PW;
    for (int v = 0; v < 4; ++v) S::store(row + v * L, scale * S::load(row + v * L));
    const int64_t j = a.y[m] - p * PW;
    if (j >= 0 && j < PW) row[j] -= a.row_weights[m];
    for (int v = 0; v < 4; ++v) db[v] += S::load(row + v * L);
  }
  const int64_t entries = std::min<int64_t>(PW, a.V - p * PW);
  for (int v = 0; v < 4 && v * L < entries; ++v)
    S::store(a.db + p * PW + v * L, db[v], static_cast<int>(std::min<int64_t>(entries - v * L, L)));
  // (dw^T)'s panel (D, PW) = x^T ds, then dw's rows
  product<T>(a.D, PW, a.M, tiles_of(a.xt_tiles, a.M), ds, PW, scratch, PW, false);
  for (int64_t j = 0; j < entries; ++j) {
    T* out = a.dw + (p * PW + j) * a.D;
    for (int64_t d = 0; d < a.D; ++d) out[d] = scratch[d * PW + j];
  }
}

// Phase 4 for rows [begin, end): dx = sum_p ds_p w_p.
template <typename T>
void row_gradients(const DecoderArgs<T>& a, int64_t begin, int64_t end) {
  constexpr int PW = kPanel<T>;
  for (int64_t p = 0; p < a.panels; ++p)
    product<T>(end - begin, a.D, PW, rows_of(a.exps + (p * a.M + begin) * PW, PW), a.w_rows + p * PW * a.Dp, a.Dp,
               a.dx + begin * a.D, a.D, p > 0);
}

template <typename T>
void decoder_loss(DecoderArgs<T> a, int threads) {
  constexpr int L = Simd<T>::L, PW = kPanel<T>;
  std::lock_guard<std::mutex> lock(one_call_at_a_time);
  a.Dp = ceil_div(a.D, L) * L;
  a.panels = ceil_div(a.V, PW);
  a.row_block = kRows * ceil_div(ceil_div(a.M, 2 * threads), kRows);  // two blocks a thread
  const int64_t row_blocks = ceil_div(a.M, a.row_block), x_tiles = ceil_div(a.M, kRows),
                xt_tiles = ceil_div(a.D, kRows);
  const int64_t sizes[] = {a.panels * a.D * PW, a.gradients ? a.panels * PW * a.Dp : 0, x_tiles * kRows * a.D,
                           a.gradients ? xt_tiles * kRows * a.M : 0, a.panels * a.M * PW, a.M * a.panels,
                           a.M * a.panels, a.M, a.gradients ? threads * a.Dp * PW : 0};
  T** parts[] = {&a.w_panels, &a.w_rows, &a.x_tiles, &a.xt_tiles, &a.exps, &a.panel_max, &a.panel_sum, &a.picked,
                 &a.scratch};
  int64_t total = 0;
  for (int64_t size : sizes) total += size;
  PackedWorkspace workspace;  // all of the call's memory, taken here: the threads allocate nothing
  T* memory = workspace.get<T>(static_cast<size_t>(total));
  for (int i = 0; i < 9; ++i) {
    *parts[i] = memory;
    memory += sizes[i];
  }
  const int64_t tile_items = ceil_div(x_tiles, 16);
  const int64_t pack_items = a.panels + tile_items + (a.gradients ? xt_tiles : 0);
  const int64_t items[] = {pack_items, a.panels, row_blocks, a.panels, row_blocks};  // phases 0-4
  run_phases(
      threads, a.gradients ? 5 : 3, [&](int64_t phase) { return items[phase]; },
      [&](int64_t phase, int64_t i, int thread) {
        switch (phase) {
          case 0:
            if (i < a.panels) return pack_panel<T>(a, i);
            i -= a.panels;
            if (i < tile_items)
              return pack_tiles<T>(a.x, a.M, a.D, a.D, 1, a.x_tiles, 16 * i, std::min(x_tiles, 16 * i + 16));
            return pack_tiles<T>(a.x, a.D, a.M, 1, a.D, a.xt_tiles, i - tile_items, i - tile_items + 1);
          case 1:
            return panel_scores<T>(a, i);
          case 2:
            return row_losses<T>(a, i * a.row_block, std::min(a.M, (i + 1) * a.row_block));
          case 3:
            return panel_gradients<T>(a, i, a.scratch + thread * a.Dp * PW);
          default:
            return row_gradients<T>(a, i * a.row_block, std::min(a.M, (i + 1) * a.row_block));
        }
      });
}

// The handlers' checks: x (M, D), w (V, D), b (V,), y (M,), row_weights (M,), all positive,
// x's dtype float32 or float64 (the others share it: jaxseq.kernels.decoder_loss makes them);
// then run(T{}, M, D, V).
template <typename Run>
ffi::Error on_decoder(const ffi::AnyBuffer& x, const ffi::AnyBuffer& w, const ffi::AnyBuffer& b,
                      const ffi::Buffer<ffi::S32>& y, const ffi::AnyBuffer& row_weights, Run run) {
  const std::string prefix = "jaxseq decoder-loss kernel: ";
  auto xd = x.dimensions(), wd = w.dimensions();
  if (xd.size() != 2 || wd.size() != 2 || xd[1] != wd[1] || xd[0] < 1 || xd[1] < 1 || wd[0] < 1)
    return ffi::Error::InvalidArgument(prefix + "x must be (M, D) and w (V, D), all positive");
  if (b.dimensions().size() != 1 || b.dimensions()[0] != wd[0] || y.dimensions().size() != 1 ||
      y.dimensions()[0] != xd[0] || row_weights.dimensions().size() != 1 || row_weights.dimensions()[0] != xd[0])
    return ffi::Error::InvalidArgument(prefix + "b must be (V,), y and row_weights (M,)");
  if (w.element_type() != x.element_type() || b.element_type() != x.element_type() ||
      row_weights.element_type() != x.element_type())
    return ffi::Error::InvalidArgument(prefix + "x, w, b and row_weights must share a dtype");
  return for_float_type(x.element_type(), prefix, [&](auto zero) { run(zero, xd[0], xd[1], wd[0]); });
}

ffi::Error DecoderLossImpl(ffi::AnyBuffer x, ffi::AnyBuffer w, ffi::AnyBuffer b, ffi::Buffer<ffi::S32> y,
                           ffi::AnyBuffer row_weights, ffi::Result<ffi::AnyBuffer> losses) {
  return on_decoder(x, w, b, y, row_weights, [&](auto zero, int64_t M, int64_t D, int64_t V) {
    using T = decltype(zero);
    DecoderArgs<T> a{x.reinterpret_data<T>(), w.reinterpret_data<T>(), b.reinterpret_data<T>(), y.typed_data(),
                     row_weights.reinterpret_data<T>(), losses->reinterpret_data<T>(), nullptr, nullptr, nullptr,
                     M, D, V, false};
    decoder_loss<T>(a, usable_cores());
  });
}

ffi::Error DecoderLossGradientsImpl(ffi::AnyBuffer x, ffi::AnyBuffer w, ffi::AnyBuffer b, ffi::Buffer<ffi::S32> y,
                                    ffi::AnyBuffer row_weights, ffi::Result<ffi::AnyBuffer> losses,
                                    ffi::Result<ffi::AnyBuffer> dx, ffi::Result<ffi::AnyBuffer> dw,
                                    ffi::Result<ffi::AnyBuffer> db) {
  return on_decoder(x, w, b, y, row_weights, [&](auto zero, int64_t M, int64_t D, int64_t V) {
    using T = decltype(zero);
    DecoderArgs<T> a{x.reinterpret_data<T>(), w.reinterpret_data<T>(), b.reinterpret_data<T>(), y.typed_data(),
                     row_weights.reinterpret_data<T>(), losses->reinterpret_data<T>(), dx->reinterpret_data<T>(),
                     dw->reinterpret_data<T>(), db->reinterpret_data<T>(), M, D, V, true};
    decoder_loss<T>(a, usable_cores());
  });
}

// The inputs both handlers take, bound in this order.
auto decoder_inputs() {
  return ffi::Ffi::Bind()
      .Arg<ffi::AnyBuffer>()         // x (M, D)
      .Arg<ffi::AnyBuffer>()         // w (V, D)
      .Arg<ffi::AnyBuffer>()         // b (V,)
      .Arg<ffi::Buffer<ffi::S32>>()  // y (M,)
      .Arg<ffi::AnyBuffer>();        // row_weights (M,)
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxseqDecoderLoss, DecoderLossImpl,
                              decoder_inputs().Ret<ffi::AnyBuffer>());  // losses (M,)

XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxseqDecoderLossGradients, DecoderLossGradientsImpl,
                              decoder_inputs()
                                  .Ret<ffi::AnyBuffer>()    // losses (M,)
                                  .Ret<ffi::AnyBuffer>()    // dx (M, D)
                                  .Ret<ffi::AnyBuffer>()    // dw (V, D)
                                  .Ret<ffi::AnyBuffer>());  // db (V,)
