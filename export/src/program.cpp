#include "program.hpp"

#include <algorithm>
#include <climits>
#include <cstdint>
#include <fstream>
#include <set>

#include "error.hpp"

namespace fastgen::kit {
namespace {

using nlohmann::json;
using Shape = std::vector<std::int64_t>;

std::int64_t elements(const Shape& shape) {
    std::int64_t count = 1;
    for (std::int64_t size : shape) count *= size;
    return count;
}

// Reads one JSON object field by field and refuses fields it was not asked for: a reader must not guess.
class Fields {
public:
    Fields(const json& object, std::string where) : object_(object), where_(std::move(where)) {
        if (!object_.is_object()) problem("is not a JSON object");
    }
    [[noreturn]] void problem(const std::string& what) const { throw Problem{where_ + " " + what}; }

    const json& get(const std::string& key) {
        const auto found = object_.find(key);
        if (found == object_.end()) problem("has no field \"" + key + "\"");
        used_.insert(key);
        return *found;
    }
    bool has(const std::string& key) const { return object_.contains(key); }
    std::string text(const std::string& key) {
        const json& value = get(key);
        if (!value.is_string()) problem("field \"" + key + "\" must be a string");
        return value.get<std::string>();
    }
    double number(const std::string& key) {
        const json& value = get(key);
        if (!value.is_number()) problem("field \"" + key + "\" must be a number");
        return value.get<double>();
    }
    bool boolean(const std::string& key) {
        const json& value = get(key);
        if (!value.is_boolean()) problem("field \"" + key + "\" must be true or false");
        return value.get<bool>();
    }
    // A list of `length` numbers.
    std::vector<double> numbers(const std::string& key, std::size_t length) {
        const json& value = get(key);
        if (!value.is_array() || value.size() != length)
            problem("field \"" + key + "\" must be a list of " + std::to_string(length) + " numbers");
        std::vector<double> result;
        for (const json& item : value) {
            if (!item.is_number()) problem("field \"" + key + "\" must hold numbers only");
            result.push_back(item.get<double>());
        }
        return result;
    }
    // A [rows][columns] array of numbers, row-major.
    std::vector<double> matrix(const std::string& key, std::int64_t rows, std::int64_t columns) {
        const json& value = get(key);
        const std::string expected = "field \"" + key + "\" must be a [" + std::to_string(rows) + "][" + std::to_string(columns) + "] array";
        if (!value.is_array() || static_cast<std::int64_t>(value.size()) != rows) problem(expected);
        std::vector<double> result;
        for (const json& row : value) {
            if (!row.is_array() || static_cast<std::int64_t>(row.size()) != columns) problem(expected);
            for (const json& item : row) {
                if (!item.is_number()) problem(expected + " of numbers");
                result.push_back(item.get<double>());
            }
        }
        return result;
    }
    void finish() const {
        for (const auto& item : object_.items())
            if (!used_.count(item.key())) problem("has an unknown field \"" + item.key() + "\"");
    }

