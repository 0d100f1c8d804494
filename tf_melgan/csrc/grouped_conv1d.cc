// Grouped 1-D convolution ('valid', float32, NWC) and its two gradients for the MelGAN
// discriminator (kernel 41, stride 4, 4 input channels per group). TF's CPU grouped-conv
// gradients and XLA's framing + matmul are 3-30x off this machine's FMA rate; these loops
// keep 16 output (or input) channels in one SIMD vector and several frames in registers.
//
// Lanes: 16 consecutive output channels o0..o0+15.
//  - kBroadcast: out_per_group % 16 == 0, all lanes in one group: x is a broadcast scalar.
//  - kShuffle: in_per_group == out_per_group divides 16: the lanes span 16/cpg groups whose
//    inputs are the same 16 channels o0..o0+15; x is one 16-float load, shuffled per c.
// Built by tf_melgan/native.py with g++ -O3 -march=native.

#include <algorithm>
#include <cstring>
#include <vector>

#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/shape_inference.h"
#include "tensorflow/core/platform/threadpool.h"

namespace {

using tensorflow::int64;
using tensorflow::OpKernel;
using tensorflow::OpKernelConstruction;
using tensorflow::OpKernelContext;
using tensorflow::Tensor;
using tensorflow::TensorShape;
using tensorflow::errors::InvalidArgument;

typedef float v16 __attribute__((vector_size(64)));
typedef int v16i __attribute__((vector_size(64)));

inline v16 load(const float* p) { v16 v; std::memcpy(&v, p, sizeof v); return v; }
inline void store(float* p, v16 v) { std::memcpy(p, &v, sizeof v); }
inline v16 bcast(float s) { return (v16){} + s; }
inline v16 shuffle(v16 v, v16i idx) { return __builtin_shuffle(v, idx); }

struct Geom {
  int64 B, Tin, Cin, Tout, Cout, K, S, G, cig, cog;
  bool broadcast() const { return cog % 16 == 0; }
  // shuffle index per input channel c: lane l reads channel (l / cog) * cig + c of the 16
  v16i index(int64 c, int64 per_lane_group, int64 stride) const {
    v16i idx;
    for (int l = 0; l < 16; ++l) idx[l] = (l / per_lane_group) * stride + c;
    return idx;
  }
};

// Checks the grouping every op shares and fills cig / cog.
absl::Status Check(Geom* g) {
  if (g->G <= 0 || g->Cin % g->G != 0 || g->Cout % g->G != 0)
    return InvalidArgument("channels ", g->Cin, " -> ", g->Cout, " not divisible by groups ",
                           g->G);
  g->cig = g->Cin / g->G;
  g->cog = g->Cout / g->G;
  const bool ok = g->Cout % 16 == 0 && g->Cin % 16 == 0 && 16 % g->cig == 0 &&
                  (g->cog % 16 == 0 || (g->cig == g->cog && 16 % g->cog == 0));
  if (!ok)
    return InvalidArgument("unsupported grouping: ", g->cig, " in / ", g->cog,
                           " out channels per group, ", g->Cout, " out");
  return absl::OkStatus();
}

void ParallelFor(OpKernelContext* ctx, int64 units, int64 cost, std::function<void(int64, int64)> f) {
  auto* pool = ctx->device()->tensorflow_cpu_worker_threads()->workers;
  pool->ParallelFor(units, cost, std::move(f));
}

// ---------------------------------------------------------------- forward
template <int R>
void ForwardBlock(const Geom& g, const float* x, const float* w, float* y, int64 b, int64 o0,
                  int64 t0, const v16i* idx) {
  v16 acc[R];
  for (int r = 0; r < R; ++r) acc[r] = (v16){};
  const int64 xin = g.broadcast() ? (o0 / g.cog) * g.cig : o0;
  const float* xb = x + (b * g.Tin + t0 * g.S) * g.Cin + xin;
  if (g.broadcast()) {
    for (int64 k = 0; k < g.K; ++k)
      for (int64 c = 0; c < g.cig; ++c) {
        const v16 wv = load(w + (k * g.cig + c) * g.Cout + o0);
        for (int r = 0; r < R; ++r) acc[r] += bcast(xb[(r * g.S + k) * g.Cin + c]) * wv;
      }
  } else {
    for (int64 k = 0; k < g.K; ++k) {
      v16 wv[16];
      for (int64 c = 0; c < g.cig; ++c) wv[c] = load(w + (k * g.cig + c) * g.Cout + o0);
      for (int r = 0; r < R; ++r) {
        const v16 row = load(xb + (r * g.S + k) * g.Cin);
        for (int64 c = 0; c < g.cig; ++c) acc[r] += shuffle(row, idx[c]) * wv[c];
      }
    }
  }
  for (int r = 0; r < R; ++r) store(y + ((b * g.Tout + t0 + r) * g.Cout + o0), acc[r]);
}

class GroupedConv1DOp : public OpKernel {
 public:
  explicit GroupedConv1DOp(OpKernelConstruction* c) : OpKernel(c) {
    OP_REQUIRES_OK(c, c->GetAttr("stride", &stride_));
    OP_REQUIRES_OK(c, c->GetAttr("groups", &groups_));
  }
  void Compute(OpKernelContext* ctx) override {
    const Tensor& x = ctx->input(0);
    const Tensor& w = ctx->input(1);
    OP_REQUIRES(ctx, x.dims() == 3 && w.dims() == 3,
                InvalidArgument("input [B, T, C] and filter [K, C/groups, C_out] expected"));
    Geom g{x.dim_size(0), x.dim_size(1), x.dim_size(2), 0, w.dim_size(2), w.dim_size(0),
           stride_, groups_, 0, 0};
    OP_REQUIRES_OK(ctx, Check(&g));
    OP_REQUIRES(ctx, w.dim_size(1) == g.cig,
                InvalidArgument("filter has ", w.dim_size(1), " in channels per group, input ",
                                g.cig));
    g.Tout = g.Tin >= g.K ? (g.Tin - g.K) / g.S + 1 : 0;
    Tensor* y = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, TensorShape({g.B, g.Tout, g.Cout}), &y));
    if (y->NumElements() == 0) return;
    v16i idx[16];
    for (int c = 0; c < g.cig; ++c) idx[c] = g.index(c, g.cog, g.cig);
    const float* xp = x.flat<float>().data();
    const float* wp = w.flat<float>().data();
    float* yp = y->flat<float>().data();
    constexpr int R = 8, kSpan = 64;  // frames per register block, per work unit
    const int64 nob = g.Cout / 16, ntb = (g.Tout + kSpan - 1) / kSpan;
    ParallelFor(ctx, g.B * nob * ntb, kSpan * g.K * g.cig * 32, [&](int64 lo, int64 hi) {
      for (int64 u = lo; u < hi; ++u) {
        const int64 tb = u % ntb, ob = (u / ntb) % nob, b = u / (ntb * nob);
        const int64 t_end = std::min(g.Tout, (tb + 1) * kSpan);
        int64 t = tb * kSpan;
        for (; t + R <= t_end; t += R) ForwardBlock<R>(g, xp, wp, yp, b, ob * 16, t, idx);
        for (; t < t_end; ++t) ForwardBlock<1>(g, xp, wp, yp, b, ob * 16, t, idx);
      }
    });
  }

 private:
  int64 stride_, groups_;
};

