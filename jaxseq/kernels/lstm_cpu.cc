// The LSTM's two sequential loops as XLA FFI handlers for the CPU (jaxseq/kernels/lstm.py calls
// them; jaxseq/kernels/build.py builds this file on first use).
//
// They compute exactly what jaxseq.layers.lstm_fast's `recurrence_forward` and
// `recurrence_backward` loops compute (same equations, same cache layout; read that module's
// docstring first) for the case without lengths or projection, and differ only in how:
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

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <linux/futex.h>
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

#if defined(__AVX512F__)
constexpr int kVectorBytes = 64;
constexpr int kRegisters = 32;
#elif defined(__AVX__)
constexpr int kVectorBytes = 32;
constexpr int kRegisters = 16;
#elif defined(__aarch64__)
constexpr int kVectorBytes = 16;
constexpr int kRegisters = 32;
#else
constexpr int kVectorBytes = 16;
constexpr int kRegisters = 16;
#endif

// Rows per register tile: 4 accumulator vectors per row, plus 4 weight vectors and one
// broadcast value held while they are multiplied.
constexpr int kRows = (kRegisters - 5) / 4 > 0 ? (kRegisters - 5) / 4 : 1;

template <typename T>
struct Simd {
  static constexpr int L = kVectorBytes / sizeof(T);
  typedef T V __attribute__((vector_size(kVectorBytes)));
  static V load(const T* p) {
    V v;
    std::memcpy(&v, p, sizeof v);
    return v;
  }
  static void store(T* p, V v) { std::memcpy(p, &v, sizeof v); }
  // the first `lanes` values (the others 0), for the last units when L does not divide H
  static V load(const T* p, int lanes) {
    if (lanes == L) return load(p);
    V v{};
    std::memcpy(&v, p, sizeof(T) * lanes);
    return v;
  }
  static void store(T* p, V v, int lanes) {
    if (lanes == L) return store(p, v);
    std::memcpy(p, &v, sizeof(T) * lanes);
  }
  // s - 0 is s for every s (s + 0 is not: -0.0 + 0.0 is 0.0), so this is a plain broadcast
  static V splat(T s) { return s - V{}; }
};

// tanh of a vector. float: Cephes' tanhf (a polynomial below |x| = 0.625, 1 - 2 / (exp(2|x|) + 1)
// above it, exp by range reduction and a polynomial), about 2 ulp; double: std::tanh per lane.
template <typename T>
typename Simd<T>::V vtanh(typename Simd<T>::V x);

template <>
inline __attribute__((always_inline)) Simd<float>::V vtanh<float>(Simd<float>::V x) {
  using S = Simd<float>;
  using V = S::V;
  typedef int32_t I __attribute__((vector_size(kVectorBytes)));
  V ax = x < 0 ? -x : x;
  // exp(2|x|), clamped where tanh is 1 in float anyway
  V e = 2.0f * ax;
  e = e > 88.0f ? S::splat(88.0f) : e;
  V fx = e * 1.44269504088896341f + 0.5f;
  I fi = __builtin_convertvector(fx, I);
  V ft = __builtin_convertvector(fi, V);
  ft = ft > fx ? ft - 1.0f : ft;  // floor
  fi = __builtin_convertvector(ft, I);
  V r = e - ft * 0.693359375f - ft * -2.12194440e-4f;
  V z = r * r;
  V p = ((((1.9875691500E-4f * r + 1.3981999507E-3f) * r + 8.3334519073E-3f) * r + 4.1665795894E-2f) * r +
         1.6666665459E-1f) * r + 5.0000001201E-1f;
  p = p * z + r + 1.0f;
  V pow2;
  I bits = (fi + 127) << 23;
  std::memcpy(&pow2, &bits, sizeof pow2);
  V big = 1.0f - 2.0f / (p * pow2 + 1.0f);
  big = x < 0 ? -big : big;
  V x2 = x * x;
  V small = ((((-5.70498872745E-3f * x2 + 2.06390887954E-2f) * x2 - 5.37397155531E-2f) * x2 +
              1.33314422036E-1f) * x2 - 3.33332819422E-1f) * x2 * x + x;
  return ax < 0.625f ? small : big;
}

template <>
inline __attribute__((always_inline)) Simd<double>::V vtanh<double>(Simd<double>::V x) {
  for (int l = 0; l < Simd<double>::L; ++l) x[l] = std::tanh(x[l]);
  return x;
}

// The cores this process may run on (its affinity mask), at least 1; JAXSEQ_KERNEL_THREADS=k
// asks for k threads instead (the tests compare 1 with 2: the results are the same bits).
int usable_cores() {
  if (const char* forced = std::getenv("JAXSEQ_KERNEL_THREADS")) return std::max(1, std::atoi(forced));
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) == 0) return std::max(1, CPU_COUNT(&set));
  return std::max(1u, std::thread::hardware_concurrency());
}

