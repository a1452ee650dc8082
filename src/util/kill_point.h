#pragma once
// Named points where a test may have the process killed (SIGKILL, as a crash or `kill -9` would), to check
// that whatever was on disk at that moment is either trusted and correct or ignored. Inert unless the
// environment variable FBQ_TEST_KILL_AT is "NAME:INDEX" for this very point.
#include <string_view>

namespace fbq {

void kill_point(std::string_view name, int index);

}  // namespace fbq
