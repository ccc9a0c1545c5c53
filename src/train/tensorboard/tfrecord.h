// TFRecord framing, the container of TensorBoard event files:
//   uint64 length (little endian) | uint32 masked_crc32c(length bytes) |
//   data[length] | uint32 masked_crc32c(data)
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace bnlab::train::tensorboard {

/// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78) of `data`: with the
/// SSE4.2 crc32 instruction where the CPU has it (8 bytes per instruction),
/// else crc32c_bytewise.
uint32_t crc32c(std::string_view data);

/// The same CRC a byte at a time from a 256-entry table (the portable path).
uint32_t crc32c_bytewise(std::string_view data);

/// Whether crc32c uses the CPU's crc32 instruction.
bool crc32c_uses_hardware();

/// TFRecord's masking: ((crc >> 15) | (crc << 17)) + 0xa282ead8.
uint32_t mask_crc(uint32_t crc);

/// The framed record for `data`.
std::string frame_record(std::string_view data);

/// Parses framed records back, checking both CRCs; throws std::runtime_error
/// naming the byte offset of a truncated or corrupt record.
std::vector<std::string> read_records(std::string_view file);

}  // namespace bnlab::train::tensorboard