// Threads meet here once per step. A waiter spins briefly (the threads of a step usually
// arrive within microseconds of each other), then sleeps on a futex, which frees its core for
// whatever else is runnable; the last to arrive wakes the sleepers. Every step still needs
// every thread: beside another library's spinning threads (NumPy's OpenBLAS just after a
// call) a layer's loops ran 2x slower, with this barrier as with one that spun and yielded
// (benchmarks/results/lm_speed.md).
class StepBarrier {
 public:
  explicit StepBarrier(int threads) : threads_(threads) {}
  void wait() {
    if (threads_ == 1) return;
    const int generation = generation_.load();
    if (arrived_.fetch_add(1) == threads_ - 1) {
      arrived_.store(0);
      generation_.fetch_add(1);  // sequentially consistent with the sleepers' count below:
      if (sleepers_.load() > 0) futex(FUTEX_WAKE_PRIVATE, INT32_MAX);  // a sleeper is seen or sees this
      return;
    }
    for (int spins = 0; spins < kSpins; ++spins) {
      if (generation_.load(std::memory_order_acquire) != generation) return;
#if defined(__x86_64__)
      __builtin_ia32_pause();
#endif
    }
    sleepers_.fetch_add(1);
    while (generation_.load() == generation) futex(FUTEX_WAIT_PRIVATE, generation);
    sleepers_.fetch_sub(1);
  }

 private:
  static constexpr int kSpins = 2000;
  void futex(int op, int value) {
    syscall(SYS_futex, reinterpret_cast<int*>(&generation_), op, value, nullptr, nullptr, 0);
  }
  const int threads_;
  std::atomic<int> arrived_{0};
  std::atomic<int> generation_{0};
  std::atomic<int> sleepers_{0};
  static_assert(sizeof(std::atomic<int>) == sizeof(int), "the futex waits on the atomic's own int");
};

// One loop at a time per process: two at once would only share the same cores, and the
// workspace kept below is theirs while they hold this.
std::mutex one_call_at_a_time;

// The packed weight's memory. Up to kKeptWorkspaceBytes it is kept from call to call (a fresh
// allocation of megabytes would be mapped anew, and page-faulted in, on every call); a larger
// weight (H above about 2,000 in float32) gets memory of its own for the call, freed after it,
// so that one large model does not hold it for the rest of the process.
constexpr size_t kKeptWorkspaceBytes = size_t(64) << 20;

class PackedWorkspace {
 public:
  template <typename T>
  T* get(size_t count) {
    const size_t bytes = count * sizeof(T);
    std::vector<unsigned char>& memory = bytes <= kKeptWorkspaceBytes ? kept() : own_;
    if (memory.size() < bytes) memory.resize(bytes);
    return reinterpret_cast<T*>(memory.data());
  }

 private:
  static std::vector<unsigned char>& kept() {
    static std::vector<unsigned char> memory;  // used under one_call_at_a_time only
    return memory;
  }
  std::vector<unsigned char> own_;
};

// Runs body() on `threads` threads, the caller's among them.
void run_parallel(int threads, const std::function<void()>& body) {
  std::vector<std::thread> helpers;
  helpers.reserve(threads - 1);
  for (int j = 1; j < threads; ++j) helpers.emplace_back(body);
  body();
  for (auto& helper : helpers) helper.join();
}

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// The work of a call, handed out item by item: each phase (packing, then every step) has its
// own counter, and a thread takes the next item of the phase until there is none left, so a
// thread that the machine runs slower (another process, another library's spinning threads)
// takes fewer. Which thread computes an item does not change its result.
class WorkQueue {
 public:
  explicit WorkQueue(int64_t phases) : next_(static_cast<size_t>(phases)) {}
  template <typename Item>
  void run(int64_t phase, int64_t items, Item&& item) {
    for (int64_t i; (i = next_[static_cast<size_t>(phase)].fetch_add(1, std::memory_order_relaxed)) < items;) item(i);
  }

 private:
  std::vector<std::atomic<int64_t>> next_;
};

