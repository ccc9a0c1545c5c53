// TFRecord framing and CRC-32C against published check values.
#include "train/tensorboard/tfrecord.h"

#include <gtest/gtest.h>

#include <string>

namespace {

using namespace bnlab::train::tensorboard;

TEST(Crc32c, KnownVectors) {
  // The CRC-32C check value (RFC 3720 / iSCSI) and its test patterns.
  EXPECT_EQ(crc32c("123456789"), 0xE3069283U);
  EXPECT_EQ(crc32c(std::string(32, '\0')), 0x8A9136AAU);
  EXPECT_EQ(crc32c(std::string(32, '\xff')), 0x62A8AB43U);
  std::string ascending;
  for (int i = 0; i < 32; ++i) ascending.push_back(static_cast<char>(i));
  EXPECT_EQ(crc32c(ascending), 0x46DD794EU);
  EXPECT_EQ(crc32c(""), 0U);
}

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
