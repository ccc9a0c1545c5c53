#include "train/tensorboard/tfrecord.h"

#include <array>
#include <cstring>
#include <stdexcept>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <nmmintrin.h>
#define BNLAB_CRC32C_SSE42 1
#endif

namespace bnlab::train::tensorboard {

namespace {

std::array<uint32_t, 256> make_table() {
  std::array<uint32_t, 256> table{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1U) ? (c >> 1) ^ 0x82F63B78U : c >> 1;
    table[i] = c;
  }
  return table;
}

void put_le(std::string& out, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xFFU));
}

uint64_t get_le(std::string_view in, size_t at, int bytes) {
  uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) v |= static_cast<uint64_t>(static_cast<uint8_t>(in[at + i])) << (8 * i);
  return v;
}

#ifdef BNLAB_CRC32C_SSE42
// The crc32 instruction computes CRC-32C's reflected update on 8 bytes at a
// time, with the same register convention as the table (no final inversion).
__attribute__((target("sse4.2"))) uint32_t crc32c_sse42(std::string_view data) {
  uint64_t c = 0xFFFFFFFFU;
  const char* p = data.data();
  size_t n = data.size();
  for (; n >= 8; n -= 8, p += 8) {
    uint64_t word;
    std::memcpy(&word, p, 8);
    c = _mm_crc32_u64(c, word);
  }
  auto c32 = static_cast<uint32_t>(c);
  for (; n > 0; --n, ++p) c32 = _mm_crc32_u8(c32, static_cast<uint8_t>(*p));
  return c32 ^ 0xFFFFFFFFU;
}
#endif

}  // namespace

uint32_t crc32c_bytewise(std::string_view data) {
  static const auto table = make_table();
  uint32_t c = 0xFFFFFFFFU;
  for (char ch : data) c = table[(c ^ static_cast<uint8_t>(ch)) & 0xFFU] ^ (c >> 8);
  return c ^ 0xFFFFFFFFU;
}

bool crc32c_uses_hardware() {
#ifdef BNLAB_CRC32C_SSE42
  static const bool has = __builtin_cpu_supports("sse4.2");
  return has;
#else
  return false;
#endif
}

uint32_t crc32c(std::string_view data) {
#ifdef BNLAB_CRC32C_SSE42
  if (crc32c_uses_hardware()) return crc32c_sse42(data);
#endif
  return crc32c_bytewise(data);
}

uint32_t mask_crc(uint32_t crc) { return ((crc >> 15) | (crc << 17)) + 0xa282ead8U; }

std::string frame_record(std::string_view data) {
  std::string out;
  out.reserve(data.size() + 16);
  std::string length;
  put_le(length, data.size(), 8);
  out += length;
  put_le(out, mask_crc(crc32c(length)), 4);
  out.append(data.data(), data.size());
  put_le(out, mask_crc(crc32c(data)), 4);
  return out;
}

std::vector<std::string> read_records(std::string_view file) {
  std::vector<std::string> records;
  size_t at = 0;
  while (at < file.size()) {
    if (file.size() - at < 12) {
      throw std::runtime_error("TFRecord: truncated header at byte " + std::to_string(at));
    }
    const uint64_t length = get_le(file, at, 8);
    if (mask_crc(crc32c(file.substr(at, 8))) != get_le(file, at + 8, 4)) {
      throw std::runtime_error("TFRecord: bad length CRC at byte " + std::to_string(at));
    }
    if (file.size() - at - 12 < length + 4) {
      throw std::runtime_error("TFRecord: truncated record at byte " + std::to_string(at));
    }
    const auto data = file.substr(at + 12, length);
    if (mask_crc(crc32c(data)) != get_le(file, at + 12 + length, 4)) {
      throw std::runtime_error("TFRecord: bad data CRC at byte " + std::to_string(at));
    }
    records.emplace_back(data);
    at += 12 + length + 4;
  }
  return records;
}

}  // namespace bnlab::train::tensorboard
