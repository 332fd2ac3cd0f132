// What every example shares: random weights of the right names and shapes (seeded), an optional
// WTS file given as the first argument, a random input, a run on the CPU reference, and a
// printout of the output shape and a checksum.
//
// Command line of every example:  NAME [WEIGHTS.wts] [--input FILE.bin] [--shape D0,D1,...]
//                                      [--output FILE.bin] [--int8 DIR | --fp8 DIR]
//                                      [--calibrator NAME] [--percentile P] [--calib-cache FILE]
//   --input   raw little-endian f32 data (int64 for an i64 input: token ids) for the network's
//             first input; its dynamic dims come
//             from --shape, or (when only one dim is dynamic) from the file's size. The other
//             inputs (e.g. initial RNN states) are zeros when --input is given.
//   --output  writes the first output as raw little-endian f32.
//   --int8    runs the network in INT8 (Q/DQ on the CPU reference, kiln/int8.hpp), calibrated on
//             the batches in DIR as `kiln build --int8 --calib-data DIR` reads them
//             (kiln/import/calib_data.hpp: DIR/*.npy|*.pb for one input, DIR/<input>/ for several).
//             --calibrator entropy (default), minmax or percentile; --percentile P (99.99);
//             --calib-cache FILE reads the scales from FILE when it exists (then DIR may be left
//             out: `--int8 --calib-cache FILE`), else writes them there.
//   --fp8     the same in FP8 E4M3 (`kiln build --fp8`: the same calibration and cache).
// Without flags: random inputs (seeded), as before.
#pragma once

#include <chrono>
#include <cmath>
#include <cstdio>
#include <exception>
#include <fstream>
#include <functional>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <string_view>

#include "kiln/dsl/dsl.hpp"
#include "kiln/import/wts.hpp"
#include "kiln/int8.hpp"
#include "kiln/run.hpp"

