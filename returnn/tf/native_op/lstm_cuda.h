// C interface of the CUDA LSTM kernels in lstm.cu (float32, row-major, device pointers).
// Shared by lstm.cu (no TensorFlow headers) and the GPU op kernels in lstm.cc. Return 0 on
// success, else a CUDA / cuBLAS error code; returnn_lstm_cuda_error_string describes it.
#pragma once

#ifdef __cplusplus
extern "C" {
#endif

typedef struct CUstream_st* returnn_cuda_stream;

// Same semantics as the CPU op ReturnnNativeLstm (see lstm.cc). final_c / final_y carry the state.
int returnn_lstm_cuda_forward(returnn_cuda_stream stream, int time, int batch, int n, int direction, const float* z,
                              const float* v_h, const float* c0, const float* y0, const float* mask, float* y,
                              float* c, float* gates, float* final_c, float* final_y);

// Same semantics as ReturnnNativeLstmGrad. scratch: batch * n floats. dc0 / dy0 carry the gradient.
int returnn_lstm_cuda_backward(returnn_cuda_stream stream, int time, int batch, int n, int direction,
                               float cell_grad_clip, const float* v_h, const float* c0, const float* y0,
                               const float* mask, const float* y, const float* c, const float* gates,
                               const float* dy, const float* dfinal_c, const float* dfinal_y, float* dz,
                               float* h_prev, float* dc0, float* dy0, float* scratch);

const char* returnn_lstm_cuda_error_string(int code);

#ifdef __cplusplus
}
#endif
