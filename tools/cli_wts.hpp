// `kiln wts`: inspect WTS weight files.
#pragma once

#include <string>
#include <vector>

namespace kiln::tools {

/// `kiln wts inspect FILE [--dialect trt-hex|trt-binary|tensorrtx]` and `kiln wts --help`
/// (argv: the arguments after "wts"). Prints to stdout; throws Error on a bad file or usage.
int cmd_wts(const std::vector<std::string>& argv);

}  // namespace kiln::tools
