// Fused masked LSTM over time: forward op and backward op (CPU kernels; CUDA kernels when built
// with GOOGLE_CUDA, launching the TF-header-free functions of lstm.cu).
//
// Gate order along the 4n axis of z / v_h / gates: cell input j, input gate i, forget gate f,
// output gate o. One step, for each (t, b) with mask[t, b] > 0:
//   a = z[t] + h_prev @ v_h;  j = tanh(a_j), i = sig(a_i), f = sig(a_f), o = sig(a_o)
//   c = f * c_prev + i * j;   h = o * tanh(c);   y[t] = h
// Frames with mask 0 keep the state and output 0. direction -1 walks t = T-1 .. 0.

#if GOOGLE_CUDA
#define EIGEN_USE_GPU  // before any Eigen include: makes Eigen::GpuDevice (and its stream) complete
#endif

#include <algorithm>
#include <cstring>
#include <vector>

#include "Eigen/Core"
#include "lstm_gemm.h"
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/shape_inference.h"

using tensorflow::DEVICE_CPU;
using tensorflow::DEVICE_GPU;
using tensorflow::OpKernel;
using tensorflow::OpKernelConstruction;
using tensorflow::OpKernelContext;
using tensorflow::Status;
using tensorflow::Tensor;
using tensorflow::TensorShape;
using tensorflow::shape_inference::DimensionHandle;
using tensorflow::shape_inference::InferenceContext;
using tensorflow::shape_inference::ShapeHandle;

namespace {

Status ForwardShape(InferenceContext* ctx) {
  ShapeHandle z, v;
  TF_RETURN_IF_ERROR(ctx->WithRank(ctx->input(0), 3, &z));
  TF_RETURN_IF_ERROR(ctx->WithRank(ctx->input(1), 2, &v));
  DimensionHandle time = ctx->Dim(z, 0), batch = ctx->Dim(z, 1), gates = ctx->Dim(z, 2), n = ctx->Dim(v, 0);
  ctx->set_output(0, ctx->MakeShape({time, batch, n}));
  ctx->set_output(1, ctx->MakeShape({time, batch, n}));
  ctx->set_output(2, ctx->MakeShape({time, batch, gates}));
  ctx->set_output(3, ctx->MakeShape({batch, n}));
  ctx->set_output(4, ctx->MakeShape({batch, n}));
  return Status();
}

Status BackwardShape(InferenceContext* ctx) {
  ShapeHandle v, y, gates;
  TF_RETURN_IF_ERROR(ctx->WithRank(ctx->input(0), 2, &v));
  TF_RETURN_IF_ERROR(ctx->WithRank(ctx->input(4), 3, &y));
  TF_RETURN_IF_ERROR(ctx->WithRank(ctx->input(6), 3, &gates));
  ctx->set_output(0, gates);
  ctx->set_output(1, y);
  ctx->set_output(2, ctx->MakeShape({ctx->Dim(y, 1), ctx->Dim(v, 0)}));
  ctx->set_output(3, ctx->MakeShape({ctx->Dim(y, 1), ctx->Dim(v, 0)}));
  return Status();
}

}  // namespace

REGISTER_OP("ReturnnNativeLstm")
    .Input("z: T")      // [T, B, 4n] input projection incl. bias
    .Input("v_h: T")    // [n, 4n] recurrent weights
    .Input("c0: T")     // [B, n]
    .Input("y0: T")     // [B, n]
    .Input("mask: T")   // [T, B] 1 on valid frames
    .Output("y: T")     // [T, B, n] 0 on masked frames
    .Output("c: T")     // [T, B, n] cell state carried after each frame
    .Output("gates: T") // [T, B, 4n] gate activations (for the gradient)
    .Output("final_c: T")
    .Output("final_y: T")
    .Attr("T: {float, double}")
    .Attr("direction: int = 1")
    .Attr("cell_grad_clip: float = 0.0")
    .SetShapeFn(ForwardShape)
    .Doc("Fused masked LSTM over all time steps; see lstm.cc for the gate order.");

