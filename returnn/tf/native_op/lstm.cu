// CUDA kernels of the fused LSTM op: per time step one cuBLAS product with the recurrent weights
// and one fused element-wise kernel. No TensorFlow headers: lstm.cc calls the extern "C" functions
// of lstm_cuda.h with device pointers and the op's stream. Gate order j, i, f, o (see lstm.cc).

#include <cuda_runtime.h>
#if __has_include(<cublas_v2.h>)
#include <cublas_v2.h>
#else
#include "cublas_min.h"
#endif

#include <mutex>
#include <unordered_map>

#include "lstm_cuda.h"

namespace {

constexpr int kThreads = 256;
constexpr int kCublasErrorBase = 100000;  // cuBLAS status codes are reported as base + status

__device__ __forceinline__ float Sigmoid(float x) { return 1.f / (1.f + __expf(-x)); }

// One frame, all (b, k): gates [B, 4n] pre-activations -> activations; updates the carried state.
__global__ void ForwardCell(int batch, int n, const float* mask, float* gates, float* c_state, float* h_state,
                            float* y, float* c_out) {
  const int idx = blockIdx.x * blockDim.x + threadIdx.x;
  if (idx >= batch * n) return;
  const int b = idx / n, k = idx % n;
  float* g = gates + static_cast<long>(b) * 4 * n;
  if (mask[b] <= 0.f) {
    g[k] = g[n + k] = g[2 * n + k] = g[3 * n + k] = 0.f;
    y[idx] = 0.f;
    c_out[idx] = c_state[idx];
    return;
  }
  const float j = tanhf(g[k]), i = Sigmoid(g[n + k]), f = Sigmoid(g[2 * n + k]), o = Sigmoid(g[3 * n + k]);
  const float cell = f * c_state[idx] + i * j, h = o * tanhf(cell);
  g[k] = j;
  g[n + k] = i;
  g[2 * n + k] = f;
  g[3 * n + k] = o;
  c_state[idx] = c_out[idx] = cell;
  h_state[idx] = y[idx] = h;
}

// One frame backwards: dz [B, 4n] from the saved activations; dc becomes d c_prev on valid frames.
__global__ void BackwardCell(int batch, int n, float clip, const float* mask, const float* gates, const float* c_cur,
                             const float* c_prev, const float* dy, const float* dh, float* dc, float* dz) {
  const int idx = blockIdx.x * blockDim.x + threadIdx.x;
  if (idx >= batch * n) return;
  const int b = idx / n, k = idx % n;
  float* d = dz + static_cast<long>(b) * 4 * n;
  if (mask[b] <= 0.f) {
    d[k] = d[n + k] = d[2 * n + k] = d[3 * n + k] = 0.f;
    return;
  }
  const float* g = gates + static_cast<long>(b) * 4 * n;
  const float j = g[k], i = g[n + k], f = g[2 * n + k], o = g[3 * n + k];
  const float tc = tanhf(c_cur[idx]), dh_total = dy[idx] + dh[idx];
  float dcell = dc[idx] + dh_total * o * (1.f - tc * tc);
  if (clip > 0.f) dcell = fminf(fmaxf(dcell, -clip), clip);
  d[k] = dcell * i * (1.f - j * j);
  d[n + k] = dcell * j * i * (1.f - i);
  d[2 * n + k] = dcell * c_prev[idx] * f * (1.f - f);
  d[3 * n + k] = dh_total * tc * o * (1.f - o);
  dc[idx] = dcell * f;
}

// out = mask ? src : out, per (b, k); with copy_to != nullptr first copies out to copy_to.
__global__ void MaskedCarry(int batch, int n, const float* mask, const float* src, float* out, float* copy_to) {
  const int idx = blockIdx.x * blockDim.x + threadIdx.x;
  if (idx >= batch * n) return;
  if (copy_to) copy_to[idx] = out[idx];
  if (mask[idx / n] > 0.f) out[idx] = src[idx];
}

// One cuBLAS handle per device, created on first use (creating one per call is slow).
cublasHandle_t HandleForCurrentDevice(int* status) {
  static std::mutex mutex;
  static std::unordered_map<int, cublasHandle_t> handles;
  int device = 0;
  *status = cudaGetDevice(&device);
  if (*status) return nullptr;
  std::lock_guard<std::mutex> lock(mutex);
  auto it = handles.find(device);
  if (it != handles.end()) return it->second;
  cublasHandle_t handle = nullptr;
  const cublasStatus_t created = cublasCreate(&handle);
  if (created != CUBLAS_STATUS_SUCCESS) {
    *status = kCublasErrorBase + created;
    return nullptr;
  }
  handles[device] = handle;
  return handle;
}

inline int Blocks(int count) { return (count + kThreads - 1) / kThreads; }
inline int FrameAt(int s, int time, int direction) { return direction >= 0 ? s : time - 1 - s; }
inline int CublasCode(cublasStatus_t s) { return s == CUBLAS_STATUS_SUCCESS ? 0 : kCublasErrorBase + s; }

}  // namespace

