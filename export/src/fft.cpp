#include "fft.hpp"

#include <kissfft.hh>

#include <cmath>
#include <map>
#include <memory>
#include <utility>

namespace fastgen::kit {
namespace {

// One planned transform per (length, direction) and thread.
const kissfft<double>& plan(int length, bool inverse) {
    thread_local std::map<std::pair<int, bool>, std::unique_ptr<kissfft<double>>> plans;
    auto& slot = plans[{length, inverse}];
    if (!slot) slot = std::make_unique<kissfft<double>>(static_cast<std::size_t>(length), inverse);
    return *slot;
}

// Transforms every row (stride 1) or every column (stride = row length) of a complex plane in place.
void transform_lines(complex* data, int lines, int length, int line_stride, int element_stride, bool inverse) {
    const kissfft<double>& fft = plan(length, inverse);
    std::vector<complex> in(length), out(length);
    for (int line = 0; line < lines; ++line) {
        complex* start = data + static_cast<std::ptrdiff_t>(line) * line_stride;
        for (int k = 0; k < length; ++k) in[k] = start[static_cast<std::ptrdiff_t>(k) * element_stride];
        fft.transform(in.data(), out.data());
        for (int k = 0; k < length; ++k) start[static_cast<std::ptrdiff_t>(k) * element_stride] = out[k];
    }
}

// out = C·in along rows (transpose = Cᵀ, the inverse), then along columns.
void dct_apply(const double* in, int height, int width, bool transpose, double* out) {
    const std::vector<double>& rows_matrix = dct_matrix(width);
    const std::vector<double>& columns_matrix = dct_matrix(height);
    std::vector<double> rows(static_cast<std::size_t>(height) * width);
    for (int y = 0; y < height; ++y)
        for (int k = 0; k < width; ++k) {
            double sum = 0.0;
            for (int i = 0; i < width; ++i)
                sum += (transpose ? rows_matrix[static_cast<std::size_t>(i) * width + k] : rows_matrix[static_cast<std::size_t>(k) * width + i]) *
                       in[static_cast<std::size_t>(y) * width + i];
            rows[static_cast<std::size_t>(y) * width + k] = sum;
        }
    for (int k = 0; k < height; ++k)
        for (int x = 0; x < width; ++x) {
            double sum = 0.0;
            for (int i = 0; i < height; ++i)
                sum += (transpose ? columns_matrix[static_cast<std::size_t>(i) * height + k]
                                  : columns_matrix[static_cast<std::size_t>(k) * height + i]) *
                       rows[static_cast<std::size_t>(i) * width + x];
            out[static_cast<std::size_t>(k) * width + x] = sum;
        }
}

}  // namespace

const std::vector<double>& dct_matrix(int n) {
    thread_local std::map<int, std::vector<double>> matrices;
    std::vector<double>& matrix = matrices[n];
    if (matrix.empty()) {
        matrix.resize(static_cast<std::size_t>(n) * n);
        const double pi = 3.141592653589793238462643383279502884;
        for (int k = 0; k < n; ++k)
            for (int i = 0; i < n; ++i)
                matrix[static_cast<std::size_t>(k) * n + i] =
                    std::sqrt((k == 0 ? 1.0 : 2.0) / n) * std::cos(pi * k * (2 * i + 1) / (2.0 * n));
    }
    return matrix;
}

void fft2(const complex* in, int height, int width, bool inverse, complex* out) {
    std::copy(in, in + static_cast<std::ptrdiff_t>(height) * width, out);
    transform_lines(out, height, width, width, 1, inverse);
    transform_lines(out, width, height, 1, width, inverse);
    if (inverse)
        for (std::ptrdiff_t i = 0; i < static_cast<std::ptrdiff_t>(height) * width; ++i) out[i] /= static_cast<double>(height) * width;
}

void rfft2_ortho(const double* plane, int height, int width, complex* spectrum) {
    std::vector<complex> full(static_cast<std::size_t>(height) * width);
    for (std::size_t i = 0; i < full.size(); ++i) full[i] = plane[i];
    fft2(full.data(), height, width, false, full.data());
    const int columns = width / 2 + 1;
    const double scale = 1.0 / std::sqrt(static_cast<double>(height) * width);
    for (int y = 0; y < height; ++y)
        for (int x = 0; x < columns; ++x)
            spectrum[static_cast<std::size_t>(y) * columns + x] = full[static_cast<std::size_t>(y) * width + x] * scale;
}

void irfft2_ortho(const complex* spectrum, int height, int width, double* plane) {
    const int columns = width / 2 + 1;
    // Inverse DFT along the rows' axis per stored column, then a complex-to-real inverse along each row.
    std::vector<complex> half(spectrum, spectrum + static_cast<std::ptrdiff_t>(height) * columns);
    transform_lines(half.data(), columns, height, 1, columns, true);
    std::vector<complex> row(width), out(width);
    const kissfft<double>& fft = plan(width, true);
    const double scale = 1.0 / std::sqrt(static_cast<double>(height) * width);
    for (int y = 0; y < height; ++y) {
        const complex* stored = half.data() + static_cast<std::ptrdiff_t>(y) * columns;
        for (int x = 0; x < columns; ++x) row[x] = stored[x];
        row[0] = stored[0].real();
        if (width % 2 == 0) row[width / 2] = stored[width / 2].real();
        for (int x = columns; x < width; ++x) row[x] = std::conj(stored[width - x]);
        fft.transform(row.data(), out.data());
        for (int x = 0; x < width; ++x) plane[static_cast<std::size_t>(y) * width + x] = out[x].real() * scale;
    }
}

void dct2_ortho(const double* plane, int height, int width, double* coefficients) {
    dct_apply(plane, height, width, false, coefficients);
}

void idct2_ortho(const double* coefficients, int height, int width, double* plane) {
    dct_apply(coefficients, height, width, true, plane);
}

}  // namespace fastgen::kit
