// What the compiled CPU kernels share (lstm_cpu.cc, gru_cpu.cc, decoder_loss_cpu.cc include it;
// each is one translation unit, so everything here is in an anonymous namespace): vectors of T
// and their exp and tanh, the threads of a call and their barrier, the work queue, the kept
// workspace, the register tile of a product (tile_product, and panel_product for rows with a
// packed weight panel), the packings, the forward and backward loop drivers (run_forward,
// run_backward: a cell supplies its register tile and its backward's elementwise step), and
// the loops' FFI handlers' checks.
//
// jaxseq/kernels/build.py hashes this header with each source, so a change rebuilds them all.

#pragma once

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <limits>
#include <mutex>
#include <new>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <linux/futex.h>
#include <sched.h>
#include <sys/mman.h>
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

// Rows per register tile: NV accumulator vectors per row, plus NV weight vectors and one
// broadcast value held while they are multiplied (the LSTM's forward tiles 4 gates, its
// backward 4 L units; the GRU's forward 3 gates).
constexpr int rows_per_tile(int NV) { return (kRegisters - NV - 1) / NV > 0 ? (kRegisters - NV - 1) / NV : 1; }
constexpr int kRows = rows_per_tile(4);

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

// exp of a float vector whose values are in [-88, 88] (Cephes' expf: range reduction by
// ln 2, a polynomial, the power of two put into the exponent's bits), about 1 ulp.
inline __attribute__((always_inline)) Simd<float>::V vexp_in_range(Simd<float>::V x) {
  using S = Simd<float>;
  using V = S::V;
  typedef int32_t I __attribute__((vector_size(kVectorBytes)));
  V fx = x * 1.44269504088896341f + 0.5f;
  I fi = __builtin_convertvector(fx, I);
  V ft = __builtin_convertvector(fi, V);
  ft = ft > fx ? ft - 1.0f : ft;  // floor
  fi = __builtin_convertvector(ft, I);
  V r = x - ft * 0.693359375f - ft * -2.12194440e-4f;
  V z = r * r;
  V p = ((((1.9875691500E-4f * r + 1.3981999507E-3f) * r + 8.3334519073E-3f) * r + 4.1665795894E-2f) * r +
         1.6666665459E-1f) * r + 5.0000001201E-1f;
  p = p * z + r + 1.0f;
  V pow2;
  I bits = (fi + 127) << 23;
  std::memcpy(&pow2, &bits, sizeof pow2);
  return p * pow2;
}

// exp of a vector: float by vexp_in_range, 0 below -87 (exp(-87) = 1.6e-38 is next to float's
// smallest normal value, so nothing past it is kept) and at most exp(88); double: std::exp per lane.
template <typename T>
typename Simd<T>::V vexp(typename Simd<T>::V x);

template <>
inline __attribute__((always_inline)) Simd<float>::V vexp<float>(Simd<float>::V x) {
  using S = Simd<float>;
  S::V clamped = x > 88.0f ? S::splat(88.0f) : x;
  clamped = clamped < -87.0f ? S::splat(-87.0f) : clamped;
  const S::V e = vexp_in_range(clamped);
  return x < -87.0f ? S::V{} : e;
}

template <>
inline __attribute__((always_inline)) Simd<double>::V vexp<double>(Simd<double>::V x) {
  for (int l = 0; l < Simd<double>::L; ++l) x[l] = std::exp(x[l]);
  return x;
}

// tanh of a vector. float: Cephes' tanhf (a polynomial below |x| = 0.625, 1 - 2 / (exp(2|x|) + 1)
// above it, exp by vexp_in_range), about 2 ulp; double: std::tanh per lane.
template <typename T>
typename Simd<T>::V vtanh(typename Simd<T>::V x);

