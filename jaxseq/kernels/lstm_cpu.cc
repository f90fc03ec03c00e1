// The LSTM's two sequential loops as XLA FFI handlers for the CPU (jaxseq/kernels/lstm.py calls
// them; jaxseq/kernels/build.py builds this file on first use).
//
// They compute exactly what jaxseq.layers.lstm_fast's `recurrence_forward` and
// `recurrence_backward` loops compute (same equations, same cache layout; read that module's
// docstring first) for the case without a projection, and differ only in how:
//
// - the recurrent weight is packed once per call (not once per step, as a library matrix
//   multiply must), into panels the register-blocked product below streams through;
// - the forward's panels interleave the four gates of L hidden units (L = one vector register
//   of T), so the step's product ends with the i, f, o, g pre-activations of those units in
//   registers and the cell's elementwise work (gates, c_t, h_t and the stored derivatives)
//   happens there, before anything is written: one pass over memory per step;
// - the backward's product of step t's gradients with Wh^T ends, in the same way, with the
//   next step's elementwise work for the units it produced;
// - the hidden units (and the backward's rows) are shared out between threads (one per core
//   this process may run on) item by item, each step; the threads meet once per step.
//
// Lengths: row n's steps t >= lengths[n] are outside its sequence (both directions, as
// jaxseq.layers.sequence.valid_steps_tm says). There the forward carries the row's state (h_t =
// h_{t-1}, c_t = c_{t-1}; P, q, f are still those of the cell on the carried state, as the XLA
// loop stores them) and the backward's da_t is zero, its carried gradients passing through.
//
// Shapes: T steps, N rows, H hidden units, G = 4H (gates i, f, o, g, each H wide).

#include "cpu_loops.h"