// acc[r][v] = sum_k A[r][k] * B[k][v L .. (v + 1) L) for R rows of A (row stride lda) and one
// packed panel B (K rows of 4 L values).
template <typename T, int R>
inline void panel_product(const T* A, int64_t lda, const T* B, int64_t K, typename Simd<T>::V acc[R][4]) {
  using S = Simd<T>;
  constexpr int L = S::L;
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < 4; ++v) acc[r][v] = typename S::V{};
  for (int64_t k = 0; k < K; ++k) {
    const T* b = B + k * 4 * L;
    typename S::V b0 = S::load(b), b1 = S::load(b + L), b2 = S::load(b + 2 * L), b3 = S::load(b + 3 * L);
    for (int r = 0; r < R; ++r) {
      typename S::V a = S::splat(A[r * lda + k]);
      acc[r][0] += a * b0;
      acc[r][1] += a * b1;
      acc[r][2] += a * b2;
      acc[r][3] += a * b3;
    }
  }
}

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

// Calls tile<R'>(n0) for every row tile: R rows at a time, then the remaining fewer than R.
template <int R, typename Tile>
inline void for_each_row_tile(int64_t N, Tile&& tile) {
  int64_t n0 = 0;
  for (; n0 + R <= N; n0 += R) tile(std::integral_constant<int, R>{}, n0);
  switch (N - n0) {
#define JAXSEQ_ROW_TAIL(k) \
  case k:                  \
    if constexpr (k < R) tile(std::integral_constant<int, k>{}, n0); \
    break;
    JAXSEQ_ROW_TAIL(1) JAXSEQ_ROW_TAIL(2) JAXSEQ_ROW_TAIL(3) JAXSEQ_ROW_TAIL(4) JAXSEQ_ROW_TAIL(5)
    JAXSEQ_ROW_TAIL(6) JAXSEQ_ROW_TAIL(7)
#undef JAXSEQ_ROW_TAIL
    default:
      break;
  }
}

// A thread's part of the forward: panels of Wh to pack, then at every step panels of units.
template <typename T>
void forward_thread(const ForwardArgs<T>& a, WorkQueue& work, StepBarrier& barrier) {
  constexpr int L = Simd<T>::L;
  const int64_t H = a.H, G = 4 * H, panels = ceil_div(H, L);
  work.run(0, panels, [&](int64_t p) {
    const int64_t lanes = std::min<int64_t>(L, H - p * L);
    for (int64_t k = 0; k < H; ++k)
      for (int g = 0; g < 4; ++g) {
        T* panel_row = a.packed + (p * H + k) * 4 * L + g * L;
        std::memcpy(panel_row, a.Wh + k * G + g * H + p * L, sizeof(T) * lanes);
        std::fill(panel_row + lanes, panel_row + L, T(0));
      }
  });
  for (int64_t s = 0; s < a.steps; ++s) {
    const int64_t t = a.reverse ? a.steps - 1 - s : s;
    const T* h_prev = s == 0 ? a.h0 : a.h_tm + (a.reverse ? t + 1 : t - 1) * a.N * H;
    barrier.wait();  // the packed panels (s = 0), h_prev (s > 0) are complete
    work.run(s + 1, panels, [&](int64_t p) {
      for_each_row_tile<kRows>(a.N, [&](auto rows, int64_t n0) { forward_tile<T, decltype(rows)::value>(a, h_prev, t, n0, p); });
    });
  }
}

