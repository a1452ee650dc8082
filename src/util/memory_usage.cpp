#include "util/memory_usage.h"

#include <sys/resource.h>

namespace fbq {

long peak_rss_kib() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return usage.ru_maxrss;  // KiB on Linux
}

}  // namespace fbq