    struct Problem {
        std::string what;
    };

private:
    const json& object_;
    std::string where_;
    std::set<std::string> used_;
};

// Tracks buffer shapes and which buffers were written, while the ops are read in order.
class Buffers {
public:
    Buffers(const std::map<std::string, Shape>& shapes, std::set<std::string>& written, Fields& op)
        : shapes_(shapes), written_(written), op_(op) {}
    const Shape& read(const std::string& key) {
        const std::string name = op_.text(key);
        const Shape& shape = find(name, key);
        if (!written_.count(name)) op_.problem("reads buffer \"" + name + "\" before any op wrote it");
        return shape;
    }
    const Shape& write(const std::string& key) {
        const std::string name = op_.text(key);
        const Shape& shape = find(name, key);
        pending_.insert(name);
        return shape;
    }
    // An op's writes count for the ops after it.
    void commit() { written_.insert(pending_.begin(), pending_.end()); }

private:
    const Shape& find(const std::string& name, const std::string& key) {
        const auto found = shapes_.find(name);
        if (found == shapes_.end()) op_.problem("field \"" + key + "\" names buffer \"" + name + "\", which the program does not declare");
        return found->second;
    }
    const std::map<std::string, Shape>& shapes_;
    std::set<std::string>& written_;
    Fields& op_;
    std::set<std::string> pending_;
};

void expect_image(Fields& op, const std::string& key, const Shape& shape) {
    if (shape.size() != 3) op.problem("field \"" + key + "\" must name a [C, H, W] buffer, not " + shape_text(shape));
}

void expect_same(Fields& op, const std::string& what, const Shape& got, const Shape& expected) {
    if (got != expected) op.problem(what + " is " + shape_text(got) + ", expected " + shape_text(expected));
}

std::int64_t spectrum_columns(Fields& op, const std::string& basis, std::int64_t width) {
    if (basis == "fourier") return width / 2 + 1;
    if (basis == "dct") return width;
    op.problem("has basis \"" + basis + "\"; the bases are fourier and dct");
}

const SiteFunction& site_of(Fields& op, const Sites& sites, const std::string& name) {
    const auto found = sites.find(name);
    if (found == sites.end()) op.problem("calls site \"" + name + "\", which the bundle does not have");
    return found->second;
}

Op parse_op(Fields& op, const std::string& kind, Buffers& buffers, const Sites& sites) {
    if (kind == "noise") {
        NoiseOp noise;
        const Shape& out = buffers.write("out");
        noise.out = op.text("out");
        noise.scale = op.number("scale");
        const json& filter = op.get("filter");
        if (!filter.is_null()) {
            expect_image(op, "out", out);
            Fields fields(filter, "filter of the noise op");
            SpectralFilter spectral{fields.text("basis"), {}};
            spectral.values = fields.matrix("values", out[1], spectrum_columns(op, spectral.basis, out[2]));
            fields.finish();
            noise.filter = spectral;
        }
        return noise;
    }
    if (kind == "call") {
        CallOp call{op.text("site"), op.text("x"), op.text("out")};
        const SiteFunction& site = site_of(op, sites, call.site);
        if (site.inputs.size() != 1) op.problem("calls site \"" + call.site + "\", which takes " + std::to_string(site.inputs.size()) + " inputs, not 1");
        expect_same(op, "buffer \"" + call.x + "\"", buffers.read("x"), site.inputs[0]);
        expect_same(op, "buffer \"" + call.out + "\"", buffers.write("out"), site.output);
        return call;
    }
    if (kind == "udpm_posterior") {
        PosteriorOp posterior;
        posterior.x = op.text("x"), posterior.x_hat = op.text("x_hat"), posterior.out = op.text("out");
        posterior.noisy = op.boolean("noisy");
        const Shape &x = buffers.read("x"), &x_hat = buffers.read("x_hat"), &out = buffers.write("out");
        expect_image(op, "x", x);
        const json& taps = op.get("taps");
        const std::int64_t gamma = taps.is_array() ? static_cast<std::int64_t>(taps.size()) : 0;
        if (gamma < 1) op.problem("field \"taps\" must be a square array");
        const Shape high{x[0], gamma * x[1], gamma * x[2]};
        expect_same(op, "x_hat", x_hat, high);
        expect_same(op, "out", out, high);
        PosteriorConstants& c = posterior.constants;
        c.gamma = static_cast<int>(gamma);
        for (double tap : op.matrix("taps", gamma, gamma)) c.taps.push_back(static_cast<float>(tap));
        c.kx = static_cast<float>(op.number("kx")), c.kp = static_cast<float>(op.number("kp"));
        c.ky = static_cast<float>(op.number("ky")), c.ke = static_cast<float>(op.number("ke"));
        c.kep = static_cast<float>(op.number("kep"));
        return posterior;
    }
    if (kind == "udpm_matheron") {
        MatheronOp matheron;
        matheron.x = op.text("x"), matheron.x_hat = op.text("x_hat"), matheron.out = op.text("out");
        matheron.noisy = op.boolean("noisy");
        const Shape &x = buffers.read("x"), &x_hat = buffers.read("x_hat"), &out = buffers.write("out");
        expect_image(op, "x", x);
        expect_image(op, "x_hat", x_hat);
        expect_same(op, "out", out, x_hat);
        if (x_hat[0] != x[0] || x_hat[1] % x[1] || x_hat[2] % x[2] || x_hat[1] / x[1] != x_hat[2] / x[2])
            op.problem("x_hat " + shape_text(x_hat) + " is not x " + shape_text(x) + " scaled by one integer γ");
        MatheronConstants& c = matheron.constants;
        c.alpha = op.number("alpha"), c.sigma = op.number("sigma"), c.prior_scale = op.number("prior_scale");
        c.transfer_re = op.matrix("transfer_re", x_hat[1], x_hat[2]);
        c.transfer_im = op.matrix("transfer_im", x_hat[1], x_hat[2]);
        c.prior_cov = op.matrix("prior_cov", x_hat[1], x_hat[2]);
        return matheron;
    }
    if (kind == "denoise_chain") {
        ChainOp chain;
        chain.site = op.text("site"), chain.x = op.text("x"), chain.out = op.text("out");
        const Shape &x = buffers.read("x"), &out = buffers.write("out");
        expect_same(op, "out", out, x);
        const SiteFunction& site = site_of(op, sites, chain.site);
        if (site.inputs.size() != 2 || !site.inputs[1].empty())
            op.problem("runs site \"" + chain.site + "\", which does not take (x, t)");
        expect_same(op, "buffer \"" + chain.x + "\"", x, site.inputs[0]);
        expect_same(op, "site \"" + chain.site + "\" output", site.output, x);
        const json& timesteps = op.get("timesteps");
        const std::size_t n = timesteps.is_array() ? timesteps.size() : 0;
        if (n == 0) op.problem("field \"timesteps\" must be a non-empty list");
        chain.timesteps = op.numbers("timesteps", n);
        const json& noise = op.get("noise");  // flags: true/false (or 0/1)
        if (!noise.is_array() || noise.size() != n) op.problem("field \"noise\" must be a list of " + std::to_string(n) + " flags");
        for (const json& flag : noise) {
            if (!flag.is_boolean() && flag != 0 && flag != 1) op.problem("field \"noise\" must hold true/false (or 0/1)");
            chain.noise.push_back(flag.is_boolean() ? flag.get<bool>() : flag == 1);
        }
        const std::string step = op.text("step");
        if (step == "affine") {
            const bool clip = op.boolean("clip");
            const auto a = op.numbers("a", n), b = op.numbers("b", n), p = op.numbers("p", n), q = op.numbers("q", n),
                       r = op.numbers("r", n), s = op.numbers("s", n);
            for (std::size_t i = 0; i < n; ++i)
                chain.affine.push_back({static_cast<float>(a[i]), static_cast<float>(b[i]), static_cast<float>(p[i]), static_cast<float>(q[i]),
                                        static_cast<float>(r[i]), static_cast<float>(s[i]), clip});
        } else if (step == "blur") {
            expect_image(op, "x", x);
            chain.basis = op.text("basis");
            const auto log_eigenvalues = op.matrix("log_eigenvalues", x[1], spectrum_columns(op, chain.basis, x[2]));
            const auto log_alpha = op.numbers("log_alpha", n), power = op.numbers("power", n),
                       log_alpha_cumprod = op.numbers("log_alpha_cumprod", n), power_cumsum = op.numbers("power_cumsum", n);
            for (std::size_t i = 0; i < n; ++i)
                chain.blur.push_back(blur_coefficients(log_eigenvalues, log_alpha[i], power[i], log_alpha_cumprod[i], power_cumsum[i]));
        } else {
            op.problem("has step \"" + step + "\"; the steps are affine and blur");
        }
        return chain;
    }
    if (kind == "upsample") {
        UpsampleOp upsample{op.text("x"), op.text("out")};
        const Shape &x = buffers.read("x"), &out = buffers.write("out");
        expect_image(op, "x", x);
        expect_same(op, "out", out, Shape{x[0], 2 * x[1], 2 * x[2]});
        return upsample;
    }
    if (kind == "renoise") {
        RenoiseOp renoise{op.text("x"), op.text("out"), op.number("signal"), op.number("noise_scale")};
        expect_same(op, "out", buffers.write("out"), buffers.read("x"));
        return renoise;
    }
    op.problem("is of unknown kind \"" + kind + "\"; this kit knows noise, call, udpm_posterior, udpm_matheron, denoise_chain, "
               "upsample, renoise (update the kit, or re-export with this fastgen)");
}

}  // namespace

Program parse_program(const json& data, const std::string& source, const Sites& sites) {
    const std::string fix = "; re-export the bundle with this fastgen";
    if (data.is_null()) bundle_error(source + " has no sampling program; re-export the bundle with this fastgen");
    Program program;
    try {
        Fields top(data, "the program");
        if (top.text("format") != kProgramFormat) top.problem("is not a fastgen program (format is not \"fastgen-program\")");
        const json& version = top.get("version");
        if (!version.is_number_integer() || version.get<std::int64_t>() != kProgramVersion) {
            if (version.is_number_integer() && version.get<std::int64_t>() > kProgramVersion)
                bundle_error(source + ": the program's version " + version.dump() + " is newer than this kit reads (" +
                             std::to_string(kProgramVersion) + "); update the fastgen kit, or re-export with this fastgen");
            top.problem("has version " + version.dump() + ", not " + std::to_string(kProgramVersion));
        }
        const json& buffers = top.get("buffers");
        if (!buffers.is_object() || buffers.empty()) top.problem("field \"buffers\" must be an object of shapes");
        for (const auto& [name, shape] : buffers.items()) {
            const std::string bad = "buffer \"" + name + "\" must have a shape of 1 to 4 positive integers, at most " +
                                    std::to_string(kMaxBufferElements) + " elements";
            if (!shape.is_array() || shape.empty() || shape.size() > 4) top.problem(bad);
            Shape sizes;
            std::int64_t count = 1;
            for (const json& size : shape) {
                // Checked one side at a time, so the running product never leaves int64.
                if (!size.is_number_integer() || size.get<std::int64_t>() < 1 || size.get<std::int64_t>() > kMaxBufferElements / count)
                    top.problem(bad);
                sizes.push_back(size.get<std::int64_t>());
                count *= sizes.back();
            }
            program.buffers[name] = sizes;
        }
        const json& ops = top.get("ops");
        if (!ops.is_array() || ops.empty()) top.problem("field \"ops\" must be a non-empty list");
        std::set<std::string> written;
        for (std::size_t k = 0; k < ops.size(); ++k) {
            const std::string kind = ops[k].is_object() && ops[k].contains("op") && ops[k]["op"].is_string() ? ops[k]["op"].get<std::string>() : "?";
            Fields op(ops[k], "op " + std::to_string(k) + " (" + kind + ")");
            op.text("op");
            Buffers access(program.buffers, written, op);
            program.ops.push_back(parse_op(op, kind, access, sites));
            op.finish();
            access.commit();
        }
        program.output = top.text("output");
        const auto found = program.buffers.find(program.output);
        if (found == program.buffers.end() || !written.count(program.output))
            top.problem("output \"" + program.output + "\" is not a buffer an op writes");
        if (found->second.size() != 3) top.problem("output must be [C, H, W], not " + shape_text(found->second));
        top.finish();
    } catch (const Fields::Problem& problem) {
        bundle_error(source + ": " + problem.what + fix);
    }
    return program;
}

const std::vector<std::int64_t>& output_shape(const Program& program) { return program.buffers.at(program.output); }

std::string shape_text(const std::vector<std::int64_t>& shape) {
    std::string text = "[";
    for (std::size_t i = 0; i < shape.size(); ++i) text += (i ? ", " : "") + std::to_string(shape[i]);
    return text + "]";
}

namespace {

class Interpreter {
public:
    Interpreter(const Program& program, const Sites& sites, const Rows& rows, const Progress& progress)
        : program_(program), sites_(sites), batch_(rows.size()), rows_(rows), progress_(progress), total_calls_(site_calls(program)) {}