// ---------------------------------------------------------------- input gradient
// Lanes: 16 consecutive input channels i0.., spanning nq = 16 / cig groups. Polyphase over
// the stride: dx[u*S + p] = sum_m dy[u - m] . w[p + S*m]. dy is first re-laid out as
// DT[b, t, ib, j, q] = dy[b, t, (ib*nq + q)*cog + j] so that for each j the nq values the
// lanes need are adjacent; weights as WP[k, j, ib, lane] = w[k, c(lane), group(lane)*cog + j].
template <int R, bool kCheck>
void InputBlock(const Geom& g, const float* dt, const float* wp, float* dx, int64 b, int64 ib,
                int64 p, int64 u0, v16i idx) {
  const int64 nq = 16 / g.cig, nib = g.Cin / 16, row = nib * g.cog * nq;
  v16 acc[R];
  for (int r = 0; r < R; ++r) acc[r] = (v16){};
  for (int64 k = p; k < g.K; k += g.S) {
    const int64 m = (k - p) / g.S;
    for (int64 j = 0; j < g.cog; ++j) {
      const v16 wv = load(wp + ((k * g.cog + j) * nib + ib) * 16);
      for (int r = 0; r < R; ++r) {
        const int64 t = u0 + r - m;
        if (kCheck && (t < 0 || t >= g.Tout)) continue;
        const float* d = dt + (b * g.Tout + t) * row + (ib * g.cog + j) * nq;
        acc[r] += shuffle(load(d), idx) * wv;
      }
    }
  }
  for (int r = 0; r < R; ++r) {
    const int64 tau = (u0 + r) * g.S + p;
    if (!kCheck || tau < g.Tin) store(dx + (b * g.Tin + tau) * g.Cin + ib * 16, acc[r]);
  }
}

