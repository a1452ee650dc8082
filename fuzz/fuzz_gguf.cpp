// libFuzzer harness for the GGUF reader: any input must either parse (and then list and dequantize
// cleanly) or be refused with fbq::Error. Anything else (a crash, a sanitizer report, another exception)
// is a bug.
#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "io/gguf.h"
#include "io/gguf_blocks.h"
#include "util/error.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  // GgufFile maps a path; an in-memory file spares the disk.
  static const int fd = memfd_create("fuzz_gguf", 0);
  if (ftruncate(fd, 0) != 0 || pwrite(fd, data, size, 0) != static_cast<ssize_t>(size)) __builtin_trap();
  const std::string path = "/proc/self/fd/" + std::to_string(fd);
  try {
    const fbq::GgufFile file(path);
    fbq::describe_gguf(file);
    for (const auto& tensor : file.tensors()) fbq::dequantize_gguf_tensor(tensor, file.path());
  } catch (const fbq::Error&) {
  }
  return 0;
}