    void run(float* out) {
        for (std::size_t k = 0; k < program_.ops.size(); ++k) {
            op_ = static_cast<std::uint32_t>(k);
            std::visit([this](const auto& op) { execute(op); }, program_.ops[k]);
        }
        const std::vector<float>& result = buffers_.at(program_.output);
        std::copy(result.begin(), result.end(), out);
    }

private:
    Shape4 shape(const std::string& name) const {
        const Shape& s = program_.buffers.at(name);
        return {batch_, s[0], s.size() > 1 ? s[1] : 1, s.size() > 2 ? s[2] : 1};
    }
    std::int64_t count(const std::string& name) const { return batch_ * elements(program_.buffers.at(name)); }
    std::vector<float>& buffer(const std::string& name) {
        std::vector<float>& data = buffers_[name];
        data.resize(static_cast<std::size_t>(count(name)));
        return data;
    }
    // Draw `index` of this op shaped as buffer `like`, each row from its own (seed, image index).
    std::vector<float> draw(std::uint32_t index, const std::string& like) {
        const std::int64_t per_image = elements(program_.buffers.at(like));
        std::vector<float> z(static_cast<std::size_t>(count(like)));
        for (std::int64_t r = 0; r < batch_; ++r)
            draw_normals(rows_.seeds[r], op_, index, rows_.indices[r] * static_cast<std::uint64_t>(per_image), per_image, z.data() + r * per_image);
        return z;
    }