REGISTER_OP("ReturnnNativeLstmGrad")
    .Input("v_h: T")
    .Input("c0: T")
    .Input("y0: T")
    .Input("mask: T")
    .Input("y: T")
    .Input("c: T")
    .Input("gates: T")
    .Input("dy: T")
    .Input("dfinal_c: T")
    .Input("dfinal_y: T")
    .Output("dz: T")      // [T, B, 4n]
    .Output("h_prev: T")  // [T, B, n] recurrent input of each frame; dv_h = h_prev^T dz
    .Output("dc0: T")
    .Output("dy0: T")
    .Attr("T: {float, double}")
    .Attr("direction: int = 1")
    .Attr("cell_grad_clip: float = 0.0")
    .SetShapeFn(BackwardShape)
    .Doc("Gradient of ReturnnNativeLstm w.r.t. z, c0, y0; the v_h gradient is one matmul outside.");

namespace {

template <typename T>
using RowMatrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <typename T>
using MatrixMap = Eigen::Map<RowMatrix<T>>;
template <typename T>
using ConstMatrixMap = Eigen::Map<const RowMatrix<T>>;
template <typename T>
using ArrayMap = Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>>;
template <typename T>
using ConstArrayMap = Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>>;

// The two per-step products with v_h [n, 4n], single-threaded (TF's pool runs other ops meanwhile).
template <typename T>
class RecurrentProduct {
 public:
  RecurrentProduct(const T* v, int n, bool need_forward, bool need_backward) : v_(v), n_(n) {}
  // out[B, 4n] += h[B, n] @ v
  void Forward(const T* h, int batch, T* out) const {
    MatrixMap<T>(out, batch, 4 * n_).noalias() += ConstMatrixMap<T>(h, batch, n_) * ConstMatrixMap<T>(v_, n_, 4 * n_);
  }
  // out[B, n] = d[B, 4n] @ v^T
  void Backward(const T* d, int batch, T* out) const {
    MatrixMap<T>(out, batch, n_).noalias() =
        ConstMatrixMap<T>(d, batch, 4 * n_) * ConstMatrixMap<T>(v_, n_, 4 * n_).transpose();
  }

 private:
  const T* v_;
  int n_;
};

#ifdef RETURNN_LSTM_HAVE_AVX2
template <>
class RecurrentProduct<float> {
 public:
  RecurrentProduct(const float* v, int n, bool need_forward, bool need_backward) : n_(n) {
    if (need_forward) returnn_lstm::pack_matrix(v, 4L * n, 1, n, 4 * n, &v_);
    if (need_backward) returnn_lstm::pack_matrix(v, 1, 4L * n, 4 * n, n, &v_t_);
  }
  void Forward(const float* h, int batch, float* out) const {
    returnn_lstm::packed_product(batch, h, n_, v_, out, 4L * n_, true);
  }
  void Backward(const float* d, int batch, float* out) const {
    returnn_lstm::packed_product(batch, d, 4L * n_, v_t_, out, n_, false);
  }

