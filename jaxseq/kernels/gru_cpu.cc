// The GRU's two sequential loops as XLA FFI handlers for the CPU (jaxseq/kernels/gru.py calls
// them; jaxseq/kernels/build.py builds this file on first use). The LSTM's (lstm_cpu.cc) are
// built the same way; read that file's header first.
//
// They compute what jaxseq.layers.gru's `gru_recurrence` and `gru_recurrence_backward` loops
// compute (same equations, PyTorch's, same cache layout; read that module's docstring), from
// every step's input side xw_t = x_t Wx + b made before the loop:
//
// - forward: the recurrent weight packed once per call into panels that interleave the three
//   gates r, z, n of L hidden units, so each step's product h_{t-1} Wh ends with those units'
//   (h Wh)_r, _z, _n in registers; the cell (gates, h_t, the stored (h Wh + bh)_n) follows there;
// - backward: Wh^T packed once per call; each step's product of the hidden side's gradient
//   dhw_t = [da_r, da_z, da_n r] with Wh^T ends with the next step's elementwise work for the
//   units it produced. dhw_t's r and z blocks are the input side's (dxw_t), its n block is kept
//   alone (dhw_n), so the product reads its 3H columns from the two.
//
// Lengths: row n's steps t >= lengths[n] are outside its sequence. There the forward carries
// h (the gates and (h Wh + bh)_n are still those of the cell on the carried state, as the XLA
// loop stores them) and the backward's dxw_t, dhw_t are zero, the carried gradient passing through.
//
// Shapes: T steps, N rows, H hidden units, G = 3H (gates r, z, n, each H wide).

#include "cpu_loops.h"