class GroupedConv1DBackpropInputOp : public OpKernel {
 public:
  explicit GroupedConv1DBackpropInputOp(OpKernelConstruction* c) : OpKernel(c) {
    OP_REQUIRES_OK(c, c->GetAttr("stride", &stride_));
    OP_REQUIRES_OK(c, c->GetAttr("groups", &groups_));
  }
  void Compute(OpKernelContext* ctx) override {
    const Tensor& x = ctx->input(0);  // for its shape
    const Tensor& w = ctx->input(1);
    const Tensor& dy = ctx->input(2);
    Geom g{x.dim_size(0), x.dim_size(1), x.dim_size(2), dy.dim_size(1), w.dim_size(2),
           w.dim_size(0), stride_, groups_, 0, 0};
    OP_REQUIRES_OK(ctx, Check(&g));
    OP_REQUIRES(ctx, g.Cin % 16 == 0 && dy.dim_size(0) == g.B && dy.dim_size(2) == g.Cout,
                InvalidArgument("bad shapes for the input gradient"));
    Tensor* dx = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, x.shape(), &dx));
    float* dxp = dx->flat<float>().data();
    if (dx->NumElements() == 0) return;
    const int64 nq = 16 / g.cig, nib = g.Cin / 16;
    const float* dyp = dy.flat<float>().data();
    const float* w0 = w.flat<float>().data();
    // Re-laid-out dy (+16 floats: the last shuffled load reads past the end) and weights.
    std::vector<float> dt(g.B * g.Tout * g.Cout + 16), wp(g.K * g.cog * g.Cin);
    const int64 rows = g.B * g.Tout;
    ParallelFor(ctx, rows, g.Cout * 2, [&](int64 lo, int64 hi) {
      for (int64 bt = lo; bt < hi; ++bt)
        for (int64 ib = 0; ib < nib; ++ib)
          for (int64 j = 0; j < g.cog; ++j)
            for (int64 q = 0; q < nq; ++q)
              dt[bt * g.Cout + (ib * g.cog + j) * nq + q] =
                  dyp[bt * g.Cout + (ib * nq + q) * g.cog + j];
    });
    for (int64 k = 0; k < g.K; ++k)
      for (int64 j = 0; j < g.cog; ++j)
        for (int64 i = 0; i < g.Cin; ++i)
          wp[(k * g.cog + j) * g.Cin + i] =
              w0[(k * g.cig + i % g.cig) * g.Cout + (i / g.cig) * g.cog + j];
    v16i idx;
    for (int l = 0; l < 16; ++l) idx[l] = l / g.cig;
    constexpr int R = 8;
    const int64 nu = (g.Tin + g.S - 1) / g.S, nub = (nu + R - 1) / R;
    ParallelFor(ctx, g.B * nib * g.S * nub, R * g.K * g.cog * 4, [&](int64 lo, int64 hi) {
      for (int64 n = lo; n < hi; ++n) {
        const int64 ub = n % nub, p = (n / nub) % g.S, ib = (n / (nub * g.S)) % nib,
                    b = n / (nub * g.S * nib);
        const int64 u0 = ub * R, mmax = (g.K - 1 - p) / g.S;
        const bool inside = u0 - mmax >= 0 && u0 + R - 1 < g.Tout && (u0 + R - 1) * g.S + p < g.Tin;
        if (inside)
          InputBlock<R, false>(g, dt.data(), wp.data(), dxp, b, ib, p, u0, idx);
        else  // edges: frames whose taps fall outside dy, or dx rows past the end
          InputBlock<R, true>(g, dt.data(), wp.data(), dxp, b, ib, p, u0, idx);
      }
    });
  }

 private:
  int64 stride_, groups_;
};