 private:
  int n_;
  returnn_lstm::PackedMatrix v_, v_t_;
};
#endif

// Validates the inputs shared by both ops.
Status CheckShapes(const Tensor& v, const Tensor& c0, const Tensor& y0, const Tensor& mask, int64_t time,
                   int64_t batch, int64_t n) {
  if (v.dims() != 2 || v.dim_size(0) != n || v.dim_size(1) != 4 * n)
    return tensorflow::errors::InvalidArgument("v_h must be [n, 4n] with n = ", n, ", got ", v.shape().DebugString());
  if (c0.shape() != TensorShape({batch, n}) || y0.shape() != TensorShape({batch, n}))
    return tensorflow::errors::InvalidArgument("c0 and y0 must be [B, n] = [", batch, ", ", n, "], got ",
                                               c0.shape().DebugString(), " and ", y0.shape().DebugString());
  if (mask.shape() != TensorShape({time, batch}))
    return tensorflow::errors::InvalidArgument("mask must be [T, B] = [", time, ", ", batch, "], got ",
                                               mask.shape().DebugString());
  return Status();
}

// The forward op's inputs, checked, and its five outputs, allocated (shared by the CPU and GPU kernels).
struct ForwardArgs {
  const Tensor *z, *v, *c0, *y0, *mask;
  int64_t time = 0, batch = 0, n = 0;
  Tensor *y = nullptr, *c = nullptr, *gates = nullptr, *final_c = nullptr, *final_y = nullptr;
};

Status PrepareForward(OpKernelContext* ctx, ForwardArgs* a) {
  a->z = &ctx->input(0), a->v = &ctx->input(1), a->c0 = &ctx->input(2), a->y0 = &ctx->input(3);
  a->mask = &ctx->input(4);
  if (a->z->dims() != 3 || a->z->dim_size(2) % 4 != 0)
    return tensorflow::errors::InvalidArgument("z must be [T, B, 4n], got ", a->z->shape().DebugString());
  a->time = a->z->dim_size(0), a->batch = a->z->dim_size(1), a->n = a->z->dim_size(2) / 4;
  TF_RETURN_IF_ERROR(CheckShapes(*a->v, *a->c0, *a->y0, *a->mask, a->time, a->batch, a->n));
  const TensorShape frames({a->time, a->batch, a->n}), state({a->batch, a->n});
  TF_RETURN_IF_ERROR(ctx->allocate_output(0, frames, &a->y));
  TF_RETURN_IF_ERROR(ctx->allocate_output(1, frames, &a->c));
  TF_RETURN_IF_ERROR(ctx->allocate_output(2, a->z->shape(), &a->gates));
  TF_RETURN_IF_ERROR(ctx->allocate_output(3, state, &a->final_c));
  return ctx->allocate_output(4, state, &a->final_y);
}

// The backward op's inputs, checked, and its four outputs, allocated (shared by the CPU and GPU kernels).
struct BackwardArgs {
  const Tensor *v, *c0, *y0, *mask, *y, *c, *gates, *dy, *dfinal_c, *dfinal_y;
  int64_t time = 0, batch = 0, n = 0;
  Tensor *dz = nullptr, *h_prev = nullptr, *dc0 = nullptr, *dy0 = nullptr;
};

Status PrepareBackward(OpKernelContext* ctx, BackwardArgs* a) {
  a->v = &ctx->input(0), a->c0 = &ctx->input(1), a->y0 = &ctx->input(2), a->mask = &ctx->input(3);
  a->y = &ctx->input(4), a->c = &ctx->input(5), a->gates = &ctx->input(6), a->dy = &ctx->input(7);
  a->dfinal_c = &ctx->input(8), a->dfinal_y = &ctx->input(9);
  if (a->y->dims() != 3) return tensorflow::errors::InvalidArgument("y must be [T, B, n]");
  a->time = a->y->dim_size(0), a->batch = a->y->dim_size(1), a->n = a->y->dim_size(2);
  TF_RETURN_IF_ERROR(CheckShapes(*a->v, *a->c0, *a->y0, *a->mask, a->time, a->batch, a->n));
  if (a->c->shape() != a->y->shape() || a->dy->shape() != a->y->shape() ||
      a->gates->shape() != TensorShape({a->time, a->batch, 4 * a->n}) || a->dfinal_c->shape() != a->c0->shape() ||
      a->dfinal_y->shape() != a->c0->shape())
    return tensorflow::errors::InvalidArgument("inconsistent shapes of c, gates, dy, dfinal_c, dfinal_y");
  TF_RETURN_IF_ERROR(ctx->allocate_output(0, a->gates->shape(), &a->dz));
  TF_RETURN_IF_ERROR(ctx->allocate_output(1, a->y->shape(), &a->h_prev));
  TF_RETURN_IF_ERROR(ctx->allocate_output(2, a->c0->shape(), &a->dc0));
  return ctx->allocate_output(3, a->c0->shape(), &a->dy0);
}

// Frame index of the s-th processed step.
inline int64_t FrameAt(int64_t s, int64_t time, int direction) { return direction >= 0 ? s : time - 1 - s; }

template <typename T>
class NativeLstmOp : public OpKernel {
 public:
  explicit NativeLstmOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("direction", &direction_));
  }

  void Compute(OpKernelContext* ctx) override {
    ForwardArgs a;
    OP_REQUIRES_OK(ctx, PrepareForward(ctx, &a));
    const Tensor &z = *a.z, &v = *a.v, &c0 = *a.c0, &y0 = *a.y0, &mask = *a.mask;
    const int64_t time = a.time, batch = a.batch, n = a.n;
    Tensor *y = a.y, *c = a.c, *gates = a.gates, *final_c = a.final_c, *final_y = a.final_y;
    T* cs = final_c->flat<T>().data();
    T* hs = final_y->flat<T>().data();
    std::copy_n(c0.flat<T>().data(), batch * n, cs);
    std::copy_n(y0.flat<T>().data(), batch * n, hs);
    if (time == 0 || batch == 0 || n == 0) return;
    const RecurrentProduct<T> product(v.flat<T>().data(), n, true, false);
    for (int64_t s = 0; s < time; ++s) {
      const int64_t t = FrameAt(s, time, direction_);
      T* g = gates->flat<T>().data() + t * batch * 4 * n;
      std::copy_n(z.flat<T>().data() + t * batch * 4 * n, batch * 4 * n, g);
      product.Forward(hs, batch, g);
      const T* m = mask.flat<T>().data() + t * batch;
      for (int64_t b = 0; b < batch; ++b)
        Cell(m[b] > T(0), n, g + b * 4 * n, cs + b * n, hs + b * n, y->flat<T>().data() + (t * batch + b) * n,
             c->flat<T>().data() + (t * batch + b) * n);
    }
  }

 private:
  // One frame of one sequence: gate pre-activations g[4n] -> activations in place; updates state.
  static void Cell(bool valid, int64_t n, T* g, T* c_state, T* h_state, T* y_out, T* c_out) {
    if (!valid) {
      std::fill_n(g, 4 * n, T(0));
      std::fill_n(y_out, n, T(0));
      std::copy_n(c_state, n, c_out);
      return;
    }
    ArrayMap<T> j(g, n), i(g + n, n), f(g + 2 * n, n), o(g + 3 * n, n), cell(c_state, n), h(h_state, n);
    j = j.tanh();
    i = i.logistic();
    f = f.logistic();
    o = o.logistic();
    cell = f * cell + i * j;
    h = o * cell.tanh();
    std::copy_n(c_state, n, c_out);
    std::copy_n(h_state, n, y_out);
  }

  int direction_ = 1;
};

