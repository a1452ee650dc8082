#pragma once
// This process's peak resident memory (getrusage ru_maxrss), reported by every command's --json output.
namespace fbq {

long peak_rss_kib();
inline double peak_rss_mib() { return peak_rss_kib() / 1024.0; }

}  // namespace fbq