// ---------------------------------------------------------------- filter gradient
// dw[k, c, o] = sum_{b,t} x[b, t*S + k, in(o, c)] * dy[b, t, o]; lanes as in the forward.
// A work unit owns one 16-lane column block and a range of batch items; frames go in tiles
// so dy's tile stays in L1 while every (k, c) pair of the block is accumulated.
template <bool kBroadcast, int RK>
void FilterPairs(const Geom& g, const float* x, const float* dy, v16* acc, int64 o0, int64 xin,
                 int64 b, int64 t0, int64 t1, int64 j0, int64 nj, const v16i* idx) {
  int64 off[RK];
  v16i id[RK];
  v16 a[RK];
  for (int r = 0; r < RK; ++r) {
    const int64 j = std::min(j0 + r, j0 + nj - 1), k = j / g.cig, c = j % g.cig;
    off[r] = k * g.Cin + (kBroadcast ? c : 0);
    id[r] = idx[c];
    a[r] = r < nj ? acc[j0 + r] : (v16){};
  }
  for (int64 t = t0; t < t1; ++t) {
    const v16 d = load(dy + (b * g.Tout + t) * g.Cout + o0);
    const float* xr = x + (b * g.Tin + t * g.S) * g.Cin + xin;
    for (int r = 0; r < RK; ++r)
      a[r] += (kBroadcast ? bcast(xr[off[r]]) : shuffle(load(xr + off[r]), id[r])) * d;
  }
  for (int64 r = 0; r < nj; ++r) acc[j0 + r] = a[r];
}

template <bool kBroadcast>
void FilterUnit(const Geom& g, const float* x, const float* dy, float* dw, int64 o0, int64 b0,
                int64 b1, const v16i* idx) {
  constexpr int kTile = 128, RK = 12;
  const int64 kc = g.K * g.cig;
  const int64 xin = kBroadcast ? (o0 / g.cog) * g.cig : o0;
  std::vector<v16> acc(kc + RK, (v16){});
  for (int64 b = b0; b < b1; ++b)
    for (int64 t0 = 0; t0 < g.Tout; t0 += kTile) {
      const int64 t1 = std::min(g.Tout, t0 + kTile);
      for (int64 j0 = 0; j0 < kc; j0 += RK)
        FilterPairs<kBroadcast, RK>(g, x, dy, acc.data(), o0, xin, b, t0, t1, j0,
                                    std::min<int64>(RK, kc - j0), idx);
    }
  for (int64 j = 0; j < kc; ++j) store(dw + j * g.Cout + o0, acc[j]);
}

class GroupedConv1DBackpropFilterOp : public OpKernel {
 public:
  explicit GroupedConv1DBackpropFilterOp(OpKernelConstruction* c) : OpKernel(c) {
    OP_REQUIRES_OK(c, c->GetAttr("stride", &stride_));
    OP_REQUIRES_OK(c, c->GetAttr("groups", &groups_));
    OP_REQUIRES_OK(c, c->GetAttr("kernel_size", &kernel_size_));
  }
  void Compute(OpKernelContext* ctx) override {
    const Tensor& x = ctx->input(0);
    const Tensor& dy = ctx->input(1);
    Geom g{x.dim_size(0), x.dim_size(1), x.dim_size(2), dy.dim_size(1), dy.dim_size(2),
           kernel_size_, stride_, groups_, 0, 0};
    OP_REQUIRES_OK(ctx, Check(&g));
    OP_REQUIRES(ctx, dy.dim_size(0) == g.B &&
                         (g.Tout == 0 || (g.Tout - 1) * g.S + g.K <= g.Tin),
                InvalidArgument("bad shapes for the filter gradient"));
    Tensor* dw = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, TensorShape({g.K, g.cig, g.Cout}), &dw));
    float* dwp = dw->flat<float>().data();
    v16i idx[16];
    for (int c = 0; c < g.cig; ++c) idx[c] = g.index(c, g.cog, g.cig);
    const int64 nob = g.Cout / 16;
    const int threads = ctx->device()->tensorflow_cpu_worker_threads()->num_threads;
    // Split the batch too when there are few column blocks; partial sums added after.
    const int64 nbc = std::max<int64>(1, std::min<int64>(g.B, (4 * threads + nob - 1) / nob));
    const int64 size = g.K * g.cig * g.Cout;
    std::vector<float> part(nbc > 1 ? (nbc - 1) * size : 0);
    const float* xp = x.flat<float>().data();
    const float* dyp = dy.flat<float>().data();
    ParallelFor(ctx, nob * nbc, g.B / nbc * g.Tout * g.K * g.cig * 32, [&](int64 lo, int64 hi) {
      for (int64 u = lo; u < hi; ++u) {
        const int64 ob = u % nob, bc = u / nob;
        float* out = bc == 0 ? dwp : part.data() + (bc - 1) * size;
        const int64 b0 = g.B * bc / nbc, b1 = g.B * (bc + 1) / nbc;
        if (g.broadcast())
          FilterUnit<true>(g, xp, dyp, out, ob * 16, b0, b1, idx);
        else
          FilterUnit<false>(g, xp, dyp, out, ob * 16, b0, b1, idx);
      }
    });
    for (int64 bc = 1; bc < nbc; ++bc)
      for (int64 i = 0; i < size; ++i) dwp[i] += part[(bc - 1) * size + i];
  }

 private:
  int64 stride_, groups_, kernel_size_;
};

}  // namespace