namespace {

constexpr int kRows3 = rows_per_tile(3);

// ---------------------------------------------------------------- forward

template <typename T>
struct GruForwardArgs {
  const T* xw;             // (T, N, 3H) x_t Wx + b; may be gates_tm itself: each value is read
                           // before it is replaced
  const T* h0;             // (N, H)
  const T* bh;             // (3H,)
  const T* Wh;             // (H, 3H)
  const int32_t* lengths;  // (N,) row n's steps (the header comment)
  T* h_tm;                 // (T, N, H)
  T* gates_tm;             // (T, N, 3H) r, z, n
  T* hw_n_tm;              // (T, N, H) (h_{t-1} Wh + bh)_n
  T* packed;               // (ceil(H / L) panels, H, 3 L): panel p, row k: [Wh[k, g H + p L + l] for
                           // g < 3, l < L], 0 past H
  int64_t steps, N, H;
  bool reverse;
};

// One register tile of step t: rows n0 .. n0 + R, units p L .. (p + 1) L.
template <typename T, int R>
inline void gru_forward_tile(const GruForwardArgs<T>& a, const T* h_prev, int64_t t, int64_t n0, int64_t p) {
  using S = Simd<T>;
  using V = typename S::V;
  constexpr int L = S::L;
  const int64_t H = a.H, G = 3 * H, u = p * L;
  const int lanes = static_cast<int>(std::min<int64_t>(L, H - u));
  V acc[R][3];
  panel_product<T, R, 3>(h_prev + n0 * H, H, a.packed + p * H * 3 * L, H, acc);
  const V half = S::splat(T(0.5)), one = S::splat(T(1));
  const V bh_r = S::load(a.bh + u, lanes), bh_z = S::load(a.bh + H + u, lanes), bh_n = S::load(a.bh + 2 * H + u, lanes);
  for (int r = 0; r < R; ++r) {
    const int64_t n = n0 + r, row = t * a.N + n;
    const T* xw = a.xw + row * G + u;
    const V hw_n = acc[r][2] + bh_n;
    const V rg = half * vtanh<T>(half * (S::load(xw, lanes) + acc[r][0] + bh_r)) + half;
    const V zg = half * vtanh<T>(half * (S::load(xw + H, lanes) + acc[r][1] + bh_z)) + half;
    const V ng = vtanh<T>(S::load(xw + 2 * H, lanes) + rg * hw_n);
    const V hp = S::load(h_prev + n * H + u, lanes);
    T* gates = a.gates_tm + row * G + u;
    S::store(gates, rg, lanes);
    S::store(gates + H, zg, lanes);
    S::store(gates + 2 * H, ng, lanes);
    S::store(a.hw_n_tm + row * H + u, hw_n, lanes);
    S::store(a.h_tm + row * H + u, t < a.lengths[n] ? (one - zg) * ng + zg * hp : hp, lanes);
  }
}

// The forward: panels of Wh to pack, then at every step panels of units.
template <typename T>
void gru_forward_loop(GruForwardArgs<T> a, int threads) {
  run_forward<kRows3, T>(a, threads, 3, [&](auto rows, const T* h_prev, int64_t t, int64_t n0, int64_t p) {
    gru_forward_tile<T, decltype(rows)::value>(a, h_prev, t, n0, p);
  });
}

// ---------------------------------------------------------------- backward

template <typename T>
struct GruBackwardArgs {
  const T* dh;             // (N, T, H) the gradients of the outputs, batch-major
  const T* gates_tm;       // (T, N, 3H); may be dxw_tm itself: each value is read before it is replaced
  const T* hw_n_tm;        // (T, N, H); may be dhw_n_tm itself, likewise
  const T* h_tm;           // (T, N, H)
  const T* h0;             // (N, H)
  const T* Wh;             // (H, 3H)
  const int32_t* lengths;  // (N,) row n's steps (the header comment)
  T* dxw_tm;               // (T, N, 3H) the gradients of the input sides [da_r, da_z, da_n]
  T* dhw_n_tm;             // (T, N, H) da_n r, the n block of the hidden side's gradient
  T* direct;               // (N, H): dh_n at first; then the part of the gradient reaching h_{t-1}
                           // that does not pass through Wh (dh_total z; outside a sequence, all
                           // of the carried gradient); dh0 at the end
  T* packed;               // (ceil(H / 4L) panels, 3H, 4 L): panel p, row k: [Wh[p 4L + l, k] for
                           // l < 4L] (fewer in the last panel: pack_transposed_panel), 0 past H
  int64_t steps, N, H;
  bool reverse;
};

// The elementwise part of step t for row n and units [u, u + lanes), given the gradient carried
// into h_t from the steps after it (module docstring of jaxseq.layers.gru).
template <typename T>
inline void gru_backward_cell(const GruBackwardArgs<T>& a, int64_t t, int64_t n, int64_t u, int lanes,
                              typename Simd<T>::V dh_carry) {
  using S = Simd<T>;
  using V = typename S::V;
  const int64_t H = a.H, row = t * a.N + n;
  T* dxw = a.dxw_tm + row * 3 * H + u;
  T* dhw_n = a.dhw_n_tm + row * H + u;
  T* direct = a.direct + n * H + u;
  if (t >= a.lengths[n]) {  // outside the sequence: no gradient of the step's sides, the carry passes
    for (int g = 0; g < 3; ++g) S::store(dxw + g * H, V{}, lanes);
    S::store(dhw_n, V{}, lanes);
    S::store(direct, dh_carry, lanes);
    return;
  }
  const T* gates = a.gates_tm + row * 3 * H + u;
  const V r = S::load(gates, lanes), z = S::load(gates + H, lanes), n_gate = S::load(gates + 2 * H, lanes);
  const V hw_n = S::load(a.hw_n_tm + row * H + u, lanes);
  const T* h_prev = t == forward_time(0, a.steps, a.reverse) ? a.h0 : a.h_tm + (a.reverse ? t + 1 : t - 1) * a.N * H;
  const V one = S::splat(T(1));
  const V dh_total = dh_carry + S::load(a.dh + (n * a.steps + t) * H + u, lanes);
  const V dn = dh_total * (one - z), dz = dh_total * (S::load(h_prev + n * H + u, lanes) - n_gate);
  const V da_n = dn * (one - n_gate * n_gate);
  S::store(dxw, da_n * hw_n * r * (one - r), lanes);
  S::store(dxw + H, dz * z * (one - z), lanes);
  S::store(dxw + 2 * H, da_n, lanes);
  S::store(dhw_n, da_n * r, lanes);
  S::store(direct, dh_total * z, lanes);
}

// One register tile: the gradient reaching h_{t-1}, dhw_t[rows] Wh^T + direct, for rows
// n0 .. n0 + R and units p 4L ..; then (t_next >= 0) step t_next's elementwise part for those
// rows and units, or (t_next < 0: t was the first step) dh0.
template <typename T, int R>
inline void gru_backward_tile(const GruBackwardArgs<T>& a, int64_t t, int64_t t_next, int64_t n0, int64_t p) {
  using S = Simd<T>;
  using V = typename S::V;
  constexpr int L = S::L;
  const int64_t H = a.H, G = 3 * H;
  const T* panel = a.packed + p * G * 4 * L;
  const int vectors = panel_vectors<T>(H, p);
  V acc[R][4];
  transposed_panel_product<T, R>(vectors, a.dxw_tm + (t * a.N + n0) * G, G, panel, 2 * H, acc);  // r and z
  transposed_panel_product<T, R>(vectors, a.dhw_n_tm + (t * a.N + n0) * H, H, panel + 2 * H * vectors * L, H, acc,
                                 true);  // n
  for (int v = 0; v < 4; ++v) {
    const int64_t u = p * 4 * L + v * L;
    if (u >= H) break;
    const int lanes = static_cast<int>(std::min<int64_t>(L, H - u));
    for (int r = 0; r < R; ++r) {
      T* direct = a.direct + (n0 + r) * H + u;
      const V carry = acc[r][v] + S::load(direct, lanes);
      if (t_next >= 0)
        gru_backward_cell<T>(a, t_next, n0 + r, u, lanes, carry);
      else
        S::store(direct, carry, lanes);
    }
  }
}

// The backward: panels of Wh^T to pack (with the last step's elementwise part for their units,
// where the carried gradient is dh_n), then at every step items of (panel of units, half of the
// rows), as the LSTM's.
template <typename T>
void gru_backward_loop(GruBackwardArgs<T> a, int threads) {
  run_backward<T>(
      a, threads, 3 * a.H, a.direct,
      [&](int64_t t, int64_t n, int64_t u, int lanes, typename Simd<T>::V carry) { gru_backward_cell<T>(a, t, n, u, lanes, carry); },
      [&](auto rows, int64_t t, int64_t t_next, int64_t n0, int64_t p) {
        gru_backward_tile<T, decltype(rows)::value>(a, t, t_next, n0, p);
      });
}

// ---------------------------------------------------------------- the FFI handlers

ffi::Error GruForwardImpl(ffi::AnyBuffer xw, ffi::AnyBuffer h0, ffi::AnyBuffer Wh, ffi::AnyBuffer bh,
                          ffi::Buffer<ffi::S32> lengths, bool reverse, ffi::Result<ffi::AnyBuffer> h_tm,
                          ffi::Result<ffi::AnyBuffer> gates_tm, ffi::Result<ffi::AnyBuffer> hw_n_tm) {
  return on_gate_buffer("GRU", 3, xw, "xw", lengths, [&](auto zero, int64_t steps, int64_t N, int64_t H) {
    using T = decltype(zero);
    GruForwardArgs<T> a{xw.reinterpret_data<T>(), h0.reinterpret_data<T>(), bh.reinterpret_data<T>(),
                        Wh.reinterpret_data<T>(), lengths.typed_data(), h_tm->reinterpret_data<T>(),
                        gates_tm->reinterpret_data<T>(), hw_n_tm->reinterpret_data<T>(), nullptr, steps, N, H, reverse};
    gru_forward_loop<T>(a, usable_cores());
  });
}

ffi::Error GruBackwardImpl(ffi::AnyBuffer dh, ffi::AnyBuffer gates_tm, ffi::AnyBuffer hw_n_tm, ffi::AnyBuffer h_tm,
                           ffi::AnyBuffer h0, ffi::AnyBuffer Wh, ffi::AnyBuffer dh_n, ffi::Buffer<ffi::S32> lengths,
                           bool reverse, ffi::Result<ffi::AnyBuffer> dxw_tm, ffi::Result<ffi::AnyBuffer> dhw_n_tm,
                           ffi::Result<ffi::AnyBuffer> dh0) {
  return on_gate_buffer("GRU", 3, gates_tm, "gates_tm", lengths, [&](auto zero, int64_t steps, int64_t N, int64_t H) {
    using T = decltype(zero);
    std::memcpy(dh0->untyped_data(), dh_n.untyped_data(), sizeof(T) * N * H);
    GruBackwardArgs<T> a{dh.reinterpret_data<T>(), gates_tm.reinterpret_data<T>(), hw_n_tm.reinterpret_data<T>(),
                         h_tm.reinterpret_data<T>(), h0.reinterpret_data<T>(), Wh.reinterpret_data<T>(),
                         lengths.typed_data(), dxw_tm->reinterpret_data<T>(), dhw_n_tm->reinterpret_data<T>(),
                         dh0->reinterpret_data<T>(), nullptr, steps, N, H, reverse};
    gru_backward_loop<T>(a, usable_cores());
  });
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxseqGruForward, GruForwardImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::AnyBuffer>()          // xw (T, N, 3H)
                                  .Arg<ffi::AnyBuffer>()          // h0
                                  .Arg<ffi::AnyBuffer>()          // Wh
                                  .Arg<ffi::AnyBuffer>()          // bh
                                  .Arg<ffi::Buffer<ffi::S32>>()  // lengths (N,)
                                  .Attr<bool>("reverse")
                                  .Ret<ffi::AnyBuffer>()    // h_tm
                                  .Ret<ffi::AnyBuffer>()    // gates_tm
                                  .Ret<ffi::AnyBuffer>());  // hw_n_tm

XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxseqGruBackward, GruBackwardImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::AnyBuffer>()          // dh (N, T, H)
                                  .Arg<ffi::AnyBuffer>()          // gates_tm
                                  .Arg<ffi::AnyBuffer>()          // hw_n_tm
                                  .Arg<ffi::AnyBuffer>()          // h_tm
                                  .Arg<ffi::AnyBuffer>()          // h0
                                  .Arg<ffi::AnyBuffer>()          // Wh
                                  .Arg<ffi::AnyBuffer>()          // dh_n
                                  .Arg<ffi::Buffer<ffi::S32>>()  // lengths (N,)
                                  .Attr<bool>("reverse")
                                  .Ret<ffi::AnyBuffer>()    // dxw_tm
                                  .Ret<ffi::AnyBuffer>()    // dhw_n_tm
                                  .Ret<ffi::AnyBuffer>());  // dh0