namespace examples {

/// Weights for every name and shape the network asks for, uniform in +-sqrt(3 / fan_in)
/// (so activations keep their scale), BatchNorm statistics near mean 0 and variance 1.
template <class Build>
kiln::WeightMap random_weights(Build&& build, std::uint64_t seed) {
  const kiln::dsl::Network shapes = build(kiln::dsl::Weights::shapes_only());
  std::mt19937_64 rng(seed);
  kiln::WeightMap m;
  for (const auto& s : shapes.weight_specs()) {
    kiln::Tensor t(s.dtype, s.dims);
    std::int64_t fan_in = 1;
    for (std::size_t i = 1; i < s.dims.size(); ++i) fan_in *= s.dims[i];
    auto ends = [&](const char* suffix) {
      const std::string x(suffix);
      return s.name.size() >= x.size() &&
             s.name.compare(s.name.size() - x.size(), x.size(), x) == 0;
    };
    double lo = -std::sqrt(3.0 / static_cast<double>(fan_in)), hi = -lo;
    if (s.dims.size() == 1) lo = -0.1, hi = 0.1;  // biases, BN shift and mean
    if (ends("running_var") || (ends(".weight") && s.dims.size() == 1)) lo = 0.5, hi = 1.5;
    std::uniform_real_distribution<double> u(lo, hi);
    if (s.dtype == kiln::DType::f32) {
      float* p = t.data<float>();
      for (std::int64_t i = 0; i < t.numel(); ++i) p[i] = static_cast<float>(u(rng));
    } else {
      for (std::int64_t i = 0; i < t.numel(); ++i) t.set(i, u(rng));
    }
    m.add(s.name, std::move(t));
  }
  return m;
}

/// Uniform [0, 1) values of the given dims.
inline kiln::Tensor random_input(kiln::DType dtype, const std::vector<std::int64_t>& dims,
                                 std::uint64_t seed) {
  kiln::Tensor t(dtype, dims);
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  for (std::int64_t i = 0; i < t.numel(); ++i) t.set(i, u(rng));
  return t;
}

/// The example's command line (see the top of this file).
struct Args {
  std::optional<std::string> wts, input, output;
  std::vector<std::int64_t> shape;  ///< --shape, empty if not given
  bool int8 = false;                ///< --int8 [DIR] or --fp8 [DIR]
  kiln::Int8Options int8_options;   ///< its DIR, format, --calibrator, --percentile, --calib-cache
};

inline Args parse_args(int argc, char** argv) {
  Args a;
  std::string int8_only;  // the first option given that needs --int8
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if ((arg == "--calibrator" || arg == "--percentile" || arg == "--calib-cache") &&
        int8_only.empty())
      int8_only = arg;
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) throw std::runtime_error("option " + std::string(arg) + " needs a value");
      return argv[++i];
    };
    if (arg == "--int8" || arg == "--fp8") {
      if (a.int8) throw std::runtime_error("give one of --int8 and --fp8");
      a.int8 = true;
      a.int8_options.format = arg == "--fp8" ? kiln::DType::f8e4m3fn : kiln::DType::i8;
      if (i + 1 < argc && !std::string_view(argv[i + 1]).starts_with("--"))
        a.int8_options.calib_data = argv[++i];
    } else if (arg == "--calibrator") {
      a.int8_options.calibrator = kiln::build::parse_calibrator(value());
    } else if (arg == "--percentile") {
      const std::string v = value();
      std::size_t used = 0;
      try {
        a.int8_options.percentile = std::stod(v, &used);
      } catch (const std::exception&) {
        used = 0;
      }
      if (used != v.size() || v.empty())
        throw std::runtime_error("--percentile '" + v + "': expected a number in (0, 100]");
    } else if (arg == "--calib-cache") {
      a.int8_options.calib_cache = value();
    } else if (arg == "--input") {
      a.input = value();
    } else if (arg == "--output") {
      a.output = value();
    } else if (arg == "--shape") {
      const std::string v = value();
      std::size_t pos = 0;
      while (pos <= v.size()) {
        const std::size_t comma = std::min(v.find(',', pos), v.size());
        const std::string d = v.substr(pos, comma - pos);
        std::size_t used = 0;
        long long n = -1;
        try {
          n = std::stoll(d, &used);
        } catch (const std::exception&) {
          used = 0;
        }
        if (used != d.size() || d.empty() || n <= 0)
          throw std::runtime_error("--shape '" + v +
                                   "': expected positive dims separated by commas");
        a.shape.push_back(n);
        pos = comma + 1;
      }
    } else if (arg.starts_with("--")) {
      throw std::runtime_error("unknown option " + std::string(arg) +
                               " (use: [WEIGHTS.wts] [--input F.bin] [--shape D0,D1,...] "
                               "[--output F.bin] [--int8 DIR | --fp8 DIR] [--calibrator NAME] "
                               "[--percentile P] [--calib-cache FILE])");
    } else if (!a.wts) {
      a.wts = std::string(arg);
    } else {
      throw std::runtime_error("more than one weights file given ('" + *a.wts + "', '" +
                               std::string(arg) + "')");
    }
  }
  if (!a.int8 && !int8_only.empty())
    throw std::runtime_error(int8_only + " goes with --int8 DIR or --fp8 DIR");
  a.int8_options.data_name = a.int8_options.format == kiln::DType::f8e4m3fn ? "--fp8" : "--int8";
  a.int8_options.cache_name = "--calib-cache";
  return a;
}

