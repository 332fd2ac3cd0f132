// libFuzzer target: the WTS reader, with dialect detection and under each dialect's grammar.
#include "fuzz_util.hpp"
#include "kiln/import/wts.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string bytes = kiln::fuzz::bytes_of(data, size);
  kiln::fuzz::run_one([&] { (void)kiln::read_wts_string(bytes, "<fuzz>"); });
  for (kiln::WtsDialect d : kiln::kAllWtsDialects) {
    kiln::WtsReadOptions o;
    o.dialect = d;
    o.allow_empty_weights = true;
    kiln::fuzz::run_one([&] { (void)kiln::read_wts_string(bytes, "<fuzz>", o); });
  }
  return 0;
}