namespace {

// ---------------------------------------------------------------- forward

template <typename T>
struct ForwardArgs {
  const T* xw;  // (T, N, 4H) x_t Wx (the step adds b); may be P_tm itself: each value is read
                // before it is replaced
  const T* h0;  // (N, H)
  const T* c0;  // (N, H)
  const T* b;   // (4H,)
  T* h_tm;      // (T, N, H)
  T* P_tm;      // (T, N, 4H)
  T* q_tm;      // (T, N, H)
  T* f_tm;      // (T, N, H)
  T* c;         // (N, H): c0, then the cell state after each step (c_n at the end)
  const T* Wh;  // (H, 4H)
  T* packed;    // (ceil(H / L) panels, H, 4 L): panel p, row k: [Wh[k, g H + p L + l] for g < 4,
                // l < L], 0 past H
  const int32_t* lengths;  // (N,) row n's steps (the header comment)
  int64_t steps, N, H;
  bool reverse;
};

// One register tile of step t: rows n0 .. n0 + R, units p L .. (p + 1) L (fewer in the last
// panel when L does not divide H).
template <typename T, int R>
inline void forward_tile(const ForwardArgs<T>& a, const T* h_prev, int64_t t, int64_t n0, int64_t p) {
  using S = Simd<T>;
  using V = typename S::V;
  constexpr int L = S::L;
  const int64_t H = a.H, G = 4 * a.H, u = p * L;
  const int lanes = static_cast<int>(std::min<int64_t>(L, H - u));
  V acc[R][4];
  panel_product<T, R>(h_prev + n0 * H, H, a.packed + p * H * 4 * L, H, acc);
  const V half = S::splat(T(0.5)), quarter = S::splat(T(0.25)), one = S::splat(T(1));
  for (int r = 0; r < R; ++r) {
    const int64_t n = n0 + r, row = t * a.N + n;
    const T* xw = a.xw + row * G;
    auto pre = [&](int gate) { return acc[r][gate] + S::load(xw + gate * H + u, lanes) + S::load(a.b + gate * H + u, lanes); };
    V ti = vtanh<T>(half * pre(0)), tf = vtanh<T>(half * pre(1)), to = vtanh<T>(half * pre(2)), g = vtanh<T>(pre(3));
    V i = half * ti + half, f = half * tf + half, o = half * to + half;
    T* c = a.c + n * H + u;
    V c_prev = S::load(c, lanes);
    V c_next = f * c_prev + i * g;
    V tc = vtanh<T>(c_next);
    if (t < a.lengths[n]) {
      S::store(c, c_next, lanes);
      S::store(a.h_tm + row * H + u, o * tc, lanes);
    } else {  // outside the sequence: the state carried
      S::store(a.h_tm + row * H + u, S::load(h_prev + n * H + u, lanes), lanes);
    }
    T* P = a.P_tm + row * G + u;
    S::store(P, g * (quarter * (one - ti * ti)), lanes);
    S::store(P + H, c_prev * (quarter * (one - tf * tf)), lanes);
    S::store(P + 2 * H, tc * (quarter * (one - to * to)), lanes);
    S::store(P + 3 * H, i * (one - g * g), lanes);
    S::store(a.q_tm + row * H + u, o * (one - tc * tc), lanes);
    S::store(a.f_tm + row * H + u, f, lanes);
  }
}

// The forward: panels of Wh to pack, then at every step panels of units.
template <typename T>
void forward_loop(ForwardArgs<T> a, int threads) {
  std::memcpy(a.c, a.c0, sizeof(T) * a.N * a.H);
  run_forward<kRows, T>(a, threads, 4, [&](auto rows, const T* h_prev, int64_t t, int64_t n0, int64_t p) {
    forward_tile<T, decltype(rows)::value>(a, h_prev, t, n0, p);
  });
}

// ---------------------------------------------------------------- backward

template <typename T>
struct BackwardArgs {
  const T* dh;    // (N, T, H) the gradients of the outputs, batch-major
  const T* P_tm;  // (T, N, 4H), may be da_tm itself: each value is read before it is replaced
  const T* q_tm;  // (T, N, H)
  const T* f_tm;  // (T, N, H)
  const T* Wh;    // (H, 4H)
  T* da_tm;       // (T, N, 4H) the pre-activation gradients
  T* dh_carry;    // (N, H): dh_n, then dh0 at the end
  T* dc_carry;    // (N, H): dc_n, then the gradient reaching c_{t-1} (dc0 at the end)
  T* packed;      // (ceil(H / 4L) panels, 4H, 4 L): panel p, row k: [Wh[p 4L + l, k] for l < 4L]
                  // (fewer in the last panel: pack_transposed_panel), 0 past H
  const int32_t* lengths;  // (N,) row n's steps (the header comment)
  int64_t steps, N, H;
  bool reverse;
};

// The elementwise part of step t for row n and units [u, u + lanes): with the total hidden
// gradient dh_total = dh_t + dh_carry, da_t = [dc, dc, dh_total, dc] P_t where dc = dc_carry +
// dh_total q_t, and the carried cell gradient becomes dc f_t.
template <typename T>
inline void backward_cell(const BackwardArgs<T>& a, int64_t t, int64_t n, int64_t u, int lanes,
                          typename Simd<T>::V dh_carry) {
  using S = Simd<T>;
  using V = typename S::V;
  const int64_t H = a.H, row = t * a.N + n;
  T* da = a.da_tm + row * 4 * H + u;
  if (t >= a.lengths[n]) {  // outside the sequence: da_t = 0, the carried gradients pass through
    for (int g = 0; g < 4; ++g) S::store(da + g * H, V{}, lanes);
    S::store(a.dh_carry + n * H + u, dh_carry, lanes);  // for the product of step t (da_t = 0)
    return;
  }
  V dh_total = dh_carry + S::load(a.dh + (n * a.steps + t) * H + u, lanes);
  T* dcp = a.dc_carry + n * H + u;
  V dc = S::load(dcp, lanes) + dh_total * S::load(a.q_tm + row * H + u, lanes);
  const T* P = a.P_tm + row * 4 * H + u;
  V P0 = S::load(P, lanes), P1 = S::load(P + H, lanes), P2 = S::load(P + 2 * H, lanes), P3 = S::load(P + 3 * H, lanes);
  S::store(da, dc * P0, lanes);
  S::store(da + H, dc * P1, lanes);
  S::store(da + 2 * H, dh_total * P2, lanes);
  S::store(da + 3 * H, dc * P3, lanes);
  S::store(dcp, dc * S::load(a.f_tm + row * H + u, lanes), lanes);
}

// One register tile: the gradient reaching h_{t-1}, da_t[rows] Wh^T, for rows n0 .. n0 + R
// and units p 4L .., then (t_next >= 0) step t_next's elementwise part for those rows and
// units, or (t_next < 0: t was the first step) dh0. For a row outside its sequence at step t,
// the gradient reaching h_{t-1} is the one that reached h_t, kept in dh_carry by backward_cell.
template <typename T, int R>
inline void backward_tile(const BackwardArgs<T>& a, int64_t t, int64_t t_next, int64_t n0, int64_t p) {
  using S = Simd<T>;
  using V = typename S::V;
  constexpr int L = S::L;
  const int64_t H = a.H, G = 4 * H;
  V acc[R][4];
  transposed_panel_product<T, R>(panel_vectors<T>(H, p), a.da_tm + (t * a.N + n0) * G, G, a.packed + p * G * 4 * L, G,
                                 acc);
  for (int v = 0; v < 4; ++v) {
    const int64_t u = p * 4 * L + v * L;
    if (u >= H) break;
    const int lanes = static_cast<int>(std::min<int64_t>(L, H - u));
    for (int r = 0; r < R; ++r) {
      const int64_t n = n0 + r;
      const bool inside = t < a.lengths[n];
      if (t_next >= 0)
        backward_cell<T>(a, t_next, n, u, lanes, inside ? acc[r][v] : S::load(a.dh_carry + n * H + u, lanes));
      else if (inside)
        S::store(a.dh_carry + n * H + u, acc[r][v], lanes);
    }
  }
}

// The backward: panels of Wh^T to pack (with the last step's elementwise part for their units,
// where the carried dh is dh_n), then at every step items of (panel of units, half of the rows).
template <typename T>
void backward_loop(BackwardArgs<T> a, int threads) {
  run_backward<T>(
      a, threads, 4 * a.H, a.dh_carry,
      [&](int64_t t, int64_t n, int64_t u, int lanes, typename Simd<T>::V carry) { backward_cell<T>(a, t, n, u, lanes, carry); },
      [&](auto rows, int64_t t, int64_t t_next, int64_t n0, int64_t p) {
        backward_tile<T, decltype(rows)::value>(a, t, t_next, n0, p);
      });
}

// ---------------------------------------------------------------- the FFI handlers

ffi::Error LstmForwardImpl(ffi::AnyBuffer xw, ffi::AnyBuffer h0, ffi::AnyBuffer c0, ffi::AnyBuffer Wh,
                           ffi::AnyBuffer b, ffi::Buffer<ffi::S32> lengths, bool reverse, ffi::Result<ffi::AnyBuffer> h_tm,
                           ffi::Result<ffi::AnyBuffer> P_tm, ffi::Result<ffi::AnyBuffer> q_tm,
                           ffi::Result<ffi::AnyBuffer> f_tm, ffi::Result<ffi::AnyBuffer> c_n) {
  return on_gate_buffer("LSTM", 4, xw, "xw", lengths, [&](auto zero, int64_t steps, int64_t N, int64_t H) {
    using T = decltype(zero);
    ForwardArgs<T> a{xw.reinterpret_data<T>(), h0.reinterpret_data<T>(), c0.reinterpret_data<T>(),
                     b.reinterpret_data<T>(),  h_tm->reinterpret_data<T>(), P_tm->reinterpret_data<T>(),
                     q_tm->reinterpret_data<T>(), f_tm->reinterpret_data<T>(), c_n->reinterpret_data<T>(),
                     Wh.reinterpret_data<T>(), nullptr, lengths.typed_data(), steps, N, H, reverse};
    forward_loop<T>(a, usable_cores());
  });
}

ffi::Error LstmBackwardImpl(ffi::AnyBuffer dh, ffi::AnyBuffer P_tm, ffi::AnyBuffer q_tm, ffi::AnyBuffer f_tm,
                            ffi::AnyBuffer Wh, ffi::AnyBuffer dh_n, ffi::AnyBuffer dc_n,
                            ffi::Buffer<ffi::S32> lengths, bool reverse,
                            ffi::Result<ffi::AnyBuffer> da_tm, ffi::Result<ffi::AnyBuffer> dh0,
                            ffi::Result<ffi::AnyBuffer> dc0) {
  return on_gate_buffer("LSTM", 4, P_tm, "P_tm", lengths, [&](auto zero, int64_t steps, int64_t N, int64_t H) {
    using T = decltype(zero);
    std::memcpy(dh0->untyped_data(), dh_n.untyped_data(), sizeof(T) * N * H);
    std::memcpy(dc0->untyped_data(), dc_n.untyped_data(), sizeof(T) * N * H);
    BackwardArgs<T> a{dh.reinterpret_data<T>(), P_tm.reinterpret_data<T>(), q_tm.reinterpret_data<T>(),
                      f_tm.reinterpret_data<T>(), Wh.reinterpret_data<T>(), da_tm->reinterpret_data<T>(),
                      dh0->reinterpret_data<T>(), dc0->reinterpret_data<T>(), nullptr, lengths.typed_data(), steps,
                      N, H, reverse};
    backward_loop<T>(a, usable_cores());
  });
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxseqLstmForward, LstmForwardImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::AnyBuffer>()  // xw
                                  .Arg<ffi::AnyBuffer>()  // h0
                                  .Arg<ffi::AnyBuffer>()  // c0
                                  .Arg<ffi::AnyBuffer>()  // Wh
                                  .Arg<ffi::AnyBuffer>()  // b
                                  .Arg<ffi::Buffer<ffi::S32>>()  // lengths (N,)
                                  .Attr<bool>("reverse")
                                  .Ret<ffi::AnyBuffer>()   // h_tm
                                  .Ret<ffi::AnyBuffer>()   // P_tm
                                  .Ret<ffi::AnyBuffer>()   // q_tm
                                  .Ret<ffi::AnyBuffer>()   // f_tm
                                  .Ret<ffi::AnyBuffer>()); // c_n

XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxseqLstmBackward, LstmBackwardImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::AnyBuffer>()  // dh (N, T, H)
                                  .Arg<ffi::AnyBuffer>()  // P_tm
                                  .Arg<ffi::AnyBuffer>()  // q_tm
                                  .Arg<ffi::AnyBuffer>()  // f_tm
                                  .Arg<ffi::AnyBuffer>()  // Wh
                                  .Arg<ffi::AnyBuffer>()  // dh_n
                                  .Arg<ffi::AnyBuffer>()  // dc_n
                                  .Arg<ffi::Buffer<ffi::S32>>()  // lengths (N,)
                                  .Attr<bool>("reverse")
                                  .Ret<ffi::AnyBuffer>()   // da_tm
                                  .Ret<ffi::AnyBuffer>()   // dh0
                                  .Ret<ffi::AnyBuffer>()); // dc0
