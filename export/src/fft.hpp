// The orthonormal transforms the program's spectral ops use, on one H×W plane (row-major), in float64:
// 1-D FFTs by KISS FFT (BSD-3-Clause, its header-only C++ template), the DCT-II by its cosine matrix.
// Conventions are numpy/torch's: rfft2/irfft2 (norm="ortho"), fft2/ifft2 (unnormalised forward), scipy's dctn
// (type 2, norm="ortho") and its inverse.
#pragma once

#include <complex>
#include <vector>

namespace fastgen::kit {

using complex = std::complex<double>;

// Half spectrum [H][W/2+1] of a real plane.
void rfft2_ortho(const double* plane, int height, int width, complex* spectrum);
// The real plane of a half spectrum; as torch.fft.irfft2(s=(H, W)), the imaginary parts that a real signal
// cannot have (columns 0 and W/2) are ignored.
void irfft2_ortho(const complex* spectrum, int height, int width, double* plane);
// Full complex 2-D DFT; `inverse` divides by H·W (numpy's ifft2).
void fft2(const complex* in, int height, int width, bool inverse, complex* out);
// The orthonormal DCT-II matrix of size n, row-major: C[k][i] = s_k cos(π k (2i + 1) / 2n), s_0 = √(1/n), s_k = √(2/n)
// (dct2_ortho applies it along rows, then columns; the GPU path uploads the same matrices).
const std::vector<double>& dct_matrix(int n);
void dct2_ortho(const double* plane, int height, int width, double* coefficients);
void idct2_ortho(const double* coefficients, int height, int width, double* plane);

}  // namespace fastgen::kit