template <>
inline __attribute__((always_inline)) Simd<float>::V vtanh<float>(Simd<float>::V x) {
  using S = Simd<float>;
  using V = S::V;
  V ax = x < 0 ? -x : x;
  // exp(2|x|), clamped where tanh is 1 in float anyway
  V e = 2.0f * ax;
  e = e > 88.0f ? S::splat(88.0f) : e;
  V big = 1.0f - 2.0f / (vexp_in_range(e) + 1.0f);
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

// Memory aligned to 2 MB and advised to the kernel's transparent huge pages (Linux's default
// policy, "madvise", gives them only where asked). A workspace is read again at every step (the
// packed weight's panels, once per tile): on 4 KB pages, where its pages fell in physical memory
// changed one LSTM layer's loops by 9-17% between two builds of the library in one process, and
// its forward loop by up to 20% from process to process; on 2 MB pages the loops run at the
// better placement's speed every time (benchmarks/results/lm_speed.md). The advice is only
// that: where the system has no huge pages to give, the memory is ordinary. Contents are not
// initialised.
class HugePageMemory {
 public:
  static constexpr size_t kHugePage = size_t(2) << 20;
  HugePageMemory() = default;
  HugePageMemory(const HugePageMemory&) = delete;
  HugePageMemory& operator=(const HugePageMemory&) = delete;
  ~HugePageMemory() { std::free(data_); }
  // At least `bytes` of memory (the earlier contents are not kept when it grows); throws
  // std::bad_alloc when the system has none to give.
  unsigned char* reserve(size_t bytes) {
    if (bytes <= size_) return data_;
    const size_t rounded = (bytes + kHugePage - 1) / kHugePage * kHugePage;
    void* memory = nullptr;
    if (rounded < bytes || posix_memalign(&memory, kHugePage, rounded) != 0) throw std::bad_alloc();
#if defined(MADV_HUGEPAGE)
    madvise(memory, rounded, MADV_HUGEPAGE);
#endif
    std::free(data_);
    data_ = static_cast<unsigned char*>(memory);
    size_ = rounded;
    return data_;
  }

 private:
  unsigned char* data_ = nullptr;
  size_t size_ = 0;
};

// The packed weight's memory. Up to kKeptWorkspaceBytes it is kept from call to call (a fresh
// allocation of megabytes would be mapped anew, and page-faulted in, on every call); a larger
// weight (H above about 2,000 in float32) gets memory of its own for the call, freed after it,
// so that one large model does not hold it for the rest of the process.
constexpr size_t kKeptWorkspaceBytes = size_t(64) << 20;

class PackedWorkspace {
 public:
  template <typename T>
  T* get(size_t count) {
    if (count > std::numeric_limits<size_t>::max() / sizeof(T)) throw std::bad_alloc();
    const size_t bytes = count * sizeof(T);
    return reinterpret_cast<T*>((bytes <= kKeptWorkspaceBytes ? kept() : own_).reserve(bytes));
  }

 private:
  static HugePageMemory& kept() {
    static HugePageMemory memory;  // used under one_call_at_a_time only
    return memory;
  }
  HugePageMemory own_;
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

// acc[r][v] += sum_k A[r a_row + k a_k] * B[k ldb + v L .. + L) for R rows and NV vectors of
// L values (acc holds NA >= NV vectors a row: a caller's tile for its widest case): one
// register tile of a product, the NV L values of B's row k and one broadcast value of A held
// while they are multiplied.
template <typename T, int R, int NV, int NA>
inline __attribute__((always_inline)) void tile_product(const T* A, int64_t a_row, int64_t a_k, const T* B,
                                                        int64_t ldb, int64_t K, typename Simd<T>::V acc[R][NA]) {
  static_assert(NV <= NA, "acc must hold the panel's vectors");
  using S = Simd<T>;
  constexpr int L = S::L;
  for (int64_t k = 0; k < K; ++k) {
    const T* b = B + k * ldb;
    typename S::V bv[NV];
    for (int v = 0; v < NV; ++v) bv[v] = S::load(b + v * L);
    for (int r = 0; r < R; ++r) {
      typename S::V a = S::splat(A[r * a_row + k * a_k]);
      for (int v = 0; v < NV; ++v) acc[r][v] += a * bv[v];
    }
  }
}

// tile_product of nv (1 to 4) vectors, into acc[R][4].
template <typename T, int R>
inline void tile_product_of(int nv, const T* A, int64_t a_row, int64_t a_k, const T* B, int64_t ldb, int64_t K,
                            typename Simd<T>::V acc[R][4]) {
  switch (nv) {
    case 1:
      tile_product<T, R, 1, 4>(A, a_row, a_k, B, ldb, K, acc);
      break;
    case 2:
      tile_product<T, R, 2, 4>(A, a_row, a_k, B, ldb, K, acc);
      break;
    case 3:
      tile_product<T, R, 3, 4>(A, a_row, a_k, B, ldb, K, acc);
      break;
    default:
      tile_product<T, R, 4, 4>(A, a_row, a_k, B, ldb, K, acc);
  }
}

// acc[r][v] (+)= sum_k A[r][k] * B[k][v L .. (v + 1) L) for R rows of A (row stride lda) and
// one packed panel B (K rows of NV L values), v < NV: acc is set, or added to with
// `accumulate`. acc holds NA >= NV vectors a row.
template <typename T, int R, int NV = 4, int NA = NV>
inline void panel_product(const T* A, int64_t lda, const T* B, int64_t K, typename Simd<T>::V acc[R][NA],
                          bool accumulate = false) {
  if (!accumulate)
    for (int r = 0; r < R; ++r)
      for (int v = 0; v < NV; ++v) acc[r][v] = typename Simd<T>::V{};
  tile_product<T, R, NV, NA>(A, lda, 1, B, NV * Simd<T>::L, K, acc);
}

// The backward's panels of W^T (pack_transposed_panel): panel p holds the units [p 4L,
// min(H, (p + 1) 4L)) as panel_vectors(H, p) vectors of L, four but in the last panel, which
// has only as many as its units need (H = 200 in float32: 13 vectors a row of the packed weight,
// not 16). Each panel starts at p G 4L of the packed weight (G its rows).
template <typename T>
inline int panel_vectors(int64_t H, int64_t p) {
  constexpr int L = Simd<T>::L;
  return static_cast<int>(std::min<int64_t>(4, (H - p * 4 * L + L - 1) / L));
}

// panel_product of a backward panel of nv = panel_vectors(...) vectors (1 to 4), into acc[R][4].
template <typename T, int R>
inline void transposed_panel_product(int nv, const T* A, int64_t lda, const T* B, int64_t K,
                                     typename Simd<T>::V acc[R][4], bool accumulate = false) {
  if (!accumulate)
    for (int r = 0; r < R; ++r)
      for (int v = 0; v < nv; ++v) acc[r][v] = typename Simd<T>::V{};
  tile_product_of<T, R>(nv, A, lda, 1, B, nv * Simd<T>::L, K, acc);
}

// Calls tile<R'>(n0) for every row tile: R rows at a time, then the remaining fewer than R.
template <int R, typename Tile>
inline void for_each_row_tile(int64_t N, Tile&& tile) {
  static_assert(R <= 11, "the tails below go up to 10 rows");
  int64_t n0 = 0;
  for (; n0 + R <= N; n0 += R) tile(std::integral_constant<int, R>{}, n0);
  switch (N - n0) {
#define JAXSEQ_ROW_TAIL(k) \
  case k:                  \
    if constexpr (k < R) tile(std::integral_constant<int, k>{}, n0); \
    break;
    JAXSEQ_ROW_TAIL(1) JAXSEQ_ROW_TAIL(2) JAXSEQ_ROW_TAIL(3) JAXSEQ_ROW_TAIL(4) JAXSEQ_ROW_TAIL(5)
    JAXSEQ_ROW_TAIL(6) JAXSEQ_ROW_TAIL(7) JAXSEQ_ROW_TAIL(8) JAXSEQ_ROW_TAIL(9) JAXSEQ_ROW_TAIL(10)
#undef JAXSEQ_ROW_TAIL
    default:
      break;
  }
}

// ---------------------------------------------------------------- a call's loop

// Runs work(phase, item, thread) for the items(phase) items of each of `phases` phases on
// `threads` threads, the caller's among them (`thread`: 0 .. threads - 1, for memory of its
// own): each phase's items go to whichever thread takes the next (WorkQueue), and the threads
// meet between phases (StepBarrier), so a phase starts on what the one before completed.
template <typename Items, typename Work>
void run_phases(int threads, int64_t phases, Items&& items, Work&& work) {
  WorkQueue queue(phases);
  StepBarrier barrier(threads);
  std::atomic<int> thread_numbers{0};
  run_parallel(threads, [&] {
    const int thread = thread_numbers.fetch_add(1);
    for (int64_t phase = 0; phase < phases; ++phase) {
      if (phase > 0) barrier.wait();
      queue.run(phase, items(phase), [&](int64_t item) { work(phase, item, thread); });
    }
  });
}

// A loop's call: under the one-call lock, the packed weight's memory (`packed_count` values of T
// from the workspace) in `packed`, then up to `threads` threads (at most `max_threads`): they
// share out pack(item) for the `pack_items` items of the packing phase, then, at every step s,
// once all of them are done with what came before, step(s, item) for its `step_items` items.
template <typename T, typename Pack, typename Step>
void run_loop(T*& packed, int64_t packed_count, int threads, int64_t max_threads, int64_t steps,
              int64_t pack_items, Pack&& pack, int64_t step_items, Step&& step) {
  std::lock_guard<std::mutex> lock(one_call_at_a_time);
  PackedWorkspace workspace;
  packed = workspace.get<T>(static_cast<size_t>(packed_count));
  threads = static_cast<int>(std::min<int64_t>(threads, std::max<int64_t>(1, max_threads)));
  run_phases(
      threads, steps + 1, [&](int64_t phase) { return phase == 0 ? pack_items : step_items; },
      [&](int64_t phase, int64_t item, int) { phase == 0 ? pack(item) : step(phase - 1, item); });
}

// The time of the forward's step s: t = s, or T - 1 - s in reverse. The backward's step s is the
// forward's step T - 1 - s.
inline int64_t forward_time(int64_t s, int64_t steps, bool reverse) { return reverse ? steps - 1 - s : s; }

// The forward's panel p of a weight W (H, gates H) with the gates of L units interleaved:
// packed + p H gates L, row k: [W[k, g H + p L + l] for g < gates, l < L], 0 past H.
template <typename T>
void pack_gate_panel(const T* W, int64_t H, int gates, T* packed, int64_t p) {
  constexpr int L = Simd<T>::L;
  const int64_t lanes = std::min<int64_t>(L, H - p * L);
  for (int64_t k = 0; k < H; ++k)
    for (int g = 0; g < gates; ++g) {
      T* panel_row = packed + (p * H + k) * gates * L + g * L;
      std::memcpy(panel_row, W + k * gates * H + g * H + p * L, sizeof(T) * lanes);
      std::fill(panel_row + lanes, panel_row + L, T(0));
    }
}

// The backward's panel p of W^T for W (H, G): packed + p G 4L, row k (of G): [W[p 4L + l, k]
// for l < panel_vectors(H, p) L], 0 past H. Then unit_vector(u, lanes) for each vector of the
// panel's units.
template <typename T, typename UnitVector>
void pack_transposed_panel(const T* W, int64_t H, int64_t G, T* packed, int64_t p, UnitVector&& unit_vector) {
  constexpr int L = Simd<T>::L;
  const int64_t width = panel_vectors<T>(H, p) * L;
  T* panel = packed + p * G * 4 * L;
  for (int64_t k = 0; k < G; ++k)
    for (int64_t l = 0; l < width; ++l) {
      const int64_t unit = p * 4 * L + l;
      panel[k * width + l] = unit < H ? W[unit * G + k] : T(0);
    }
  for (int64_t u = p * 4 * L; u < std::min(H, (p + 1) * 4 * L); u += L)
    unit_vector(u, static_cast<int>(std::min<int64_t>(L, H - u)));
}

// A step's items: (panel of units, part of the rows). The rows are one part, or two split at a
// multiple of the row tile (`split`, when there are enough rows): the backward's items always,
// the forward's where its panels do not share out evenly between the threads (run_forward).
template <int Rows>
class RowParts {
 public:
  RowParts(int64_t N, bool split) : N_(N), split_(split ? std::min(N, Rows * ceil_div(ceil_div(N, Rows), 2)) : N) {}
  int64_t items(int64_t panels) const { return panels * parts(); }
  // tile(rows, n0, p) for each register tile of `item` (rows: std::integral_constant)
  template <typename Tile>
  void for_item(int64_t item, Tile&& tile) const {
    const int64_t p = item / parts(), first = item % parts() == 0 ? 0 : split_;
    const int64_t rows = item % parts() == 0 ? split_ : N_ - split_;
    for_each_row_tile<Rows>(rows, [&](auto r, int64_t n0) { tile(r, first + n0, p); });
  }

 private:
  int64_t parts() const { return split_ < N_ ? 2 : 1; }
  const int64_t N_, split_;
};

// A cell's forward loop, for loop arguments `a` with Wh (H, gates H), h0, h_tm, packed, steps,
// N, H, reverse: Wh packed by panels of L units with their `gates` gates interleaved, then at
// every step, for each item (panel; or panel and half of the rows where the panels do not share
// out evenly between the threads) and register tile of Rows rows, tile(rows, h_prev, t, n0, p)
// (rows: std::integral_constant). Splitting the rows reads each panel of the weight twice per
// step: at N=64 H=512 (32 panels, 2 threads) the loop took 71-77 ms against 66-70; at H=200 (13
// panels) 15.1-15.3 ms against 17.0-18.3 (T=128, 2-core Xeon).
template <int Rows, typename T, typename Args, typename Tile>
void run_forward(Args& a, int threads, int gates, Tile&& tile) {
  constexpr int L = Simd<T>::L;
  const int64_t H = a.H, panels = ceil_div(H, L);
  const RowParts<Rows> parts(a.N, panels % threads != 0);
  run_loop(a.packed, panels * H * gates * L, threads, parts.items(panels), a.steps,
           panels, [&](int64_t p) { pack_gate_panel<T>(a.Wh, H, gates, a.packed, p); },
           parts.items(panels), [&](int64_t s, int64_t item) {
             const int64_t t = forward_time(s, a.steps, a.reverse);
             const T* h_prev = s == 0 ? a.h0 : a.h_tm + forward_time(s - 1, a.steps, a.reverse) * a.N * H;
             parts.for_item(item, [&](auto rows, int64_t n0, int64_t p) { tile(rows, h_prev, t, n0, p); });
           });
}

// A cell's backward loop, for loop arguments `a` with Wh (H, G), packed, steps, N, H, reverse:
// Wh^T packed by panels of 4 L units (pack_transposed_panel), each panel followed by the last
// step's elementwise part for its units, cell(t_last, n, u, lanes, the carried gradient from
// `carry` (N, H)); then at every step t, for each (panel, half of the rows) and register tile,
// tile(rows, t, t_next, n0, p), t_next -1 after the first step.
template <typename T, typename Args, typename Cell, typename Tile>
void run_backward(Args& a, int threads, int64_t G, const T* carry, Cell&& cell, Tile&& tile) {
  using S = Simd<T>;
  constexpr int L = S::L;
  const int64_t H = a.H, panels = ceil_div(H, 4 * L), t_last = forward_time(a.steps - 1, a.steps, a.reverse);
  const RowParts<kRows> halves(a.N, true);
  run_loop(a.packed, panels * G * 4 * L, threads, halves.items(panels), a.steps,
           panels, [&](int64_t p) {
             pack_transposed_panel<T>(a.Wh, H, G, a.packed, p, [&](int64_t u, int lanes) {
               for (int64_t n = 0; n < a.N; ++n) cell(t_last, n, u, lanes, S::load(carry + n * H + u, lanes));
             });
           },
           halves.items(panels), [&](int64_t s, int64_t item) {
             const int64_t t = forward_time(a.steps - 1 - s, a.steps, a.reverse);
             const int64_t t_next = s == a.steps - 1 ? -1 : forward_time(a.steps - 2 - s, a.steps, a.reverse);
             halves.for_item(item, [&](auto rows, int64_t n0, int64_t p) { tile(rows, t, t_next, n0, p); });
           });
}

// Runs a kernel's work, `run()`, turning what it throws into the FFI error the call returns
// (an exception must not cross into XLA): its workspace beyond the memory there is
// (RESOURCE_EXHAUSTED), anything else (INTERNAL), each message starting with `prefix`.
template <typename Run>
ffi::Error guarded(const std::string& prefix, Run&& run) {
  try {
    run();
    return ffi::Error::Success();
  } catch (const std::bad_alloc&) {
    return ffi::Error(ffi::ErrorCode::kResourceExhausted, prefix + "not enough memory for its workspace");
  } catch (const std::exception& e) {
    return ffi::Error::Internal(prefix + e.what());
  }
}

// run(T{}) for `type`, float32 or float64 (`guarded`); any other type is an InvalidArgument
// error starting with `prefix`.
template <typename Run>
ffi::Error for_float_type(ffi::DataType type, const std::string& prefix, Run&& run) {
  switch (type) {
    case ffi::DataType::F32:
      return guarded(prefix, [&] { run(float{}); });
    case ffi::DataType::F64:
      return guarded(prefix, [&] { run(double{}); });
    default:
      return ffi::Error::InvalidArgument(prefix + "float32 or float64 only");
  }
}

// An FFI handler's checks: `buffer` is (T, N, gates H), or the same as rows (T N, gates H), with
// T, N, H positive and `lengths` (N,); then run(T{}, steps, N, H) for its dtype, float32 or
// float64 (the other buffers share it: jaxseq.kernels.lstm / gru make them).
template <typename Run>
ffi::Error on_gate_buffer(const char* kernel, int gates, const ffi::AnyBuffer& buffer, const char* name,
                          const ffi::Buffer<ffi::S32>& lengths, Run run) {
  const std::string prefix = std::string("jaxseq ") + kernel + " kernel: ";
  if (lengths.dimensions().size() != 1 || lengths.dimensions()[0] < 1)
    return ffi::Error::InvalidArgument(prefix + "lengths must be (N,) with N positive");
  const int64_t N = lengths.dimensions()[0];
  auto dims = buffer.dimensions();
  const bool steps_first = dims.size() == 3 && dims[1] == N;  // (T, N, gates H)
  const bool as_rows = dims.size() == 2 && dims[0] % N == 0;   // (T N, gates H)
  if (!(steps_first || as_rows) || dims[0] < 1 || dims.back() < gates || dims.back() % gates != 0)
    return ffi::Error::InvalidArgument(prefix + name + " must be (T, N, " + std::to_string(gates) + "H) or (T N, " +
                                       std::to_string(gates) + "H) with T, N and H positive, N as lengths'");
  const int64_t steps = as_rows ? dims[0] / N : dims[0];
  return for_float_type(buffer.element_type(), prefix, [&](auto zero) { run(zero, steps, N, dims.back() / gates); });
}

}  // namespace