    void execute(const NoiseOp& op) {
        std::vector<float> z = draw(0, op.out);
        if (op.filter) spectral_filter(op.filter->basis, op.filter->values, shape(op.out), z.data());
        if (op.scale != 1.0)
            for (float& value : z) value *= static_cast<float>(op.scale);
        buffers_[op.out] = std::move(z);
    }
    void called() {
        if (progress_) progress_(++calls_, total_calls_);
    }
    void execute(const CallOp& op) {
        const std::vector<float>& x = buffers_.at(op.x);
        sites_.at(op.site).run(batch_, {x.data()}, buffer(op.out).data());
        called();
    }
    void execute(const PosteriorOp& op) {
        const std::vector<float> e = op.noisy ? draw(0, op.out) : std::vector<float>();
        std::vector<float> result(static_cast<std::size_t>(count(op.out)));
        udpm_posterior(op.constants, buffers_.at(op.x).data(), buffers_.at(op.x_hat).data(), op.noisy ? e.data() : nullptr, shape(op.out),
                       result.data());
        buffers_[op.out] = std::move(result);
    }
    void execute(const MatheronOp& op) {
        const std::vector<float> e = op.noisy ? draw(0, op.out) : std::vector<float>();
        const std::vector<float> e_prime = op.noisy ? draw(1, op.x) : std::vector<float>();
        std::vector<float> result(static_cast<std::size_t>(count(op.out)));
        udpm_matheron(op.constants, buffers_.at(op.x).data(), buffers_.at(op.x_hat).data(), op.noisy ? e.data() : nullptr,
                      op.noisy ? e_prime.data() : nullptr, shape(op.x), shape(op.out), result.data());
        buffers_[op.out] = std::move(result);
    }
    void execute(const ChainOp& op) {
        std::vector<float> x = buffers_.at(op.x), model_out(x.size()), next(x.size()), t(static_cast<std::size_t>(batch_));
        const SiteFunction& site = sites_.at(op.site);
        for (std::size_t i = 0; i < op.timesteps.size(); ++i) {
            std::fill(t.begin(), t.end(), static_cast<float>(op.timesteps[i]));
            site.run(batch_, {x.data(), t.data()}, model_out.data());
            called();
            const std::vector<float> z = op.noise[i] ? draw(static_cast<std::uint32_t>(i), op.x) : std::vector<float>();
            const float* noise = op.noise[i] ? z.data() : nullptr;
            if (op.is_blur())
                blur_step(op.basis, op.blur[i], x.data(), model_out.data(), noise, shape(op.x), next.data());
            else
                affine_step(op.affine[i], x.data(), model_out.data(), noise, static_cast<std::int64_t>(x.size()), next.data());
            x.swap(next);
        }
        buffers_[op.out] = std::move(x);
    }
    void execute(const UpsampleOp& op) {
        std::vector<float> result(static_cast<std::size_t>(count(op.out)));
        upsample(buffers_.at(op.x).data(), shape(op.x), result.data());
        buffers_[op.out] = std::move(result);
    }
    void execute(const RenoiseOp& op) {
        const std::vector<float> z = draw(0, op.x);
        std::vector<float> result(z.size());
        renoise(buffers_.at(op.x).data(), z.data(), static_cast<float>(op.signal), static_cast<float>(op.noise_scale),
                static_cast<std::int64_t>(z.size()), result.data());
        buffers_[op.out] = std::move(result);
    }

