// Single-threaded float GEMM for the per-step recurrent product of the LSTM op.
// The recurrent weights stay the same for all time steps, so they are packed once per op call
// into 16-column panels; each step then runs an AVX2/FMA 6x16 register tile over them.
// Free of TensorFlow headers. Only compiled in when the target has AVX2 and FMA.
#pragma once

#include <algorithm>
#include <vector>

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define RETURNN_LSTM_HAVE_AVX2 1

namespace returnn_lstm {

constexpr int kPanel = 16;  // columns per packed panel: two 8-float registers
constexpr int kTileRows = 6;  // rows per register tile: 12 accumulators
constexpr int kDepthBlock = 256;  // K block, keeps a panel slice (16 KB) in L1

// A K x N matrix packed as ceil(N / 16) panels of K x 16 floats, zero padded on the right.
struct PackedMatrix {
  int rows = 0, cols = 0;
  std::vector<float> data;
};

// Packs src(k, j) = src[k * row_stride + j * col_stride] for k < rows, j < cols.
inline void pack_matrix(const float* src, long row_stride, long col_stride, int rows, int cols, PackedMatrix* out) {
  out->rows = rows;
  out->cols = cols;
  const int panels = (cols + kPanel - 1) / kPanel;
  out->data.assign(static_cast<size_t>(panels) * rows * kPanel, 0.f);
  for (int p = 0; p < panels; ++p) {
    float* dst = out->data.data() + static_cast<size_t>(p) * rows * kPanel;
    const int j0 = p * kPanel, width = std::min(kPanel, cols - j0);
    for (int k = 0; k < rows; ++k)
      for (int j = 0; j < width; ++j) dst[k * kPanel + j] = src[k * row_stride + (j0 + j) * col_stride];
  }
}

// C[MR x width] = (accumulate ? C : 0) + A[MR x depth] * panel[depth x 16] (first width columns).
template <int MR>
inline void tile_product(int depth, const float* a, long lda, const float* panel, float* c, long ldc, int width,
                         bool accumulate) {
  __m256 lo[MR], hi[MR];
#pragma GCC unroll 8
  for (int r = 0; r < MR; ++r) lo[r] = hi[r] = _mm256_setzero_ps();
  for (int k = 0; k < depth; ++k) {
    const __m256 b0 = _mm256_loadu_ps(panel + k * kPanel), b1 = _mm256_loadu_ps(panel + k * kPanel + 8);
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) {
      const __m256 x = _mm256_broadcast_ss(a + r * lda + k);
      lo[r] = _mm256_fmadd_ps(x, b0, lo[r]);
      hi[r] = _mm256_fmadd_ps(x, b1, hi[r]);
    }
  }
  if (width == kPanel) {
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) {
      float* row = c + r * ldc;
      if (accumulate) {
        lo[r] = _mm256_add_ps(lo[r], _mm256_loadu_ps(row));
        hi[r] = _mm256_add_ps(hi[r], _mm256_loadu_ps(row + 8));
      }
      _mm256_storeu_ps(row, lo[r]);
      _mm256_storeu_ps(row + 8, hi[r]);
    }
    return;
  }
  alignas(32) float tmp[kPanel];
  for (int r = 0; r < MR; ++r) {
    _mm256_store_ps(tmp, lo[r]);
    _mm256_store_ps(tmp + 8, hi[r]);
    float* row = c + r * ldc;
    for (int j = 0; j < width; ++j) row[j] = (accumulate ? row[j] : 0.f) + tmp[j];
  }
}

// Runs the row tiles of one panel slice: rows in blocks of 6, then the remainder.
inline void panel_product(int m, int depth, const float* a, long lda, const float* panel, float* c, long ldc,
                          int width, bool accumulate) {
  int r = 0;
  for (; r + kTileRows <= m; r += kTileRows)
    tile_product<kTileRows>(depth, a + r * lda, lda, panel, c + r * ldc, ldc, width, accumulate);
  const float* ar = a + r * lda;
  float* cr = c + r * ldc;
  switch (m - r) {
    case 1: tile_product<1>(depth, ar, lda, panel, cr, ldc, width, accumulate); break;
    case 2: tile_product<2>(depth, ar, lda, panel, cr, ldc, width, accumulate); break;
    case 3: tile_product<3>(depth, ar, lda, panel, cr, ldc, width, accumulate); break;
    case 4: tile_product<4>(depth, ar, lda, panel, cr, ldc, width, accumulate); break;
    case 5: tile_product<5>(depth, ar, lda, panel, cr, ldc, width, accumulate); break;
    default: break;
  }
}

// C[m x B.cols] (row stride ldc) = (accumulate ? C : 0) + A[m x B.rows] (row stride lda) * B.
inline void packed_product(int m, const float* a, long lda, const PackedMatrix& b, float* c, long ldc,
                           bool accumulate) {
  const int panels = (b.cols + kPanel - 1) / kPanel;
  for (int k0 = 0; k0 < b.rows; k0 += kDepthBlock) {
    const int depth = std::min(kDepthBlock, b.rows - k0);
    for (int p = 0; p < panels; ++p) {
      const float* panel = b.data.data() + (static_cast<size_t>(p) * b.rows + k0) * kPanel;
      const int width = std::min(kPanel, b.cols - p * kPanel);
      panel_product(m, depth, a + k0, lda, panel, c + p * kPanel, ldc, width, accumulate || k0 > 0);
    }
  }
}

}  // namespace returnn_lstm

#endif  // AVX2 && FMA
