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

/// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78) of `data`.
uint32_t crc32c(std::string_view data);

/// TFRecord's masking: ((crc >> 15) | (crc << 17)) + 0xa282ead8.
uint32_t mask_crc(uint32_t crc);

/// The framed record for `data`.
std::string frame_record(std::string_view data);

/// Parses framed records back, checking both CRCs; throws std::runtime_error
/// naming the byte offset of a truncated or corrupt record.
std::vector<std::string> read_records(std::string_view file);

}  // namespace bnlab::train::tensorboard