template <typename T>
class NativeLstmGradOp : public OpKernel {
 public:
  explicit NativeLstmGradOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("direction", &direction_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("cell_grad_clip", &clip_));
  }

  void Compute(OpKernelContext* ctx) override {
    BackwardArgs a;
    OP_REQUIRES_OK(ctx, PrepareBackward(ctx, &a));
    const Tensor &v = *a.v, &c0 = *a.c0, &y0 = *a.y0, &mask = *a.mask, &y = *a.y, &c = *a.c, &gates = *a.gates,
                 &dy = *a.dy, &dfinal_c = *a.dfinal_c, &dfinal_y = *a.dfinal_y;
    const int64_t time = a.time, batch = a.batch, n = a.n;
    Tensor *dz = a.dz, *h_prev = a.h_prev, *dc0 = a.dc0, *dy0 = a.dy0;
    T* dc = dc0->flat<T>().data();
    T* dh = dy0->flat<T>().data();
    std::copy_n(dfinal_c.flat<T>().data(), batch * n, dc);
    std::copy_n(dfinal_y.flat<T>().data(), batch * n, dh);
    if (time == 0 || batch == 0 || n == 0) return;
    FillPrevOutputs(y0.flat<T>().data(), mask.flat<T>().data(), y.flat<T>().data(), time, batch, n,
                    h_prev->flat<T>().data());
    const RecurrentProduct<T> product(v.flat<T>().data(), n, false, true);
    std::vector<T> dh_step(batch * n);
    for (int64_t s = time - 1; s >= 0; --s) {
      const int64_t t = FrameAt(s, time, direction_);
      const T* c_prev = s == 0 ? c0.flat<T>().data() : c.flat<T>().data() + FrameAt(s - 1, time, direction_) * batch * n;
      const T* m = mask.flat<T>().data() + t * batch;
      T* d = dz->flat<T>().data() + t * batch * 4 * n;
      for (int64_t b = 0; b < batch; ++b) {
        const int64_t row = t * batch + b;
        if (!(m[b] > T(0))) {
          std::fill_n(d + b * 4 * n, 4 * n, T(0));
          continue;
        }
        CellGrad(n, gates.flat<T>().data() + row * 4 * n, c.flat<T>().data() + row * n, c_prev + b * n,
                 dy.flat<T>().data() + row * n, dc + b * n, dh + b * n, d + b * 4 * n);
      }
      product.Backward(d, batch, dh_step.data());
      for (int64_t b = 0; b < batch; ++b)
        if (m[b] > T(0)) std::copy_n(dh_step.data() + b * n, n, dh + b * n);
    }
  }

 private:
  // Recurrent input of each frame: the output carried from the previously processed valid frame.
  void FillPrevOutputs(const T* y0, const T* mask, const T* y, int64_t time, int64_t batch, int64_t n,
                       T* h_prev) const {
    std::vector<const T*> carried(batch);
    for (int64_t b = 0; b < batch; ++b) carried[b] = y0 + b * n;
    for (int64_t s = 0; s < time; ++s) {
      const int64_t t = FrameAt(s, time, direction_);
      for (int64_t b = 0; b < batch; ++b) {
        std::copy_n(carried[b], n, h_prev + (t * batch + b) * n);
        if (mask[t * batch + b] > T(0)) carried[b] = y + (t * batch + b) * n;
      }
    }
  }

  // One valid frame backwards: writes d[4n] (pre-activation grads), updates dc to d c_prev.
  void CellGrad(int64_t n, const T* g, const T* c_cur, const T* c_prev, const T* dy, T* dc, const T* dh,
                T* d) const {
    ConstArrayMap<T> j(g, n), i(g + n, n), f(g + 2 * n, n), o(g + 3 * n, n), cell(c_cur, n), cp(c_prev, n),
        dy_a(dy, n), dh_a(dh, n);
    ArrayMap<T> dcell(dc, n), dj(d, n), di(d + n, n), df(d + 2 * n, n), d_o(d + 3 * n, n);
    const Eigen::Array<T, Eigen::Dynamic, 1> tc = cell.tanh();
    const Eigen::Array<T, Eigen::Dynamic, 1> dh_total = dy_a + dh_a;
    d_o = dh_total * tc * o * (T(1) - o);
    dcell += dh_total * o * (T(1) - tc * tc);
    if (clip_ > 0) dcell = dcell.max(T(-clip_)).min(T(clip_));
    dj = dcell * i * (T(1) - j * j);
    di = dcell * j * i * (T(1) - i);
    df = dcell * cp * f * (T(1) - f);
    dcell *= f;
  }

  int direction_ = 1;
  float clip_ = 0.f;
};

}  // namespace

