// `kiln wts`: inspect WTS weight files.
#pragma once

namespace kiln::tools {

/// `kiln wts inspect FILE [--dialect trt-hex|trt-binary|tensorrtx]` and `kiln wts --help`.
/// argv[0] is the subcommand's own name ("wts"), argv[1..argc) its arguments: call it as
/// wts_main(argc - 1, argv + 1) from kiln's main. Prints to stdout; errors go to stderr.
/// Returns 0 on success, 1 on a bad or unreadable file, 2 on a usage error. Never throws.
int wts_main(int argc, char** argv);

}  // namespace kiln::tools
