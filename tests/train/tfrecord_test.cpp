// TFRecord framing and CRC-32C against published check values.
#include "train/tensorboard/tfrecord.h"

#include <gtest/gtest.h>

#include <string>

namespace {

using namespace bnlab::train::tensorboard;

// Both implementations: the one crc32c picks on this CPU, and the portable one.
class Crc32cImpl : public ::testing::TestWithParam<bool> {
 protected:
  uint32_t crc(std::string_view data) const { return GetParam() ? crc32c_bytewise(data) : crc32c(data); }
};

TEST_P(Crc32cImpl, KnownVectors) {
  // The CRC-32C check value (RFC 3720 / iSCSI) and its test patterns.
  EXPECT_EQ(crc("123456789"), 0xE3069283U);
  EXPECT_EQ(crc(std::string(32, '\0')), 0x8A9136AAU);
  EXPECT_EQ(crc(std::string(32, '\xff')), 0x62A8AB43U);
  std::string ascending;
  for (int i = 0; i < 32; ++i) ascending.push_back(static_cast<char>(i));
  EXPECT_EQ(crc(ascending), 0x46DD794EU);
  EXPECT_EQ(crc(""), 0U);
}

TEST_P(Crc32cImpl, EveryLengthAndAlignmentMatchesTheBitwiseDefinition) {
  // The definition, a bit at a time: reflected polynomial 0x82F63B78, initial
  // and final inversion. Lengths 0..40 at offsets 0..7 cover the 8-byte words,
  // the byte tail and unaligned starts.
  auto bitwise = [](std::string_view data) {
    uint32_t c = 0xFFFFFFFFU;
    for (char ch : data) {
      c ^= static_cast<uint8_t>(ch);
      for (int k = 0; k < 8; ++k) c = (c & 1U) ? (c >> 1) ^ 0x82F63B78U : c >> 1;
    }
    return c ^ 0xFFFFFFFFU;
  };
  std::string buffer;
  for (int i = 0; i < 64; ++i) buffer.push_back(static_cast<char>(i * 37 + 11));
  for (size_t offset = 0; offset < 8; ++offset) {
    for (size_t length = 0; length <= 40; ++length) {
      const std::string_view piece(buffer.data() + offset, length);
      EXPECT_EQ(crc(piece), bitwise(piece)) << "offset " << offset << " length " << length;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Implementations, Crc32cImpl, ::testing::Values(false, true),
                         [](const ::testing::TestParamInfo<bool>& info) {
                           return std::string(info.param ? "Bytewise" : "Dispatched");
                         });

TEST(Crc32c, MaskIsTfRecordsRotation) {
  const uint32_t crc = 0xE3069283U;
  EXPECT_EQ(mask_crc(crc), ((crc >> 15) | (crc << 17)) + 0xa282ead8U);
}

TEST(TfRecord, RoundTripsAndDetectsCorruption) {
  const std::string file = frame_record("hello") + frame_record("") + frame_record(std::string(300, 'x'));
  auto records = read_records(file);
  ASSERT_EQ(records.size(), 3U);
  EXPECT_EQ(records[0], "hello");
  EXPECT_EQ(records[1], "");
  EXPECT_EQ(records[2], std::string(300, 'x'));
  EXPECT_EQ(frame_record("hello").size(), 5U + 16U);
  std::string corrupt = file;
  corrupt[14] ^= 1;  // a data byte of the first record
  EXPECT_THROW(read_records(corrupt), std::runtime_error);
  EXPECT_THROW(read_records(file.substr(0, file.size() - 2)), std::runtime_error);
}

}  // namespace