REGISTER_KERNEL_BUILDER(Name("ReturnnNativeLstm").Device(DEVICE_CPU).TypeConstraint<float>("T"), NativeLstmOp<float>);
REGISTER_KERNEL_BUILDER(Name("ReturnnNativeLstm").Device(DEVICE_CPU).TypeConstraint<double>("T"), NativeLstmOp<double>);
REGISTER_KERNEL_BUILDER(Name("ReturnnNativeLstmGrad").Device(DEVICE_CPU).TypeConstraint<float>("T"),
                        NativeLstmGradOp<float>);
REGISTER_KERNEL_BUILDER(Name("ReturnnNativeLstmGrad").Device(DEVICE_CPU).TypeConstraint<double>("T"),
                        NativeLstmGradOp<double>);

#if GOOGLE_CUDA
#include "lstm_cuda.h"
#include "unsupported/Eigen/CXX11/Tensor"

namespace {

// GPU forward: the time loop of lstm.cu on the op's stream (float32 only).
class NativeLstmGpuOp : public OpKernel {
 public:
  explicit NativeLstmGpuOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("direction", &direction_));
  }

  void Compute(OpKernelContext* ctx) override {
    ForwardArgs a;
    OP_REQUIRES_OK(ctx, PrepareForward(ctx, &a));
    const Tensor &z = *a.z, &v = *a.v, &c0 = *a.c0, &y0 = *a.y0, &mask = *a.mask;
    const int64_t time = a.time, batch = a.batch, n = a.n;
    Tensor *y = a.y, *c = a.c, *gates = a.gates, *final_c = a.final_c, *final_y = a.final_y;
    const int rc = returnn_lstm_cuda_forward(
        ctx->eigen_gpu_device().stream(), time, batch, n, direction_, z.flat<float>().data(), v.flat<float>().data(),
        c0.flat<float>().data(), y0.flat<float>().data(), mask.flat<float>().data(), y->flat<float>().data(),
        c->flat<float>().data(), gates->flat<float>().data(), final_c->flat<float>().data(),
        final_y->flat<float>().data());
    OP_REQUIRES(ctx, rc == 0, tensorflow::errors::Internal("native LSTM CUDA forward: ",
                                                           returnn_lstm_cuda_error_string(rc), " (", rc, ")"));
  }

 private:
  int direction_ = 1;
};