template <typename T>
void forward_loop(ForwardArgs<T> a, int threads) {
  constexpr int L = Simd<T>::L;
  const int64_t panels = ceil_div(a.H, L);
  std::lock_guard<std::mutex> lock(one_call_at_a_time);
  PackedWorkspace workspace;
  a.packed = workspace.get<T>(static_cast<size_t>(panels * a.H * 4 * L));
  std::memcpy(a.c, a.c0, sizeof(T) * a.N * a.H);
  threads = static_cast<int>(std::min<int64_t>(threads, panels));
  WorkQueue work(a.steps + 1);
  StepBarrier barrier(threads);
  run_parallel(threads, [&] { forward_thread<T>(a, work, barrier); });
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
  T* packed;      // (ceil(H / 4L) panels, 4H, 4 L): panel p, row k: [Wh[p 4L + l, k] for l < 4L],
                  // 0 past H
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
  panel_product<T, R>(a.da_tm + (t * a.N + n0) * G, G, a.packed + p * G * 4 * L, G, acc);
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

// A thread's part of the backward: panels of Wh^T to pack (with the last step's elementwise
// part for their units, where the carried dh is dh_n), then at every step items of (panel of
// units, half of the rows), finer than the forward's: a backward panel is 4 L units wide.
template <typename T>
void backward_thread(const BackwardArgs<T>& a, WorkQueue& work, StepBarrier& barrier) {
  using S = Simd<T>;
  constexpr int L = S::L;
  const int64_t H = a.H, G = 4 * H, panels = ceil_div(H, 4 * L), t_last = a.reverse ? 0 : a.steps - 1;
  work.run(0, panels, [&](int64_t p) {
    for (int64_t k = 0; k < G; ++k)
      for (int64_t l = 0; l < 4 * L; ++l) {
        const int64_t unit = p * 4 * L + l;
        a.packed[(p * G + k) * 4 * L + l] = unit < H ? a.Wh[unit * G + k] : T(0);
      }
    for (int64_t u = p * 4 * L; u < std::min(H, (p + 1) * 4 * L); u += L) {
      const int lanes = static_cast<int>(std::min<int64_t>(L, H - u));
      for (int64_t n = 0; n < a.N; ++n) backward_cell<T>(a, t_last, n, u, lanes, S::load(a.dh_carry + n * H + u, lanes));
    }
  });
  // the rows in two parts at a multiple of the row tile (one part when there are few rows)
  const int64_t split = std::min(a.N, kRows * ceil_div(ceil_div(a.N, kRows), 2)), parts = split < a.N ? 2 : 1;
  for (int64_t s = 0; s < a.steps; ++s) {
    const int64_t t = a.reverse ? s : a.steps - 1 - s;
    const int64_t t_next = s == a.steps - 1 ? -1 : (a.reverse ? t + 1 : t - 1);
    barrier.wait();  // the packed panels (s = 0), da_t are complete
    work.run(s + 1, panels * parts, [&](int64_t item) {
      const int64_t p = item / parts, first = item % parts == 0 ? 0 : split, rows = item % parts == 0 ? split : a.N - split;
      for_each_row_tile<kRows>(rows, [&](auto tile, int64_t n0) {
        backward_tile<T, decltype(tile)::value>(a, t, t_next, first + n0, p);
      });
    });
  }
}

template <typename T>
void backward_loop(BackwardArgs<T> a, int threads) {
  constexpr int L = Simd<T>::L;
  const int64_t panels = ceil_div(a.H, 4 * L);
  std::lock_guard<std::mutex> lock(one_call_at_a_time);
  PackedWorkspace workspace;
  a.packed = workspace.get<T>(static_cast<size_t>(panels * 4 * a.H * 4 * L));
  threads = static_cast<int>(std::min<int64_t>(threads, 2 * panels));
  WorkQueue work(a.steps + 1);
  StepBarrier barrier(threads);
  run_parallel(threads, [&] { backward_thread<T>(a, work, barrier); });
}

// ---------------------------------------------------------------- the FFI handlers

// Checks that `gates` is (T, N, 4H) with T, N, H positive and `lengths` (N,), then calls
// run(T{}, steps, N, H) for its dtype (float32 or float64; the other buffers share it:
// jaxseq.kernels.lstm makes them).
template <typename Run>
ffi::Error on_gate_buffer(const ffi::AnyBuffer& gates, const char* name, const ffi::Buffer<ffi::S32>& lengths, Run run) {
  auto dims = gates.dimensions();
  if (dims.size() != 3 || dims[0] < 1 || dims[1] < 1 || dims[2] < 4 || dims[2] % 4 != 0)
    return ffi::Error::InvalidArgument(std::string("jaxseq LSTM kernel: ") + name +
                                       " must be (T, N, 4H) with T, N and H positive");
  if (lengths.dimensions().size() != 1 || lengths.dimensions()[0] != dims[1])
    return ffi::Error::InvalidArgument("jaxseq LSTM kernel: lengths must be (N,)");
  switch (gates.element_type()) {
    case ffi::DataType::F32:
      run(float{}, dims[0], dims[1], dims[2] / 4);
      return ffi::Error::Success();
    case ffi::DataType::F64:
      run(double{}, dims[0], dims[1], dims[2] / 4);
      return ffi::Error::Success();
    default:
      return ffi::Error::InvalidArgument("jaxseq LSTM kernel: float32 or float64 only");
  }
}

ffi::Error LstmForwardImpl(ffi::AnyBuffer xw, ffi::AnyBuffer h0, ffi::AnyBuffer c0, ffi::AnyBuffer Wh,
                           ffi::AnyBuffer b, ffi::Buffer<ffi::S32> lengths, bool reverse, ffi::Result<ffi::AnyBuffer> h_tm,
                           ffi::Result<ffi::AnyBuffer> P_tm, ffi::Result<ffi::AnyBuffer> q_tm,
                           ffi::Result<ffi::AnyBuffer> f_tm, ffi::Result<ffi::AnyBuffer> c_n) {
  return on_gate_buffer(xw, "xw", lengths, [&](auto zero, int64_t steps, int64_t N, int64_t H) {
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
  return on_gate_buffer(P_tm, "P_tm", lengths, [&](auto zero, int64_t steps, int64_t N, int64_t H) {
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
