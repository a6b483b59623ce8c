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

// Stores (or adds) one accumulator row pair to C, the first `width` columns only when width < 16.
inline void store_row(__m256 lo, __m256 hi, float* row, int width, bool accumulate) {
  if (width == kPanel) {
    if (accumulate) {
      lo = _mm256_add_ps(lo, _mm256_loadu_ps(row));
      hi = _mm256_add_ps(hi, _mm256_loadu_ps(row + 8));
    }
    _mm256_storeu_ps(row, lo);
    _mm256_storeu_ps(row + 8, hi);
    return;
  }
  alignas(32) float tmp[kPanel];
  _mm256_store_ps(tmp, lo);
  _mm256_store_ps(tmp + 8, hi);
  for (int j = 0; j < width; ++j) row[j] = (accumulate ? row[j] : 0.f) + tmp[j];
}

// C[MR x width] = (accumulate ? C : 0) + A[MR x depth] * panel[depth x 16] (first width columns).
// Named accumulators (not an array) so that the compiler keeps all twelve in registers.
template <int MR>
inline void tile_product(int depth, const float* a, long lda, const float* panel, float* c, long ldc, int width,
                         bool accumulate) {
  static_assert(MR >= 1 && MR <= kTileRows, "tile rows");
  __m256 l0 = _mm256_setzero_ps(), h0 = l0, l1 = l0, h1 = l0, l2 = l0, h2 = l0, l3 = l0, h3 = l0, l4 = l0, h4 = l0,
         l5 = l0, h5 = l0;
  const float *a0 = a, *a1 = a + lda, *a2 = a + 2 * lda, *a3 = a + 3 * lda, *a4 = a + 4 * lda, *a5 = a + 5 * lda;
  for (int k = 0; k < depth; ++k) {
    const __m256 b0 = _mm256_loadu_ps(panel + k * kPanel), b1 = _mm256_loadu_ps(panel + k * kPanel + 8);
    __m256 x = _mm256_broadcast_ss(a0 + k);
    l0 = _mm256_fmadd_ps(x, b0, l0);
    h0 = _mm256_fmadd_ps(x, b1, h0);
    if constexpr (MR > 1) {
      x = _mm256_broadcast_ss(a1 + k);
      l1 = _mm256_fmadd_ps(x, b0, l1);
      h1 = _mm256_fmadd_ps(x, b1, h1);
    }
    if constexpr (MR > 2) {
      x = _mm256_broadcast_ss(a2 + k);
      l2 = _mm256_fmadd_ps(x, b0, l2);
      h2 = _mm256_fmadd_ps(x, b1, h2);
    }
    if constexpr (MR > 3) {
      x = _mm256_broadcast_ss(a3 + k);
      l3 = _mm256_fmadd_ps(x, b0, l3);
      h3 = _mm256_fmadd_ps(x, b1, h3);
    }
    if constexpr (MR > 4) {
      x = _mm256_broadcast_ss(a4 + k);
      l4 = _mm256_fmadd_ps(x, b0, l4);
      h4 = _mm256_fmadd_ps(x, b1, h4);
    }
    if constexpr (MR > 5) {
      x = _mm256_broadcast_ss(a5 + k);
      l5 = _mm256_fmadd_ps(x, b0, l5);
      h5 = _mm256_fmadd_ps(x, b1, h5);
    }
  }
  store_row(l0, h0, c, width, accumulate);
  if constexpr (MR > 1) store_row(l1, h1, c + ldc, width, accumulate);
  if constexpr (MR > 2) store_row(l2, h2, c + 2 * ldc, width, accumulate);
  if constexpr (MR > 3) store_row(l3, h3, c + 3 * ldc, width, accumulate);
  if constexpr (MR > 4) store_row(l4, h4, c + 4 * ldc, width, accumulate);
  if constexpr (MR > 5) store_row(l5, h5, c + 5 * ldc, width, accumulate);
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