// GPU backward, same outputs as the CPU kernel.
class NativeLstmGradGpuOp : public OpKernel {
 public:
  explicit NativeLstmGradGpuOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("direction", &direction_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("cell_grad_clip", &clip_));
  }

  void Compute(OpKernelContext* ctx) override {
    BackwardArgs a;
    OP_REQUIRES_OK(ctx, PrepareBackward(ctx, &a));
    const Tensor &v = *a.v, &c0 = *a.c0, &y0 = *a.y0, &mask = *a.mask, &y = *a.y, &c = *a.c, &gates = *a.gates,
                 &dy = *a.dy, &dfinal_c = *a.dfinal_c, &dfinal_y = *a.dfinal_y;
    const int64_t time = a.time, batch = a.batch, n = a.n;
    Tensor *dz = a.dz, *h_prev = a.h_prev, *dc0 = a.dc0, *dy0 = a.dy0;
    Tensor scratch;
    OP_REQUIRES_OK(ctx, ctx->allocate_temp(tensorflow::DT_FLOAT, c0.shape(), &scratch));
    const int rc = returnn_lstm_cuda_backward(
        ctx->eigen_gpu_device().stream(), time, batch, n, direction_, clip_, v.flat<float>().data(),
        c0.flat<float>().data(), y0.flat<float>().data(), mask.flat<float>().data(), y.flat<float>().data(),
        c.flat<float>().data(), gates.flat<float>().data(), dy.flat<float>().data(), dfinal_c.flat<float>().data(),
        dfinal_y.flat<float>().data(), dz->flat<float>().data(), h_prev->flat<float>().data(),
        dc0->flat<float>().data(), dy0->flat<float>().data(), scratch.flat<float>().data());
    OP_REQUIRES(ctx, rc == 0, tensorflow::errors::Internal("native LSTM CUDA backward: ",
                                                           returnn_lstm_cuda_error_string(rc), " (", rc, ")"));
  }

 private:
  int direction_ = 1;
  float clip_ = 0.f;
};

}  // namespace

REGISTER_KERNEL_BUILDER(Name("ReturnnNativeLstm").Device(DEVICE_GPU).TypeConstraint<float>("T"), NativeLstmGpuOp);
REGISTER_KERNEL_BUILDER(Name("ReturnnNativeLstmGrad").Device(DEVICE_GPU).TypeConstraint<float>("T"),
                        NativeLstmGradGpuOp);
#endif  // GOOGLE_CUDA