    const Program& program_;
    const Sites& sites_;
    std::int64_t batch_;
    const Rows& rows_;
    const Progress& progress_;
    std::int64_t total_calls_, calls_ = 0;
    std::uint32_t op_ = 0;
    std::map<std::string, std::vector<float>> buffers_;
};

}  // namespace

Rows Rows::of_seed(std::uint64_t seed, std::int64_t n) {
    Rows rows{std::vector<std::uint64_t>(static_cast<std::size_t>(n), seed), std::vector<std::uint64_t>(static_cast<std::size_t>(n))};
    for (std::size_t i = 0; i < rows.indices.size(); ++i) rows.indices[i] = i;
    return rows;
}

void check_rows(const Program& program, const Rows& rows) {
    if (rows.seeds.size() != rows.indices.size())
        argument_error("the rows have " + std::to_string(rows.seeds.size()) + " seeds but " + std::to_string(rows.indices.size()) + " image indices");
    if (rows.seeds.empty()) argument_error("the number of images must be ≥ 1, got 0");
    // Every draw is shaped as one of the program's buffers, so the largest buffer bounds P.
    std::uint64_t per_image = 1;
    for (const auto& entry : program.buffers) per_image = std::max(per_image, static_cast<std::uint64_t>(elements(entry.second)));
    const std::uint64_t largest = (UINT64_MAX - (per_image - 1)) / per_image;  // the last element i·P + P − 1 fits
    for (std::size_t r = 0; r < rows.indices.size(); ++r)
        if (rows.indices[r] > largest)
            argument_error("row " + std::to_string(r) + ": image index " + std::to_string(rows.indices[r]) + " is too large: its noise elements (index × " +
                           std::to_string(per_image) + " per image) overflow 64 bits; the largest image index this program takes is " +
                           std::to_string(largest));
}

std::uint64_t program_bytes(const Program& program, std::int64_t batch) {
    std::uint64_t elements_per_image = 0, largest = 0;
    for (const auto& entry : program.buffers) {
        const auto count = static_cast<std::uint64_t>(elements(entry.second));  // ≤ 2^31 each (parse_program)
        elements_per_image += count;
        largest = std::max(largest, count);
    }
    elements_per_image += 4 * largest;  // ≤ (buffers + 4) · 2^31: no overflow for any program that parses
    const unsigned __int128 bytes = static_cast<unsigned __int128>(elements_per_image) * static_cast<std::uint64_t>(batch) * sizeof(float);
    return bytes > UINT64_MAX ? UINT64_MAX : static_cast<std::uint64_t>(bytes);
}

void check_memory(const Program& program, std::int64_t batch, std::uint64_t available, const std::string& memory) {
    const std::uint64_t needed = program_bytes(program, batch);
    if (needed <= available) return;
    const auto mib = [](std::uint64_t bytes) { return std::to_string((bytes + (1 << 20) - 1) >> 20); };
    fail(FASTGEN_ERROR_OUT_OF_MEMORY, "sampling " + std::to_string(batch) + " images needs about " + mib(needed) + " MiB of " + memory +
                                          ", more than the " + mib(available) + " MiB available; sample fewer images per call");
}

std::uint64_t available_host_memory() {
    std::ifstream meminfo("/proc/meminfo");
    std::string key;
    std::uint64_t kib = 0;
    while (meminfo >> key >> kib) {
        if (key == "MemAvailable:") return kib * 1024;
        meminfo.ignore(64, '\n');
    }
    return UINT64_MAX;
}

void run_program(const Program& program, const Sites& sites, const Rows& rows, float* out, const Progress& progress) {
    check_rows(program, rows);
    check_memory(program, rows.size(), available_host_memory(), "memory");
    Interpreter(program, sites, rows, progress).run(out);
}

std::int64_t site_calls(const Program& program) {
    std::int64_t calls = 0;
    for (const Op& op : program.ops) {
        if (std::holds_alternative<CallOp>(op)) calls += 1;
        if (const auto* chain = std::get_if<ChainOp>(&op)) calls += static_cast<std::int64_t>(chain->timesteps.size());
    }
    return calls;
}

}  // namespace fastgen::kit