/// The WTS path of the command line, if any (for examples that inspect the file first).
inline std::optional<std::string> wts_path(int argc, char** argv) {
  try {
    return parse_args(argc, argv).wts;
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

/// Raw little-endian f32 (or, for an i64 input, int64) data from `path` as a tensor of the input's
/// dims: fixed dims as the network has them, dynamic dims from `shape` or (only one dynamic dim)
/// from the file size.
inline kiln::Tensor read_raw_input(const std::string& path, const kiln::TensorType& type,
                                   const std::vector<std::int64_t>& shape) {
  const bool ids = type.dtype == kiln::DType::i64;
  if (type.dtype != kiln::DType::f32 && !ids)
    throw std::runtime_error("--input: the input is " + std::string(kiln::dtype_name(type.dtype)) +
                             ", expected f32 or i64");
  const char* form = ids ? "raw i64" : "raw f32";
  const std::int64_t size = ids ? 8 : 4;
  std::ifstream f(path, std::ios::binary | std::ios::ate);
  if (!f) throw std::runtime_error("--input: cannot open '" + path + "'");
  const auto bytes = static_cast<std::int64_t>(f.tellg());
  if (bytes % size != 0)
    throw std::runtime_error("--input '" + path + "': size " + std::to_string(bytes) +
                             " bytes is not a multiple of " + std::to_string(size) + " (" + form +
                             ")");
  const std::int64_t count = bytes / size;
  const std::size_t rank = type.shape.rank();
  std::vector<std::int64_t> dims(rank, -1);
  if (!shape.empty()) {
    if (shape.size() != rank)
      throw std::runtime_error("--shape has " + std::to_string(shape.size()) +
                               " dims, the input has rank " + std::to_string(rank));
    for (std::size_t i = 0; i < rank; ++i) {
      if (type.shape[i].is_fixed() && type.shape[i].value() != shape[i])
        throw std::runtime_error("--shape dim " + std::to_string(i) + " is " +
                                 std::to_string(shape[i]) + ", the network fixes it to " +
                                 std::to_string(type.shape[i].value()));
      dims[i] = shape[i];
    }
  } else {
    std::int64_t fixed = 1;
    int dynamic = -1;
    for (std::size_t i = 0; i < rank; ++i) {
      if (type.shape[i].is_fixed()) {
        dims[i] = type.shape[i].value();
        fixed *= dims[i];
      } else if (dynamic >= 0) {
        throw std::runtime_error(
            "--input: the input has several dynamic dims; give them with --shape");
      } else {
        dynamic = static_cast<int>(i);
      }
    }
    if (dynamic >= 0) {
      if (fixed == 0 || count % fixed != 0 || count == 0)
        throw std::runtime_error("--input '" + path + "': " + std::to_string(count) +
                                 " values is not a multiple of the fixed dims' product " +
                                 std::to_string(fixed));
      dims[static_cast<std::size_t>(dynamic)] = count / fixed;
    }
  }
  std::int64_t want = 1;
  for (auto d : dims) want *= d;
  if (want != count)
    throw std::runtime_error("--input '" + path + "': " + std::to_string(count) +
                             " values, the shape needs " + std::to_string(want));
  kiln::Tensor t(type.dtype, dims);
  f.seekg(0);
  f.read(ids ? reinterpret_cast<char*>(t.data<std::int64_t>())
             : reinterpret_cast<char*>(t.data<float>()),
         bytes);
  if (!f) throw std::runtime_error("--input: reading '" + path + "' failed");
  return t;
}

/// Builds the network (random weights, or the WTS file given), runs it on the CPU reference with
/// random inputs (dynamic dims: `dynamic_dim`, e.g. a batch of 1) or the --input file, prints
/// each output's shape and checksum (sum and sum of absolute values), and writes the first
/// output with --output. `adapt` may rewrite the weights read from a WTS file (e.g. TF layouts).
template <class Build>
int run_example(const char* title, int argc, char** argv, Build&& build,
                std::int64_t dynamic_dim = 1,
                const std::function<void(kiln::WeightMap&)>& adapt = {}) {
  try {
    using clock = std::chrono::steady_clock;
    const auto t0 = clock::now();
    const Args args = parse_args(argc, argv);
    kiln::WeightMap weights;
    if (args.wts) {
      weights = kiln::read_wts(*args.wts).weights;
      if (adapt) adapt(weights);
      std::printf("%s: %zu weights from %s\n", title, weights.size(), args.wts->c_str());
    } else {
      weights = random_weights(build, 42);
      std::printf("%s: %zu random weights (seed 42)\n", title, weights.size());
    }
    const kiln::dsl::Network net = build(kiln::dsl::Weights(weights));
    for (const auto& w : net.weight_warnings()) std::printf("warning: %s\n", w.c_str());
    kiln::reference::TensorMap inputs;
    std::uint64_t seed = 7;
    std::int64_t file_dynamic = -1;  // the value of the --input file's dynamic dims
    for (const auto& in : net.graph().inputs) {
      if (args.input && inputs.empty()) {
        inputs[in.name] = read_raw_input(*args.input, in.type, args.shape);
        const auto& dims = inputs[in.name].dims();
        for (std::size_t i = 0; i < dims.size(); ++i)
          if (!in.type.shape[i].is_fixed()) file_dynamic = dims[i];
      } else {
        std::vector<std::int64_t> dims;
        const std::int64_t dyn = args.input && file_dynamic > 0 ? file_dynamic : dynamic_dim;
        for (const auto& d : in.type.shape) dims.push_back(d.is_fixed() ? d.value() : dyn);
        if (args.input) {
          inputs[in.name] = kiln::Tensor(in.type.dtype, dims);
          for (std::int64_t i = 0; i < inputs[in.name].numel(); ++i) inputs[in.name].set(i, 0.0);
        } else {
          inputs[in.name] = random_input(in.type.dtype, dims, seed);
        }
      }
      ++seed;
      std::printf("input  %s: %s\n", in.name.c_str(), inputs[in.name].type_string().c_str());
    }
    // INT8: the network's graph calibrated (or its scales read from --calib-cache) and quantized.
    kiln::Graph graph = net.graph();
    if (args.int8) {
      const kiln::Int8Result q = kiln::int8_from_calibration(graph, args.int8_options);
      const char* calibrator = kiln::build::calibrator_name(args.int8_options.calibrator);
      const std::string f = kiln::format_precision(args.int8_options.format);  // int8, fp8
      if (q.from_cache)
        std::printf("%s: %zu scales read from %s (not calibrated)\n", f.c_str(), q.tensors.size(),
                    args.int8_options.calib_cache.c_str());
      else
        std::printf(
            "%s: calibrated %zu tensors on %zu batches of %s with the %s calibrator in "
            "%.1f s%s%s\n",
            f.c_str(), q.tensors.size(), q.batches, args.int8_options.calib_data.c_str(),
            calibrator, q.seconds, q.cache_written ? "; cache written to " : "",
            q.cache_written ? args.int8_options.calib_cache.c_str() : "");
      graph = q.graph;
    }
    const auto t1 = clock::now();
    const auto out = kiln::reference::Executor(graph).run(inputs);
    const auto t2 = clock::now();
    for (const auto& name : net.output_names()) {
      const kiln::Tensor& t = out.at(name);
      double sum = 0, abs_sum = 0;
      for (std::int64_t i = 0; i < t.numel(); ++i) {
        const double v = t.get(i);
        sum += v;
        abs_sum += std::fabs(v);
      }
      std::printf("output %s: %s checksum %.9g (sum of |x| %.9g)\n", name.c_str(),
                  t.type_string().c_str(), sum, abs_sum);
    }
    if (args.output) {
      const kiln::Tensor& t = out.at(net.output_names().front());
      std::vector<float> v(static_cast<std::size_t>(t.numel()));
      for (std::int64_t i = 0; i < t.numel(); ++i)
        v[static_cast<std::size_t>(i)] = static_cast<float>(t.get(i));
      std::ofstream f(*args.output, std::ios::binary);
      f.write(reinterpret_cast<const char*>(v.data()),
              static_cast<std::streamsize>(v.size() * sizeof(float)));
      if (!f) throw std::runtime_error("--output: cannot write '" + *args.output + "'");
      std::printf("wrote %s (%s, raw f32)\n", args.output->c_str(), t.type_string().c_str());
    }
    auto ms = [](auto d) { return std::chrono::duration<double, std::milli>(d).count(); };
    std::printf("%zu nodes; build %.0f ms, run %.0f ms (CPU reference%s)\n", graph.nodes.size(),
                ms(t1 - t0), ms(t2 - t1),
                !args.int8                                          ? ""
                : args.int8_options.format == kiln::DType::f8e4m3fn ? ", FP8"
                                                                    : ", INT8");
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: %s\n", title, e.what());
    return 1;
  }
}

}  // namespace examples