extern "C" int returnn_lstm_cuda_forward(returnn_cuda_stream stream, int time, int batch, int n, int direction,
                                         const float* z, const float* v_h, const float* c0, const float* y0,
                                         const float* mask, float* y, float* c, float* gates, float* final_c,
                                         float* final_y) {
  int status = 0;
  const size_t state_bytes = sizeof(float) * batch * n, frame = static_cast<size_t>(batch) * 4 * n;
  if ((status = cudaMemcpyAsync(final_c, c0, state_bytes, cudaMemcpyDeviceToDevice, stream))) return status;
  if ((status = cudaMemcpyAsync(final_y, y0, state_bytes, cudaMemcpyDeviceToDevice, stream))) return status;
  if (time == 0 || batch == 0 || n == 0) return 0;
  cublasHandle_t handle = HandleForCurrentDevice(&status);
  if (!handle) return status;
  if ((status = CublasCode(cublasSetStream(handle, stream)))) return status;
  const float one = 1.f;
  for (int s = 0; s < time; ++s) {
    const int t = FrameAt(s, time, direction);
    float* g = gates + t * frame;
    if ((status = cudaMemcpyAsync(g, z + t * frame, sizeof(float) * frame, cudaMemcpyDeviceToDevice, stream)))
      return status;
    // Row-major g[B, 4n] += h[B, n] @ v[n, 4n], i.e. column-major g^T += v^T h^T.
    status = CublasCode(cublasSgemm(handle, CUBLAS_OP_N, CUBLAS_OP_N, 4 * n, batch, n, &one, v_h, 4 * n, final_y, n,
                                    &one, g, 4 * n));
    if (status) return status;
    ForwardCell<<<Blocks(batch * n), kThreads, 0, stream>>>(batch, n, mask + t * batch, g, final_c, final_y,
                                                           y + static_cast<size_t>(t) * batch * n,
                                                           c + static_cast<size_t>(t) * batch * n);
  }
  return cudaGetLastError();
}

extern "C" int returnn_lstm_cuda_backward(returnn_cuda_stream stream, int time, int batch, int n, int direction,
                                          float cell_grad_clip, const float* v_h, const float* c0, const float* y0,
                                          const float* mask, const float* y, const float* c, const float* gates,
                                          const float* dy, const float* dfinal_c, const float* dfinal_y, float* dz,
                                          float* h_prev, float* dc0, float* dy0, float* scratch) {
  int status = 0;
  const size_t state = static_cast<size_t>(batch) * n, state_bytes = sizeof(float) * state;
  if ((status = cudaMemcpyAsync(dc0, dfinal_c, state_bytes, cudaMemcpyDeviceToDevice, stream))) return status;
  if ((status = cudaMemcpyAsync(dy0, dfinal_y, state_bytes, cudaMemcpyDeviceToDevice, stream))) return status;
  if (time == 0 || batch == 0 || n == 0) return 0;
  cublasHandle_t handle = HandleForCurrentDevice(&status);
  if (!handle) return status;
  if ((status = CublasCode(cublasSetStream(handle, stream)))) return status;
  // h_prev[t]: the output carried into frame t (scratch holds the carried output meanwhile).
  if ((status = cudaMemcpyAsync(scratch, y0, state_bytes, cudaMemcpyDeviceToDevice, stream))) return status;
  for (int s = 0; s < time; ++s) {
    const int t = FrameAt(s, time, direction);
    MaskedCarry<<<Blocks(batch * n), kThreads, 0, stream>>>(batch, n, mask + t * batch, y + t * state, scratch,
                                                           h_prev + t * state);
  }
  const float one = 1.f, zero = 0.f;
  for (int s = time - 1; s >= 0; --s) {
    const int t = FrameAt(s, time, direction);
    const float* c_prev = s == 0 ? c0 : c + FrameAt(s - 1, time, direction) * state;
    float* d = dz + t * state * 4;
    BackwardCell<<<Blocks(batch * n), kThreads, 0, stream>>>(batch, n, cell_grad_clip, mask + t * batch,
                                                            gates + t * state * 4, c + t * state, c_prev,
                                                            dy + t * state, dy0, dc0, d);
    // Row-major scratch[B, n] = d[B, 4n] @ v[n, 4n]^T, i.e. column-major scratch^T = v d^T.
    status = CublasCode(cublasSgemm(handle, CUBLAS_OP_T, CUBLAS_OP_N, n, batch, 4 * n, &one, v_h, 4 * n, d, 4 * n,
                                    &zero, scratch, n));
    if (status) return status;
    MaskedCarry<<<Blocks(batch * n), kThreads, 0, stream>>>(batch, n, mask + t * batch, scratch, dy0, nullptr);
  }
  return cudaGetLastError();
}

extern "C" const char* returnn_lstm_cuda_error_string(int code) {
  if (code >= kCublasErrorBase) return "cuBLAS error (status = code - 100000)";
  return cudaGetErrorString(static_cast<cudaError_t>(code));
}