using tensorflow::shape_inference::DimensionHandle;
using tensorflow::shape_inference::InferenceContext;
using tensorflow::shape_inference::ShapeHandle;

REGISTER_OP("MelganGroupedConv1D")
    .Input("input: float")
    .Input("filter: float")
    .Output("output: float")
    .Attr("stride: int >= 1")
    .Attr("groups: int >= 1")
    .SetShapeFn([](InferenceContext* c) {
      ShapeHandle x, w;
      TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 3, &x));
      TF_RETURN_IF_ERROR(c->WithRank(c->input(1), 3, &w));
      int64_t stride;
      TF_RETURN_IF_ERROR(c->GetAttr("stride", &stride));
      DimensionHandle t = c->UnknownDim();
      if (c->ValueKnown(c->Dim(x, 1)) && c->ValueKnown(c->Dim(w, 0))) {
        const int64_t tin = c->Value(c->Dim(x, 1)), k = c->Value(c->Dim(w, 0));
        t = c->MakeDim(tin >= k ? (tin - k) / stride + 1 : 0);
      }
      c->set_output(0, c->MakeShape({c->Dim(x, 0), t, c->Dim(w, 2)}));
      return absl::OkStatus();
    });

REGISTER_OP("MelganGroupedConv1DBackpropInput")
    .Input("input: float")
    .Input("filter: float")
    .Input("out_backprop: float")
    .Output("output: float")
    .Attr("stride: int >= 1")
    .Attr("groups: int >= 1")
    .SetShapeFn([](InferenceContext* c) {
      c->set_output(0, c->input(0));
      return absl::OkStatus();
    });

REGISTER_OP("MelganGroupedConv1DBackpropFilter")
    .Input("input: float")
    .Input("out_backprop: float")
    .Output("output: float")
    .Attr("stride: int >= 1")
    .Attr("groups: int >= 1")
    .Attr("kernel_size: int >= 1")
    .SetShapeFn([](InferenceContext* c) {
      ShapeHandle x, dy;
      TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 3, &x));
      TF_RETURN_IF_ERROR(c->WithRank(c->input(1), 3, &dy));
      int64_t k, groups;
      TF_RETURN_IF_ERROR(c->GetAttr("kernel_size", &k));
      TF_RETURN_IF_ERROR(c->GetAttr("groups", &groups));
      DimensionHandle cig = c->UnknownDim();
      if (c->ValueKnown(c->Dim(x, 2))) cig = c->MakeDim(c->Value(c->Dim(x, 2)) / groups);
      c->set_output(0, c->MakeShape({c->MakeDim(k), cig, c->Dim(dy, 2)}));
      return absl::OkStatus();
    });

REGISTER_KERNEL_BUILDER(Name("MelganGroupedConv1D").Device(tensorflow::DEVICE_CPU),
                        GroupedConv1DOp);
REGISTER_KERNEL_BUILDER(Name("MelganGroupedConv1DBackpropInput").Device(tensorflow::DEVICE_CPU),
                        GroupedConv1DBackpropInputOp);
REGISTER_KERNEL_BUILDER(Name("MelganGroupedConv1DBackpropFilter").Device(tensorflow::DEVICE_CPU),
                        GroupedConv1DBackpropFilterOp);
